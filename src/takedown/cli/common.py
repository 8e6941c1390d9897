"""What every ``takedown`` command shares: the consoles, the actor name written to the
audit log, the settings (the global ``--config`` and ``--data-dir`` options over the
environment and the config file), opening the runtime, and turning a
:class:`TakedownError` into exit code 2 and a set-up problem (:class:`ConfigError`)
into a sentence and exit code 2.

Every command module imports this one and nothing else of the package, so the
package has no import cycle (``takedown.cli.main`` imports the command modules).
"""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from takedown.config import PREFIX, Settings, absolute
from takedown.errors import ConfigError, TakedownError
from takedown.runtime import Runtime, open_runtime

out = Console(soft_wrap=True)  # long paths and hashes stay on one line
err = Console(stderr=True, soft_wrap=True)
CLI_ACTOR = "cli"

# The global options of this invocation (cli/main.py's callback sets them each time).
_chosen: dict[str, Path] = {}


def choose(*, config: Path | None, data_dir: Path | None) -> None:
    """Remember ``--config`` and ``--data-dir``, made absolute here and now."""
    _chosen.clear()
    if config is not None:
        _chosen["config"] = absolute(config)
    if data_dir is not None:
        _chosen["data_dir"] = absolute(data_dir)


def chosen_environment() -> dict[str, str]:
    """The global options as the environment variables that say the same, for processes
    this one starts (``takedown serve --workers N``)."""
    return {f"{PREFIX}{name.upper()}": str(path) for name, path in _chosen.items()}


def settings() -> Settings:
    try:
        return Settings(**_chosen)
    except ConfigError as exc:
        raise setup_failed(exc) from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{PREFIX}{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        raise setup_failed(ConfigError(f"Invalid settings: {problems}.")) from exc


def runtime(*, create: bool = False, config: Settings | None = None) -> Runtime:
    """Open the runtime for a command; only ``takedown serve`` may ``create`` a new
    database (every other command refuses one that does not exist yet)."""
    try:
        return open_runtime(config or settings(), create=create)
    except ConfigError as exc:
        raise setup_failed(exc) from exc


def setup_failed(exc: ConfigError) -> typer.Exit:
    """Print what is wrong with the set-up; the caller raises the returned exit (2)."""
    err.print(f"[red]error[/red]: {escape(str(exc))}")
    return typer.Exit(code=2)


def fail(exc: TakedownError) -> typer.Exit:
    """Print the error's code and sentence (and up to 50 rejected lines) on stderr; the
    caller raises the returned exit (code 2)."""
    err.print(f"[red]error[/red] [bold]{exc.code}[/bold]: {exc.message}")
    rejected = exc.details.get("rejected") if exc.details else None
    if rejected:
        for r in rejected[:50]:
            err.print(f"  line {r['line']}: {r['reason']}")
        if len(rejected) > 50:
            err.print(f"  … and {len(rejected) - 50} more")
    return typer.Exit(code=2)
