"""Decisions and appeals through the API, and the pure rules behind them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from takedown.domain.cases import (
    CaseFacts,
    CaseState,
    DecisionInput,
    ItemEffect,
    Outcome,
    UserRole,
    check_appeal,
    decide,
)
from takedown.domain.reports import Category, ReporterRole
from takedown.domain.triage import Clock, ClockState, TriageInput, priority
from takedown.errors import Conflict, Forbidden, InvalidRequest
from takedown.runtime import Runtime
from takedown.services.registry.service import ItemInput
from tests.cases.helpers import platform_headers, user_headers

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def _facts(state=CaseState.RESTRICTED, minor=True, pending=None, deciders=()):
    return CaseFacts(state, minor, pending, frozenset(deciders))


def _d(outcome, user="u1", role=UserRole.MODERATOR, reasons="Written reasons here."):
    return DecisionInput(outcome, user, role, reasons)


def test_four_eyes_rule():
    first = decide(_facts(), _d(Outcome.NO_VIOLATION, role=UserRole.CHILD_SAFETY_SPECIALIST))
    assert first.new_state is CaseState.AWAITING_SECOND_REVIEW and not first.effective
    waiting = _facts(CaseState.AWAITING_SECOND_REVIEW, pending="u1")
    with pytest.raises(Conflict):
        decide(waiting, _d(Outcome.NO_VIOLATION, user="u1", role=UserRole.CHILD_SAFETY_SPECIALIST))
    with pytest.raises(Forbidden):
        decide(waiting, _d(Outcome.NO_VIOLATION, user="u2"))
    second = decide(
        waiting, _d(Outcome.NO_VIOLATION, user="u2", role=UserRole.CHILD_SAFETY_SPECIALIST)
    )
    assert second.effective and second.effect is ItemEffect.RESTORE
    assert decide(_facts(minor=False), _d(Outcome.NO_VIOLATION)).effect is ItemEffect.RESTORE
    assert decide(_facts(), _d(Outcome.VIOLATION)).effect is ItemEffect.REMOVE
    assert decide(_facts(), _d(Outcome.NEEDS_INFO)).new_state is CaseState.IN_REVIEW
    with pytest.raises(InvalidRequest):
        decide(_facts(), _d(Outcome.VIOLATION, reasons="ok"))
    with pytest.raises(Conflict):
        decide(_facts(CaseState.DECIDED), _d(Outcome.VIOLATION))
    with pytest.raises(Forbidden):
        decide(_facts(), _d(Outcome.VIOLATION, role=UserRole.LEGAL))
    with pytest.raises(Conflict):  # an appeal goes to someone new
        decide(_facts(CaseState.APPEALED, deciders={"u1"}), _d(Outcome.VIOLATION))


def test_appeal_window():
    check_appeal(CaseState.DECIDED, NOW, NOW + timedelta(days=180))
    with pytest.raises(Conflict) as err:
        check_appeal(CaseState.DECIDED, NOW, NOW + timedelta(days=200))
    assert err.value.code == "appeal_window_closed"
    with pytest.raises(Conflict) as err:
        check_appeal(CaseState.RESTRICTED, None, NOW)
    assert err.value.code == "not_appealable"


def test_priority_orders_by_severity_role_and_reach():
    def p(**kw):
        base = dict(
            categories=frozenset({Category.OTHER}),
            reporter_roles=frozenset({ReporterRole.USER}),
            hash_sources=frozenset(),
            account_confirmed_violations=0,
            accounts_flagged=0,
            total_views=0,
            views_last_hour=0,
        )
        base.update(kw)
        return priority(TriageInput(**base))[0]

    assert p(categories=frozenset({Category.CSAM})) > p(categories=frozenset({Category.NCII}))
    assert p(reporter_roles=frozenset({ReporterRole.PARENT_GUARDIAN})) > p()
    assert p(total_views=100_000) > p(total_views=100)
    assert p(views_last_hour=10_000) > p()
    assert p(accounts_flagged=1) > p()
    assert p(hash_sources=frozenset({"ncmec"})) > p(hash_sources=frozenset({"other"})) > p()
    score, factors = priority(
        TriageInput(frozenset({Category.CSAM}), frozenset(), frozenset(), 0, 0, 0, 0)
    )
    assert score == sum(f.points for f in factors) and factors[0].name == "severity"


def test_clock_states():
    c = Clock("decision", NOW, NOW + timedelta(hours=4), None)
    assert c.state(NOW + timedelta(hours=1)) is ClockState.ON_TIME
    assert c.state(NOW + timedelta(hours=3, minutes=30)) is ClockState.DUE_SOON
    assert c.state(NOW + timedelta(hours=5)) is ClockState.OVERDUE
    met = Clock("decision", NOW, NOW + timedelta(hours=4), NOW + timedelta(hours=9))
    assert met.state(NOW + timedelta(hours=10)) is ClockState.MET


@pytest.fixture
def decided_case(rt: Runtime, client) -> tuple[str, dict, dict[str, dict[str, str]]]:
    rt.registry.upsert_item(ItemInput("pic-1", account_id="acc"), actor="t")
    receipt = client.post(
        "/v1/reports",
        json={
            "category": "ncii",
            "reporter_role": "user",
            "item_ids": ["pic-1"],
            "explanation": "Shared without consent.",
            "good_faith": True,
            "reporter_name": "Ann",
            "reporter_email": "ann@example.org",
        },
    ).json()
    users = {r: user_headers(rt, r, r) for r in ("moderator", "child_safety_specialist")}
    r = client.post(
        f"/v1/cases/{receipt['case_number']}/decisions",
        headers=users["moderator"],
        json={"outcome": "no_violation", "reasons": "Not intimate imagery."},
    )
    assert r.json()["effective"] is True  # not a minor-safety case: one reviewer suffices
    return receipt["case_number"], receipt, users


def test_decision_errors(client, decided_case):
    case_id, _, users = decided_case
    r = client.post(
        f"/v1/cases/{case_id}/decisions",
        headers=users["moderator"],
        json={"outcome": "violation", "policy": "ncii", "reasons": "Changed my mind about it."},
    )
    assert r.status_code == 409 and r.json()["code"] == "case_decided"
    r = client.post(
        "/v1/cases/01NOSUCHCASE/decisions",
        headers=users["moderator"],
        json={"outcome": "violation", "policy": "x", "reasons": "Reasons here."},
    )
    assert r.status_code == 404 and r.json()["code"] == "case_not_found"
    r = client.post(
        f"/v1/cases/{case_id}/decisions",
        headers=users["moderator"],
        json={"outcome": "maybe", "reasons": "Reasons here."},
    )
    assert r.json()["code"] == "invalid_outcome"
    r = client.post(
        f"/v1/cases/{case_id}/decisions",
        headers=users["moderator"],
        json={"outcome": "violation", "reasons": "Reasons here."},
    )
    assert r.json()["code"] == "policy_required"
    r = client.post(
        f"/v1/cases/{case_id}/decisions",
        headers=users["moderator"],
        json={"outcome": "needs_info", "reasons": "short"},
    )
    assert r.json()["code"] in ("reasons_required", "case_decided")


def test_reporter_appeal_reopens_for_a_different_reviewer(rt: Runtime, client, decided_case):
    case_id, receipt, users = decided_case
    r = client.post(
        "/v1/reports/appeal",
        json={
            "case_number": case_id,
            "token": receipt["status_token"],
            "reason": "It is me in the picture and I did not consent.",
        },
    )
    assert r.status_code == 200 and r.json()["status"] == "appeal_open"
    r = client.post(
        f"/v1/cases/{case_id}/decisions",
        headers=users["moderator"],
        json={"outcome": "violation", "policy": "ncii", "reasons": "On appeal."},
    )
    assert r.status_code == 409 and r.json()["code"] == "same_reviewer"
    r = client.post(
        f"/v1/cases/{case_id}/decisions",
        headers=users["child_safety_specialist"],
        json={
            "outcome": "violation",
            "policy": "ncii",
            "reasons": "On appeal: the person depicted did not consent.",
        },
    )
    assert r.status_code == 201 and r.json()["kind"] == "appeal"
    status = client.post(
        "/v1/reports/status", json={"case_number": case_id, "token": receipt["status_token"]}
    ).json()
    assert status["decision"]["outcome"] == "violation"
    item = client.get("/v1/items/pic-1", headers=platform_headers(rt)).json()
    assert item["visibility"] == "removed"


def test_uploader_appeal_through_the_platform(rt: Runtime, client, decided_case):
    case_id, receipt, _ = decided_case
    p = platform_headers(rt)
    r = client.post(f"/v1/cases/{case_id}/appeals", headers=p, json={"reason": "short"})
    assert r.status_code == 422 and r.json()["code"] == "reasons_required"
    r = client.post(
        f"/v1/cases/{case_id}/appeals",
        headers=p,
        json={"reason": "This is my own photo, shared by me."},
    )
    assert r.status_code == 201 and r.json()["state"] == "appealed"
    r = client.post(
        f"/v1/cases/{case_id}/appeals",
        headers=p,
        json={"reason": "A second appeal while one is open."},
    )
    assert r.status_code == 409 and r.json()["code"] == "not_appealable"
    r = client.post(
        "/v1/reports/appeal",
        json={"case_number": case_id, "token": "nope", "reason": "Please look again at this."},
    )
    assert r.status_code == 404


def test_every_state_change_is_audited(rt: Runtime, client, decided_case):
    from sqlalchemy import select

    from takedown.store.models import AuditEvent

    with rt.sessions() as s:
        actions = set(s.scalars(select(AuditEvent.action)))
    assert {
        "item.registered",
        "report.received",
        "case.opened",
        "item.restrict",
        "decision.first",
        "user.created",
    } <= actions or {
        "item.registered",
        "report.received",
        "case.opened",
        "decision.first",
    } <= actions


def test_bank_and_key_changes_are_audited(rt: Runtime):
    from sqlalchemy import select

    from takedown.domain.hashlists import HashRecord
    from takedown.store.models import AuditEvent

    rt.banks.create_bank("b", actor="tester")
    rt.banks.add_hashes("b", [HashRecord("md5", "a" * 32)], actor="tester")
    [entry], _ = rt.banks.list_entries("b")
    rt.banks.set_entry_enabled(entry.id, False, actor="tester", reason="false positive")
    rt.banks.update_bank("b", actor="tester", pdq_threshold=20)
    view, _ = rt.api_keys.create("k", ["screen"], actor="tester")
    rt.api_keys.revoke(view.id, actor="tester")
    with rt.sessions() as s:
        actions = [
            a
            for (a,) in s.execute(
                select(AuditEvent.action)
                .where(AuditEvent.actor == "tester")
                .order_by(AuditEvent.id)
            )
        ]
    assert actions == [
        "bank.created",
        "bank.entries_added",
        "entry.disabled",
        "bank.updated",
        "apikey.created",
        "apikey.revoked",
    ]


def test_earlier_deciders_stand_aside_in_an_appeals_second_review():
    waiting = CaseFacts(CaseState.AWAITING_SECOND_REVIEW, True, "u3", frozenset({"u1"}), True)
    with pytest.raises(Conflict):
        decide(waiting, _d(Outcome.NO_VIOLATION, user="u1", role=UserRole.CHILD_SAFETY_SPECIALIST))
    ok = decide(waiting, _d(Outcome.NO_VIOLATION, user="u4", role=UserRole.CHILD_SAFETY_SPECIALIST))
    assert ok.effective


def test_every_action_carries_a_statement_of_reasons(rt: Runtime, client):
    import json

    from sqlalchemy import select

    from takedown.store.models import OutboxMessage

    rt.registry.upsert_item(ItemInput("pic-9", account_id="acc"), actor="t")
    receipt = client.post(
        "/v1/reports",
        json={
            "category": "csam",
            "reporter_role": "user",
            "item_ids": ["pic-9"],
            "explanation": "Abuse material.",
            "good_faith": True,
        },
    ).json()
    spec = user_headers(rt, "spec", "child_safety_specialist")
    client.post(
        f"/v1/cases/{receipt['case_number']}/decisions",
        headers=spec,
        json={"outcome": "violation", "policy": "csam", "reasons": "A minor is depicted here."},
    )
    with rt.sessions() as s:
        payloads = [
            json.loads(m.full_payload)
            for m in s.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.target_type == "item")
                .order_by(OutboxMessage.id)
            )
        ]
    restrict, remove = (p["statement_of_reasons"] for p in payloads)
    for sor in (restrict, remove):
        assert set(sor) >= {
            "measure",
            "territorial_scope",
            "duration",
            "facts",
            "automated_detection",
            "automated_decision",
            "ground",
            "redress",
        }
        assert sor["ground_type"] == "illegal_content" and "appeal" in sor["redress"]
    assert restrict["automated_decision"] == "fully" and "review" in restrict["measure"]
    assert remove["automated_decision"] == "not_automated"
    assert "A minor is depicted here." in remove["facts"]
    assert payloads[0]["decision"] is None and payloads[1]["decision"]  # what caused it


def test_statements_for_other_content_use_the_terms():
    from takedown.domain.statements import statement_for

    sor = statement_for("restore", {Category.OTHER}, reason="no_violation", policy="spam")
    assert sor.ground_type == "incompatible_content" and "spam" in sor.ground
    sor = statement_for("restrict", {Category.NCII}, reason="hash_match")
    assert sor.automated_detection and "hash match" in sor.facts


def _confirm(rt: Runtime, client, item: str, category: str, spec: dict[str, str]) -> str:
    r = client.post(
        "/v1/reports",
        json={
            "category": category,
            "reporter_role": "user",
            "item_ids": [item],
            "explanation": "Reported content.",
            "good_faith": True,
            "reporter_name": "Ann",
            "reporter_email": "ann@example.org",
        },
    )
    case_id = r.json()["case_number"]
    r = client.post(
        f"/v1/cases/{case_id}/decisions",
        headers=spec,
        json={"outcome": "violation", "policy": category, "reasons": "Confirmed on review."},
    )
    assert r.status_code == 201, r.text
    return case_id


def test_minor_safety_suspends_and_queues_the_accounts_other_items(rt: Runtime, client):
    from sqlalchemy import select

    from takedown.store.models import Account, Case, CaseItem, Item

    for i in ("x1", "x2", "x3"):
        rt.registry.upsert_item(ItemInput(i, account_id="poster"), actor="t")
    spec = user_headers(rt, "spec", "child_safety_specialist")
    case_id = _confirm(rt, client, "x1", "csam", spec)
    with rt.sessions() as s:
        assert s.scalar(select(Account.status).where(Account.platform_id == "poster")) == (
            "suspended"
        )
        sweep = s.execute(
            select(Case.public_id, Case.state, Item.platform_id, CaseItem.reason)
            .join(CaseItem, CaseItem.case_id == Case.id)
            .join(Item, Item.id == CaseItem.item_id)
            .where(Case.public_id != case_id)
        ).all()
    # A second confirmed case against the same account terminates it.
    _confirm(rt, client, "x2", "csam", spec)
    with rt.sessions() as s:
        assert s.scalar(select(Account.status).where(Account.platform_id == "poster")) == (
            "terminated"
        )
    assert {(row[2], row[3]) for row in sweep} == {("x2", "same_account"), ("x3", "same_account")}
    assert {row[1] for row in sweep} == {"open"}


def test_ncii_warns_first_then_suspends(rt: Runtime, client):
    import json

    from sqlalchemy import select

    from takedown.store.models import Account, OutboxMessage

    for i in ("n1", "n2"):
        rt.registry.upsert_item(ItemInput(i, account_id="sharer"), actor="t")
    mod = user_headers(rt, "mod", "moderator")
    _confirm(rt, client, "n1", "ncii", mod)
    with rt.sessions() as s:
        assert s.scalar(select(Account.status).where(Account.platform_id == "sharer")) == ("active")
        warn = (
            s.scalars(select(OutboxMessage).where(OutboxMessage.topic == "account.warn"))
            .one()
            .full_payload
        )
    assert json.loads(warn)["statement_of_reasons"]["ground"].endswith("(DSA art. 23).")
    _confirm(rt, client, "n2", "ncii", mod)
    with rt.sessions() as s:
        assert s.scalar(select(Account.status).where(Account.platform_id == "sharer")) == (
            "suspended"
        )


def test_manifestly_unfounded_reporters_are_warned_then_limited(rt: Runtime, client):
    from sqlalchemy import select

    from takedown.store.models import AuditEvent, MailMessage

    mod = user_headers(rt, "mod", "moderator")
    spec = user_headers(rt, "spec", "child_safety_specialist")
    body = {
        "category": "csam",
        "reporter_role": "user",
        "explanation": "Abuse material.",
        "good_faith": True,
        "reporter_email": "Troll@Example.org",
    }

    def unfounded_report(n: int) -> dict:
        rt.registry.upsert_item(ItemInput(f"cat-{n}", account_id=f"owner-{n}"), actor="t")
        r = client.post("/v1/reports", json={**body, "item_ids": [f"cat-{n}"]}).json()
        case_id = r["case_number"]
        client.post(
            f"/v1/cases/{case_id}/decisions",
            headers=mod,
            json={"outcome": "no_violation", "reasons": "A photo of a cat, obviously."},
        )
        d = client.post(
            f"/v1/cases/{case_id}/decisions",
            headers=spec,
            json={
                "outcome": "no_violation",
                "reasons": "Agreed: a cat, nothing else.",
                "manifestly_unfounded": True,
            },
        )
        assert d.status_code == 201, d.text
        return r

    assert unfounded_report(1)["restricted_items"] == 1
    assert unfounded_report(2)["restricted_items"] == 1  # the second one warns
    assert unfounded_report(3)["restricted_items"] == 1  # the third one limits
    # Now the reporter's reports are still received and reviewed, but hide nothing first.
    rt.registry.upsert_item(ItemInput("cat-4", account_id="owner-4"), actor="t")
    r = client.post("/v1/reports", json={**body, "item_ids": ["cat-4"]})
    assert r.status_code == 201 and r.json()["restricted_items"] == 0
    with rt.sessions() as s:
        actions = set(s.scalars(select(AuditEvent.action)))
        subjects = set(s.scalars(select(MailMessage.subject)))
    assert {"reporter.warn", "reporter.limit", "report.from_limited_reporter"} <= actions
    assert {"About your reports", "Your reports are limited"} <= subjects
    r = client.post(
        f"/v1/cases/{r.json()['case_number']}/decisions",
        headers=mod,
        json={
            "outcome": "violation",
            "policy": "csam",
            "reasons": "Not unfounded this time.",
            "manifestly_unfounded": True,
        },
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_request"
