"""What the case service answers with: the receipt of a report, the reporter's public
status, the queue's summaries and a case's detail (copies, reports, decisions, clocks),
and the builders that make the views of clocks, decisions and reports from the rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from takedown.domain.triage import Clock
from takedown.store.models import Case, Decision, Report


@dataclass(frozen=True)
class ReportReceipt:
    case_number: str
    report_id: str
    status_token: str  # shown once; only its hash is stored
    status: str
    status_text: str
    restricted_items: int
    takedown_request: bool
    missing_for_takedown: tuple[str, ...]


@dataclass(frozen=True)
class PublicDecision:
    outcome: str
    reasons: str
    decided_at: datetime
    appeal_until: datetime


@dataclass(frozen=True)
class PublicStatusView:
    """What a reporter may see: no internal notes, no reviewer, no other reporter."""

    case_number: str
    status: str
    status_text: str
    content_restricted: bool
    received_at: datetime
    restricted_at: datetime | None
    decision: PublicDecision | None
    timeline: list[dict[str, str]]
    withdrawn_at: datetime | None = None  # this reporter withdrew their report
    hashed_files: int = 0  # files whose hashes (not the files) came with this report


@dataclass(frozen=True)
class CopyView:
    item_id: str
    url: str | None
    account: str | None
    reason: str
    distance: int | None
    visibility: str
    monetization_paused: bool
    views: int
    views_since_first_report: int
    # Its media match a negative bank (known benign): spared every automatic measure,
    # here for a person to see (cases/negative.py).
    negative_match: bool = False


@dataclass(frozen=True)
class ReportView:
    id: str
    reporter_role: str
    category: str
    explanation: str
    channel: str
    received_at: datetime
    takedown_request: bool
    locations: dict[str, list[Any]]  # urls, item_ids: str; hashes: objects
    reporter_name: str | None = None  # legal and admin only
    reporter_email: str | None = None
    contact: str | None = None
    signature: str | None = None
    victim_consent: bool = False  # the victim's details may go to NCMEC
    victim: dict[str, Any] | None = None  # what was given with consent: legal and admin only


@dataclass(frozen=True)
class DecisionView:
    id: str
    kind: str
    outcome: str
    policy: str | None
    reasons: str
    internal_note: str | None
    user_id: str
    user_role: str
    effective: bool
    decided_at: datetime
    # Per file: industry classification and annotations (violation decisions only).
    media_review: list[dict[str, object]] = field(default_factory=list)


@dataclass(frozen=True)
class ClockView:
    name: str
    started_at: datetime
    due_at: datetime
    met_at: datetime | None
    state: str


@dataclass(frozen=True)
class CaseSummary:
    id: str
    state: str
    categories: list[str]
    minor_safety: bool
    priority: int
    opened_at: datetime
    decision_due_at: datetime | None
    takedown_due_at: datetime | None
    clocks: list[ClockView]
    copies: int


@dataclass(frozen=True)
class CaseDetail:
    id: str
    state: str
    categories: list[str]
    minor_safety: bool
    priority: int
    priority_factors: list[dict[str, object]]
    opened_at: datetime
    first_report_at: datetime | None
    restricted_at: datetime | None
    decided_at: datetime | None
    outcome: str | None
    clocks: list[ClockView]
    copies: list[CopyView]
    copies_total: int
    accounts: list[dict[str, object]]
    total_views: int
    views_since_first_report: int
    reports: list[ReportView]
    decisions: list[DecisionView]
    appeals: list[dict[str, object]]
    unresolved_locations: list[str] = field(default_factory=list)
    hash_sources: list[str] = field(default_factory=list)  # banks' sources matched
    # Before a violation is confirmed: what confirming it would do to the accounts,
    # part -> measure -> accounts (see domain/enforcement.py).
    account_measures_preview: dict[str, dict[str, int]] | None = None


def _clocks(case: Case, now: datetime) -> list[ClockView]:
    clocks = []
    if case.decision_due_at is not None:
        started = case.first_report_at or case.opened_at
        c = Clock("decision", started, case.decision_due_at, case.decided_at)
        clocks.append(ClockView(c.name, c.started_at, c.due_at, c.met_at, c.state(now).value))
    if case.takedown_due_at is not None and case.takedown_requested_at is not None:
        # Met once the content is removed (47 U.S.C. 223a(a)(3): "remove ... not later
        # than 48 hours"); hiding it pending review (restricted_at) does not stop it.
        c = Clock(
            "take_it_down_48h", case.takedown_requested_at, case.takedown_due_at, case.removed_at
        )
        clocks.append(ClockView(c.name, c.started_at, c.due_at, c.met_at, c.state(now).value))
    return clocks


def _decision_view(d: Decision) -> DecisionView:
    return DecisionView(
        d.public_id,
        d.kind,
        d.outcome,
        d.policy,
        d.reasons,
        d.internal_note,
        d.user_id,
        d.user_role,
        d.effective,
        d.decided_at,
        json.loads(d.media_review) if d.media_review else [],
    )


def _report_view(r: Report, identity: bool) -> ReportView:
    return ReportView(
        id=r.public_id,
        reporter_role=r.reporter_role,
        category=r.category,
        explanation=r.explanation,
        channel=r.channel,
        received_at=r.received_at,
        takedown_request=r.takedown_request,
        locations=json.loads(r.locations),
        reporter_name=r.reporter_name if identity else None,
        reporter_email=r.reporter_email if identity else None,
        contact=r.contact if identity else None,
        signature=r.signature if identity else None,
        victim_consent=r.victim_consent,
        victim=_victim_given(r) if identity and r.victim_consent else None,
    )


def _victim_given(r: Report) -> dict[str, Any]:
    given = {
        "first_name": r.victim_first_name,
        "last_name": r.victim_last_name,
        "email": r.victim_email,
        "phone": r.victim_phone,
        "age": r.victim_age,
        "date_of_birth": r.victim_date_of_birth.isoformat() if r.victim_date_of_birth else None,
    }
    return {k: v for k, v in given.items() if v is not None}
