"""Reports, cases and decisions: the heart of the product.

The rules themselves live in ``domain/`` (report validity, priority, clocks, the
four-eyes rule); this module applies them to the database, one transaction per use
case, writing the audit events, the platform's actions (outbox) and the reporters'
mail in the same transaction as the change they describe.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from takedown.domain.access import Permission, Principal
from takedown.domain.cases import (
    APPEAL_WINDOW,
    PUBLIC_STATUS,
    PUBLIC_TEXT,
    CaseFacts,
    CaseState,
    DecisionInput,
    ItemEffect,
    Outcome,
    PublicStatus,
    check_appeal,
    decide,
    validate_media_review,
)
from takedown.domain.enforcement import AccountPolicy, ReporterPolicy
from takedown.domain.reports import (
    AUTHENTICATED_ROLES,
    INTIMATE_IMAGERY,
    MINOR_SAFETY,
    Category,
    ReporterRole,
    ReportInput,
    ValidReport,
    validate_report,
)
from takedown.domain.statements import statement_for
from takedown.domain.triage import (
    TAKE_IT_DOWN_WINDOW,
    Clock,
    TriageInput,
    decision_target,
    priority,
)
from takedown.errors import Forbidden, InvalidRequest, NotFound
from takedown.ids import new_id, utcnow
from takedown.services.audit.chain import record, record_many
from takedown.services.cases.copies import Copy, CopyFinder, chunks
from takedown.services.cases.enforcement import (
    apply_account_measures,
    bank_confirmed_media,
    count_unfounded,
    is_limited,
    reporter_key,
)
from takedown.services.cases.media import check_media_in_case
from takedown.services.cases.reported_hashes import REASON as REPORTED_HASH
from takedown.services.cases.reported_hashes import HashedMedia, ReportedHashes
from takedown.store import repositories as repo
from takedown.store.db import unit_of_work
from takedown.store.models import (
    Account,
    Appeal,
    Case,
    CaseItem,
    CaseLocation,
    Decision,
    Item,
    ItemViews,
    MailMessage,
    OutboxMessage,
    Report,
)

ACTIVE_STATES = (
    CaseState.OPEN.value,
    CaseState.RESTRICTED.value,
    CaseState.IN_REVIEW.value,
    CaseState.AWAITING_SECOND_REVIEW.value,
    CaseState.APPEALED.value,
)


@dataclass(frozen=True)
class CasePolicy:
    """Deployment settings the case rules depend on."""

    decision_target_minor_hours: float = 4
    decision_target_hours: float = 72
    restrict_first_minor_safety: bool = True
    restrict_first_takedown_requests: bool = True
    public_base_url: str = "http://127.0.0.1:8000"
    accounts: AccountPolicy = field(default_factory=AccountPolicy)
    reporters: ReporterPolicy = field(default_factory=ReporterPolicy)


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


def _hash_sources(case: Case) -> list[str]:
    return sorted(filter(None, case.hash_sources.split(",")))


def _add_hash_sources(case: Case, sources: set[str]) -> None:
    case.hash_sources = ",".join(sorted(set(_hash_sources(case)) | sources))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _categories(case: Case) -> set[Category]:
    return {Category(c) for c in case.categories.split(",") if c}


def _is_active(case: Case) -> bool:
    return case.state in ACTIVE_STATES or case.outcome == Outcome.VIOLATION.value


class CaseService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        copies: CopyFinder,
        policy: CasePolicy,
        reported_hashes: ReportedHashes,
    ) -> None:
        self._sessions = sessions
        self._copies = copies
        self._policy = policy
        self._hashes = reported_hashes

    # -- intake --------------------------------------------------------------------
    def submit_report(
        self, raw: ReportInput, *, channel: str, principal: Principal | None = None
    ) -> ReportReceipt:
        """Validate, group into a case, restrict first, and answer at once."""
        valid = validate_report(raw, authenticated_role=_channel_role(principal))
        token = secrets.token_urlsafe(24)
        actor = principal.actor if principal else f"reporter:{valid.reporter_role.value}"
        with unit_of_work(self._sessions) as s:
            now = utcnow()
            seeds = self._resolve(s, valid.item_ids, valid.urls)
            copies = self._copies.expand(s, seeds) if seeds else {}
            found = self._hashes.find(s, valid.hashes) if valid.hashes else None
            if found and found.copies:
                # What the hashes found, and everything it links to; an item both named
                # and found keeps "reported".
                more = self._copies.expand(s, found.copies, known=frozenset(copies))
                copies.update({i: found.copies.get(i, c) for i, c in more.items()})
            case = self._case_for(s, set(copies), now)
            added = self._add_copies(s, case, copies)
            if found and found.bank_sources:
                _add_hash_sources(case, found.bank_sources)
            report = Report(
                case_id=case.id,
                channel=channel,
                submitted_by=principal.actor if principal else None,
                category=valid.category.value,
                reporter_role=valid.reporter_role.value,
                explanation=valid.explanation,
                locations=json.dumps(
                    {
                        "urls": list(valid.urls),
                        "item_ids": list(valid.item_ids),
                        "hashes": [h.to_json() for h in valid.hashes],
                    }
                ),
                reporter_name=valid.reporter_name,
                reporter_email=valid.reporter_email,
                contact=valid.contact,
                signature=valid.signature,
                good_faith=valid.good_faith,
                not_consensual=valid.not_consensual,
                takedown_request=valid.takedown_request,
                status_token_hash=_token_hash(token),
                received_at=now,
                from_limited_reporter=is_limited(
                    s,
                    reporter_key(principal.actor if principal else None, valid.reporter_email),
                    now,
                ),
            )
            s.add(report)
            s.flush()
            self._add_locations(s, case, report, valid)
            record(
                s,
                actor,
                "report.received",
                "case",
                case.public_id,
                {
                    "report": report.public_id,
                    "category": valid.category.value,
                    "reporter_role": valid.reporter_role.value,
                    "takedown_request": valid.takedown_request,
                    "copies_added": added,
                    "hashed_files": len(valid.hashes),
                    "hash_matched_items": len(found.copies) if found else 0,
                    "hash_matched_banks": sorted(found.bank_sources) if found else [],
                },
            )
            before = PUBLIC_STATUS[CaseState(case.state)]
            self._apply_report(s, case, valid, now)
            restricted = 0
            if report.from_limited_reporter:
                # DSA art. 23(2): reviewed like any report, but it hides nothing first.
                record(
                    s,
                    actor,
                    "report.from_limited_reporter",
                    "case",
                    case.public_id,
                    {"report": report.public_id},
                )
            elif self._restrict_first(valid) and case.outcome != Outcome.VIOLATION.value:
                restricted = self._restrict(s, case, actor, "restrict_first", now)
            elif valid.category in INTIMATE_IMAGERY and case.outcome is None:
                # Not hidden yet (e.g. a bystander's report of intimate imagery), but
                # nobody should earn from it while it is reviewed.
                self._demonetize(s, case, actor, now)
            self._refresh_priority(s, case, now)
            status = PUBLIC_STATUS[CaseState(case.state)]
            self._mail(s, case, [report], "received", now)
            if status != before:
                self._mail_status_change(s, case, status, now, exclude=report.id)
            return ReportReceipt(
                case_number=case.public_id,
                report_id=report.public_id,
                status_token=token,
                status=status.value,
                status_text=PUBLIC_TEXT[status],
                restricted_items=restricted,
                takedown_request=valid.takedown_request,
                missing_for_takedown=valid.missing_for_takedown,
            )

    def _restrict_first(self, valid: ValidReport) -> bool:
        if valid.category in MINOR_SAFETY and self._policy.restrict_first_minor_safety:
            return True
        return valid.takedown_request and self._policy.restrict_first_takedown_requests

    def _resolve(self, s: Session, item_ids: Sequence[str], urls: Sequence[str]) -> set[int]:
        found: set[int] = set()
        for part in chunks(list(item_ids)):
            found.update(s.scalars(select(Item.id).where(Item.platform_id.in_(part))))
        for part in chunks(list(urls)):
            found.update(s.scalars(select(Item.id).where(Item.url.in_(part))))
        return found

    def _case_for(self, s: Session, item_ids: set[int], now: datetime) -> Case:
        """The active case that already holds any of these items, else a new one."""
        for part in chunks(sorted(item_ids)):
            case = s.scalars(
                select(Case)
                .join(CaseItem, CaseItem.case_id == Case.id)
                .where(CaseItem.item_id.in_(part))
                .where(or_(Case.state.in_(ACTIVE_STATES), Case.outcome == Outcome.VIOLATION.value))
                .order_by(Case.opened_at)
                .limit(1)
            ).first()
            if case is not None:
                return case
        case = Case(state=CaseState.OPEN.value, opened_at=now, updated_at=now)
        s.add(case)
        s.flush()
        record(s, "system", "case.opened", "case", case.public_id, {})
        return case

    def _add_locations(self, s: Session, case: Case, report: Report, valid: ValidReport) -> None:
        base = {"case_id": case.id, "report_id": report.id}
        rows = [{**base, "kind": "url", "value": u} for u in valid.urls]
        rows += [{**base, "kind": "item", "value": i} for i in valid.item_ids]
        if rows:
            s.execute(insert(CaseLocation), rows)
        if valid.hashes:
            self._hashes.keep(s, case.id, report.id, valid.hashes)

    def _add_copies(self, s: Session, case: Case, copies: dict[int, Copy]) -> int:
        if not copies:
            return 0
        present: set[int] = set()
        for part in chunks(sorted(copies)):
            present.update(
                s.scalars(
                    select(CaseItem.item_id).where(
                        CaseItem.case_id == case.id, CaseItem.item_id.in_(part)
                    )
                )
            )
        now = utcnow()
        rows = [
            {
                "case_id": case.id,
                "item_id": c.item_id,
                "reason": c.reason,
                "distance": c.distance,
                "added_at": now,
            }
            for c in copies.values()
            if c.item_id not in present
        ]
        for part in chunks(rows, 5000):  # type: ignore[arg-type]
            s.execute(insert(CaseItem), part)
        return len(rows)

    def _apply_report(self, s: Session, case: Case, valid: ValidReport, now: datetime) -> None:
        cats = _categories(case) | {valid.category}
        case.categories = ",".join(sorted(c.value for c in cats))
        case.minor_safety = bool(cats & MINOR_SAFETY)
        if case.first_report_at is None:
            case.first_report_at = now
            case.views_at_first_report = self._total_views(s, case)
        target = now + decision_target(
            cats, self._policy.decision_target_minor_hours, self._policy.decision_target_hours
        )
        if case.decided_at is None and (
            case.decision_due_at is None or target < case.decision_due_at
        ):
            case.decision_due_at = target
        if valid.takedown_request and case.takedown_requested_at is None:
            case.takedown_requested_at = now
            case.takedown_due_at = now + TAKE_IT_DOWN_WINDOW
        case.updated_at = now

    # -- restriction and effects ----------------------------------------------------
    def _restrict(self, s: Session, case: Case, actor: str, why: str, now: datetime) -> int:
        """Every visible copy in the case: hidden pending review, monetization off, one
        action per item in the outbox for the platform."""
        ids = self._case_item_ids(s, case, visibility="visible")
        changed = self._set_items(
            s, case, ids, "restricted", True, "item.restrict", actor, why, now
        )
        case.restrict_first = True  # copies found later are restricted too
        hidden = changed or bool(self._case_item_ids(s, case, visibility="restricted"))
        if hidden:
            if case.state == CaseState.OPEN.value:
                case.state = CaseState.RESTRICTED.value
            if case.restricted_at is None:
                case.restricted_at = now
        return changed

    def _demonetize(self, s: Session, case: Case, actor: str, now: datetime) -> int:
        """Monetization off on every visible, still monetized copy; one action each."""
        unpaid = set(self._paused_ids(s, case, paused=False))
        ids = [i for i in self._case_item_ids(s, case, visibility="visible") if i in unpaid]
        return self._set_items(
            s, case, ids, "visible", True, "item.demonetize", actor, "under_review", now
        )

    def _paused_ids(self, s: Session, case: Case, *, paused: bool) -> list[int]:
        return list(
            s.scalars(
                select(CaseItem.item_id)
                .join(Item, Item.id == CaseItem.item_id)
                .where(CaseItem.case_id == case.id, Item.monetization_paused.is_(paused))
            )
        )

    def _case_item_ids(self, s: Session, case: Case, *, visibility: str | None = None) -> list[int]:
        stmt = select(CaseItem.item_id).where(CaseItem.case_id == case.id)
        if visibility is not None:
            stmt = stmt.join(Item, Item.id == CaseItem.item_id).where(Item.visibility == visibility)
        return list(s.scalars(stmt))

    def _set_items(
        self,
        s: Session,
        case: Case,
        ids: Sequence[int],
        visibility: str,
        paused: bool,
        topic: str,
        actor: str,
        why: str,
        now: datetime,
        decision_id: str | None = None,
    ) -> int:
        if not ids:
            return 0
        action = topic.split(".", 1)[1]
        # The statement of reasons (DSA art. 17) travels with every action, for the
        # platform to pass on to the owner of the content; it is the same for all copies.
        statement = statement_for(
            action,
            _categories(case),
            reason=why,
            decision_reasons=case.public_reasons if action != "restrict" else None,
            policy=case.outcome_policy,
            hash_match=bool(case.hash_sources),
        ).to_dict()
        pids: list[tuple[int, str]] = []
        for part in chunks(list(ids)):
            s.execute(
                update(Item)
                .where(Item.id.in_(part))
                .values(visibility=visibility, monetization_paused=paused, updated_at=now)
            )
            pids += s.execute(select(Item.id, Item.platform_id).where(Item.id.in_(part))).all()
        rows = []
        for _, pid in pids:
            key = new_id()
            rows.append(
                {
                    "public_id": key,
                    "idempotency_key": key,
                    "topic": topic,
                    "target_type": "item",
                    "target_platform_id": pid,
                    "case_id": case.id,
                    "payload": json.dumps(
                        {
                            "action": action,
                            "item_id": pid,
                            "case": case.public_id,
                            "reason": why,
                            "monetization": "paused" if paused else "resumed",
                            "statement_of_reasons": statement,
                            "decision": decision_id,
                        }
                    ),
                    "state": "pending",
                    "attempts": 0,
                    "created_at": now,
                    "next_attempt_at": now,
                }
            )
        for part in chunks(rows, 5000):  # type: ignore[arg-type]
            s.execute(insert(OutboxMessage), part)
        record_many(
            s, actor, topic, "item", [p for _, p in pids], {"case": case.public_id, "reason": why}
        )
        return len(pids)

    def _apply_effect(
        self,
        s: Session,
        case: Case,
        effect: ItemEffect,
        actor: str,
        now: datetime,
        decision_id: str = "",
    ) -> None:
        if effect is ItemEffect.REMOVE:
            removed = set(self._case_item_ids(s, case, visibility="removed"))
            all_ids = self._case_item_ids(s, case)
            ids = [i for i in all_ids if i not in removed]
            self._set_items(
                s,
                case,
                ids,
                "removed",
                True,
                "item.remove",
                actor,
                "confirmed_violation",
                now,
                decision_id,
            )
            # Re-uploads are blocked: the media go into the platform's own bank.
            bank_confirmed_media(s, case, all_ids, actor, decision_id)
            apply_account_measures(s, case, all_ids, actor, self._policy.accounts, now)
        else:
            paused = set(self._paused_ids(s, case, paused=True))
            ids = self._case_item_ids(s, case, visibility="restricted")
            # Demonetized-only copies get their monetization back too.
            ids += [i for i in self._case_item_ids(s, case, visibility="visible") if i in paused]
            self._set_items(
                s,
                case,
                ids,
                "visible",
                False,
                "item.restore",
                actor,
                "no_violation",
                now,
                decision_id,
            )

    # -- copies that appear later (called by the registry) ----------------------------
    def join_later_copies(self, s: Session, item_ids: set[int], actor: str) -> list[str]:
        """Attach newly registered items to the active cases they are copies of, and
        give them the case's current treatment. Returns the case numbers joined."""
        if not item_ids:
            return []
        touching = self._copies.neighbours(s, item_ids)
        cases: dict[int, Case] = {}
        for part in chunks(sorted(touching)):
            for case in s.scalars(
                select(Case)
                .join(CaseItem, CaseItem.case_id == Case.id)
                .where(CaseItem.item_id.in_(part))
                .where(or_(Case.state.in_(ACTIVE_STATES), Case.outcome == Outcome.VIOLATION.value))
            ):
                cases[case.id] = case
        now = utcnow()
        for case in cases.values():
            known = frozenset(self._case_item_ids(s, case))
            link = next(c for i, c in sorted(touching.items()) if i in known)
            copies = self._copies.expand(
                s,
                item_ids,
                seed_reason=_LINK_REASON.get(link.reason, link.reason),
                known=known,
                seed_distance=link.distance,
            )
            if self._add_copies(s, case, copies):
                self._treat_new_copies(s, case, actor, now)
        return [c.public_id for c in cases.values()]

    def join_by_location(
        self,
        s: Session,
        item_id: int,
        platform_id: str,
        url: str | None,
        actor: str,
        media: Sequence[HashedMedia] = (),
    ) -> list[str]:
        """An item registered at a place a report named earlier, or whose media match
        the hashes a report sent, joins that case."""
        conds = [(CaseLocation.kind == "item") & (CaseLocation.value == platform_id)]
        if url:
            conds.append((CaseLocation.kind == "url") & (CaseLocation.value == url))
        case_ids = set(s.scalars(select(CaseLocation.case_id).where(or_(*conds))))
        by_hash = self._hashes.cases_for_media(s, media) if media else {}
        case_ids |= set(by_hash)
        joined = []
        now = utcnow()
        for case in s.scalars(select(Case).where(Case.id.in_(case_ids))):
            if not _is_active(case):
                continue
            known = frozenset(self._case_item_ids(s, case))
            if case.id in by_hash:
                copies = self._copies.expand(
                    s,
                    {item_id},
                    seed_reason=REPORTED_HASH,
                    known=known,
                    seed_distance=by_hash[case.id],
                )
            else:
                copies = self._copies.expand(s, {item_id}, known=known)
            if self._add_copies(s, case, copies):
                self._treat_new_copies(s, case, actor, now)
                self._refresh_priority(s, case, now)
            joined.append(case.public_id)
        return joined

    def open_for_match(
        self, s: Session, item_ids: set[int], sources: set[str], restrict: bool, actor: str
    ) -> str:
        """A registered item matched a bank: open (or join) its case."""
        now = utcnow()
        copies = self._copies.expand(s, item_ids, seed_reason="hash_match")
        case = self._case_for(s, set(copies), now)
        self._add_copies(s, case, copies)
        _add_hash_sources(case, sources)
        if case.decision_due_at is None:
            case.decision_due_at = now + timedelta(hours=self._policy.decision_target_hours)
        if restrict and case.outcome != Outcome.VIOLATION.value:
            self._restrict(s, case, actor, "hash_match", now)
        self._refresh_priority(s, case, now)
        return case.public_id

    def _treat_new_copies(self, s: Session, case: Case, actor: str, now: datetime) -> None:
        if case.outcome == Outcome.VIOLATION.value:
            ids = self._case_item_ids(s, case, visibility="visible")
            ids += self._case_item_ids(s, case, visibility="restricted")
            self._set_items(
                s,
                case,
                ids,
                "removed",
                True,
                "item.remove",
                actor,
                "copy_of_confirmed_violation",
                now,
            )
        elif case.restrict_first and case.state in ACTIVE_STATES:
            self._restrict(s, case, actor, "copy_of_restricted_content", now)

    # -- triage ----------------------------------------------------------------------
    def _total_views(self, s: Session, case: Case) -> int:
        total = s.scalar(
            select(func.coalesce(func.sum(Item.view_count), 0))
            .join(CaseItem, CaseItem.item_id == Item.id)
            .where(CaseItem.case_id == case.id)
        )
        return int(total or 0)

    def _views_hour_ago(self, s: Session, case: Case, now: datetime) -> int:
        """The case's views one hour ago, as well as the samples tell.

        Per item: the last sample at or before the cut; for an item posted within the
        hour, zero; otherwise (older, but first seen since) its first sample, so that
        registering an old item with many views does not look like sudden growth.
        """
        cut = now - timedelta(hours=1)
        total = 0
        for part in chunks(self._case_item_ids(s, case)):
            before = dict(
                s.execute(
                    select(ItemViews.item_id, func.max(ItemViews.view_count))
                    .where(ItemViews.item_id.in_(part), ItemViews.at <= cut)
                    .group_by(ItemViews.item_id)
                ).all()
            )
            first = dict(
                s.execute(
                    select(ItemViews.item_id, func.min(ItemViews.view_count))
                    .where(ItemViews.item_id.in_(part))
                    .group_by(ItemViews.item_id)
                ).all()
            )
            for item_id, posted_at in s.execute(
                select(Item.id, Item.posted_at).where(Item.id.in_(part))
            ).all():
                if item_id in before:
                    total += int(before[item_id])
                elif posted_at is None or posted_at < cut:
                    total += int(first.get(item_id, 0))
        return total

    def _refresh_priority(self, s: Session, case: Case, now: datetime) -> None:
        reports = s.execute(
            select(Report.category, Report.reporter_role).where(
                Report.case_id == case.id,
                # A limited reporter's role no longer raises the priority (DSA art. 23).
                Report.from_limited_reporter.is_(False),
            )
        ).all()
        accounts = s.execute(
            select(Account.confirmed_violations, Account.flagged)
            .join(Item, Item.account_id == Account.id)
            .join(CaseItem, CaseItem.item_id == Item.id)
            .where(CaseItem.case_id == case.id)
            .distinct()
        ).all()
        total = self._total_views(s, case)
        score, factors = priority(
            TriageInput(
                categories=frozenset(Category(r[0]) for r in reports)
                | frozenset(_categories(case)),
                reporter_roles=frozenset(ReporterRole(r[1]) for r in reports),
                hash_sources=frozenset(_hash_sources(case)),
                account_confirmed_violations=sum(a[0] for a in accounts),
                accounts_flagged=sum(1 for a in accounts if a[1]),
                total_views=total,
                views_last_hour=max(0, total - self._views_hour_ago(s, case, now)),
            )
        )
        case.priority = score
        case.priority_factors = json.dumps([f.__dict__ for f in factors])

    def refresh_priority_for_items(self, s: Session, item_ids: Iterable[int]) -> None:
        now = utcnow()
        ids = sorted(set(item_ids))
        for part in chunks(ids):
            for case in s.scalars(
                select(Case)
                .join(CaseItem, CaseItem.case_id == Case.id)
                .where(CaseItem.item_id.in_(part), Case.state.in_(ACTIVE_STATES))
                .distinct()
            ):
                self._refresh_priority(s, case, now)

    # -- decisions and appeals -------------------------------------------------------
    def decide(
        self,
        case_id: str,
        *,
        outcome: str,
        reasons: str,
        principal: Principal,
        policy: str | None = None,
        internal_note: str | None = None,
        manifestly_unfounded: bool = False,
        media_review: list[dict[str, object]] | None = None,
    ) -> DecisionView:
        if principal.kind != "user" or principal.role is None:
            raise Forbidden("Cases are decided by people, not API keys.", code="forbidden")
        if manifestly_unfounded and outcome != Outcome.NO_VIOLATION.value:
            raise InvalidRequest(
                "Only a 'no_violation' decision can find the reports manifestly unfounded.",
                code="invalid_request",
            )
        try:
            parsed = Outcome(outcome)
        except ValueError:
            raise InvalidRequest(
                "outcome is violation, no_violation or needs_info.", code="invalid_outcome"
            ) from None
        if parsed is Outcome.VIOLATION and not (policy and policy.strip()):
            raise InvalidRequest(
                "Say which policy the content violates (policy).", code="policy_required"
            )
        reviews = validate_media_review(parsed, media_review)
        with unit_of_work(self._sessions) as s:
            case = self._get(s, case_id, for_update=True)
            check_media_in_case(s, case.id, [r.media_id for r in reviews])
            deciders = frozenset(
                s.scalars(select(Decision.user_id).where(Decision.case_id == case.id))
            )
            appeal_open = s.scalar(
                select(func.count())
                .select_from(Appeal)
                .where(Appeal.case_id == case.id, Appeal.decided_at.is_(None))
            )
            facts = CaseFacts(
                CaseState(case.state),
                case.minor_safety,
                case.pending_dismissal_by,
                # the pending dismisser is checked on its own; the others stand aside
                deciders - {case.pending_dismissal_by or ""},
                bool(appeal_open),
            )
            effect = decide(facts, DecisionInput(parsed, principal.id, principal.role, reasons))
            now = utcnow()
            row = Decision(
                case_id=case.id,
                kind=effect.kind.value,
                outcome=parsed.value,
                policy=policy,
                reasons=reasons.strip(),
                internal_note=internal_note,
                manifestly_unfounded=manifestly_unfounded,
                user_id=principal.id,
                user_role=principal.role.value,
                effective=effect.effective,
                decided_at=now,
                media_review=json.dumps([r.to_dict() for r in reviews]) if reviews else None,
            )
            s.add(row)
            before = PUBLIC_STATUS[CaseState(case.state)]
            case.state = effect.new_state.value
            case.pending_dismissal_by = (
                principal.id
                if effect.new_state is CaseState.AWAITING_SECOND_REVIEW
                and parsed is Outcome.NO_VIOLATION
                else case.pending_dismissal_by
                if effect.new_state is CaseState.AWAITING_SECOND_REVIEW
                else None
            )
            if effect.effective:
                case.outcome = parsed.value
                case.outcome_policy = policy
                case.public_reasons = reasons.strip()
                case.decided_at = now
                s.execute(
                    update(Appeal)
                    .where(Appeal.case_id == case.id, Appeal.decided_at.is_(None))
                    .values(decided_at=now)
                )
            if effect.effect is not None:
                s.flush()  # the decision's public id, for provenance
                self._apply_effect(s, case, effect.effect, principal.actor, now, row.public_id)
            if (
                effect.effective
                and parsed is Outcome.NO_VIOLATION
                and (
                    manifestly_unfounded
                    or s.scalar(
                        select(func.count())
                        .select_from(Decision)
                        .where(Decision.case_id == case.id, Decision.manifestly_unfounded.is_(True))
                    )
                )
            ):
                count_unfounded(s, case, principal.actor, self._policy.reporters, now)
            case.updated_at = now
            s.flush()
            record(
                s,
                principal.actor,
                f"decision.{effect.kind.value}",
                "case",
                case.public_id,
                {
                    "decision": row.public_id,
                    "outcome": parsed.value,
                    "effective": effect.effective,
                    "policy": policy,
                },
            )
            after = PUBLIC_STATUS[CaseState(case.state)]
            if after != before or effect.effective:
                self._mail_status_change(s, case, after, now)
            return _decision_view(row)

    def appeal_as_reporter(self, case_number: str, token: str, reason: str) -> PublicStatusView:
        with unit_of_work(self._sessions) as s:
            case = self._case_for_token(s, case_number, token)
            self._open_appeal(s, case, "reporter", reason, "reporter")
        return self.public_status(case_number, token)

    def appeal_as_uploader(self, case_id: str, reason: str, principal: Principal) -> str:
        with unit_of_work(self._sessions) as s:
            case = self._get(s, case_id, for_update=True)
            self._open_appeal(s, case, "uploader", reason, principal.actor)
            return case.state

    def _open_appeal(self, s: Session, case: Case, appellant: str, reason: str, actor: str) -> None:
        if len(reason.strip()) < 10:
            raise InvalidRequest("Explain why the decision should change.", code="reasons_required")
        now = utcnow()
        check_appeal(CaseState(case.state), case.decided_at, now)
        s.add(Appeal(case_id=case.id, appellant=appellant, reason=reason.strip(), opened_at=now))
        case.state = CaseState.APPEALED.value
        case.updated_at = now
        case.decision_due_at = now + decision_target(
            _categories(case),
            self._policy.decision_target_minor_hours,
            self._policy.decision_target_hours,
        )
        record(s, actor, "appeal.opened", "case", case.public_id, {"appellant": appellant})
        self._mail_status_change(s, case, PublicStatus.APPEAL_OPEN, now)

    # -- reading -------------------------------------------------------------------------
    def withdraw(self, case_number: str, token: str) -> PublicStatusView:
        """The reporter withdraws their report (idempotent).

        What changes: their report no longer counts as a TAKE IT DOWN request (the
        48-hour clock stops if no other request remains), the hashes and places it
        named stop pulling later uploads into the case, and the timeline says so.
        What does not: content already hidden stays hidden until a reviewer decides,
        and the case stays in review. A withdrawal can be coerced (an abuser making the
        victim take it back), and material of a minor must be reviewed (and reported
        where the law requires) whoever withdraws."""
        with unit_of_work(self._sessions) as s:
            case, report = self._report_for_token(s, case_number, token)
            if report.withdrawn_at is None:
                now = utcnow()
                report.withdrawn_at = now
                s.execute(delete(CaseLocation).where(CaseLocation.report_id == report.id))
                still_requested = s.scalar(
                    select(func.count())
                    .select_from(Report)
                    .where(
                        Report.case_id == case.id,
                        Report.takedown_request.is_(True),
                        Report.withdrawn_at.is_(None),
                    )
                )
                if report.takedown_request and not still_requested and case.decided_at is None:
                    case.takedown_due_at = None
                case.updated_at = now
                record(
                    s,
                    f"reporter:{report.reporter_role}",
                    "report.withdrawn",
                    "case",
                    case.public_id,
                    {"report": report.public_id, "takedown_request": report.takedown_request},
                )
                self._refresh_priority(s, case, now)
        return self.public_status(case_number, token)

    def public_status(self, case_number: str, token: str) -> PublicStatusView:
        with unit_of_work(self._sessions, write=False) as s:
            case, report = self._report_for_token(s, case_number, token)
            first = s.scalar(select(func.min(Report.received_at)).where(Report.case_id == case.id))
            status = PUBLIC_STATUS[CaseState(case.state)]
            timeline = [{"at": first.isoformat(), "event": "received"}] if first else []
            if case.restricted_at:
                timeline.append(
                    {"at": case.restricted_at.isoformat(), "event": "content_restricted"}
                )
            decision = None
            if case.decided_at and case.outcome:
                decision = PublicDecision(
                    case.outcome,
                    case.public_reasons or "",
                    case.decided_at,
                    case.decided_at + APPEAL_WINDOW,
                )
                timeline.append({"at": case.decided_at.isoformat(), "event": "decided"})
            for appeal in s.scalars(select(Appeal).where(Appeal.case_id == case.id)):
                timeline.append({"at": appeal.opened_at.isoformat(), "event": "appeal_opened"})
            if report.withdrawn_at:
                timeline.append({"at": report.withdrawn_at.isoformat(), "event": "withdrawn"})
            timeline.sort(key=lambda e: e["at"])
            restricted = s.scalar(
                select(func.count())
                .select_from(CaseItem)
                .join(Item, Item.id == CaseItem.item_id)
                .where(CaseItem.case_id == case.id, Item.visibility != "visible")
            )
            return PublicStatusView(
                case_number=case.public_id,
                status=status.value,
                status_text=PUBLIC_TEXT[status],
                content_restricted=bool(restricted),
                received_at=first or case.opened_at,
                restricted_at=case.restricted_at,
                decision=decision,
                timeline=timeline,
                withdrawn_at=report.withdrawn_at,
                hashed_files=len(json.loads(report.locations).get("hashes", [])),
            )

    def queue(
        self, *, state: str | None = None, category: str | None = None, limit: int = 50
    ) -> list[CaseSummary]:
        """Open cases, highest priority first, then the earliest deadline."""
        if not 1 <= limit <= 500:
            raise InvalidRequest("limit must be between 1 and 500.", code="invalid_limit")
        with unit_of_work(self._sessions, write=False) as s:
            stmt = select(Case)
            if state:
                stmt = stmt.where(Case.state == CaseState(state).value)
            else:
                stmt = stmt.where(Case.state.in_(ACTIVE_STATES))
            if category:
                stmt = stmt.where(Case.categories.contains(Category(category).value))
            stmt = stmt.order_by(Case.priority.desc(), Case.decision_due_at, Case.id).limit(limit)
            now = utcnow()
            out = []
            for case in s.scalars(stmt):
                copies = (
                    s.scalar(
                        select(func.count())
                        .select_from(CaseItem)
                        .where(CaseItem.case_id == case.id)
                    )
                    or 0
                )
                out.append(
                    CaseSummary(
                        id=case.public_id,
                        state=case.state,
                        categories=sorted(c.value for c in _categories(case)),
                        minor_safety=case.minor_safety,
                        priority=case.priority,
                        opened_at=case.opened_at,
                        decision_due_at=case.decision_due_at,
                        takedown_due_at=case.takedown_due_at,
                        clocks=_clocks(case, now),
                        copies=int(copies),
                    )
                )
            return out

    def get(self, case_id: str, principal: Principal, *, copies_limit: int = 1000) -> CaseDetail:
        """A case with its copy graph (the first ``copies_limit`` copies are listed; the
        totals always cover every copy)."""
        show_identity = principal.allows(Permission.REPORTER_IDENTITY)
        with unit_of_work(self._sessions, write=False) as s:
            case = self._get(s, case_id)
            rows = s.execute(
                select(CaseItem, Item, Account.platform_id)
                .join(Item, Item.id == CaseItem.item_id)
                .outerjoin(Account, Account.id == Item.account_id)
                .where(CaseItem.case_id == case.id)
                .order_by(CaseItem.added_at, Item.id)
            ).all()
            first_views = self._views_at(s, [r[1].id for r in rows], case.first_report_at)
            copies = [
                CopyView(
                    item_id=it.platform_id,
                    url=it.url,
                    account=acc,
                    reason=ci.reason,
                    distance=ci.distance,
                    visibility=it.visibility,
                    monetization_paused=it.monetization_paused,
                    views=it.view_count,
                    views_since_first_report=max(0, it.view_count - first_views.get(it.id, 0)),
                )
                for ci, it, acc in rows
            ]
            accounts = s.execute(
                select(
                    Account.platform_id,
                    Account.handle,
                    Account.status,
                    Account.flagged,
                    Account.confirmed_violations,
                    func.count(Item.id),
                )
                .join(Item, Item.account_id == Account.id)
                .join(CaseItem, CaseItem.item_id == Item.id)
                .where(CaseItem.case_id == case.id)
                .group_by(Account.id)
                .order_by(func.count(Item.id).desc())
            ).all()
            reports = [
                _report_view(r, show_identity)
                for r in s.scalars(
                    select(Report).where(Report.case_id == case.id).order_by(Report.received_at)
                )
            ]
            decisions = [
                _decision_view(d)
                for d in s.scalars(
                    select(Decision)
                    .where(Decision.case_id == case.id)
                    .order_by(Decision.decided_at)
                )
            ]
            appeals: list[dict[str, object]] = [
                {
                    "appellant": a.appellant,
                    "reason": a.reason,
                    "opened_at": a.opened_at,
                    "decided_at": a.decided_at,
                }
                for a in s.scalars(select(Appeal).where(Appeal.case_id == case.id))
            ]
            resolved = {c.item_id for c in copies} | {c.url for c in copies if c.url}
            unresolved = sorted(
                v
                for v in s.scalars(
                    select(CaseLocation.value).where(CaseLocation.case_id == case.id)
                )
                if v not in resolved
            )
            return CaseDetail(
                id=case.public_id,
                state=case.state,
                categories=sorted(c.value for c in _categories(case)),
                hash_sources=_hash_sources(case),
                minor_safety=case.minor_safety,
                priority=case.priority,
                priority_factors=json.loads(case.priority_factors),
                opened_at=case.opened_at,
                first_report_at=case.first_report_at,
                restricted_at=case.restricted_at,
                decided_at=case.decided_at,
                outcome=case.outcome,
                clocks=_clocks(case, utcnow()),
                copies=copies[:copies_limit],
                copies_total=len(copies),
                accounts=[
                    {
                        "account_id": a[0],
                        "handle": a[1],
                        "status": a[2],
                        "flagged": a[3],
                        "confirmed_violations": a[4],
                        "items": a[5],
                    }
                    for a in accounts
                ],
                total_views=sum(c.views for c in copies),
                views_since_first_report=sum(c.views_since_first_report for c in copies),
                reports=reports,
                decisions=decisions,
                appeals=appeals,
                unresolved_locations=unresolved,
            )

    def _views_at(self, s: Session, item_ids: list[int], when: datetime | None) -> dict[int, int]:
        """Each item's view count as last reported at or before ``when``."""
        if when is None:
            return {}
        out: dict[int, int] = {}
        for part in chunks(item_ids):
            out.update(
                dict(
                    s.execute(
                        select(ItemViews.item_id, func.max(ItemViews.view_count))
                        .where(ItemViews.item_id.in_(part), ItemViews.at <= when)
                        .group_by(ItemViews.item_id)
                    ).all()
                )
            )
        return out

    def _get(self, s: Session, case_id: str, *, for_update: bool = False) -> Case:
        return repo.get_case(s, case_id, for_update=for_update)

    def _case_for_token(self, s: Session, case_number: str, token: str) -> Case:
        return self._report_for_token(s, case_number, token)[0]

    def _report_for_token(self, s: Session, case_number: str, token: str) -> tuple[Case, Report]:
        row = s.execute(
            select(Case, Report)
            .join(Report, Report.case_id == Case.id)
            .where(
                Case.public_id == case_number.strip(),
                Report.status_token_hash == _token_hash(token.strip()),
            )
        ).first()
        if row is None:
            # One answer for "no such case" and "wrong token": a case number alone
            # reveals nothing.
            raise NotFound("No report matches that case number and token.", code="report_not_found")
        return row[0], row[1]

    # -- mail ------------------------------------------------------------------------------
    def _mail(
        self, s: Session, case: Case, reports: Iterable[Report], event: str, now: datetime
    ) -> None:
        status = PUBLIC_STATUS[CaseState(case.state)]
        for report in reports:
            if not report.reporter_email:
                continue
            s.add(
                MailMessage(
                    to_address=report.reporter_email,
                    subject=f"Your report {case.public_id}: {status.value.replace('_', ' ')}",
                    body=_mail_body(case, status, event, self._policy.public_base_url),
                    created_at=now,
                    next_attempt_at=now,
                )
            )

    def _mail_status_change(
        self,
        s: Session,
        case: Case,
        status: PublicStatus,
        now: datetime,
        exclude: int | None = None,
    ) -> None:
        reports = [
            r for r in s.scalars(select(Report).where(Report.case_id == case.id)) if r.id != exclude
        ]
        self._mail(s, case, reports, "status", now)


# How a new item relates to the case item it touches, seen from the new item: touching
# an "original" means the new item reposts or quotes it.
_LINK_REASON = {"original": "repost", "repost": "original", "quote": "original"}


def _mail_body(case: Case, status: PublicStatus, event: str, base: str) -> str:
    lines = []
    if event == "received":
        lines.append(f"We have received your report. Your case number is {case.public_id}.")
    lines.append(PUBLIC_TEXT[status])
    if status is PublicStatus.DECIDED and case.outcome:
        lines.append(f"Decision: {case.outcome.replace('_', ' ')}.")
        if case.public_reasons:
            lines.append(f"Reasons: {case.public_reasons}")
        lines.append("You can appeal this decision for six months from today.")
    lines.append(
        f"Follow your report at {base}/status with your case number and the "
        "status token you were given when you reported (we never send it by mail)."
    )
    return "\n\n".join(lines)


def _channel_role(principal: Principal | None) -> ReporterRole | None:
    if principal is None:
        return None
    if principal.allows(Permission.REPORT_LAW_ENFORCEMENT):
        return ReporterRole.LAW_ENFORCEMENT
    if principal.allows(Permission.REPORT_TRUSTED_FLAGGER):
        return ReporterRole.TRUSTED_FLAGGER
    return None


def _clocks(case: Case, now: datetime) -> list[ClockView]:
    clocks = []
    if case.decision_due_at is not None:
        started = case.first_report_at or case.opened_at
        c = Clock("decision", started, case.decision_due_at, case.decided_at)
        clocks.append(ClockView(c.name, c.started_at, c.due_at, c.met_at, c.state(now).value))
    if case.takedown_due_at is not None and case.takedown_requested_at is not None:
        # Met once the content is no longer available to the public.
        c = Clock(
            "take_it_down_48h", case.takedown_requested_at, case.takedown_due_at, case.restricted_at
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
    )


__all__ = ["AUTHENTICATED_ROLES", "CasePolicy", "CaseService", "ReportReceipt"]
