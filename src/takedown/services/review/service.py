"""Use cases of the review console: claiming cases, escalating, what a case page shows
beyond the case itself (media, bank matches, history), serving media for review,
wellness settings and the dashboard. Decisions still go through ``CaseService.decide``.

Locks live in the database (table ``case_locks``) so that they hold across worker
processes. A claim is one conditional UPDATE ("take it if it is mine or has lapsed"),
and when there is no row yet one INSERT guarded by the primary key: of two reviewers
racing for a case, exactly one gets it, on SQLite and on PostgreSQL alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from takedown.domain.access import Permission, Principal, may_view_media
from takedown.domain.cases import CaseState
from takedown.domain.reports import MINOR_SAFETY
from takedown.domain.review import (
    BLUR_DEFAULT,
    MEDIA_PURPOSES,
    Compliance,
    Wellness,
    check_escalation,
    check_wellness,
    compliance,
    lock_is_free,
    median,
    priority_band,
)
from takedown.errors import Conflict, Forbidden, InvalidRequest, NotFound
from takedown.ids import utcnow
from takedown.services.audit.chain import record
from takedown.services.cases.copies import chunks
from takedown.services.cases.service import ACTIVE_STATES, CaseService, CaseSummary, DecisionView
from takedown.services.screening.matcher import Matcher, QuerySignals
from takedown.signals import all_types
from takedown.store import repositories as repo
from takedown.store.blobs import BlobStore
from takedown.store.db import unit_of_work
from takedown.store.models import (
    Account,
    AuditEvent,
    Bank,
    BankEntry,
    Case,
    CaseItem,
    CaseLock,
    Item,
    ItemMedia,
    Media,
    ReviewerSettings,
    User,
)

# The queues. "mine": cases I hold. The moderators' queue: every active case not
# waiting for a specialist. The specialists' queue: second reviews and escalations, and
# every active minor-safety case (child-safety cases go to the specialists; moderators
# still see them, so a deployment without specialists leaves none unworked).
TEAMS = {
    "moderation": (
        CaseState.OPEN,
        CaseState.RESTRICTED,
        CaseState.IN_REVIEW,
        CaseState.APPEALED,
    ),
    "specialists": (CaseState.AWAITING_SECOND_REVIEW,),
}
SPECIALIST_CATEGORIES = tuple(sorted(c.value for c in MINOR_SAFETY))


@dataclass(frozen=True)
class LockView:
    case_id: str
    user_id: str
    username: str
    claimed_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class QueueRow:
    case: CaseSummary
    band: str
    lock: LockView | None


@dataclass(frozen=True)
class MatchView:
    bank: str
    bank_source: str
    match_action: str
    signal_type: str
    distance: int
    variant: str | None
    entry_source: str
    entry_source_id: str | None
    entry_category: str | None
    entry_added_by: str
    entry_added_at: datetime
    entry_note: str | None


@dataclass(frozen=True)
class MediaView:
    id: str
    media_type: str
    sha256: str
    md5: str | None
    pdq: str | None
    has_bytes: bool
    items: list[str]
    matches: list[MatchView]


@dataclass(frozen=True)
class EventView:
    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    details: dict[str, Any]


@dataclass(frozen=True)
class MediaBytes:
    media_id: str
    media_type: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class ReviewerState:
    wellness: Wellness
    stretch_started_at: datetime | None


@dataclass(frozen=True)
class Dashboard:
    start: datetime
    end: datetime
    open_by_band: dict[str, int]
    open_total: int
    decision_clock: Compliance
    takedown_clock: Compliance
    median_to_restriction: timedelta | None
    median_to_decision: timedelta | None
    reported_cases: int
    views_after_first_report: int


def _lock_view(case_public_id: str, lock: CaseLock) -> LockView:
    return LockView(case_public_id, lock.user_id, lock.username, lock.claimed_at, lock.expires_at)


class ReviewService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        cases: CaseService,
        matcher: Matcher,
        blobs: BlobStore,
        *,
        lock_ttl: timedelta,
        break_minutes: int,
    ) -> None:
        self._sessions = sessions
        self._cases = cases
        self._matcher = matcher
        self._blobs = blobs
        self.lock_ttl = lock_ttl
        self._break_minutes = break_minutes

    # -- locks ------------------------------------------------------------------------
    def claim(self, case_id: str, principal: Principal) -> LockView:
        """Lock the case for this reviewer (or extend their lock), atomically."""
        _require(principal, Permission.CASES_DECIDE)
        with unit_of_work(self._sessions) as s:
            case = _case(s, case_id)
            now = utcnow()
            values = {
                "user_id": principal.id,
                "username": principal.name,
                "claimed_at": now,
                "expires_at": now + self.lock_ttl,
            }
            taken = _rows(
                s.execute(
                    update(CaseLock)
                    .where(
                        CaseLock.case_id == case.id,
                        or_(CaseLock.user_id == principal.id, CaseLock.expires_at <= now),
                    )
                    .values(**values)
                )
            )
            if not taken:
                holder = s.get(CaseLock, case.id)
                if holder is not None:
                    raise _locked(holder)
                try:
                    with s.begin_nested():
                        s.add(CaseLock(case_id=case.id, **values))
                except IntegrityError:  # another reviewer inserted it a moment ago
                    raise Conflict(
                        "Another reviewer has just claimed this case.", code="case_locked"
                    ) from None
            if case.state in (CaseState.OPEN.value, CaseState.RESTRICTED.value):
                case.state = CaseState.IN_REVIEW.value
                case.updated_at = now
            record(s, principal.actor, "case.claimed", "case", case.public_id, {})
            lock = s.get_one(CaseLock, case.id)
            return _lock_view(case.public_id, lock)

    def release(self, case_id: str, principal: Principal) -> None:
        with unit_of_work(self._sessions) as s:
            case = _case(s, case_id)
            gone = _rows(
                s.execute(
                    delete(CaseLock).where(
                        CaseLock.case_id == case.id, CaseLock.user_id == principal.id
                    )
                )
            )
            if gone:
                record(s, principal.actor, "case.released", "case", case.public_id, {})

    def lock_of(self, case_id: str) -> LockView | None:
        with unit_of_work(self._sessions, write=False) as s:
            case = _case(s, case_id)
            lock = s.get(CaseLock, case.id)
            if lock is None or lock.expires_at <= utcnow():
                return None
            return _lock_view(case.public_id, lock)

    def _check_holder(self, s: Session, case: Case, principal: Principal) -> None:
        lock = s.get(CaseLock, case.id)
        now = utcnow()
        if lock is not None and lock.user_id == principal.id and lock.expires_at > now:
            return
        if lock is not None and not lock_is_free(lock.user_id, lock.expires_at, principal.id, now):
            raise _locked(lock)
        raise Conflict("Claim the case before you work on it.", code="lock_required")

    def decide(self, case_id: str, principal: Principal, **decision: Any) -> DecisionView:
        """A decision from the console: only by the reviewer holding the case, who
        then lets it go (the lock has done its job)."""
        with unit_of_work(self._sessions, write=False) as s:
            self._check_holder(s, _case(s, case_id), principal)
        view = self._cases.decide(case_id, principal=principal, **decision)
        self.release(case_id, principal)
        return view

    def escalate(self, case_id: str, principal: Principal, note: str) -> None:
        """Hand the case to a child-safety specialist: it waits as a second review."""
        with unit_of_work(self._sessions) as s:
            case = _case(s, case_id, for_update=True)
            self._check_holder(s, case, principal)
            check_escalation(CaseState(case.state), principal.role, note)
            case.state = CaseState.AWAITING_SECOND_REVIEW.value
            case.pending_dismissal_by = None
            case.updated_at = utcnow()
            s.execute(delete(CaseLock).where(CaseLock.case_id == case.id))
            record(
                s,
                principal.actor,
                "case.escalated",
                "case",
                case.public_id,
                {"to": "child_safety_specialist", "note": note.strip()},
            )

    # -- queues -----------------------------------------------------------------------
    def queue(
        self,
        principal: Principal,
        team: str,
        *,
        category: str | None = None,
        state: str | None = None,
        limit: int = 100,
    ) -> list[QueueRow]:
        """A queue by priority, then the earliest deadline, with who holds each case."""
        _require(principal, Permission.CASES_READ)
        # What to read: (state, category or None for any), asked one by one.
        any_category: tuple[str | None, ...] = (None,)
        if team == "mine":  # held cases are few: look further down each state's list
            wanted = [(st, any_category) for st in TEAMS["moderation"] + TEAMS["specialists"]]
            per_state = 500
        elif team == "moderation":
            wanted, per_state = [(st, any_category) for st in TEAMS[team]], limit
        elif team == "specialists":
            wanted = [(st, any_category) for st in TEAMS[team]]
            wanted += [(st, SPECIALIST_CATEGORIES) for st in TEAMS["moderation"]]
            per_state = limit
        else:
            raise InvalidRequest(f"Unknown queue {team[:40]!r}.", code="invalid_request")
        if state:
            try:
                parsed = CaseState(state)
            except ValueError:
                raise InvalidRequest(
                    f"Unknown case state {state[:40]!r}.", code="invalid_request"
                ) from None
            wanted = [(st, cats) for st, cats in wanted if st is parsed]
        found: dict[str, CaseSummary] = {}
        for st, cats in wanted:
            for cat in cats:
                if category and cat not in (None, category):
                    continue
                for r in self._cases.queue(
                    state=st.value, category=cat or category, limit=per_state
                ):
                    found[r.id] = r  # a case in both minor-safety categories comes twice
        rows = list(found.values())
        locks = self._locks([r.id for r in rows])
        if team == "mine":
            rows = [r for r in rows if r.id in locks and locks[r.id].user_id == principal.id]
        rows.sort(key=lambda r: (-r.priority, r.decision_due_at or r.opened_at, r.id))
        return [QueueRow(r, priority_band(r.priority), locks.get(r.id)) for r in rows[:limit]]

    def _locks(self, case_ids: list[str]) -> dict[str, LockView]:
        out: dict[str, LockView] = {}
        now = utcnow()
        with unit_of_work(self._sessions, write=False) as s:
            for part in chunks(case_ids):
                for lock, pid in s.execute(
                    select(CaseLock, Case.public_id)
                    .join(Case, Case.id == CaseLock.case_id)
                    .where(Case.public_id.in_(part), CaseLock.expires_at > now)
                ):
                    out[pid] = _lock_view(pid, lock)
        return out

    # -- what a case page shows besides the case -------------------------------------
    def case_media(self, case_id: str, principal: Principal, limit: int = 200) -> list[MediaView]:
        """The case's media (first ``limit``), each with the bank entries it matches."""
        _require(principal, Permission.CASES_READ)
        with unit_of_work(self._sessions, write=False) as s:
            case = _case(s, case_id)
            rows = s.execute(
                select(Media, Item.platform_id)
                .join(ItemMedia, ItemMedia.media_id == Media.id)
                .join(Item, Item.id == ItemMedia.item_id)
                .join(CaseItem, CaseItem.item_id == Item.id)
                .where(CaseItem.case_id == case.id)
                .order_by(Media.id, Item.id)
            ).all()
            media: dict[int, tuple[Media, list[str]]] = {}
            for m, item_pid in rows:
                media.setdefault(m.id, (m, []))[1].append(item_pid)
            banks = {b.id: b for b in s.scalars(select(Bank))}
            out = []
            for m, items in list(media.values())[:limit]:
                query = QuerySignals(
                    pdq_variants=(("original", m.pdq),) if m.pdq else (),
                    pdq_quality=m.pdq_quality,
                    md5=m.md5,
                    sha256=m.sha256,
                )
                matches = [
                    MatchView(
                        bank=x.bank.name,
                        bank_source=banks[x.entry.bank_id].source,
                        match_action=x.bank.match_action.value,
                        signal_type=x.signal_type,
                        distance=x.distance,
                        variant=x.variant,
                        entry_source=x.entry.source,
                        entry_source_id=x.entry.source_id,
                        entry_category=x.entry.category,
                        entry_added_by=x.entry.added_by,
                        entry_added_at=x.entry.added_at,
                        entry_note=x.entry.note,
                    )
                    for x in self._matcher.find(s, query)
                ]
                out.append(
                    MediaView(
                        m.public_id,
                        m.media_type,
                        m.sha256,
                        m.md5,
                        m.pdq,
                        m.blob_id is not None,
                        items,
                        matches,
                    )
                )
            return out

    def unmatchable_entries(self) -> list[tuple[str, int]]:
        """Signal types the enabled banks hold but nothing here can match (PhotoDNA),
        with their enabled entries: the case page says so instead of staying silent."""
        names = [t.name for t in all_types() if not t.matchable]
        if not names:
            return []
        with unit_of_work(self._sessions, write=False) as s:
            rows = s.execute(
                select(BankEntry.signal_type, func.count())
                .where(
                    # Naming the banks lets the (bank_id, signal_type, value) index answer.
                    BankEntry.bank_id.in_(select(Bank.id).where(Bank.enabled.is_(True))),
                    BankEntry.signal_type.in_(names),
                    BankEntry.enabled.is_(True),
                )
                .group_by(BankEntry.signal_type)
                .order_by(BankEntry.signal_type)
            ).all()
        return [(name, int(count)) for name, count in rows]

    def history(self, case_id: str, principal: Principal, limit: int = 300) -> list[EventView]:
        """The case's audit events and every view of its media, newest first."""
        _require(principal, Permission.CASES_READ)
        with unit_of_work(self._sessions, write=False) as s:
            case = _case(s, case_id)
            events = list(
                s.scalars(
                    select(AuditEvent)
                    .where(AuditEvent.object_type == "case", AuditEvent.object_id == case.public_id)
                    .order_by(AuditEvent.id.desc())
                    .limit(limit)
                )
            )
            media_ids = list(
                s.scalars(
                    select(Media.public_id)
                    .join(ItemMedia, ItemMedia.media_id == Media.id)
                    .join(CaseItem, CaseItem.item_id == ItemMedia.item_id)
                    .where(CaseItem.case_id == case.id)
                    .distinct()
                )
            )
            for part in chunks(media_ids):
                events += s.scalars(
                    select(AuditEvent)
                    .where(
                        AuditEvent.object_type == "media",
                        AuditEvent.action == "media.viewed",
                        AuditEvent.object_id.in_(part),
                    )
                    .order_by(AuditEvent.id.desc())
                    .limit(limit)
                )
            views = []
            for e in sorted(events, key=lambda e: e.id, reverse=True):
                details = json.loads(e.details or "{}")
                if e.object_type == "media" and details.get("case") != case.public_id:
                    continue
                views.append(
                    EventView(e.at, e.actor, e.action, e.object_type, e.object_id, details)
                )
            return views[:limit]

    # -- media for review ---------------------------------------------------------------
    def view_media(
        self,
        case_id: str,
        media_id: str,
        principal: Principal,
        *,
        purpose: str,
        full: bool,
        item_id: str | None = None,
    ) -> MediaBytes:
        """The bytes of one of the case's media, for a person allowed to see them; the
        serving is written to the audit log in the same transaction.

        The view names the item (and its account) whose copy was shown: ``item_id`` when
        the console says which item the file is seen in, else the case's only item
        carrying it. With several such items and none named, the view names no item and
        counts for no particular account (``fileViewedByEsp`` under the ``account``
        scope, see domain/cybertipline.ViewedScope)."""
        if not may_view_media(principal):
            raise Forbidden("This account may not see media.", code="forbidden")
        if purpose not in MEDIA_PURPOSES:
            raise InvalidRequest(f"Unknown purpose {purpose[:40]!r}.", code="invalid_purpose")
        with unit_of_work(self._sessions) as s:
            case = _case(s, case_id)
            media = s.scalars(
                select(Media)
                .join(ItemMedia, ItemMedia.media_id == Media.id)
                .join(CaseItem, CaseItem.item_id == ItemMedia.item_id)
                .where(CaseItem.case_id == case.id, Media.public_id == media_id)
                .limit(1)
            ).first()
            if media is None:
                raise NotFound("This case has no such media.", code="media_not_found")
            if media.blob_id is None:
                raise NotFound(
                    "Only the hash of this media is known; no file was sent.",
                    code="media_not_stored",
                )
            item, account = _viewed_item(s, case.id, media.id, item_id)
            info = self._blobs.info(s, media.blob_id)
            data = self._blobs.get(s, media.blob_id)
            record(
                s,
                actor=principal.actor,
                action="media.viewed",
                object_type="media",
                object_id=media.public_id,
                details={
                    "purpose": purpose,
                    "case": case.public_id,
                    "full": full,
                    "user_id": principal.id,
                    "item": item,
                    "account": account,
                },
            )
            return MediaBytes(media.public_id, media.media_type, info.content_type, data)

    # -- wellness -----------------------------------------------------------------------
    def reviewer(self, principal: Principal) -> ReviewerState:
        with unit_of_work(self._sessions, write=False) as s:
            row = s.get(ReviewerSettings, _user_row(s, principal))
            if row is None:
                return ReviewerState(Wellness(BLUR_DEFAULT, True, self._break_minutes), None)
            return ReviewerState(
                Wellness(row.blur_strength, row.greyscale, row.break_minutes),
                row.stretch_started_at,
            )

    def update_wellness(
        self, principal: Principal, blur_strength: int, greyscale: bool, break_minutes: int
    ) -> Wellness:
        wellness = check_wellness(blur_strength, greyscale, break_minutes)
        with unit_of_work(self._sessions) as s:
            row = self._settings_row(s, principal)
            row.blur_strength = wellness.blur_strength
            row.greyscale = wellness.greyscale
            row.break_minutes = wellness.break_minutes
            row.updated_at = utcnow()
            record(
                s,
                principal.actor,
                "user.wellness_changed",
                "user",
                principal.id,
                {"blur": blur_strength, "greyscale": greyscale, "break_minutes": break_minutes},
            )
        return wellness

    def start_stretch(self, principal: Principal) -> None:
        """A new stretch of review begins (at sign-in, and after a break)."""
        with unit_of_work(self._sessions) as s:
            row = self._settings_row(s, principal)
            row.stretch_started_at = utcnow()

    def _settings_row(self, s: Session, principal: Principal) -> ReviewerSettings:
        user_id = _user_row(s, principal)
        row = s.get(ReviewerSettings, user_id)
        if row is None:
            row = ReviewerSettings(
                user_id=user_id,
                blur_strength=BLUR_DEFAULT,
                greyscale=True,
                break_minutes=self._break_minutes,
            )
            s.add(row)
        return row

    # -- dashboard ----------------------------------------------------------------------
    def dashboard(self, principal: Principal, start: datetime, end: datetime) -> Dashboard:
        """Open cases now; clocks, medians and exposure of cases first reported in
        [start, end)."""
        _require(principal, Permission.CASES_READ)
        if end <= start:
            raise InvalidRequest("The period ends before it starts.", code="invalid_period")
        now = utcnow()
        with unit_of_work(self._sessions, write=False) as s:
            bands: dict[str, int] = {}
            for prio, count in s.execute(
                select(Case.priority, func.count())
                .where(Case.state.in_(ACTIVE_STATES))
                .group_by(Case.priority)
            ):
                band = priority_band(int(prio))
                bands[band] = bands.get(band, 0) + int(count)
            cases = list(
                s.scalars(
                    select(Case).where(Case.first_report_at >= start, Case.first_report_at < end)
                )
            )
            views: dict[int, int] = {}
            for part in chunks([c.id for c in cases]):
                views.update(
                    dict(
                        s.execute(
                            select(CaseItem.case_id, func.coalesce(func.sum(Item.view_count), 0))
                            .join(Item, Item.id == CaseItem.item_id)
                            .where(CaseItem.case_id.in_(part))
                            .group_by(CaseItem.case_id)
                        ).all()
                    )
                )
        first = {c.id: c.first_report_at for c in cases if c.first_report_at is not None}
        return Dashboard(
            start=start,
            end=end,
            open_by_band=bands,
            open_total=sum(bands.values()),
            decision_clock=compliance(
                ((c.decision_due_at, c.decided_at) for c in cases if c.decision_due_at), now
            ),
            takedown_clock=compliance(
                ((c.takedown_due_at, c.removed_at) for c in cases if c.takedown_due_at), now
            ),
            median_to_restriction=median(
                [max(timedelta(0), c.restricted_at - first[c.id]) for c in cases if c.restricted_at]
            ),
            median_to_decision=median(
                [max(timedelta(0), c.decided_at - first[c.id]) for c in cases if c.decided_at]
            ),
            reported_cases=len(cases),
            views_after_first_report=sum(
                max(0, int(views.get(c.id, 0)) - c.views_at_first_report) for c in cases
            ),
        )


def _rows(result: Any) -> int:
    """Rows an UPDATE or DELETE touched (both drivers report matched rows)."""
    return int(cast(CursorResult[Any], result).rowcount)


def _require(principal: Principal, permission: Permission) -> None:
    if not principal.allows(permission):
        raise Forbidden(
            f"This account lacks the '{permission.value}' permission.", code="forbidden"
        )


def _case(s: Session, case_id: str, *, for_update: bool = False) -> Case:
    return repo.get_case(s, case_id, for_update=for_update)


def _user_row(s: Session, principal: Principal) -> int:
    if principal.kind != "user":
        raise Forbidden("Only people have review settings.", code="forbidden")
    user_id = s.scalar(select(User.id).where(User.public_id == principal.id))
    if user_id is None:
        raise NotFound("No such user.", code="user_not_found")
    return int(user_id)


def _locked(lock: CaseLock) -> Conflict:
    return Conflict(
        f"{lock.username} is working on this case (locked until {lock.expires_at:%H:%M} UTC).",
        code="case_locked",
        holder=lock.username,
        until=lock.expires_at.isoformat(),
    )


def _viewed_item(
    s: Session, case_id: int, media_id: int, item_id: str | None
) -> tuple[str | None, str | None]:
    """(item platform id, its account's platform id) whose copy of the file is shown:
    the named item (which must be one of the case's items carrying the file), else the
    only such item, else (None, None)."""
    rows = s.execute(
        select(Item.platform_id, Account.platform_id)
        .join(ItemMedia, ItemMedia.item_id == Item.id)
        .join(CaseItem, CaseItem.item_id == Item.id)
        .outerjoin(Account, Account.id == Item.account_id)
        .where(CaseItem.case_id == case_id, ItemMedia.media_id == media_id)
        .order_by(Item.id)
    ).all()
    if item_id:
        for item, account in rows:
            if item == item_id:
                return item, account
        raise NotFound("This media is not on that item of the case.", code="media_not_found")
    if len(rows) == 1:
        return rows[0][0], rows[0][1]
    return None, None
