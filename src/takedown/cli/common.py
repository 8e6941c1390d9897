"""What every ``takedown`` command shares: the consoles, the actor name written to the
audit log, opening the runtime and turning a :class:`TakedownError` into exit code 2.

Every command module imports this one and nothing else of the package, so the
package has no import cycle (``takedown.cli.main`` imports the command modules).
"""

from __future__ import annotations

import typer
from rich.console import Console

from takedown.config import Settings
from takedown.errors import TakedownError
from takedown.runtime import Runtime, open_runtime

out = Console(soft_wrap=True)  # long paths and hashes stay on one line
err = Console(stderr=True, soft_wrap=True)
CLI_ACTOR = "cli"


def runtime() -> Runtime:
    return open_runtime(Settings())


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
