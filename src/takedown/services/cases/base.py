"""The ground the case service's parts share: its settings (``CasePolicy``), the
state every part works on (``CaseBase``: sessions, copy finder, policy, reported hashes),
and the helpers more than one part uses: which states are active, a case's categories
and hash sources, the status token's hash, loading a case, setting the items of a case
(visibility, monetization, one outbox action each) and refreshing its priority.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import BindParameter, Select, bindparam, func, literal, select, true, update
from sqlalchemy import case as sql_case
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import ColumnElement

from takedown.domain.cases import CaseState
from takedown.domain.enforcement import AccountPolicy, ReporterPolicy
from takedown.domain.reports import Category, ReporterRole
from takedown.domain.statements import WORLDWIDE, TerritorialScope, statement_for
from takedown.domain.transparency import automation
from takedown.domain.triage import TriageInput, priority
from takedown.ids import new_id
from takedown.services.audit.chain import record
from takedown.services.cases.copies import CopyFinder, Members
from takedown.services.cases.reported_hashes import ReportedHashes
from takedown.store import repositories as repo
from takedown.store.item_actions import FANOUT_MIN, insert_item_actions
from takedown.store.models import Account, Case, CaseItem, Item, ItemViews, Report
from takedown.store.valuesets import in_values

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
    # Where measures apply: told to the user and sent to the DSA database alike.
    territorial_scope: TerritorialScope = WORLDWIDE
    # A measure on this many items or more writes its outbox actions after its
    # transaction (store/item_actions.py).
    outbox_fanout_min: int = FANOUT_MIN
    # A case with more copies than this is re-ranked in the background when copies join
    # it or their views or accounts change (CaseIntake._rerank).
    priority_inline_copies: int = 1_000
    # Why setting clocks by hand is refused here (code, sentence); None: allowed
    # (Settings.clock_override_refusal: test and staging deployments only).
    clock_override_refusal: tuple[str, str] | None = (
        "clock_override_disabled",
        "Setting times by hand is off (TAKEDOWN_ALLOW_CLOCK_OVERRIDE).",
    )


# An action on up to this many items lists their platform ids in its audit event;
# beyond, the event names their count and digest (items_digest) only.
ITEMS_LISTED = 100

_ITEM = "\x00item\x00"  # where each item's platform id goes in its action's payload


def items_digest(platform_ids: Sequence[str]) -> str:
    """SHA-256 of the items' platform ids, sorted, one a line: what an action's audit
    event names, so the items it acted on can be checked against it later."""
    return hashlib.sha256("\n".join(sorted(platform_ids)).encode()).hexdigest()


def _expire_loaded_items(s: Session, ids: Sequence[int]) -> None:
    """Items this session had loaded read the new state (the UPDATE went around them)."""
    wanted = set(ids)
    for obj in list(s.identity_map.values()):
        if isinstance(obj, Item) and obj.id in wanted:
            s.expire(obj)


def _hash_sources(case: Case) -> list[str]:
    return sorted(filter(None, case.hash_sources.split(",")))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _categories(case: Case) -> set[Category]:
    return {Category(c) for c in case.categories.split(",") if c}


class CaseBase:
    """The state of the case service, and the helpers its parts share."""

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

    def _get(self, s: Session, case_id: str, *, for_update: bool = False) -> Case:
        return repo.get_case(s, case_id, for_update=for_update)

    # -- items of a case ----------------------------------------------------------
    # The ids of a case's items are read through the session's connection (its
    # transaction, flushed first), not the ORM's result layer: ~2 µs a row, 0.4 s of CPU
    # for a viral item's 100,000 copies.
    def _paused_ids(self, s: Session, case: Case, *, paused: bool) -> list[int]:
        stmt = (
            select(CaseItem.item_id)
            .join(Item, Item.id == CaseItem.item_id)
            .where(CaseItem.case_id == case.id, Item.monetization_paused.is_(paused))
        )
        s.flush()
        return list(s.connection().execute(stmt).scalars().all())

    def _case_item_ids(self, s: Session, case: Case, *, visibility: str | None = None) -> list[int]:
        stmt = select(CaseItem.item_id).where(CaseItem.case_id == case.id)
        if visibility is not None:
            stmt = stmt.join(Item, Item.id == CaseItem.item_id).where(Item.visibility == visibility)
        s.flush()
        return list(s.connection().execute(stmt).scalars().all())

    def _members(self, s: Session, case: Case) -> Members:
        """Which of some item ids are the case's, one read each time it is asked (for
        :meth:`CopyFinder.expand`'s ``known``): never a read of all its items."""

        def of(ids: set[int]) -> set[int]:
            if not ids:
                return set()
            s.flush()
            # ``IN (SELECT unnest…)``, not ``= ANY``: planned from statistics that lag a
            # table's growth (autovacuum's ANALYZE comes up to a minute later), ``= ANY``
            # became a scan comparing every row with every id: 58 ms for 100 ids against
            # a case of 20,000 copies on a new PostgreSQL database, and the 100,000 copies'
            # own join took 193 s instead of 8. ``IN`` costs at worst a pass over the
            # case's rows (2 ms at 100,000), and then key lookups (0.2 ms).
            stmt = select(CaseItem.item_id).where(
                CaseItem.case_id == case.id, in_values(s, CaseItem.item_id, sorted(ids))
            )
            return set(s.connection().execute(stmt).scalars())

        return of

    def _visible_of(
        self, s: Session, item_ids: Collection[int], *, also: str | None = None
    ) -> list[int]:
        """Of these items, the visible ones (and those whose visibility is ``also``)."""
        if not item_ids:
            return []
        states = ("visible",) if also is None else ("visible", also)
        s.flush()
        return sorted(
            s.connection()
            .execute(
                select(Item.id).where(
                    in_values(s, Item.id, sorted(item_ids)), Item.visibility.in_(states)
                )
            )
            .scalars()
        )

    def _holds_restricted(self, s: Session, case: Case) -> bool:
        """Whether any of the case's copies is restricted (one row read, not all)."""
        s.flush()
        return (
            s.connection()
            .execute(
                select(CaseItem.item_id)
                .join(Item, Item.id == CaseItem.item_id)
                .where(CaseItem.case_id == case.id, Item.visibility == "restricted")
                .limit(1)
            )
            .first()
            is not None
        )

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
        only_from: str | None = None,
    ) -> int:
        """Set these items' visibility and monetization, and announce it (one outbox
        action each). With ``only_from``, only those of ``ids`` whose visibility is that
        one are set and announced: the UPDATE itself tells which (a restriction needs no
        separate read of which copies are still visible: ~0.15 s of a report about
        100,000 copies on PostgreSQL, measured)."""
        if not ids:
            return 0
        # The ids and platform ids come back from the UPDATE itself (not a second
        # look-up of every item: ~0.5 s for 100,000 copies on PostgreSQL).
        stmt = update(Item).where(in_values(s, Item.id, ids))
        if only_from is not None:
            stmt = stmt.where(Item.visibility == only_from)
        s.flush()
        rows = (
            s.connection()
            .execute(
                stmt.values(
                    visibility=visibility, monetization_paused=paused, updated_at=now
                ).returning(Item.id, Item.platform_id)
            )
            .all()
        )
        # Each column apart, the ids in order (what follows does not pair them; sorting
        # the rows themselves compares SQLAlchemy rows: ~1 s for 100,000).
        ids = sorted(r[0] for r in rows)
        pids = [r[1] for r in rows]
        _expire_loaded_items(s, ids)  # the session's copies of them, if any, are stale
        return self._announce_items(
            s, case, ids, pids, visibility, paused, topic, actor, why, now, decision_id
        )

    def _announce_items(
        self,
        s: Session,
        case: Case,
        ids: Sequence[int],
        pids: Sequence[str],
        visibility: str,
        paused: bool,
        topic: str,
        actor: str,
        why: str,
        now: datetime,
        decision_id: str | None = None,
    ) -> int:
        """What :meth:`_set_items` says of items it set (``ids``, their platform ids
        ``pids``): one outbox action each, the case's event."""
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
            scope=self._policy.territorial_scope,
        ).to_dict()
        # One rule for how automated a measure is, for the statement the owner gets and
        # the DSA database stores as for the transparency report: a copy removed as it
        # joins a confirmed case was decided by no person.
        statement["automated_decision"] = automation(topic, why)
        payload = {
            "action": action,
            "item_id": _ITEM,
            "case": case.public_id,
            "reason": why,
            "monetization": "paused" if paused else "resumed",
            "decision": decision_id,
        }  # + the statement of reasons, stored once for all these items
        head, tail = json.dumps(payload).split(json.dumps(_ITEM))
        key_prefix = new_id()[:16]  # + the item's id: one action per item (item_actions)
        insert_item_actions(
            s,
            ids,
            key_prefix=key_prefix,
            topic=topic,
            case_id=case.id,
            payload_head=head,
            payload_tail=tail,
            statement=json.dumps(statement),
            now=now,
            fanout_min=self._policy.outbox_fanout_min,
        )
        if visibility == "removed" and pids and case.removed_at is None:
            case.removed_at = now  # the TAKE IT DOWN clock is judged on this
        # One event for the case's action on all these items (not one per item: a viral
        # item's 100,000 copies would be 100,000 events, seconds of the report), naming
        # how many, their platform ids' digest, and the outbox actions that carry each
        # item's (their idempotency keys start with ``actions``); the ids themselves up
        # to ITEMS_LISTED (docs/evidence-and-audit.md).
        details: dict[str, object] = {
            "case": case.public_id,
            "reason": why,
            "items": len(pids),
            "items_sha256": items_digest(pids),
            "actions": key_prefix,
        }
        if decision_id is not None:
            details["decision"] = decision_id
        if len(pids) <= ITEMS_LISTED:
            details["item_ids"] = sorted(pids)
        record(s, actor, topic, "case", case.public_id, details)
        return len(pids)

    # -- triage ----------------------------------------------------------------------
    def _figures(self, s: Session, case: Case, now: datetime) -> CaseFigures:
        """The case's views now and one hour ago, and its accounts' strikes and flags:
        one statement, the case's copies read once (``_CASE_FIGURES``)."""
        rows = s.execute(_CASE_FIGURES, {"case_id": case.id, "cut": now - timedelta(hours=1)})
        return _figures_of(rows).get(case.id, CaseFigures(0, 0, 0, 0))

    def _refresh_priority(
        self,
        s: Session,
        case: Case,
        now: datetime,
        figures: CaseFigures | None = None,
        reports: Sequence[Any] | None = None,
    ) -> None:
        """``figures``: the case's, when the caller has just read them (a pass over
        every copy: ~1 s for 100,000 on PostgreSQL); ``reports`` likewise, its
        (category, reporter role) that count."""
        if reports is None:
            reports = s.execute(_CASE_REPORTS, {"case_id": case.id}).all()
        f = figures or self._figures(s, case, now)
        score, factors = priority(
            TriageInput(
                categories=frozenset(Category(r[0]) for r in reports)
                | frozenset(_categories(case)),
                reporter_roles=frozenset(ReporterRole(r[1]) for r in reports),
                hash_sources=frozenset(_hash_sources(case)),
                account_confirmed_violations=f.strikes,
                accounts_flagged=f.flagged,
                total_views=f.total_views,
                views_last_hour=max(0, f.total_views - f.views_hour_ago),
            )
        )
        case.priority = score
        case.priority_factors = json.dumps([f.__dict__ for f in factors])

    def _refresh_priority_many(self, s: Session, cases: Sequence[Case], now: datetime) -> None:
        """:meth:`_refresh_priority` for many cases, each read grouped by case: four
        reads in all, not two per case (a batch opens a case for each of many bank
        matches). One case goes the single way: its statement is built once
        (``_CASE_FIGURES``); building the many-case one for it cost a batch's replay ~10 %."""
        if not cases:
            return
        if len({c.id for c in cases}) == 1:
            self._refresh_priority(s, cases[0], now)
            return
        ids = sorted({c.id for c in cases})
        reports: dict[int, list[tuple[str, str]]] = {}
        for case_id, category, role in s.execute(
            select(Report.case_id, Report.category, Report.reporter_role).where(
                in_values(s, Report.case_id, ids), Report.from_limited_reporter.is_(False)
            )
        ):
            reports.setdefault(case_id, []).append((category, role))
        figures = _case_figures_many(s, ids, now - timedelta(hours=1))
        for case in cases:
            self._refresh_priority(
                s,
                case,
                now,
                figures=figures.get(case.id, CaseFigures(0, 0, 0, 0)),
                reports=reports.get(case.id, []),
            )


class CaseFigures(NamedTuple):
    """What triage reads of a case's copies (``CaseBase._figures``)."""

    total_views: int
    views_hour_ago: int
    strikes: int  # the posting accounts' confirmed and prior violations, each account once
    flagged: int  # how many of those accounts the platform flagged


# Triage's reads, built once (a batch refreshes many cases; a statement built per call
# costs more than the query), each for one case (``case_id``).
# The reports that raise the priority: a limited reporter's role no longer does (DSA
# art. 23).
_CASE_REPORTS = select(Report.category, Report.reporter_role).where(
    Report.case_id == bindparam("case_id"), Report.from_limited_reporter.is_(False)
)


def _figures_statement(
    cases: ColumnElement[bool], cut: BindParameter[Any], listed: ColumnElement[bool] | None = None
) -> Select[Any]:
    """The figures for triage (``CaseFigures``) of the cases ``cases`` chooses (a
    condition on ``CaseItem.case_id``) at ``cut`` (one hour ago), one row per case
    with copies: ``case_id, views now, views at the cut, strikes, flagged``. One
    statement, the cases' copies read once (``copies``, a CTE the three parts share)
    rather than once per figure, each a pass over 100,000 copies for a viral item
    (~0.3-0.8 s apiece on PostgreSQL).

    - views now: the copies' counts summed;
    - views at the cut, as well as the samples tell. Per item: the last sample at or
      before the cut; for an item posted after it, zero; otherwise (older, but first
      seen since) its first sample, so that registering an old item with many views
      does not look like sudden growth. Each item's two figures read through the
      (item_id, at) index;
    - the posting accounts, each once per case (two accounts with the same history
      both count): their strikes and how many are flagged."""
    if listed is None:
        copies = (
            select(CaseItem.case_id, Item.id, Item.view_count, Item.posted_at, Item.account_id)
            .select_from(Item)
            .join(CaseItem, CaseItem.item_id == Item.id)
            .where(cases)
            .cte("copies")
        )
    else:  # the copies named by ``listed`` (a condition on Item.id), as one case
        copies = (
            select(
                literal(0).label("case_id"),
                Item.id,
                Item.view_count,
                Item.posted_at,
                Item.account_id,
            )
            .where(listed)
            .cte("copies")
        )
    totals = (
        select(copies.c.case_id, func.sum(copies.c.view_count).label("views"))
        .group_by(copies.c.case_id)
        .subquery()
    )
    before = (
        select(func.max(ItemViews.view_count))
        .where(ItemViews.item_id == copies.c.id, ItemViews.at <= cut)
        .scalar_subquery()
    )
    first = (
        select(func.min(ItemViews.view_count))
        .where(ItemViews.item_id == copies.c.id)
        .scalar_subquery()
    )
    per_item = select(
        copies.c.case_id.label("case_id"),
        copies.c.posted_at.label("posted_at"),
        before.label("before"),
        first.label("first"),
    ).subquery()
    at_cut = (
        select(
            per_item.c.case_id,
            func.sum(
                sql_case(
                    (per_item.c.before.is_not(None), per_item.c.before),
                    (
                        per_item.c.posted_at.is_(None) | (per_item.c.posted_at < cut),
                        func.coalesce(per_item.c.first, 0),
                    ),
                    else_=0,
                )
            ).label("views"),
        )
        .group_by(per_item.c.case_id)
        .subquery()
    )
    accounts = (
        select(
            copies.c.case_id.label("case_id"),
            (Account.confirmed_violations + Account.prior_violations).label("strikes"),
            sql_case((Account.flagged.is_(True), 1), else_=0).label("flagged"),
            Account.id,
        )
        .join(copies, copies.c.account_id == Account.id)
        .distinct()
        .subquery()
    )
    marks = (
        select(
            accounts.c.case_id,
            func.sum(accounts.c.strikes).label("strikes"),
            func.sum(accounts.c.flagged).label("flagged"),
        )
        .group_by(accounts.c.case_id)
        .subquery()
    )
    return (
        select(totals.c.case_id, totals.c.views, at_cut.c.views, marks.c.strikes, marks.c.flagged)
        .outerjoin(at_cut, at_cut.c.case_id == totals.c.case_id)
        .outerjoin(marks, marks.c.case_id == totals.c.case_id)
    )


# One case's, built once (every report and every copy joining a case reads it).
_CASE_FIGURES = _figures_statement(
    CaseItem.case_id == bindparam("case_id"), bindparam("cut", type_=ItemViews.at.type)
)


def _figures_of(rows: Iterable[Any]) -> dict[int, CaseFigures]:
    return {r[0]: CaseFigures(*(int(v or 0) for v in r[1:])) for r in rows}


def listed_figures(s: Session, item_ids: Collection[int], cut_at: datetime) -> CaseFigures:
    """``_CASE_FIGURES`` of a case that would hold exactly these items."""
    cut = bindparam("cut", cut_at, type_=ItemViews.at.type)
    statement = _figures_statement(true(), cut, listed=in_values(s, Item.id, item_ids))
    return _figures_of(s.execute(statement)).get(0, CaseFigures(0, 0, 0, 0))


def _case_figures_many(
    s: Session, case_ids: Sequence[int], cut_at: datetime
) -> dict[int, CaseFigures]:
    """``_CASE_FIGURES`` for many cases in one statement (a case without copies has
    none: its figures are zeros)."""
    cut = bindparam("cut", cut_at, type_=ItemViews.at.type)
    statement = _figures_statement(in_values(s, CaseItem.case_id, case_ids), cut)
    return _figures_of(s.execute(statement))
