"""A new case of many copies reads its triage figures on a second connection while the
report's transaction writes (PostgreSQL): the same figures, and the same priority, as
read inside the transaction. The threshold is lowered so that a dozen copies use it."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from takedown.domain.reports import ReportInput
from takedown.runtime import Runtime
from takedown.services.cases import intake
from takedown.services.cases.base import listed_figures
from takedown.services.registry.service import AccountInput, ItemInput
from takedown.store.models import Case, CaseItem
from tests.cases.helpers import parent_report


def _graph(rt: Runtime) -> None:
    rt.registry.upsert_account(AccountInput("acc-0", flagged=True), actor="t")
    rt.registry.upsert_item(ItemInput("orig", account_id="acc-0", view_count=5_000), actor="t")
    for i in range(1, 12):
        rt.registry.upsert_item(
            ItemInput(f"r{i}", account_id=f"acc-{i % 4}", reposts="orig", view_count=10 * i),
            actor="t",
        )
    rt.registry.record_views("orig", 9_000, actor="t")


def _report(rt: Runtime) -> str:
    report = ReportInput(**parent_report(["orig"]))  # type: ignore[arg-type]
    return rt.cases.submit_report(report, channel="api").case_number


def test_figures_read_aside_are_the_figures_read_in_the_transaction(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(intake, "FIGURES_ASIDE_MIN", 1)
    asides: list[int] = []
    original = intake.CaseIntake._figures_aside

    def counted(self, item_ids, now):  # type: ignore[no-untyped-def]
        asides.append(len(item_ids))
        return original(self, item_ids, now)

    monkeypatch.setattr(intake.CaseIntake, "_figures_aside", counted)
    _graph(rt)
    number = _report(rt)
    postgres = rt.engine.dialect.name == "postgresql"
    assert asides == ([12] if postgres else [])  # SQLite reads them in the transaction
    with rt.sessions() as s:
        case = s.scalars(select(Case).where(Case.public_id == number)).one()
        ids = s.scalars(select(CaseItem.item_id).where(CaseItem.case_id == case.id)).all()
        assert case.first_report_at is not None
        inside = rt.cases._figures(s, case, case.first_report_at)
        listed = listed_figures(s, ids, case.first_report_at - timedelta(hours=1))
        stored = (case.views_at_first_report, case.priority, json.loads(case.priority_factors))
    assert len(ids) == 12
    assert listed == inside
    assert inside.total_views == 9_000 + sum(10 * i for i in range(1, 12))
    assert inside.flagged == 1
    assert stored[0] == inside.total_views
    # Recomputed from the figures read inside the transaction: the same priority.
    with rt.sessions.begin() as s:
        case = s.scalars(select(Case).where(Case.public_id == number)).one()
        rt.cases._refresh_priority(s, case, case.first_report_at, inside)
        assert (case.priority, json.loads(case.priority_factors)) == stored[1:]
