"""``takedown audit …`` and ``takedown evidence …``: the tamper-evident log and the
evidence vault, for operators and legal staff (mounted by cli/main.py)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from takedown.cli.common import CLI_ACTOR, err, fail, out, runtime
from takedown.errors import TakedownError

if TYPE_CHECKING:
    from takedown.runtime import Runtime
    from takedown.services.evidence.vault import EvidenceView

T = TypeVar("T")

audit_app = typer.Typer(
    rich_markup_mode=None,
)


def _anchor(text: str) -> tuple[int, str]:
    event_id, _, digest = text.partition(":")
    if not event_id.isdigit() or len(digest) != 64:
        raise typer.BadParameter(f"{text!r} is not EVENT_ID:HASH (a 64-hex-digit hash).")
    return int(event_id), digest.lower()


@audit_app.command("verify")
def audit_verify(
    anchor: Annotated[
        list[str] | None,
        typer.Option(
            help="EVENT_ID:HASH from a checkpoint kept outside the database (repeatable)."
        ),
    ] = None,
) -> None:
    """Check every event and checkpoint; exit 1 naming the first bad event."""
    anchors = [_anchor(a) for a in anchor or []]
    rt = runtime()
    try:
        report = rt.audit.verify(anchors)
    finally:
        rt.close()
    summary = (
        f"{report.events_checked} chained events (head {report.head_id}), "
        f"{report.events_before_chain} from before the chain, "
        f"{report.checkpoints} checkpoints"
    )
    if report.ok:
        out.print(f"audit log intact: {summary}")
        return
    first = report.problems[0]
    err.print(f"[red]audit log NOT intact[/red]: {first.message}")
    for p in report.problems[1:20]:
        err.print(f"  also: {p.message}")
    if len(report.problems) > 20:
        err.print(f"  … and {len(report.problems) - 20} more problems")
    err.print(f"checked: {summary}")
    raise typer.Exit(code=1)


@audit_app.command("checkpoint")
def audit_checkpoint() -> None:
    """Checkpoint the chain's head now and print it (keep a copy elsewhere: an anchor)."""
    rt = runtime()
    try:
        cp = rt.audit.checkpoint(CLI_ACTOR)
    finally:
        rt.close()
    out.print(json.dumps(cp.__dict__ | {"anchor": f"{cp.event_id}:{cp.event_hash}"}))


# -- evidence ----------------------------------------------------------------------------
evidence_app = typer.Typer(
    rich_markup_mode=None,
)
Purpose = Annotated[str, typer.Option(help="Why you need it (written to the audit log).")]
Reason = Annotated[str, typer.Option(help="Why (written to the audit log).")]
Until = Annotated[datetime, typer.Option(help="End of the hold, UTC (e.g. 2028-01-31T00:00:00).")]


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _show(views: list[EvidenceView]) -> None:
    for v in views:
        out.print(json.dumps(asdict(v), default=str, indent=1))


def _run(work: Callable[[Runtime], T]) -> T:
    rt = runtime()
    try:
        return work(rt)
    except TakedownError as exc:
        raise fail(exc) from None
    finally:
        rt.close()


@evidence_app.command("preserve")
def evidence_preserve(case_id: str, purpose: Purpose) -> None:
    """Snapshot a case's evidence now (encrypted)."""
    _show([_run(lambda rt: rt.evidence.preserve(case_id, CLI_ACTOR, purpose))])


@evidence_app.command("list")
def evidence_list(case_id: str, purpose: Purpose) -> None:
    """A case's preserved evidence."""
    _show(_run(lambda rt: rt.evidence.list_for_case(case_id, CLI_ACTOR, purpose)))


@evidence_app.command("show")
def evidence_show(evidence_id: str, purpose: Purpose) -> None:
    """One evidence record: holds and files."""
    _show([_run(lambda rt: rt.evidence.get(evidence_id, CLI_ACTOR, purpose))])


@evidence_app.command("reported")
def evidence_reported(
    case_id: str,
    at: Annotated[datetime, typer.Option(help="When the report was completed, UTC.")],
    reference: Annotated[str | None, typer.Option(help="The authority's report id.")] = None,
) -> None:
    """A report was completed: hold the case's evidence for the preservation period."""
    _show(
        _run(
            lambda rt: rt.evidence.mark_reported(case_id, _utc(at), CLI_ACTOR, reference=reference)
        )
    )


@evidence_app.command("hold")
def evidence_hold(evidence_id: str, until: Until, reason: Reason) -> None:
    """Add a legal hold."""
    hold = _run(
        lambda rt: rt.evidence.add_hold(evidence_id, CLI_ACTOR, until=_utc(until), reason=reason)
    )
    out.print(json.dumps(asdict(hold), default=str))


@evidence_app.command("extend")
def evidence_extend(evidence_id: str, hold_id: str, until: Until, reason: Reason) -> None:
    """Extend a hold to a later end."""
    hold = _run(
        lambda rt: rt.evidence.extend_hold(
            evidence_id, hold_id, CLI_ACTOR, until=_utc(until), reason=reason
        )
    )
    out.print(json.dumps(asdict(hold), default=str))


@evidence_app.command("release")
def evidence_release(evidence_id: str, hold_id: str, reason: Reason) -> None:
    """End a legal hold."""
    hold = _run(lambda rt: rt.evidence.release_hold(evidence_id, hold_id, CLI_ACTOR, reason=reason))
    out.print(json.dumps(asdict(hold), default=str))


@evidence_app.command("delete")
def evidence_delete(evidence_id: str, reason: Reason) -> None:
    """Delete evidence whose holds have all ended (refused while held)."""
    _show([_run(lambda rt: rt.evidence.delete(evidence_id, CLI_ACTOR, reason=reason))])


@evidence_app.command("destroy")
def evidence_destroy(
    evidence_id: str,
    requested_by: Annotated[str, typer.Option(help="Agency and officer who asked.")],
    reference: Annotated[str, typer.Option(help="Their request reference.")],
    reason: Annotated[str, typer.Option(help="Anything to add.")] = "",
) -> None:
    """Destroy on a law-enforcement request, media bytes included."""
    _show(
        [
            _run(
                lambda rt: rt.evidence.destroy(
                    evidence_id,
                    CLI_ACTOR,
                    requested_by=requested_by,
                    reference=reference,
                    reason=reason,
                )
            )
        ]
    )


@evidence_app.command("export")
def evidence_export(
    evidence_id: str,
    purpose: Purpose,
    output: Annotated[Path, typer.Option("-o", "--output", help="Zip file to write.")],
    le_reference: Annotated[str | None, typer.Option(help="The agency's reference.")] = None,
) -> None:
    """Write an evidence package (zip: files, context, manifest of SHA-256 hashes).
    The file holds plaintext evidence: write it only where it may be."""
    pkg = _run(
        lambda rt: rt.evidence.export(evidence_id, CLI_ACTOR, purpose, le_reference=le_reference)
    )
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pkg.data)
    out.print(f"wrote {output} (manifest SHA-256 {pkg.manifest_sha256})")
