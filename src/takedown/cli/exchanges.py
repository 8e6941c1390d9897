"""``takedown exchange …``: hash-list exchanges (NCMEC, StopNCII, ThreatExchange, TCAP)
feeding banks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from takedown.cli.common import CLI_ACTOR, err, fail, out, print_json_lines, print_table, runtime
from takedown.errors import TakedownError

exchange_app = typer.Typer(
    rich_markup_mode=None,
)


# An exchange's own policy, the same on `add` and `set`.
ThresholdOption = Annotated[
    int | None,
    typer.Option(help="Its own PDQ threshold (the stricter of this and the bank's applies)"),
]
ActionOption = Annotated[
    str | None,
    typer.Option(help="block|review|record for its entries, instead of the bank's action"),
]


@exchange_app.command("add")
def exchange_add(
    name: str,
    type: Annotated[str, typer.Option("--type", help="ncmec, stopncii, threatexchange or tat")],
    bank: Annotated[str, typer.Option(help="The bank its entries go into")],
    credentials: Annotated[
        str | None,
        typer.Option(
            help="A file holding the credentials (NCMEC user:password; StopNCII "
            "fetch_key,subscription_key[,feedback_key]; ThreatExchange the app access "
            "token app_id|secret; TCAP username:password); only its path is stored"
        ),
    ] = None,
    credentials_env: Annotated[
        str | None, typer.Option(help="Or an environment variable holding them")
    ] = None,
    base_url: Annotated[
        str | None, typer.Option(help="Another base URL than the exchange's own")
    ] = None,
    interval: Annotated[int, typer.Option(help="Seconds between syncs")] = 3600,
    threshold: ThresholdOption = None,
    action: ActionOption = None,
    privacy_group: Annotated[
        int | None, typer.Option(help="ThreatExchange: the privacy group's id (required)")
    ] = None,
) -> None:
    """Add an exchange; `takedown worker` syncs it on schedule."""
    from takedown.config import absolute

    rt = runtime()
    try:
        view = rt.exchanges.add(
            name,
            type=type,
            bank=bank,
            actor=CLI_ACTOR,
            credentials_file=str(absolute(Path(credentials))) if credentials else None,
            credentials_env=credentials_env,
            base_url=base_url,
            interval_seconds=interval,
            threshold=threshold,
            action=action,
            privacy_group=privacy_group,
        )
    except TakedownError as exc:
        raise fail(exc) from exc
    out.print(f"added exchange {view.name} ({view.type}) → bank {view.bank}, id {view.id}")


@exchange_app.command("set")
def exchange_set(
    name: str,
    threshold: ThresholdOption = None,
    action: ActionOption = None,
) -> None:
    """Set an exchange's own threshold and action (an option left out: the bank's)."""
    rt = runtime()
    try:
        view = rt.exchanges.set_policy(name, actor=CLI_ACTOR, threshold=threshold, action=action)
    except TakedownError as exc:
        raise fail(exc) from exc
    shown_bank = "the bank's"
    shown = shown_bank if view.threshold is None else str(view.threshold)
    out.print(f"exchange {view.name}: threshold {shown}, action {view.action or shown_bank}")


@exchange_app.command("sync")
def exchange_sync(
    name: str,
    max_pages: Annotated[int | None, typer.Option(help="Stop after this many pages")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="The result as one JSON object")] = False,
) -> None:
    """Pull the exchange's changes since its checkpoint now."""
    rt = runtime()
    try:
        result = rt.exchanges.sync(name, actor=CLI_ACTOR, max_pages=max_pages)
    except TakedownError as exc:
        raise fail(exc) from exc
    if json_out:
        print_json_lines([result])
        return
    out.print(
        f"{result.exchange}: {result.pages} page(s), {result.added} added, "
        f"{result.seen} seen, {result.disabled} disabled, {result.enabled_again} enabled "
        f"again, {result.rejected} rejected" + ("" if result.complete else " (more to pull)")
    )


@exchange_app.command("list")
def exchange_list(
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
) -> None:
    """Every exchange with its last and next sync, counts and last error."""
    rt = runtime()
    views = rt.exchanges.list()
    if json_out:
        print_json_lines(views)
        return
    if not views:
        err.print("no exchanges yet: takedown exchange add NAME --type … --bank … --credentials …")
        return
    from rich.table import Table

    table = Table(
        "name",
        "type",
        "bank",
        "live",
        "added",
        "disabled",
        "rejected",
        "last sync",
        "next sync",
        "error",
    )
    for v in views:
        table.add_row(
            v.name,
            v.type,
            v.bank,
            str(v.live_entries),
            str(v.entries_added),
            str(v.entries_disabled),
            str(v.entries_rejected),
            v.last_sync_at.isoformat(timespec="seconds") if v.last_sync_at else "never",
            v.next_sync_at.isoformat(timespec="seconds") if v.next_sync_at else "-",
            v.last_error or "",
        )
    print_table(table)


@exchange_app.command("shares")
def exchange_shares(
    state: Annotated[
        str | None,
        typer.Option(
            help="pending (the legal team's queue), approved, refused, sent, failed; "
            "cancelled, withdrawing, withdrawn, withdraw_failed (the file found not "
            "violating after all)"
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
) -> None:
    """Our own confirmed hashes offered to exchanges, and what became of each. The legal
    team approves or refuses them (console: Legal › Hash shares; API:
    /v1/exchange-shares), never this command."""
    try:
        views = runtime().shares.list(state=state, limit=1000)
    except TakedownError as exc:
        raise fail(exc) from None
    if json_out:
        print_json_lines(views)
        return
    from rich.table import Table

    table = Table(
        "id", "exchange", "case", "signals", "state", "decided by", "upstream id", "error"
    )
    for v in views:
        table.add_row(
            v.id,
            v.exchange,
            v.case_id or "",
            ", ".join(sorted(v.signals)),
            v.state
            + (f": {v.reason}" if v.state == "refused" and v.reason else "")
            + (f": {v.withdraw_reason}" if v.withdraw_reason else ""),
            v.decided_by or "",
            v.upstream_id or "",
            v.last_error or "",
        )
    print_table(table)
