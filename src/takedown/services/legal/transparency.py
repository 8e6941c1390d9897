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
from takedown.store.db import unit_of_work
from takedown.store.models import (
    Appeal,
    Case,
    CaseItem,
    Decision,
    Item,
    OutboxMessage,
    Report,
    ReporterStanding,
)

TIDA_COLUMNS = [
    "report_id",
    "case_id",
    "received_at",
    "due_at",
    "removed_at",
    "hours_to_removal",
    "copies_found",
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
        with unit_of_work(self._sessions, write=False) as s:
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
                "actions": _actions(s, start, end),
                "decisions": _decisions(s, start, end),
                "complaints": _complaints(s, start, end),
                "suspensions": _suspensions(s, start, end),
            }

    def dsa_csv(self, start: datetime, end: datetime) -> str:
        return tr.to_csv(["metric", "value"], tr.flatten(self.dsa_report(start, end)))

    # -- TAKE IT DOWN Act -------------------------------------------------------------------
    def take_it_down(
        self, start: datetime, end: datetime, now: datetime | None = None
    ) -> dict[str, object]:
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
                .order_by(Report.received_at)
            ).all()
            requests: list[dict[str, Any]] = []
            for report, case in rows:
                found, removed = _copies(s, case.id)
                removal = tr.time_to_removal(report.received_at, case.restricted_at)
                late = tr.past_48_hours(report.received_at, case.restricted_at, now)
                requests.append(
                    {
                        "report_id": report.public_id,
                        "case_id": case.public_id,
                        "received_at": report.received_at.isoformat(),
                        "due_at": (report.received_at + tr.TAKE_IT_DOWN_WINDOW).isoformat(),
                        "removed_at": (report.received_at + removal).isoformat()
                        if removal is not None
                        else None,
                        "hours_to_removal": tr.hours(removal),
                        "copies_found": found,
                        "copies_removed": removed,
                        "past_48h": late,
                        "why": tr.late_reason(
                            copies_found=found,
                            from_limited_reporter=report.from_limited_reporter,
                            outcome=case.outcome,
                            hidden=removal is not None,
                        )
                        if late
                        else None,
                    }
                )
        times = [
            tr.time_to_removal(r.received_at, c.restricted_at)
            for r, c in rows
            if c.restricted_at is not None
        ]
        return {
            "period": {"start": start.isoformat(), "end": end.isoformat()},
            "valid_requests": len(requests),
            "removed_within_48h": sum(
                1 for r in requests if r["removed_at"] is not None and not r["past_48h"]
            ),
            "past_48h": sum(1 for r in requests if r["past_48h"]),
            "not_removed": sum(1 for r in requests if r["removed_at"] is None),
            "median_hours_to_removal": tr.median_hours(t for t in times if t is not None),
            "max_hours_to_removal": max(
                (h for r in requests if (h := r["hours_to_removal"]) is not None),
                default=None,
            ),
            "copies_found": sum(int(r["copies_found"]) for r in requests),
            "copies_removed": sum(int(r["copies_removed"]) for r in requests),
            "requests": requests,
        }

    def take_it_down_csv(self, start: datetime, end: datetime) -> str:
        report = self.take_it_down(start, end)
        requests: list[dict[str, Any]] = report["requests"]  # type: ignore[assignment]
        return tr.to_csv(TIDA_COLUMNS, ([r[c] for c in TIDA_COLUMNS] for r in requests))


def _copies(s: Session, case_id: int) -> tuple[int, int]:
    rows = s.execute(
        select(Item.visibility, func.count())
        .join(CaseItem, CaseItem.item_id == Item.id)
        .where(CaseItem.case_id == case_id)
        .group_by(Item.visibility)
    ).all()
    found = sum(int(n) for _, n in rows)
    removed = sum(int(n) for v, n in rows if v != "visible")
    return found, removed


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
    by_type: Counter[str] = Counter()
    by_ground: Counter[str] = Counter()
    automation: Counter[str] = Counter()
    for topic, payload in s.execute(
        select(OutboxMessage.topic, OutboxMessage.payload).where(
            OutboxMessage.created_at >= start, OutboxMessage.created_at < end
        )
    ).yield_per(2000):
        by_type[topic] += 1
        statement = json.loads(payload).get("statement_of_reasons") or {}
        by_ground[str(statement.get("ground_type", "unknown"))] += 1
        automation[str(statement.get("automated_decision", "unknown"))] += 1
    return {
        "total": sum(by_type.values()),
        "by_type": dict(by_type),
        "by_ground": dict(by_ground),
        "by_automation": dict(automation),
    }


def _decisions(s: Session, start: datetime, end: datetime) -> dict[str, object]:
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
    return {
        "total": len(rows),
        "by_outcome": dict(Counter(r[0] for r in rows)),
        "by_kind": dict(Counter(r[1] for r in rows)),
        # Every decision is a person's; automation only restricts pending review.
        "solely_automated": 0,
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
            .order_by(Decision.decided_at.desc())
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
