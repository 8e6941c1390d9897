"""Transparency (DSA Articles 15 and 24) and TAKE IT DOWN Act compliance reports.

Both read the records the other use cases already keep — reports, cases, decisions,
appeals, the platform's actions (outbox) — for a half-open date range [start, end).
Nothing here writes; the figures are reproducible for any past period.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from takedown.domain import transparency as tr
from takedown.ids import utcnow
from takedown.store import item_actions
from takedown.store.db import unit_of_work
from takedown.store.models import (
    Appeal,
    Case,
    CaseItem,
    Decision,
    Item,
    OutboxMessage,
    OutboxStatement,
    Report,
    ReporterStanding,
)

TIDA_COLUMNS = [
    "report_id",
    "case_id",
    "received_at",
    "due_at",
    "hidden_at",
    "hours_to_hidden",
    "removed_at",
    "hours_to_removal",
    "copies_found",
    "copies_hidden",
    "copies_removed",
    "past_48h",
    "why",
]


class TransparencyService:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    # -- DSA Articles 15 and 24 -----------------------------------------------------------
    def dsa_report(self, start: datetime, end: datetime) -> dict[str, object]:
        tr.check_range(start, end)
        # Every action counted: those of a viral measure still in its fan-out written
        # out first (store/item_actions.py).
        item_actions.settle(self._sessions)
        with unit_of_work(self._sessions, write=False) as s:
            actions = _actions(s, start, end)
            return {
                "period": {"start": start.isoformat(), "end": end.isoformat()},
                "notices": _notices(s, start, end),
                "own_initiative": {
                    "cases_from_hash_matches": s.scalar(
                        select(func.count())
                        .select_from(Case)
                        .where(
                            Case.opened_at >= start,
                            Case.opened_at < end,
                            Case.hash_sources != "",
                            Case.first_report_at.is_(None),
                        )
                    )
                    or 0
                },
                "actions": actions,
                "decisions": _decisions(s, start, end, actions),
                "complaints": _complaints(s, start, end),
                "suspensions": _suspensions(s, start, end),
            }

    def dsa_csv(self, start: datetime, end: datetime) -> str:
        return tr.to_csv(["metric", "value"], tr.flatten(self.dsa_report(start, end)))

    # -- TAKE IT DOWN Act -------------------------------------------------------------------
    def take_it_down(
        self, start: datetime, end: datetime, now: datetime | None = None
    ) -> dict[str, object]:
        """Per valid request received in [start, end): when the content was hidden (the
        first restriction or removal) and when it was removed, each counted from the
        request; the 48 hours are judged on removal, as the Act asks (47 U.S.C.
        223a(a)(3)). Content hidden or removed before the request counts as at once."""
        tr.check_range(start, end)
        now = now or utcnow()
        with unit_of_work(self._sessions, write=False) as s:
            rows = s.execute(
                select(Report, Case)
                .join(Case, Case.id == Report.case_id)
                .where(
                    Report.takedown_request.is_(True),
                    Report.received_at >= start,
                    Report.received_at < end,
                )
                .order_by(Report.received_at, Report.id)
            ).all()
            copies = {case.id: _copies(s, case.id) for _, case in rows}
        requests = [_request_row(report, case, copies[case.id], now) for report, case in rows]
        hidden = [t for r, c in rows if (t := tr.time_to(r.received_at, _hidden_at(c))) is not None]
        removed = [t for r, c in rows if (t := tr.time_to(r.received_at, c.removed_at)) is not None]
        return {
            "period": {"start": start.isoformat(), "end": end.isoformat()},
            "window_hours": tr.TAKE_IT_DOWN_WINDOW.total_seconds() / 3600,
            "valid_requests": len(requests),
            "hidden_within_48h": sum(1 for r in requests if r["hidden_within_48h"]),
            "removed_within_48h": sum(
                1 for r in requests if r["removed_at"] is not None and not r["past_48h"]
            ),
            "past_48h": sum(1 for r in requests if r["past_48h"]),
            "not_hidden": sum(1 for r in requests if r["hidden_at"] is None),
            "not_removed": sum(1 for r in requests if r["removed_at"] is None),
            "median_hours_to_hidden": tr.median_hours(hidden),
            "max_hours_to_hidden": tr.hours(max(hidden, default=None)),
            "median_hours_to_removal": tr.median_hours(removed),
            "max_hours_to_removal": tr.hours(max(removed, default=None)),
            "copies_found": sum(int(r["copies_found"]) for r in requests),
            "copies_hidden": sum(int(r["copies_hidden"]) for r in requests),
            "copies_removed": sum(int(r["copies_removed"]) for r in requests),
            "requests": requests,
        }

    def take_it_down_csv(self, start: datetime, end: datetime) -> str:
        report = self.take_it_down(start, end)
        requests: list[dict[str, Any]] = report["requests"]  # type: ignore[assignment]
        return tr.to_csv(TIDA_COLUMNS, ([r[c] for c in TIDA_COLUMNS] for r in requests))


def _hidden_at(case: Case) -> datetime | None:
    """When the case's content was first hidden from the public: restricted pending
    review, or removed outright."""
    return min((t for t in (case.restricted_at, case.removed_at) if t is not None), default=None)


def _request_row(
    report: Report, case: Case, copies: tuple[int, int, int], now: datetime
) -> dict[str, Any]:
    found, hidden_copies, removed_copies = copies
    hidden_at = _hidden_at(case)
    to_hidden = tr.time_to(report.received_at, hidden_at)
    to_removal = tr.time_to(report.received_at, case.removed_at)
    late = tr.past_48_hours(report.received_at, case.removed_at, now)
    return {
        "report_id": report.public_id,
        "case_id": case.public_id,
        "received_at": report.received_at.isoformat(),
        "due_at": (report.received_at + tr.TAKE_IT_DOWN_WINDOW).isoformat(),
        "hidden_at": (report.received_at + to_hidden).isoformat()
        if to_hidden is not None
        else None,
        "hours_to_hidden": tr.hours(to_hidden),
        "hidden_within_48h": to_hidden is not None and to_hidden <= tr.TAKE_IT_DOWN_WINDOW,
        "removed_at": (report.received_at + to_removal).isoformat()
        if to_removal is not None
        else None,
        "hours_to_removal": tr.hours(to_removal),
        "copies_found": found,
        "copies_hidden": hidden_copies,
        "copies_removed": removed_copies,
        "past_48h": late,
        "why": tr.late_reason(
            copies_found=found,
            from_limited_reporter=report.from_limited_reporter,
            outcome=case.outcome,
            hidden=hidden_at is not None,
            removed=case.removed_at is not None,
        )
        if late
        else None,
    }


def _copies(s: Session, case_id: int) -> tuple[int, int, int]:
    """The case's copies: found, hidden from the public now (restricted or removed),
    removed."""
    rows = s.execute(
        select(Item.visibility, func.count())
        .join(CaseItem, CaseItem.item_id == Item.id)
        .where(CaseItem.case_id == case_id)
        .group_by(Item.visibility)
    ).all()
    found = sum(int(n) for _, n in rows)
    hidden = sum(int(n) for v, n in rows if v != "visible")
    removed = sum(int(n) for v, n in rows if v == "removed")
    return found, hidden, removed


def _notices(s: Session, start: datetime, end: datetime) -> dict[str, object]:
    rows = s.execute(
        select(
            Report.category,
            Report.reporter_role,
            Report.received_at,
            Report.takedown_request,
            Case.restricted_at,
            Case.decided_at,
        )
        .join(Case, Case.id == Report.case_id)
        .where(Report.received_at >= start, Report.received_at < end)
    ).all()
    acted = []
    for *_, received, _tid, restricted, decided in rows:
        first = min((t for t in (restricted, decided) if t is not None), default=None)
        if first is not None:
            acted.append(max(first - received, first - first))
    return {
        "total": len(rows),
        "by_category": dict(Counter(r[0] for r in rows)),
        "by_reporter_role": dict(Counter(r[1] for r in rows)),
        "from_trusted_flaggers": sum(1 for r in rows if r[1] == "trusted_flagger"),
        "take_it_down_requests": sum(1 for r in rows if r[3]),
        "median_hours_to_first_action": tr.median_hours(acted),
    }


def _actions(s: Session, start: datetime, end: datetime) -> dict[str, object]:
    """Every measure sent to the platform in the period (one outbox action per item or
    account), by type, ground and automation (``domain/transparency.automation``)."""
    by_type: Counter[str] = Counter()
    by_ground: Counter[str] = Counter()
    automation: Counter[str] = Counter()
    solely: Counter[str] = Counter()
    # A statement shared by many actions (OutboxStatement) is parsed once.
    shared: dict[int, dict[str, object]] = {}
    for topic, payload, statement_id, shared_body in s.execute(
        select(
            OutboxMessage.topic,
            OutboxMessage.payload,
            OutboxMessage.statement_id,
            OutboxStatement.body,
        )
        .outerjoin(OutboxStatement, OutboxStatement.id == OutboxMessage.statement_id)
        .where(
            OutboxMessage.created_at >= start,
            OutboxMessage.created_at < end,
            OutboxMessage.topic.like("item.%") | OutboxMessage.topic.like("account.%"),
        )
    ).yield_per(2000):
        body = json.loads(payload)
        by_type[topic] += 1
        if statement_id is None:
            statement = body.get("statement_of_reasons") or {}
        elif statement_id in shared:
            statement = shared[statement_id]
        else:
            statement = shared[statement_id] = json.loads(shared_body)
        by_ground[str(statement.get("ground_type", "unknown"))] += 1
        how = tr.automation(topic, body.get("reason"))
        automation[how] += 1
        if how == tr.FULLY:
            solely[str(body.get("reason"))] += 1
    return {
        "total": sum(by_type.values()),
        "by_type": dict(by_type),
        "by_ground": dict(by_ground),
        "by_automation": {k: automation[k] for k in (tr.FULLY, tr.PARTIALLY, tr.NOT_AUTOMATED)},
        "solely_automated_by_reason": dict(solely),
    }


def _decisions(
    s: Session, start: datetime, end: datetime, actions: dict[str, object]
) -> dict[str, object]:
    """Reviewers' decisions on cases (``total``, ``by_outcome``...), and the measures
    taken solely by automated means in the period (``solely_automated``: counted from
    the actions; a reviewer's decision is a person's by construction, API keys never
    decide)."""
    rows = s.execute(
        select(
            Decision.outcome,
            Decision.kind,
            Decision.decided_at,
            Case.first_report_at,
            Case.opened_at,
        )
        .join(Case, Case.id == Decision.case_id)
        .where(
            Decision.decided_at >= start, Decision.decided_at < end, Decision.effective.is_(True)
        )
    ).all()
    automation: dict[str, int] = actions["by_automation"]  # type: ignore[assignment]
    return {
        "total": len(rows),
        "by_outcome": dict(Counter(r[0] for r in rows)),
        "by_kind": dict(Counter(r[1] for r in rows)),
        "solely_automated": automation[tr.FULLY],
        "partially_automated": automation[tr.PARTIALLY],
        "by_a_person": automation[tr.NOT_AUTOMATED],
        "median_hours_to_decision": tr.median_hours(
            r[2] - (r[3] or r[4]) for r in rows if r[1] == "first"
        ),
    }


def _complaints(s: Session, start: datetime, end: datetime) -> dict[str, object]:
    opened = s.execute(
        select(Appeal.appellant).where(Appeal.opened_at >= start, Appeal.opened_at < end)
    ).all()
    reversed_ = upheld = 0
    times = []
    for case_id, decided_at, outcome in s.execute(
        select(Decision.case_id, Decision.decided_at, Decision.outcome).where(
            Decision.kind == "appeal",
            Decision.effective.is_(True),
            Decision.decided_at >= start,
            Decision.decided_at < end,
        )
    ).all():
        before = s.scalar(
            select(Decision.outcome)
            .where(
                Decision.case_id == case_id,
                Decision.effective.is_(True),
                Decision.decided_at < decided_at,
            )
            .order_by(Decision.decided_at.desc(), Decision.id.desc())
            .limit(1)
        )
        if before is not None and before != outcome:
            reversed_ += 1
        else:
            upheld += 1
        appeal_at = s.scalar(
            select(func.max(Appeal.opened_at)).where(
                Appeal.case_id == case_id, Appeal.opened_at <= decided_at
            )
        )
        if appeal_at is not None:
            times.append(decided_at - appeal_at)
    return {
        "received": len(opened),
        "by_appellant": dict(Counter(r[0] for r in opened)),
        "decided": reversed_ + upheld,
        "decision_reversed": reversed_,
        "decision_upheld": upheld,
        "median_hours_to_decide": tr.median_hours(times),
    }


def _suspensions(s: Session, start: datetime, end: datetime) -> dict[str, object]:
    counts = dict(
        s.execute(
            select(OutboxMessage.topic, func.count())
            .where(
                OutboxMessage.topic.in_(("account.warn", "account.suspend", "account.terminate")),
                OutboxMessage.created_at >= start,
                OutboxMessage.created_at < end,
            )
            .group_by(OutboxMessage.topic)
        ).all()
    )
    limited = s.scalar(
        select(func.count())
        .select_from(ReporterStanding)
        .where(
            ReporterStanding.limited_until.is_not(None),
            ReporterStanding.updated_at >= start,
            ReporterStanding.updated_at < end,
        )
    )
    return {
        "accounts_warned": int(counts.get("account.warn", 0)),
        "accounts_suspended": int(counts.get("account.suspend", 0)),
        "accounts_terminated": int(counts.get("account.terminate", 0)),
        "reporters_limited_for_unfounded_notices": int(limited or 0),
    }
