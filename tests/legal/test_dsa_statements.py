"""Statements of reasons the DSA Transparency Database stores (issue #23, point 8) and
one territorial scope for the user and the database (point 9).

The database is a local server (tests/legal/dsa_server.py) that validates by the
Commission's current documentation independently of Takedown's validator
(domain/dsa_lists.py). Actions are taken through the public API; the statements are
collected and sent by the service the runtime wires from settings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from takedown.config import Settings
from takedown.domain import dsa_lists
from takedown.domain.dsa_lists import validate_statement
from takedown.domain.reports import Category
from takedown.domain.statements import (
    WORLDWIDE,
    statement_for,
    territorial_scope,
    transparency_db_statement,
)
from takedown.errors import ConfigError
from takedown.ids import utcnow
from takedown.runtime import Runtime
from takedown.store.db import unit_of_work
from takedown.store.models import AuditEvent, DsaStatement, MailMessage
from tests.cases.helpers import user_headers
from tests.legal.dsa_server import TOKEN, FakeDatabase, check, dsa_database
from tests.legal.helpers import confirmed_case

ALERTS = "legal-alerts@platform.example"


@pytest.fixture
def dsadb() -> Iterator[FakeDatabase]:
    with dsa_database() as db:
        yield db


@pytest.fixture
def dsa_scope() -> str:
    return "worldwide"  # a test parametrizes it to set TAKEDOWN_DSA_TERRITORIAL_SCOPE


@pytest.fixture
def settings(database_url: str, tmp_path: Path, dsadb: FakeDatabase, dsa_scope: str) -> Settings:
    """The runtime is wired to the local database."""
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        dsa_api_url=dsadb.url,
        dsa_api_token=TOKEN,
        legal_alert_email=ALERTS,
        dsa_territorial_scope=dsa_scope,
    )


def _statement(category: Category, action: str = "remove", **kw: object) -> dict[str, object]:
    sor = statement_for(action, {category}, reason="confirmed_violation", policy="spam")
    return transparency_db_statement(
        sor,
        puid=f"takedown-{category.value}-{action}",
        action=action,
        categories={category},
        media_types={"image"},
        content_date="2026-03-01",
        application_date="2026-03-02",
        source_type="SOURCE_ARTICLE_16",
        **kw,  # type: ignore[arg-type]
    )


# -- the lists: one test per category used -----------------------------------------------
@pytest.mark.parametrize(
    ("category", "db_category", "keyword", "ground"),
    [
        (
            Category.CSAM,
            "STATEMENT_CATEGORY_PROTECTION_OF_MINORS",
            "KEYWORD_CHILD_SEXUAL_ABUSE_MATERIAL",
            "DECISION_GROUND_ILLEGAL_CONTENT",
        ),
        (
            Category.MINOR_EXPLOITATION,
            "STATEMENT_CATEGORY_PROTECTION_OF_MINORS",
            "KEYWORD_GROOMING_SEXUAL_ENTICEMENT_MINORS",
            "DECISION_GROUND_ILLEGAL_CONTENT",
        ),
        (
            Category.NCII,
            "STATEMENT_CATEGORY_CYBER_VIOLENCE",
            "KEYWORD_NON_CONSENSUAL_IMAGE_SHARING",
            "DECISION_GROUND_ILLEGAL_CONTENT",
        ),
        (
            Category.OTHER,
            "STATEMENT_CATEGORY_OTHER_VIOLATION_TC",
            None,
            "DECISION_GROUND_INCOMPATIBLE_CONTENT",
        ),
    ],
)
@pytest.mark.parametrize("action", ["restrict", "remove", "demonetize", "suspend", "terminate"])
def test_each_category_uses_todays_lists_and_passes_both_checks(
    category: Category, db_category: str, keyword: str | None, ground: str, action: str
):
    body = _statement(category, action)
    assert body["category"] == db_category
    assert body.get("category_specification") == ([keyword] if keyword else None)
    assert keyword is None or keyword in dsa_lists.CATEGORIES[db_category]
    assert body["decision_ground"] == ground
    assert validate_statement(body) == {}
    assert check(body) == {}  # the protocol server agrees


def test_the_lists_are_dated_and_todays():
    assert dsa_lists.LIST_VERSION == "2025-07-01"
    for retired in (
        "STATEMENT_CATEGORY_NON_CONSENSUAL_BEHAVIOUR",
        "STATEMENT_CATEGORY_SCOPE_OF_PLATFORM_SERVICE",
    ):
        assert retired not in dsa_lists.CATEGORIES
    assert "KEYWORD_IMAGE_BASED_SEXUAL_ABUSE" not in dsa_lists.KEYWORDS
    # Every keyword the validator knows, the database's documentation lists too.
    allowed = check(
        {**_statement(Category.OTHER), "category_specification": sorted(dsa_lists.KEYWORDS)}
    )
    assert "category_specification" not in allowed


def test_a_case_of_several_categories_names_them_all():
    sor = statement_for("remove", {Category.CSAM, Category.NCII}, reason="confirmed_violation")
    body = transparency_db_statement(
        sor,
        puid="takedown-x",
        action="remove",
        categories={Category.CSAM, Category.NCII, Category.OTHER},
        media_types={"video"},
        content_date="2026-03-01",
        application_date="2026-03-02",
        source_type="SOURCE_VOLUNTARY",
    )
    assert body["category"] == "STATEMENT_CATEGORY_PROTECTION_OF_MINORS"
    assert body["category_addition"] == ["STATEMENT_CATEGORY_CYBER_VIOLENCE"]
    assert body["category_specification"] == [
        "KEYWORD_CHILD_SEXUAL_ABUSE_MATERIAL",
        "KEYWORD_NON_CONSENSUAL_IMAGE_SHARING",
    ]
    assert validate_statement(body) == {} and check(body) == {}


# -- the validator, against the protocol server -------------------------------------------
OLD_NCII = {
    "category": "STATEMENT_CATEGORY_NON_CONSENSUAL_BEHAVIOUR",
    "category_specification": [
        "KEYWORD_IMAGE_BASED_SEXUAL_ABUSE",
        "KEYWORD_NON_CONSENSUAL_IMAGE_SHARING",
    ],
}
# (change, fields both must refuse)
BOTH_REFUSE = [
    (OLD_NCII, {"category", "category_specification"}),
    ({"category": "STATEMENT_CATEGORY_SCOPE_OF_PLATFORM_SERVICE"}, {"category"}),
    ({"decision_ground": None}, {"decision_ground"}),
    ({"decision_visibility": None}, {"decision_visibility"}),
    ({"decision_visibility": ["DECISION_VISIBILITY_OTHER"]}, {"decision_visibility_other"}),
    ({"content_type": ["CONTENT_TYPE_OTHER"]}, {"content_type_other"}),
    ({"illegal_content_explanation": None}, {"illegal_content_explanation"}),
    ({"illegal_content_explanation": "x" * 2001}, {"illegal_content_explanation"}),
    ({"decision_facts": "x" * 5001}, {"decision_facts"}),
    ({"content_date": "01/03/2026"}, {"content_date"}),
    ({"content_date": "1999-12-31"}, {"content_date"}),
    ({"application_date": "2019-12-31"}, {"application_date"}),
    ({"end_date_visibility_restriction": "2039-01-01"}, {"end_date_visibility_restriction"}),
    ({"automated_detection": "maybe"}, {"automated_detection"}),
    ({"automated_decision": "AUTOMATED_DECISION_SOMETIMES"}, {"automated_decision"}),
    ({"source_type": "SOURCE_USER"}, {"source_type"}),
    ({"territorial_scope": ["US"]}, {"territorial_scope"}),
    ({"puid": "takedown 1"}, {"puid"}),
    ({"puid": "p" * 501}, {"puid"}),
    ({"content_language": "english"}, {"content_language"}),
]
# Stricter than the database on purpose (it would store these, or silently drop parts).
ONLY_TAKEDOWN_REFUSES = [
    ({"category_specification": ["KEYWORD_NUDITY"]}, "category_specification"),
    ({"incompatible_content_ground": "Terms"}, "incompatible_content_ground"),
    ({"reporter_email": "ann@example.org"}, "reporter_email"),
    ({"decision_facts": "Posted by ann@example.org."}, "decision_facts"),
    (
        {"illegal_content_explanation": "See https://social.example/p/1"},
        "illegal_content_explanation",
    ),
    ({"territorial_scope": None}, "territorial_scope"),
    ({"end_date_visibility_restriction": "2026-03-01"}, "end_date_visibility_restriction"),
]


@pytest.mark.parametrize(("change", "fields"), BOTH_REFUSE)
def test_the_validator_and_the_database_refuse_the_same_mistakes(
    change: dict[str, object], fields: set[str]
):
    body = {**_statement(Category.NCII), **change}
    mine, theirs = validate_statement(body), check(body)
    assert fields <= set(mine), mine
    assert fields <= set(theirs), theirs


@pytest.mark.parametrize(("change", "field"), ONLY_TAKEDOWN_REFUSES)
def test_the_validator_is_stricter_where_it_means_to_be(change: dict[str, object], field: str):
    body = {**_statement(Category.NCII), **change}
    assert field in validate_statement(body)
    assert check(body) == {}


def test_a_retired_value_is_named_with_todays():
    errors = validate_statement({**_statement(Category.NCII), **OLD_NCII})
    assert "STATEMENT_CATEGORY_CYBER_VIOLENCE" in " ".join(errors["category"])
    assert "KEYWORD_NON_CONSENSUAL_IMAGE_SHARING" in " ".join(errors["category_specification"])


def test_the_database_answers_an_old_style_statement_with_422(dsadb: FakeDatabase):
    body = {**_statement(Category.NCII), **OLD_NCII}
    r = httpx.post(dsadb.url, json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 422
    assert set(r.json()["errors"]) == {"category", "category_specification"}
    assert r.json()["message"].startswith("The selected category is invalid.")
    assert dsadb.stored == []


# -- territorial scope: one setting, told and sent alike ----------------------------------
@pytest.mark.parametrize(
    ("setting", "countries"),
    [
        ("worldwide", dsa_lists.EU_EEA),
        ("", dsa_lists.EU_EEA),
        ("eea", dsa_lists.EU_EEA),
        ("EU", dsa_lists.EU),
        ("de, at", ("AT", "DE")),
    ],
)
def test_the_user_and_the_database_are_told_the_same_scope(
    setting: str, countries: tuple[str, ...]
):
    scope = territorial_scope(setting)
    sor = statement_for("remove", {Category.NCII}, reason="confirmed_violation", scope=scope)
    body = transparency_db_statement(
        sor,
        puid="takedown-s",
        action="remove",
        categories={Category.NCII},
        media_types=set(),
        content_date="2026-03-01",
        application_date="2026-03-02",
        source_type="SOURCE_VOLUNTARY",
    )
    assert body["territorial_scope"] == sorted(countries)
    assert sor.territorial_scope == scope.sentence
    if countries == ("AT", "DE"):
        assert "AT, DE" in sor.territorial_scope
    elif countries == dsa_lists.EU:
        assert "European Union" in sor.territorial_scope
    elif setting.lower() in ("", "worldwide"):
        assert sor.territorial_scope.startswith("Worldwide") and scope == WORLDWIDE


def test_a_scope_the_database_cannot_take_is_refused_at_start(tmp_path: Path):
    with pytest.raises(ValueError, match="US"):
        territorial_scope("DE,US")
    with pytest.raises((ValueError, ConfigError)):
        Settings(data_dir=tmp_path, dsa_territorial_scope="DE,US")


@pytest.mark.parametrize("dsa_scope", ["DE,AT"])
def test_the_scope_setting_reaches_both_statements_end_to_end(
    rt: Runtime, client, dsadb: FakeDatabase
):
    confirmed_case(rt, client)
    run = rt.dsa.submit_due()
    assert run.refused == 0 and run.submitted == run.created
    with unit_of_work(rt.sessions, write=False) as s:
        from takedown.store.models import OutboxMessage

        told = [
            json.loads(m.full_payload)["statement_of_reasons"]["territorial_scope"]
            for m in s.scalars(select(OutboxMessage))
        ]
    assert told and all(t == "These countries: AT, DE." for t in told), told
    assert {tuple(st["territorial_scope"]) for st in dsadb.stored} == {("AT", "DE")}


# -- end to end: actions through the API → statements stored -------------------------------
def _confirm(rt: Runtime, client, item: str, category: str, account: str) -> str:
    from takedown.services.registry.service import ItemInput

    rt.registry.upsert_item(ItemInput(item, account_id=account), actor="t")
    spec = user_headers(rt, f"spec-{item}", "child_safety_specialist")
    r = client.post(
        "/v1/reports",
        json={
            "category": category,
            "reporter_role": "user",
            "item_ids": [item],
            "explanation": "Reported content (a benign stand-in in tests).",
            "good_faith": True,
            "reporter_name": "Ann",
            "reporter_email": "ann@example.org",
        },
    )
    assert r.status_code in (200, 201), r.text
    case_id = r.json()["case_number"]
    r = client.post(
        f"/v1/cases/{case_id}/decisions",
        headers=spec,
        json={"outcome": "violation", "policy": category, "reasons": "Confirmed on review."},
    )
    assert r.status_code == 201, r.text
    return case_id


CATEGORY_CASES = {
    "csam": "KEYWORD_CHILD_SEXUAL_ABUSE_MATERIAL",
    "minor_sexual_exploitation": "KEYWORD_GROOMING_SEXUAL_ENTICEMENT_MINORS",
    "ncii": "KEYWORD_NON_CONSENSUAL_IMAGE_SHARING",
}


def _rows(rt: Runtime) -> list[DsaStatement]:
    with unit_of_work(rt.sessions, write=False) as s:
        return list(s.scalars(select(DsaStatement).order_by(DsaStatement.id)))


def test_every_category_is_stored_through_the_batch_endpoint(
    rt: Runtime, client, dsadb: FakeDatabase
):
    for i, category in enumerate([*CATEGORY_CASES, "other"]):
        _confirm(rt, client, f"e{i}", category, f"acct-{i}")
    legal = user_headers(rt, "lex", "legal")
    before = client.get("/v1/legal/dsa/statements/summary", headers=legal).json()
    assert before["pending"] == 0 and before["oldest_unsent_action_at"]  # not yet written
    run = rt.dsa.submit_due()
    rows = _rows(rt)
    assert run.created == len(rows) > 4 and run.submitted == len(rows) and run.refused == 0
    assert {r.state for r in rows} == {"submitted"} and all(r.db_uuid for r in rows)
    assert {st["puid"] for st in dsadb.stored} == {r.puid for r in rows}
    # Many statements went in one call to the batch endpoint.
    assert [c for c in dsadb.calls if c[0] == "/api/v1/statements"] == [
        ("/api/v1/statements", len(rows), 201)
    ]
    categories = {st["category"] for st in dsadb.stored}
    assert categories == {
        "STATEMENT_CATEGORY_PROTECTION_OF_MINORS",
        "STATEMENT_CATEGORY_CYBER_VIOLENCE",
        "STATEMENT_CATEGORY_OTHER_VIOLATION_TC",
    }
    keywords = {k for st in dsadb.stored for k in st.get("category_specification") or []}
    assert set(CATEGORY_CASES.values()) <= keywords
    for st in dsadb.stored:  # and each passes Takedown's own checks
        sent = {k: v for k, v in st.items() if k not in ("uuid", "platform_name")}
        assert validate_statement(sent) == {}
    summary = client.get("/v1/legal/dsa/statements/summary", headers=legal).json()
    assert summary == {
        "pending": 0,
        "submitted": len(rows),
        "failed": 0,
        "oldest_unsent_action_at": None,
        "oldest_unsent_age_seconds": None,
    }


def test_statements_carry_no_personal_data(rt: Runtime, client, dsadb: FakeDatabase):
    confirmed_case(rt, client)
    rt.dsa.submit_due()
    text = json.dumps(dsadb.stored) + " ".join(r.payload for r in _rows(rt))
    for personal in ("p1", "acc-a", "poster_a", "social.example", "Apparent child", "@"):
        assert personal not in text, personal
    assert dsadb.stored


def test_5xx_and_429_are_retried_with_backoff(rt: Runtime, client, dsadb: FakeDatabase):
    confirmed_case(rt, client)
    dsadb.fail += [503, 429]
    now = utcnow()
    first = rt.dsa.submit_due(now)
    assert first.retrying == first.created and first.submitted == 0 and first.refused == 0
    assert {r.state for r in _rows(rt)} == {"pending"}
    assert rt.dsa.submit_due(now).submitted == 0  # backing off: nothing is due yet
    second = rt.dsa.submit_due(now + timedelta(hours=1))  # the 429
    assert second.retrying == first.created
    third = rt.dsa.submit_due(now + timedelta(hours=7))
    assert third.submitted == first.created and {r.state for r in _rows(rt)} == {"submitted"}
    assert rt.dsa.summary().failed == 0 and len(dsadb.stored) == first.created


def test_a_refused_statement_fails_alerts_and_waits_for_a_person(
    rt: Runtime, client, dsadb: FakeDatabase
):
    """The Commission changes a list again: the database refuses protection-of-minors
    statements Takedown still thinks right. They fail (not retried), the others in the
    same batch are stored, the legal team is alerted, and a requeue sends them once the
    cause is fixed."""
    _confirm(rt, client, "m1", "csam", "acct-m")
    _confirm(rt, client, "n1", "ncii", "acct-n")
    dsadb.retire("category", "STATEMENT_CATEGORY_PROTECTION_OF_MINORS")
    now = utcnow()
    run = rt.dsa.submit_due(now)
    rows = _rows(rt)
    minors = {
        r.puid
        for r in rows
        if json.loads(r.payload)["category"] == "STATEMENT_CATEGORY_PROTECTION_OF_MINORS"
    }
    assert minors and run.refused == len(minors) and run.submitted == len(rows) - len(minors)
    assert {st["puid"] for st in dsadb.stored} == {r.puid for r in rows} - minors
    failed = [r for r in rows if r.state == "failed"]
    assert {r.puid for r in failed} == minors
    assert all(r.last_status == 422 and "category" in json.loads(r.errors or "{}") for r in failed)
    # Not retried: later runs send nothing.
    calls = len(dsadb.calls)
    assert rt.dsa.submit_due(now + timedelta(days=1)).submitted == 0
    assert len(dsadb.calls) == calls
    # Alerted once: an audit event per statement, one alert event and one mail.
    with unit_of_work(rt.sessions, write=False) as s:
        actions = list(
            s.scalars(select(AuditEvent.action).where(AuditEvent.object_type == "dsa_statement"))
        )
        mails = list(s.scalars(select(MailMessage).where(MailMessage.to_address == ALERTS)))
    assert actions.count("legal.dsa_statement_failed") == len(minors)
    assert actions.count("legal.dsa_statements_failed") == 1
    assert len(mails) == 1 and "STATEMENT_CATEGORY_PROTECTION_OF_MINORS" not in mails[0].subject
    assert all(p in mails[0].body for p in minors) and "category" in mails[0].body
    # Visible in the legal queue's API, failed first.
    legal = user_headers(rt, "lex", "legal")
    listed = client.get("/v1/legal/dsa/statements?state=failed", headers=legal).json()
    assert {x["puid"] for x in listed} == minors
    assert all(x["errors"]["category"] and x["last_status"] == 422 for x in listed)
    summary = client.get("/v1/legal/dsa/statements/summary", headers=legal).json()
    assert summary["failed"] == len(minors) and summary["oldest_unsent_age_seconds"] >= 0
    assert client.get("/v1/legal/dsa/statements", headers=legal).json()[0]["state"] == "failed"
    # Requeue: only legal staff, only failed statements, audited.
    puid = sorted(minors)[0]
    moderator = user_headers(rt, "mod", "moderator")
    assert (
        client.post(f"/v1/legal/dsa/statements/{puid}/retry", headers=moderator).status_code == 403
    )
    r = client.post("/v1/legal/dsa/statements/takedown-nope/retry", headers=legal)
    assert r.status_code == 404 and r.json()["code"] == "dsa_statement_not_found"
    stored_one = sorted({r.puid for r in rows} - minors)[0]
    r = client.post(f"/v1/legal/dsa/statements/{stored_one}/retry", headers=legal)
    assert r.status_code == 409 and r.json()["code"] == "dsa_statement_not_failed"
    dsadb.removed.clear()  # the cause is fixed
    r = client.post(f"/v1/legal/dsa/statements/{puid}/retry", headers=legal)
    assert r.status_code == 200 and r.json()["state"] == "pending", r.text
    again = rt.dsa.submit_due(now + timedelta(days=1))
    assert again.submitted == 1 and dsadb.calls[-1][:2] == ("/api/v1/statement", 1)  # one: single
    with unit_of_work(rt.sessions, write=False) as s:
        requeued = s.scalars(
            select(AuditEvent).where(AuditEvent.action == "legal.dsa_statement_requeued")
        ).one()
    assert requeued.object_id == puid and requeued.actor != "system"


def test_the_validator_keeps_an_old_style_statement_from_leaving(
    rt: Runtime, client, dsadb: FakeDatabase
):
    """A statement written by older code (the pre-2025 NCII values) is refused before
    it is sent, and the requeue rebuilds it with today's lists."""
    _confirm(rt, client, "n2", "ncii", "acct-o")
    rt.dsa.collect()
    with unit_of_work(rt.sessions) as s:
        for row in s.scalars(select(DsaStatement)):
            row.payload = json.dumps({**json.loads(row.payload), **OLD_NCII})
    run = rt.dsa.submit_due()
    rows = _rows(rt)
    assert run.refused == len(rows) and run.submitted == 0 and dsadb.calls == []
    errors = json.loads(rows[0].errors or "{}")
    assert "retired" in " ".join(errors["category"]) and rows[0].last_status is None
    legal = user_headers(rt, "lex", "legal")
    for row in rows:
        r = client.post(f"/v1/legal/dsa/statements/{row.puid}/retry", headers=legal)
        assert r.status_code == 200, r.text
    assert rt.dsa.submit_due().submitted == len(rows)
    assert {st["category"] for st in dsadb.stored} == {"STATEMENT_CATEGORY_CYBER_VIOLENCE"}


def test_a_statement_the_database_already_has_counts_as_stored(
    rt: Runtime, client, dsadb: FakeDatabase
):
    """An answer lost on the way (a timeout after the database stored it): the next
    attempt's 422 "puid not unique" means stored, not failed."""
    confirmed_case(rt, client)
    rt.dsa.collect()
    rows = _rows(rt)
    first = json.loads(rows[0].payload)
    httpx.post(dsadb.url, json=first, headers={"Authorization": f"Bearer {TOKEN}"})
    run = rt.dsa.submit_due()
    assert run.refused == 0 and run.submitted == len(rows)
    assert {r.state for r in _rows(rt)} == {"submitted"}
    assert len(dsadb.stored) == len(rows)


def test_a_wrong_token_fails_every_statement_once(
    rt: Runtime, client, dsadb: FakeDatabase, tmp_path: Path
):
    from takedown.services.legal.dsa import DsaService

    confirmed_case(rt, client)
    wrong = DsaService(
        rt.sessions,
        Settings(
            data_dir=tmp_path,
            dsa_api_url=dsadb.url,
            dsa_api_token="wrong",
            legal_alert_email=ALERTS,
        ),
    )
    run = wrong.submit_due()
    assert run.refused == run.created and {r.last_status for r in _rows(rt)} == {401}
    assert rt.dsa.summary().failed == run.created


def test_a_requeue_that_would_fail_again_changes_nothing(rt: Runtime, client, dsadb: FakeDatabase):
    """Actions recorded with a scope the database cannot take (outside the EU/EEA):
    refused before sending, and a requeue that rebuilds the same thing is refused."""
    from takedown.store.models import OutboxMessage

    confirmed = confirmed_case(rt, client)
    with unit_of_work(rt.sessions) as s:
        for msg in s.scalars(select(OutboxMessage)):
            payload = json.loads(msg.full_payload)
            statement = payload.pop("statement_of_reasons", None)
            if statement is None:
                continue
            statement["territorial_scope_countries"] = ["US"]
            if msg.statement is None:
                msg.payload = json.dumps({**payload, "statement_of_reasons": statement})
            else:  # shared by the actions of one measure
                msg.statement.body = json.dumps(statement)
    run = rt.dsa.submit_due()
    assert run.refused == run.created > 0 and dsadb.calls == []
    row = _rows(rt)[0]
    legal = confirmed.legal
    r = client.post(f"/v1/legal/dsa/statements/{row.puid}/retry", headers=legal)
    assert r.status_code == 409 and r.json()["code"] == "dsa_statement_invalid"
    assert "territorial_scope" in r.json()["details"]["errors"]
    after = _rows(rt)[0]
    assert (after.state, after.payload, after.failed_at) == ("failed", row.payload, row.failed_at)


def test_the_submitter_needs_a_token(rt: Runtime, tmp_path: Path):
    from takedown.errors import Conflict
    from takedown.services.legal.dsa import DsaService

    with pytest.raises(Conflict) as err:
        DsaService(rt.sessions, Settings(data_dir=tmp_path, dsa_api_token=None)).submit_due()
    assert err.value.code == "dsa_not_configured"


def test_the_console_shows_failed_statements_and_requeues_them(
    rt: Runtime, client, dsadb: FakeDatabase
):
    from tests.console.helpers import csrf_of, sign_in

    _confirm(rt, client, "c1", "ncii", "acct-c")
    dsadb.retire("category", "STATEMENT_CATEGORY_CYBER_VIOLENCE")
    run = rt.dsa.submit_due()
    assert run.refused == run.created > 0
    puid = _rows(rt)[0].puid
    sign_in(client, "mod")
    assert "/console/legal/dsa" not in client.get("/console/queue?team=mine").text
    assert client.get("/console/legal/dsa").status_code == 403
    sign_in(client, "legal")
    page = client.get("/console/legal/dsa")
    assert page.status_code == 200 and puid in page.text and "HTTP 422" in page.text
    assert "The selected category is invalid." in page.text
    dsadb.removed.clear()
    done = client.post(
        f"/console/legal/dsa/{puid}/retry",
        data={"csrf": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert "queued" in client.get(done.headers["location"]).text
    assert rt.dsa.submit_due().submitted == 1 and puid in {st["puid"] for st in dsadb.stored}
