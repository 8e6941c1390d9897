"""What every ``takedown`` command shares: the consoles, the actor name written to the
audit log, the settings (the global ``--config`` and ``--data-dir`` options over the
environment and the config file), opening the runtime, and turning a
:class:`TakedownError` into exit code 2 and a set-up problem (:class:`ConfigError`)
into a sentence and exit code 2.

Every command module imports this one and nothing else of the package, so the
package has no import cycle (``takedown.cli.main`` imports the command modules).

Start-up time: ``takedown --help`` and light commands must answer in a fraction of a
second, so nothing here or in a command module imports the settings, the database,
the media code, rich or asyncio at module level; each command imports what it uses
when it runs, and the consoles below make their rich ``Console`` at their first use
(tests/test_cli_startup.py checks which modules ``--help`` loads).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import typer

from takedown.errors import ConfigError, TakedownError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from takedown.config import Settings
    from takedown.runtime import Runtime


class _LazyConsole:
    """A rich ``Console`` made at its first use: importing rich costs a tenth of a
    second, which ``--help`` and commands that print nothing through rich never pay."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def real(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real(), name)


def _lazy_console(**options: Any) -> Console:
    return cast("Console", _LazyConsole(**options))


def real_console(console: Console) -> Console:
    """The rich ``Console`` itself behind ``out`` or ``err`` (for rich code that takes
    a console: progress bars, measuring a table)."""
    return console.real() if isinstance(console, _LazyConsole) else console


out = _lazy_console(soft_wrap=True)  # long paths and hashes stay on one line
err = _lazy_console(stderr=True, soft_wrap=True)
CLI_ACTOR = "cli"

# The global options of this invocation (cli/main.py's callback sets them each time).
_chosen: dict[str, Path] = {}


def choose(*, config: Path | None, data_dir: Path | None) -> None:
    """Remember ``--config`` and ``--data-dir``, made absolute here and now."""
    _chosen.clear()
    if config is None and data_dir is None:
        return
    from takedown.config import absolute

    if config is not None:
        _chosen["config"] = absolute(config)
    if data_dir is not None:
        _chosen["data_dir"] = absolute(data_dir)


def chosen_environment() -> dict[str, str]:
    """The global options as the environment variables that say the same, for processes
    this one starts (``takedown serve --workers N``)."""
    from takedown.config import PREFIX

    return {f"{PREFIX}{name.upper()}": str(path) for name, path in _chosen.items()}


def settings(*, serving: bool = False) -> Settings:
    """This invocation's settings; a mistake in them is one sentence and exit code 2.
    ``serving`` (``takedown serve``, ``takedown worker``): also the settings that only
    the background work reads (the webhook secret…), so a server never starts with them
    wrong and fails later inside (config.Settings.check_for_serving)."""
    from pydantic import ValidationError

    from takedown.config import PREFIX, Settings

    try:
        config = Settings(**_chosen)
        if serving:
            config.check_for_serving()
        return config
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
    from takedown.runtime import open_runtime

    try:
        return open_runtime(config or settings(), create=create)
    except ConfigError as exc:
        raise setup_failed(exc) from exc


def setup_failed(exc: ConfigError) -> typer.Exit:
    """Print what is wrong with the set-up; the caller raises the returned exit (2)."""
    from rich.markup import escape

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


def print_table(table: Table) -> None:
    """A table as wide as its content, wider than the terminal if need be: ids and other
    values that commands take are never cut (rich shrinks and ellipsizes columns to fit
    the terminal, or 80 columns when the output is not one)."""
    from rich.console import Console
    from rich.measure import Measurement

    console = real_console(out)
    needed = Measurement.get(console, console.options.update_width(100_000), table).maximum
    if needed <= console.width:
        console.print(table)
    else:  # rich never prints wider than its console: one as wide as the table
        Console(width=needed, soft_wrap=True).print(table)


def print_json_lines(rows: Iterable[object]) -> None:
    """``--json``: one JSON object per line (a list's views, dataclasses), every field
    whole, times in ISO 8601."""
    import dataclasses
    import json
    import sys

    for row in rows:
        fields = dataclasses.asdict(row) if dataclasses.is_dataclass(row) else vars(row)  # type: ignore[arg-type]
        sys.stdout.write(json.dumps(fields, default=_jsonable) + "\n")


def _jsonable(value: object) -> object:
    from datetime import datetime

    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
