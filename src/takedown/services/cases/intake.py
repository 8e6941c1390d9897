"""Intake and restriction: submitting a report (grouped into a case, restricted first
over the copy graph, demonetized while reviewed), the copies that appear later (joined
to the active cases they copy, by place or by reported hash, or a case opened for a bank
match) and the treatment they get, and refreshing the priority of the cases of items.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Collection, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Integer, exists, func, insert, literal, null, or_, select, update
from sqlalchemy import case as sql_case
from sqlalchemy.orm import Session

from takedown.domain.access import Permission, Principal
from takedown.domain.cases import PUBLIC_STATUS, CaseState, Outcome, public_text
from takedown.domain.reports import (
    INTIMATE_IMAGERY,
    MINOR_SAFETY,
    Category,
    ReporterRole,
    ReportInput,
    ValidReport,
    validate_report,
)
from takedown.domain.triage import TAKE_IT_DOWN_WINDOW, decision_target
from takedown.ids import utcnow
from takedown.memory import paused_gc
from takedown.services.audit.chain import record, record_many
from takedown.services.cases.base import (
    ACTIVE_STATES,
    CaseFigures,
    _categories,
    _expire_loaded_items,
    _hash_sources,
    _token_hash,
    listed_figures,
)
from takedown.services.cases.copies import (
    PDQ_QUALITY_FLOOR,
    Among,
    Copy,
    chunks,
    scan_index_of,
)
from takedown.services.cases.enforcement import apply_account_measures, is_limited, reporter_key
from takedown.services.cases.negative import any_negative_bank, negative_items
from takedown.services.cases.reported_hashes import REASON as REPORTED_HASH
from takedown.services.cases.reported_hashes import HashedMedia
from takedown.services.cases.status import CaseStatus
from takedown.services.cases.views import ReportReceipt
from takedown.store.db import many_rows, unit_of_work
from takedown.store.models import (
    AuditEvent,
    Case,
    CaseEntry,
    CaseItem,
    CaseLocation,
    Decision,
    Item,
    ItemMedia,
    Media,
    Report,
)
from takedown.store.valuesets import in_values

CATEGORY_VALUES = frozenset(c.value for c in Category)
# An item a negative bank matches, spared an automatic measure (cases/negative.py).
SPARED = "item.negative_match_spared"


# The cases a copy may still join (active, or confirmed: a later copy is removed), and
# their items' media with a PDQ above the quality floor, each once: ``may_join_cases``
# looks a batch's neighbours up among these only.
_JOINABLE = or_(Case.state.in_(ACTIVE_STATES), Case.outcome == Outcome.VIOLATION.value)
_CASE_MEDIA = (
    select(Media.id, Media.pdq)
    .distinct()
    .join(ItemMedia, ItemMedia.media_id == Media.id)
    .join(CaseItem, CaseItem.item_id == ItemMedia.item_id)
    .join(Case, Case.id == CaseItem.case_id)
    .where(
        _JOINABLE,
        Media.pdq.is_not(None),
        Media.pdq_quality.is_(None) | (Media.pdq_quality >= PDQ_QUALITY_FLOOR),
    )
)


def _in_joinable_cases(s: Session, item_ids: set[int]) -> set[int]:
    """Which of these items are in a case a copy may still join."""
    if not item_ids:
        return set()
    return set(
        s.scalars(
            select(CaseItem.item_id)
            .join(Case, Case.id == CaseItem.case_id)
            .where(in_values(s, CaseItem.item_id, sorted(item_ids)), _JOINABLE)
        )
    )


def _add_hash_sources(case: Case, sources: set[str]) -> None:
    case.hash_sources = ",".join(sorted(set(_hash_sources(case)) | sources))


@dataclass(frozen=True)
class JoinCandidates:
    """What :meth:`CaseIntake.may_join_cases` found: the items one step from an item
    of a case (with each item's neighbours, for :meth:`CaseIntake.join_later_copies`),
    and the items to treat one by one (a reported place or hash, video media)."""

    by_neighbour: dict[int, dict[int, Copy]]  # each item's neighbours in cases, at least
    one_by_one: set[int]
    # Every neighbour of the items screened or treated one by one (the copy graph does
    # not change), video media apart.
    neighbours: dict[int, dict[int, Copy]]


@dataclass(frozen=True)
class AloneMatch:
    """A registered item a bank matched, one step from no other item: it is its only
    copy (:meth:`CaseIntake.open_alone_for_matches`)."""

    item_id: int
    sources: frozenset[str]
    restrict: bool
    categories: frozenset[str]


# A new case of this many copies or more reads its figures on a second connection
# (PostgreSQL), while the report's transaction writes.
FIGURES_ASIDE_MIN = 5_000


def _is_active(case: Case) -> bool:
    return case.state in ACTIVE_STATES or case.outcome == Outcome.VIOLATION.value


class CaseIntake(CaseStatus):
    """Reports in, restriction first, and the copies that join a case later."""

    # -- intake --------------------------------------------------------------------
    def submit_report(
        self, raw: ReportInput, *, channel: str, principal: Principal | None = None
    ) -> ReportReceipt:
        """Validate, group into a case, restrict first, and answer at once."""
        valid = validate_report(raw, authenticated_role=_channel_role(principal))
        token = secrets.token_urlsafe(24)
        actor = principal.actor if principal else f"reporter:{valid.reporter_role.value}"
        # A viral item's report makes hundreds of thousands of short-lived tuples (the
        # walk's copies, the rows read): no cyclic collection walking the whole process
        # meanwhile (measured: ~0.35 s of a 2.2 s report of 100,000 copies on SQLite).
        with paused_gc(), unit_of_work(self._sessions) as s:
            many_rows(s)
            now = utcnow()
            seeds = self._resolve(s, valid.item_ids, valid.urls)
            copies = self._copies.expand(s, seeds) if seeds else {}
            found = self._hashes.find(s, valid.hashes) if valid.hashes else None
            if found and found.copies:
                # What the hashes found, and everything it links to; an item both named
                # and found keeps "reported".
                more = self._copies.expand(s, found.copies, known=frozenset(copies))
                copies.update({i: found.copies.get(i, c) for i, c in more.items()})
            holding = self._holding_case(s, set(copies))
            case = holding or self._new_case(s, now)
            # A new case's figures for triage are its copies': for many, on PostgreSQL,
            # read on a second connection while this transaction writes (the other core;
            # ~0.8 s of a report about 100,000 copies, measured).
            aside = (
                self._figures_aside(list(copies), now)
                if holding is None
                and len(copies) >= FIGURES_ASIDE_MIN
                and s.get_bind().dialect.name == "postgresql"
                else None
            )
            added = self._add_copies(s, case, copies, new=holding is None)
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
                victim_consent=valid.victim_consent,
                victim_first_name=valid.victim.first_name,
                victim_last_name=valid.victim.last_name,
                victim_email=valid.victim.email,
                victim_phone=valid.victim.phone,
                victim_age=valid.victim.age,
                victim_date_of_birth=valid.victim.date_of_birth,
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
            figures = self._apply_report(s, case, valid, now, aside)
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
            # A first report has just read the case's figures; nothing since changed them.
            self._refresh_priority(s, case, now, figures)
            status = PUBLIC_STATUS[CaseState(case.state)]
            self._mail(s, case, [report], "received", now)
            if status != before:
                self._mail_status_change(s, case, status, now, exclude=report.id)
            return ReportReceipt(
                case_number=case.public_id,
                report_id=report.public_id,
                status_token=token,
                status=status.value,
                # Decided now means decided before this report came.
                status_text=public_text(status, decided_before_report=True),
                restricted_items=restricted,
                takedown_request=valid.takedown_request,
                missing_for_takedown=valid.missing_for_takedown,
            )

    def _figures_aside(self, item_ids: list[int], now: datetime) -> Future[CaseFigures]:
        """The figures of a case holding exactly ``item_ids``, read in a thread of its
        own, on a connection of its own (what is committed: the items and accounts this
        report does not change)."""
        future: Future[CaseFigures] = Future()

        def read() -> None:
            try:
                with unit_of_work(self._sessions, write=False) as s:
                    many_rows(s)
                    future.set_result(listed_figures(s, item_ids, now - timedelta(hours=1)))
            except BaseException as e:  # noqa: BLE001 - handed to the report's thread
                future.set_exception(e)

        threading.Thread(target=read, name="takedown-report-figures", daemon=True).start()
        return future

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

    def _new_case(self, s: Session, now: datetime, **details: object) -> Case:
        case = Case(state=CaseState.OPEN.value, opened_at=now, updated_at=now)
        s.add(case)
        s.flush()
        record(s, "system", "case.opened", "case", case.public_id, details)
        return case

    def _holding_case(self, s: Session, item_ids: set[int]) -> Case | None:
        """The oldest active (or confirmed) case holding any of these items."""
        if not item_ids:
            return None
        return s.scalars(
            select(Case)
            .join(CaseItem, CaseItem.case_id == Case.id)
            .where(in_values(s, CaseItem.item_id, item_ids))
            .where(_JOINABLE)
            .order_by(Case.opened_at, Case.id)
            .limit(1)
        ).first()

    def _add_locations(self, s: Session, case: Case, report: Report, valid: ValidReport) -> None:
        base = {"case_id": case.id, "report_id": report.id}
        rows = [{**base, "kind": "url", "value": u} for u in valid.urls]
        rows += [{**base, "kind": "item", "value": i} for i in valid.item_ids]
        if rows:
            s.execute(insert(CaseLocation), rows)
        if valid.hashes:
            self._hashes.keep(s, case.id, report.id, valid.hashes)

    def _add_copies(
        self, s: Session, case: Case, copies: dict[int, Copy], *, new: bool = False
    ) -> int:
        """The copies not in the case yet joined to it, set-based: one INSERT … SELECT
        per reason, the ids one parameter (a viral item has 100,000 reposts, all of one reason),
        keeping whether each item was public when found (repo.public_when_found's rule).
        ``new``: the case was opened in this transaction and holds nothing yet, so no
        copy is checked against its items (that anti-join is ~0.15 s of a report about
        100,000 copies on PostgreSQL, measured; ``copies`` names each item once)."""
        if not copies:
            return 0
        now = utcnow()
        groups: dict[tuple[str, int | None], list[int]] = {}
        for c in copies.values():
            groups.setdefault((c.reason, c.distance), []).append(c.item_id)
        added = 0
        for (reason, distance), ids in groups.items():
            rows = select(
                literal(case.id),
                Item.id,
                literal(reason),
                literal(distance, Integer),
                literal(now, CaseItem.__table__.c.added_at.type),
                sql_case(
                    (Item.platform_visibility.is_(None), null()),
                    else_=Item.platform_visibility == "public",
                ),
            ).where(in_values(s, Item.id, ids))
            if not new:
                rows = rows.where(
                    ~exists().where(CaseItem.case_id == case.id, CaseItem.item_id == Item.id)
                )
            result = s.execute(
                insert(CaseItem).from_select(
                    [
                        "case_id",
                        "item_id",
                        "reason",
                        "distance",
                        "added_at",
                        "publicly_available",
                    ],
                    rows,
                )
            )
            added += result.rowcount  # type: ignore[attr-defined]
        return added

    def _apply_report(
        self,
        s: Session,
        case: Case,
        valid: ValidReport,
        now: datetime,
        aside: Future[CaseFigures] | None = None,
    ) -> CaseFigures | None:
        """The report's marks on the case; for a first report, the case's figures it
        read (its views then are kept), or ``aside`` read them."""
        cats = _categories(case) | {valid.category}
        case.categories = ",".join(sorted(c.value for c in cats))
        case.minor_safety = bool(cats & MINOR_SAFETY)
        figures = None
        if case.first_report_at is None:
            case.first_report_at = now
            figures = aside.result() if aside else self._figures(s, case, now)
            case.views_at_first_report = figures.total_views
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
        return figures

    # -- restriction and effects ----------------------------------------------------
    def _restrict(
        self,
        s: Session,
        case: Case,
        actor: str,
        why: str,
        now: datetime,
        only: Collection[int] | None = None,
    ) -> int:
        """Every visible copy in the case (``only``: of these copies, which just joined
        it; the others were restricted as they joined or when it began): hidden pending
        review, monetization off, one action per item in the outbox for the platform.

        A later copy of a viral item joins a case of 100,000: with ``only`` that costs
        its own rows, not a read and an UPDATE of the whole case per joining batch."""
        if any_negative_bank(s):  # which visible copies are known benign, spared
            if only is None:
                ids = self._case_item_ids(s, case, visibility="visible")
            else:
                ids = self._visible_of(s, only)
            ids = self._spare_negative(s, case, ids, actor, "restrict")
        else:  # the usual deployment: the UPDATE itself picks the visible copies
            ids = self._case_item_ids(s, case) if only is None else sorted(only)
        changed = self._set_items(
            s, case, ids, "restricted", True, "item.restrict", actor, why, now,
            only_from="visible",
        )  # fmt: skip
        case.restrict_first = True  # copies found later are restricted too
        # (Already marked restricted: nothing to ask; a viral case's later copies asked
        # it of 100,000 rows, ~3 ms on PostgreSQL, for each joining copy.)
        settled = case.state != CaseState.OPEN.value and case.restricted_at is not None
        hidden = changed or (not settled and self._holds_restricted(s, case))
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
        ids = self._spare_negative(s, case, ids, actor, "demonetize")
        return self._set_items(
            s, case, ids, "visible", True, "item.demonetize", actor, "under_review", now
        )

    def _spare_negative(
        self, s: Session, case: Case, ids: list[int], actor: str, measure: str
    ) -> list[int]:
        """``ids`` without the items whose media a negative bank matches: known benign,
        they are spared every automatic measure (cases/negative.py) and stay in the
        case for a person to see. Audited once per item, case and measure."""
        spared = negative_items(s, self._hashes.matcher, ids) if ids else set()
        if not spared:
            return ids
        pids = dict(
            s.execute(select(Item.id, Item.platform_id).where(Item.id.in_(sorted(spared)))).all()
        )
        said = {
            object_id
            for object_id, details in s.execute(
                select(AuditEvent.object_id, AuditEvent.details).where(
                    AuditEvent.object_type == "item",
                    AuditEvent.object_id.in_(sorted(pids.values())),
                    AuditEvent.action == SPARED,
                )
            )
            if json.loads(details) == {"case": case.public_id, "measure": measure}
        }
        fresh = sorted(p for p in pids.values() if p not in said)
        if fresh:
            record_many(
                s, actor, SPARED, "item", fresh, {"case": case.public_id, "measure": measure}
            )
        return [i for i in ids if i not in spared]

    # -- copies that appear later (called by the registry) ----------------------------
    def may_join_cases(
        self,
        s: Session,
        items: Sequence[tuple[int, str, str | None, Sequence[HashedMedia]]],
        screened: Collection[int] = (),
    ) -> JoinCandidates:
        """Of these registered items ``(id, platform id, url, media)``, those that may
        join a case, for a whole batch in a few reads: one step from an item of an
        active or confirmed case (:meth:`join_later_copies`, given ``neighbours``), or
        at a reported place or matching reported hashes, or with video media
        (:meth:`join_by_location` and the video rule, item by item). The others would
        join nothing. ``screened``: the items whose media may match a bank, which go
        the single request's way with the items treated one by one; they get all
        their neighbours (``JoinCandidates.neighbours``).

        The others' neighbours are looked for among the items of such cases only, and
        their near-duplicates among those items' media, not every registered media: a
        neighbour in no such case links the item to nothing it could join (the walk
        from a case's item, :meth:`join_later_copies`, finds the rest). That is a read
        of a set that grows with the items in cases, against an index search that
        grows with the registry (measured, 30,000 items of ``bench/registry.py``'s
        feed: ~0.5 s of index search per batch, growing with the media registered)."""
        if not items:
            return JoinCandidates({}, set(), {})
        in_cases = Among(
            lambda ids: _in_joinable_cases(s, ids),
            scan_index_of([(i, h) for i, h in s.execute(_CASE_MEDIA) if h]),
        )
        near, video = self._copies.neighbour_map(s, {i for i, _, _, _ in items}, among=in_cases)
        by_neighbour = {i: ns for i, ns in near.items() if ns}  # each an item of a case
        one_by_one: set[int] = set(video)
        places: dict[tuple[str, str], set[int]] = {}
        for i, pid, url, _ in items:
            places.setdefault(("item", pid), set()).add(i)
            if url:
                places.setdefault(("url", url), set()).add(i)
        for kind in ("item", "url"):
            values = sorted(v for k, v in places if k == kind)
            if not values:
                continue
            for value in s.scalars(
                select(CaseLocation.value).where(
                    CaseLocation.kind == kind, in_values(s, CaseLocation.value, values)
                )
            ):
                one_by_one |= places[(kind, value)]
        flat = [(i, m) for i, _, _, media in items for m in media]
        one_by_one.update(flat[k][0] for k in self._hashes.media_matching(s, [m for _, m in flat]))
        # Every neighbour, for the items that go the single request's way (the video
        # rule is not in the map: found item by item).
        full = (set(screened) | one_by_one) - video
        neighbours = self._copies.neighbour_map(s, full)[0] if full else {}
        return JoinCandidates(by_neighbour, one_by_one, neighbours)

    def join_later_copies(
        self,
        s: Session,
        item_ids: set[int],
        actor: str,
        neighbours: Mapping[int, Mapping[int, Copy]] | None = None,
    ) -> list[str]:
        """Attach newly registered items to the active cases they are copies of, and
        give them the case's current treatment. Returns the case numbers joined.

        With ``neighbours`` (each item's own, from ``CopyFinder.neighbour_map``: a
        batch), each item joins the cases its own neighbours are in, linked by its own
        link; without, the items are one group (a single request's one item)."""
        if not item_ids:
            return []
        given = neighbours or {}
        per_item: dict[int, Mapping[int, Copy]] = {i: given[i] for i in item_ids if i in given}
        rest = item_ids - set(per_item)
        if rest:  # found here, as one group
            around = self._copies.neighbours(s, rest)
            per_item.update((i, around) for i in rest)
        touching = {n: c for links in per_item.values() for n, c in links.items()}
        cases: dict[int, Case] = {}
        for part in chunks(sorted(touching)):
            for case in s.scalars(
                select(Case)
                .join(CaseItem, CaseItem.case_id == Case.id)
                .where(CaseItem.item_id.in_(part))
                .where(_JOINABLE)
            ):
                cases[case.id] = case
        now = utcnow()
        grown: list[Case] = []
        for case in sorted(cases.values(), key=lambda c: c.id):
            # Which of the neighbours are the case's: asked of them, not by reading all
            # its items (a viral case's 100,000 for each batch's few copies: 0.06-0.24 s
            # a join on PostgreSQL, measured).
            members = self._members(s, case)
            linked = members(set(touching))
            seeds: dict[int, Copy] = {}
            for i in sorted(item_ids):
                link = next((c for n, c in sorted(per_item[i].items()) if n in linked), None)
                if link is not None:
                    reason = _LINK_REASON.get(link.reason, link.reason)
                    seeds[i] = Copy(i, reason, link.distance)
            copies = self._copies.expand(s, seeds, known=members)
            if self._add_copies(s, case, copies):
                self._treat_new_copies(s, case, actor, now, set(copies))
                grown.append(case)
        self._rerank(s, grown, now)  # more copies: more views, perhaps flagged accounts
        return [c.public_id for c in sorted(cases.values(), key=lambda c: c.id)]

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
        for case in s.scalars(select(Case).where(Case.id.in_(case_ids)).order_by(Case.id)):
            if not _is_active(case):
                continue
            known = self._members(s, case)
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
                self._treat_new_copies(s, case, actor, now, set(copies))
                self._rerank(s, [case], now)
            joined.append(case.public_id)
        return joined

    def record_matched_entries(
        self, s: Session, case_refs: Iterable[str], entry_ids: Iterable[int]
    ) -> None:
        """The bank entries whose matches brought an item into these cases: the case's
        match provenance, from which its decisions go back to the entries' exchanges
        (:meth:`CaseDecisions.decide`)."""
        entries = sorted(set(entry_ids))
        refs = sorted(set(case_refs))
        if not entries or not refs:
            return
        now = utcnow()
        for case_id in s.scalars(select(Case.id).where(Case.public_id.in_(refs))):
            known = set(
                s.scalars(
                    select(CaseEntry.entry_id).where(
                        CaseEntry.case_id == case_id, CaseEntry.entry_id.in_(entries)
                    )
                )
            )
            for e in entries:
                if e not in known:
                    s.add(CaseEntry(case_id=case_id, entry_id=e, first_matched_at=now))
        s.flush()

    def record_matched_entries_many(
        self, s: Session, matched: Sequence[tuple[str, Iterable[int]]]
    ) -> None:
        """:meth:`record_matched_entries` for many ``(case ref, entry ids)``, one after
        the other, in one read of the cases, one of their recorded entries and one
        flush."""
        wanted = [(ref, sorted(set(entries))) for ref, entries in matched]
        wanted = [(ref, entries) for ref, entries in wanted if entries]
        if not wanted:
            return
        now = utcnow()
        case_ids = dict(
            s.execute(
                select(Case.public_id, Case.id).where(
                    Case.public_id.in_(sorted({ref for ref, _ in wanted}))
                )
            ).all()
        )
        all_entries = sorted({e for _, entries in wanted for e in entries})
        known: set[tuple[int, int]] = set()
        for part in chunks(all_entries):
            known.update(
                (case_id, entry_id)
                for case_id, entry_id in s.execute(
                    select(CaseEntry.case_id, CaseEntry.entry_id).where(
                        CaseEntry.case_id.in_(sorted(set(case_ids.values()))),
                        CaseEntry.entry_id.in_(part),
                    )
                )
            )
        for ref, entries in wanted:
            case_id = case_ids.get(ref)
            if case_id is None:
                continue
            for e in entries:
                if (case_id, e) not in known:
                    known.add((case_id, e))
                    s.add(CaseEntry(case_id=case_id, entry_id=e, first_matched_at=now))
        s.flush()

    def open_for_match(
        self,
        s: Session,
        item_ids: set[int],
        sources: set[str],
        restrict: bool,
        actor: str,
        origins: Sequence[str] = (),
        categories: Iterable[str] = (),
        copies: dict[int, Copy] | None = None,
    ) -> str:
        """A registered item matched a bank: it joins the active case of its copies, or
        else the case its bank entry was banked from (``origins``: a re-upload of
        confirmed material, however it was rotated or cropped), or else a new case,
        which takes the category, minor safety and clock of that origin case or the
        entries' categories. ``copies``: the items' copy graph when the caller knows it
        already (``expand``'s answer, reason "hash_match" for the items)."""
        now = utcnow()
        if copies is None:
            # An item that joined its copies' case on the way here (``join_later_copies``,
            # ``join_by_location``): the walk from it stops at that case's items instead
            # of walking through all of them again. A re-upload of a viral item's picture
            # that a bank knows walked its 100,000 copies, added them again and
            # restricted them again (measured: 0.33 s each on SQLite, 1.2 s on
            # PostgreSQL; 437 and 124 items/s for a batch where 0.5 % of items were such
            # re-uploads).
            within = self._holding_case(s, set(item_ids))
            copies = {i: Copy(i, "hash_match") for i in item_ids}  # in it or not
            copies |= self._copies.expand(
                s,
                item_ids,
                seed_reason="hash_match",
                known=self._members(s, within) if within is not None else frozenset(),
                through_known_seeds=True,
            )
        origin = (
            list(s.scalars(select(Case).where(Case.public_id.in_(sorted(set(origins))))))
            if origins
            else []
        )
        case = self._holding_case(s, set(copies)) or next(
            (c for c in sorted(origin, key=lambda c: (c.opened_at, c.id)) if _is_active(c)), None
        )
        new = case is None
        if case is None:
            case = self._new_case(
                s, now, reason="hash_match", banked_from=sorted(c.public_id for c in origin)
            )
            inherited = {c for o in origin for c in _categories(o)} | {
                Category(c) for c in categories if c in CATEGORY_VALUES
            }
            if inherited:
                case.categories = ",".join(sorted(c.value for c in inherited))
                case.minor_safety = bool(inherited & MINOR_SAFETY)
            case.decision_due_at = now + decision_target(
                inherited,
                self._policy.decision_target_minor_hours,
                self._policy.decision_target_hours,
            )
        added = self._add_copies(s, case, copies, new=new)
        _add_hash_sources(case, sources)
        if case.decision_due_at is None and case.decided_at is None:
            case.decision_due_at = now + decision_target(
                _categories(case),
                self._policy.decision_target_minor_hours,
                self._policy.decision_target_hours,
            )
        if case.outcome == Outcome.VIOLATION.value:
            if added:
                self._treat_new_copies(s, case, actor, now, set(copies))
        elif restrict:
            # Restrict-first fired before (not since reopened by an appeal after copies
            # were restored): the case's other copies were restricted as they came; only
            # these can be visible.
            held_back = case.restrict_first and case.state != CaseState.APPEALED.value
            only = set(copies) if held_back and not new else None
            self._restrict(s, case, actor, "hash_match", now, only=only)
        if new:
            self._refresh_priority(s, case, now)
        else:  # a viral item's case of 100,000 copies, perhaps
            self._rerank(s, [case], now)
        return case.public_id

    def open_alone_for_matches(
        self, s: Session, matches: Sequence[AloneMatch], actor: str
    ) -> list[str]:
        """:meth:`open_for_match` for items that are their own only copies, without
        origin cases, one after the other (each item's case number, in order), set-wise:
        an item already in an active or confirmed case goes through
        :meth:`open_for_match` (it joins that case); each other one opens a case of its
        own, as :meth:`open_for_match` would (categories, clock, hash sources, the item
        in it by "hash_match", restricted first when a bank says so, triage), with one
        read of the items, one insert of the cases, of their items and of their outbox
        actions' item update for all. No item can join another's new case: none is a
        copy of another."""
        if not matches:
            return []
        now = utcnow()
        ids = [m.item_id for m in matches]
        held = _in_joinable_cases(s, set(ids))
        items: dict[int, tuple[str, str, str | None]] = {
            i: (pid, visibility, public)
            for i, pid, visibility, public in s.execute(
                select(Item.id, Item.platform_id, Item.visibility, Item.platform_visibility).where(
                    in_values(s, Item.id, ids)
                )
            ).all()
        }
        fresh = [m for m in matches if m.item_id not in held]
        cases = {
            m.item_id: Case(state=CaseState.OPEN.value, opened_at=now, updated_at=now)
            for m in fresh
        }
        s.add_all(cases.values())
        s.flush()
        for m in fresh:  # _new_case's and open_for_match's, for each
            case = cases[m.item_id]
            record(
                s,
                "system",
                "case.opened",
                "case",
                case.public_id,
                {"reason": "hash_match", "banked_from": []},
            )
            inherited = {Category(c) for c in m.categories if c in CATEGORY_VALUES}
            if inherited:
                case.categories = ",".join(sorted(c.value for c in inherited))
                case.minor_safety = bool(inherited & MINOR_SAFETY)
            case.decision_due_at = now + decision_target(
                inherited,
                self._policy.decision_target_minor_hours,
                self._policy.decision_target_hours,
            )
            _add_hash_sources(case, set(m.sources))
        if cases:  # _add_copies': each item in its new case
            s.execute(
                insert(CaseItem),
                [
                    {
                        "case_id": case.id,
                        "item_id": i,
                        "reason": "hash_match",
                        "distance": None,
                        "added_at": now,
                        "publicly_available": (
                            None if items[i][2] is None else items[i][2] == "public"
                        ),
                    }
                    for i, case in cases.items()
                ],
            )
        # _restrict's, for each case of one item: the visible item hidden (unless a
        # negative bank matches it), the case restricted if its item is hidden.
        restricting = [m.item_id for m in fresh if m.restrict]
        visible = [i for i in restricting if items[i][1] == "visible"]
        spared = negative_items(s, self._hashes.matcher, visible) if visible else set()
        for i in sorted(spared):  # a new case: never said before
            record_many(
                s,
                actor,
                SPARED,
                "item",
                [items[i][0]],
                {"case": cases[i].public_id, "measure": "restrict"},
            )
        hidden = [i for i in visible if i not in spared]
        if hidden:
            s.execute(
                update(Item)
                .where(in_values(s, Item.id, hidden))
                .values(visibility="restricted", monetization_paused=True, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            _expire_loaded_items(s, hidden)
        shown = set(hidden)
        for i in restricting:
            case = cases[i]
            if i in shown:
                self._announce_items(
                    s,
                    case,
                    [i],
                    [items[i][0]],
                    "restricted",
                    True,
                    "item.restrict",
                    actor,
                    "hash_match",
                    now,
                )
            case.restrict_first = True  # copies found later are restricted too
            if i in shown or items[i][1] == "restricted":
                case.state = CaseState.RESTRICTED.value
                case.restricted_at = now
        refs: list[str] = []
        unranked: list[Case] = []  # their triage, read set-wise before the next held one
        for m in matches:
            if m.item_id in held:
                self._refresh_priority_many(s, unranked, now)
                unranked.clear()
                refs.append(
                    self.open_for_match(
                        s,
                        {m.item_id},
                        set(m.sources),
                        restrict=m.restrict,
                        actor=actor,
                        categories=m.categories,
                        copies={m.item_id: Copy(m.item_id, "hash_match")},
                    )
                )
            else:
                unranked.append(cases[m.item_id])
                refs.append(cases[m.item_id].public_id)
        self._refresh_priority_many(s, unranked, now)
        return refs

    def _treat_new_copies(
        self, s: Session, case: Case, actor: str, now: datetime, new_items: set[int]
    ) -> None:
        """A copy joining a confirmed case is removed, and its account measured by its
        part (a re-uploader, a reposter...) like the case's accounts were; joining a
        case under review, it is restricted if the case's copies are."""
        if case.outcome == Outcome.VIOLATION.value:
            # The new copies only: the case's others were removed by its decision.
            ids = self._visible_of(s, new_items, also="restricted")
            kept = set(ids)
            ids = self._spare_negative(s, case, ids, actor, "remove")
            spared = kept - set(ids)  # known benign: neither removed nor held against
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
            accounts: set[int] = set()
            for part in chunks(sorted(new_items - spared)):
                accounts.update(
                    a
                    for a in s.scalars(select(Item.account_id).where(Item.id.in_(part)))
                    if a is not None
                )
            if accounts:
                decision = s.scalar(
                    select(Decision.public_id)
                    .where(Decision.case_id == case.id, Decision.effective.is_(True))
                    .order_by(Decision.decided_at.desc(), Decision.id.desc())
                    .limit(1)
                )
                apply_account_measures(
                    s,
                    case,
                    sorted(new_items),
                    actor,
                    self._policy.accounts,
                    now,
                    decision or "",
                    only_accounts=accounts,
                    scope=self._policy.territorial_scope,
                    reason="copy_of_confirmed_violation",
                )
        elif case.restrict_first and case.state in ACTIVE_STATES:
            self._restrict(s, case, actor, "copy_of_restricted_content", now, only=new_items)

    # -- triage ----------------------------------------------------------------------
    def refresh_priority_for_accounts(self, s: Session, account_ids: Sequence[int]) -> None:
        """What the platform says of an account (a flag, earlier violations) changed."""
        items: list[int] = []
        for part in chunks(list(account_ids)):
            items += s.scalars(select(Item.id).where(Item.account_id.in_(part)))
        self.refresh_priority_for_items(s, items)

    def refresh_priority_for_items(self, s: Session, item_ids: Iterable[int]) -> None:
        """These items' view counts or accounts changed: the active cases holding them
        are re-ranked (:meth:`_rerank`)."""
        now = utcnow()
        cases: dict[int, Case] = {}
        for part in chunks(sorted(set(item_ids))):
            for case in s.scalars(
                select(Case)
                .join(CaseItem, CaseItem.case_id == Case.id)
                .where(CaseItem.item_id.in_(part), Case.state.in_(ACTIVE_STATES))
                .distinct()
            ):
                cases[case.id] = case
        self._rerank(s, list(cases.values()), now)

    def _rerank(self, s: Session, cases: Iterable[Case], now: datetime) -> None:
        """The priority of these cases, what they hold having changed: at once for an
        active case of up to ``CasePolicy.priority_inline_copies`` copies (all such
        cases in one pass); a larger one is marked for
        :meth:`refresh_stale_priorities`. The figures are one pass over every copy: a
        viral item's case of 100,000 copies took 0.13 s on SQLite and 0.4-0.65 s on
        PostgreSQL each time, and a registry batch changing view counts paid that in
        every chunk (a 30,000-item batch at ~8,300 items/s on SQLite, ~4,300 on
        PostgreSQL, against ~15,000 and ~10,000 without the case). A decided case is
        in no queue (a confirmed one that a copy joins stays as it was ranked)."""
        inline: list[Case] = []
        for case in sorted({c.id: c for c in cases}.values(), key=lambda c: c.id):
            if case.state not in ACTIVE_STATES:
                continue
            if self._holds_more_than(s, case.id, self._policy.priority_inline_copies):
                case.priority_stale_since = now
            else:
                inline.append(case)
        self._refresh_priority_many(s, inline, now)

    def refresh_stale_priorities(self, limit: int = 50) -> int:
        """Recompute the priorities :meth:`_rerank` left marked,
        the oldest marks first, at most ``limit`` cases; returns how many were taken.
        One transaction a case: it writes that case's row only, so it never holds one
        row another writer waits for while waiting for another (PostgreSQL). A case
        decided meanwhile only loses its mark; a mark another transaction made after
        this one read it stays, for the next round."""
        with unit_of_work(self._sessions, write=False) as s:
            marked = s.execute(
                select(Case.id, Case.priority_stale_since)
                .where(Case.priority_stale_since.is_not(None))
                .order_by(Case.priority_stale_since, Case.id)
                .limit(limit)
            ).all()
        for case_id, at in marked:
            with unit_of_work(self._sessions) as s:
                case = s.get_one(Case, case_id)  # cases are never deleted
                if case.state in ACTIVE_STATES:
                    self._refresh_priority(s, case, utcnow())
                    s.flush()
                s.connection().execute(
                    update(Case)
                    .where(Case.id == case_id, Case.priority_stale_since == at)
                    .values(priority_stale_since=None)
                )
                s.expire(case, ["priority_stale_since"])
        return len(marked)

    def _holds_more_than(self, s: Session, case_id: int, n: int) -> bool:
        """Whether the case has more than ``n`` copies: reads ``n + 1`` rows at most,
        once a transaction for a case found larger (copies never leave a case; a
        batch's chunk asks it of a viral item's case for each copy that joins)."""
        large: set[int] = s.info.setdefault(_LARGE_CASES, set())
        if case_id in large:
            return True
        s.flush()
        first = select(CaseItem.item_id).where(CaseItem.case_id == case_id).limit(n + 1)
        held = s.connection().execute(select(func.count()).select_from(first.subquery()))
        if int(held.scalar_one()) > n:
            large.add(case_id)
            return True
        return False


# The session's note of the cases its transaction found to hold more copies than
# CasePolicy.priority_inline_copies (CaseIntake._holds_more_than).
_LARGE_CASES = "takedown.large_cases"

# How a new item relates to the case item it touches, seen from the new item: touching
# an "original" means the new item reposts or quotes it.
_LINK_REASON = {"original": "repost", "repost": "original", "quote": "original"}


def _channel_role(principal: Principal | None) -> ReporterRole | None:
    if principal is None:
        return None
    if principal.allows(Permission.REPORT_LAW_ENFORCEMENT):
        return ReporterRole.LAW_ENFORCEMENT
    if principal.allows(Permission.REPORT_TRUSTED_FLAGGER):
        return ReporterRole.TRUSTED_FLAGGER
    return None
