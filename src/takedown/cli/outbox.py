"""``takedown outbox …``: the actions waiting for the platform, and dead letters."""

from __future__ import annotations

from typing import Annotated

import typer

from takedown.cli.common import CLI_ACTOR, fail, out, print_json_lines, print_table, runtime
from takedown.errors import TakedownError

outbox_app = typer.Typer(
    rich_markup_mode=None,
)


@outbox_app.command("list")
def outbox_list(
    state: Annotated[
        str | None, typer.Option(help="pending, delivering, acknowledged, dead_letter")
    ] = None,
    limit: Annotated[int, typer.Option()] = 50,
    json_lines: Annotated[
        bool, typer.Option("--json", help="One JSON object per line, every field whole.")
    ] = False,
) -> None:
    """Recent actions and their delivery state."""
    rt = runtime()
    try:
        rows = rt.outbox.list(state=state, limit=limit)
    except TakedownError as exc:
        raise fail(exc) from None
    if json_lines:
        print_json_lines(rows)
        return
    from rich.table import Table

    table = Table("id", "topic", "target", "state", "attempts", "last error")
    for r in rows:
        table.add_row(
            r.id, r.topic, r.target_id, r.state, str(r.attempts), (r.last_error or "")[:60]
        )
    print_table(table)
    out.print(", ".join(f"{k}: {v}" for k, v in sorted(rt.outbox.counts().items())))


@outbox_app.command("redeliver")
def outbox_redeliver(outbox_id: str) -> None:
    """Queue a dead-lettered action again."""
    try:
        runtime().outbox.redeliver(outbox_id, actor=CLI_ACTOR)
    except TakedownError as exc:
        raise fail(exc) from None
    out.print(f"queued {outbox_id} again")
