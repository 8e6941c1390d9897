"""Reads for reviewers and the API: the queue of open cases, and a case with its copy
graph, accounts, reports, decisions and appeals.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from takedown.domain.access import Permission, Principal
from takedown.domain.cases import CaseState, Outcome
from takedown.domain.reports import Category
from takedown.errors import InvalidRequest
from takedown.ids import utcnow
from takedown.services.cases.base import ACTIVE_STATES, CaseBase, _categories, _hash_sources
from takedown.services.cases.copies import chunks
from takedown.services.cases.enforcement import account_parts, preview_account_measures
from takedown.services.cases.negative import negative_items
from takedown.services.cases.views import (
    CaseDetail,
    CaseSummary,
    CopyView,
    _clocks,
    _decision_view,
    _report_view,
)
from takedown.store.db import unit_of_work
from takedown.store.models import (
    Account,
    Appeal,
    AppliedMeasure,
    Case,
    CaseItem,
    CaseLocation,
    Decision,
    Item,
    ItemViews,
    Report,
)


class CaseReads(CaseBase):
    """The queue and a case's detail."""

    # -- reading -------------------------------------------------------------------------
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
            benign = negative_items(s, self._hashes.matcher, [r[1].id for r in rows[:copies_limit]])
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
                    negative_match=it.id in benign,
                )
                for ci, it, acc in rows
            ]
            accounts = s.execute(
                select(
                    Account.id,
                    Account.platform_id,
                    Account.handle,
                    Account.platform_status,
                    Account.status,
                    Account.flagged,
                    Account.flag_reason,
                    Account.confirmed_violations,
                    Account.prior_violations,
                    Account.platform_reinstated_at,
                    func.count(Item.id),
                )
                .join(Item, Item.account_id == Account.id)
                .join(CaseItem, CaseItem.item_id == Item.id)
                .where(CaseItem.case_id == case.id)
                .group_by(Account.id)
                .order_by(func.count(Item.id).desc())
            ).all()
            item_ids = [r[1].id for r in rows]
            parts = account_parts(s, item_ids)
            applied = dict(
                s.execute(
                    select(AppliedMeasure.account_id, AppliedMeasure.measure).where(
                        AppliedMeasure.case_id == case.id, AppliedMeasure.reversed_at.is_(None)
                    )
                ).all()
            )
            preview = (
                None
                if case.outcome == Outcome.VIOLATION.value
                else preview_account_measures(s, case, parts, self._policy.accounts)
            )
            reports = [
                _report_view(r, show_identity)
                for r in s.scalars(
                    select(Report)
                    .where(Report.case_id == case.id)
                    .order_by(Report.received_at, Report.id)
                )
            ]
            decisions = [
                _decision_view(d)
                for d in s.scalars(
                    select(Decision)
                    .where(Decision.case_id == case.id)
                    .order_by(Decision.decided_at, Decision.id)
                )
            ]
            appeals: list[dict[str, object]] = [
                {
                    "appellant": a.appellant,
                    "reason": a.reason,
                    "opened_at": a.opened_at,
                    "decided_at": a.decided_at,
                }
                for a in s.scalars(
                    select(Appeal)
                    .where(Appeal.case_id == case.id)
                    .order_by(Appeal.opened_at, Appeal.id)
                )
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
                        "account_id": a[1],
                        "handle": a[2],
                        "platform_status": a[3],
                        "status": a[4],
                        "flagged": a[5],
                        "flag_reason": a[6],
                        "strikes": a[7],
                        "prior_violations": a[8],
                        # the platform reactivated it while Takedown's suspension stands
                        "reinstated_by_platform": a[9] if a[4] != "active" else None,
                        "items": a[10],
                        "part": parts[a[0]].value if a[0] in parts else None,
                        "measure": applied.get(a[0]),
                    }
                    for a in accounts
                ],
                account_measures_preview=preview,
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
