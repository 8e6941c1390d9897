"""Setting clocks by hand in test and staging deployments: a report's received time
(the TAKE IT DOWN Act's 48 hours run from it) and a decision's time (the DSA's
six-month appeal window runs from it). The rules are in ``domain/clocks.py``; refused
unless ``TAKEDOWN_ALLOW_CLOCK_OVERRIDE`` is on and no filing goes to a production
CyberTipline or DSA database. Every change is an audit event with the old and new times.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Result, select, update
from sqlalchemy.orm import Session

from takedown.domain.clocks import check_between, check_new_time
from takedown.domain.triage import TAKE_IT_DOWN_WINDOW
from takedown.errors import Forbidden, NotFound
from takedown.ids import utcnow
from takedown.services.audit.chain import record
from takedown.services.cases.base import CaseBase
from takedown.store.db import unit_of_work
from takedown.store.models import Appeal, AppliedMeasure, Case, Decision, Report


@dataclass(frozen=True)
class ClockChange:
    object_type: str  # report | decision
    object_id: str
    case_id: str
    # "report.received_at", "case.takedown_due_at"... -> {"old": iso, "new": iso}
    changes: dict[str, dict[str, str | None]]


def _count(result: Result[Any]) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


class CaseClocks(CaseBase):
    """``set_received`` and ``set_decided``: admins of test and staging deployments."""

    def _check_clock_override(self) -> None:
        refusal = self._policy.clock_override_refusal
        if refusal is not None:
            raise Forbidden(refusal[1], code=refusal[0])

    def set_received(self, report_id: str, at: datetime, actor: str) -> ClockChange:
        """Move a report's received time; the case's times stamped with it (the case it
        opened, its first report, the restriction it fired, the TAKE IT DOWN request)
        move with it, and the deadlines derived from them follow."""
        self._check_clock_override()
        at = check_new_time(at, utcnow())
        with unit_of_work(self._sessions) as s:
            report = s.scalars(select(Report).where(Report.public_id == report_id.strip())).first()
            if report is None:
                raise NotFound(f"No report {report_id[:40]!r}.", code="report_not_found")
            case = s.scalars(select(Case).where(Case.id == report.case_id).with_for_update()).one()
            old = report.received_at
            changes: dict[str, dict[str, str | None]] = {}
            _set(changes, "report", report, "received_at", at)
            before = {f: getattr(case, f) for f in _CASE_TIMES}
            for name in ("opened_at", "restricted_at"):
                if getattr(case, name) == old:
                    _set(changes, "case", case, name, at)
            if case.opened_at > at:  # a case is open from its first report at the latest
                _set(changes, "case", case, "opened_at", at)
            received = _received_times(s, case.id)
            _set(changes, "case", case, "first_report_at", min(received[0]))
            if case.takedown_requested_at is not None and received[1]:
                _set(changes, "case", case, "takedown_requested_at", min(received[1]))
                if case.takedown_due_at is not None:
                    due = min(received[1]) + TAKE_IT_DOWN_WINDOW
                    _set(changes, "case", case, "takedown_due_at", due)
            moved = _shift(before["first_report_at"], case.first_report_at)
            if moved and case.decided_at is None and case.decision_due_at is not None:
                _set(changes, "case", case, "decision_due_at", case.decision_due_at + moved)
            record(
                s,
                actor,
                "clock.set_received",
                "case",
                case.public_id,
                {"report": report.public_id, "changes": changes},
            )
            return ClockChange("report", report.public_id, case.public_id, changes)

    def set_decided(self, decision_id: str, at: datetime, actor: str) -> ClockChange:
        """Move a decision's time; the case's decision time (the appeal window runs from
        it), the removal it made, the appeals it closed and the account measures it
        took move with it. It keeps its place among the case's decisions and appeals."""
        self._check_clock_override()
        at = check_new_time(at, utcnow())
        with unit_of_work(self._sessions) as s:
            decision = s.scalars(
                select(Decision).where(Decision.public_id == decision_id.strip())
            ).first()
            if decision is None:
                raise NotFound(f"No decision {decision_id[:40]!r}.", code="decision_not_found")
            case = s.scalars(
                select(Case).where(Case.id == decision.case_id).with_for_update()
            ).one()
            old = decision.decided_at
            _check_order(s, case, decision, at)
            changes: dict[str, dict[str, str | None]] = {}
            _set(changes, "decision", decision, "decided_at", at)
            for name in ("decided_at", "removed_at"):
                if getattr(case, name) == old:
                    _set(changes, "case", case, name, at)
            closed = _count(
                s.execute(
                    update(Appeal)
                    .where(Appeal.case_id == case.id, Appeal.decided_at == old)
                    .values(decided_at=at)
                )
            )
            if closed:
                changes["appeals.decided_at"] = {"old": _iso(old), "new": _iso(at)}
            measures = _count(
                s.execute(
                    update(AppliedMeasure)
                    .where(
                        AppliedMeasure.case_id == case.id,
                        AppliedMeasure.decision == decision.public_id,
                        AppliedMeasure.applied_at == old,
                    )
                    .values(applied_at=at)
                )
            )
            if measures:
                changes["account_measures.applied_at"] = {"old": _iso(old), "new": _iso(at)}
            record(
                s,
                actor,
                "clock.set_decided",
                "case",
                case.public_id,
                {"decision": decision.public_id, "changes": changes},
            )
            return ClockChange("decision", decision.public_id, case.public_id, changes)


_CASE_TIMES = (
    "opened_at",
    "first_report_at",
    "restricted_at",
    "takedown_requested_at",
    "takedown_due_at",
    "decision_due_at",
)


def _set(
    changes: dict[str, dict[str, str | None]], prefix: str, row: object, name: str, value: datetime
) -> None:
    old = getattr(row, name)
    if old == value:
        return
    setattr(row, name, value)
    key = f"{prefix}.{name}"
    first = changes.get(key, {}).get("old", _iso(old))
    changes[key] = {"old": first, "new": _iso(value)}


def _shift(old: datetime | None, new: datetime | None) -> timedelta | None:
    if old is None or new is None or old == new:
        return None
    return new - old


def _received_times(s: Session, case_id: int) -> tuple[list[datetime], list[datetime]]:
    """Every report's received time, and the TAKE IT DOWN requests' (withdrawn or not:
    the clock started at the first request)."""
    rows = s.execute(
        select(Report.received_at, Report.takedown_request).where(Report.case_id == case_id)
    ).all()
    return [r[0] for r in rows], [r[0] for r in rows if r[1]]


def _check_order(s: Session, case: Case, decision: Decision, at: datetime) -> None:
    others = s.execute(
        select(Decision.id, Decision.decided_at)
        .where(Decision.case_id == case.id)
        .order_by(Decision.decided_at, Decision.id)
    ).all()
    ids = [r[0] for r in others]
    i = ids.index(decision.id)
    earliest = others[i - 1][1] if i > 0 else min(case.opened_at, case.first_report_at or at)
    later = [r[1] for r in others[i + 1 :]]
    later += s.scalars(
        select(Appeal.opened_at).where(
            Appeal.case_id == case.id, Appeal.opened_at >= decision.decided_at
        )
    )
    check_between(at, earliest, min(later, default=None), "decision")
