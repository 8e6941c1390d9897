"""Accounts: what the platform says is kept apart from what Takedown did, and each
account is measured by its part in a case (uploader, re-uploader, quoter, reposter).

Driven through the HTTP API (and the console page for the preview), on both backends.
Stand-in photos from the scikit-image wheel stand for the reported material.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from takedown.config import Settings
from takedown.runtime import Runtime, open_runtime
from takedown.store.models import AuditEvent, OutboxMessage
from tests.cases.helpers import parent_report, platform_headers, user_headers
from tests.conftest import standin_bytes
from tests.console.helpers import ensure_user, sign_in

SPECIALIST_REASONS = "The person depicted is a minor; this is child sexual abuse material."


def _upload(client, headers, item: str, account: str, data: bytes, **fields: object) -> dict:
    r = client.put(f"/v1/items/{item}", json={"account_id": account, **fields}, headers=headers)
    assert r.status_code == 200, r.text
    r = client.post(f"/v1/items/{item}/media", headers=headers, files={"file": ("f", data)})
    assert r.status_code == 200, r.text
    return r.json()


def _share(client, headers, item: str, account: str, **edge: str) -> None:
    r = client.put(f"/v1/items/{item}", json={"account_id": account, **edge}, headers=headers)
    assert r.status_code == 200, r.text


def _case_with_every_part(client, p: dict[str, str]) -> str:
    """An upload, a later re-upload of the same picture by another account, a quote
    and a repost; reported by a parent. Returns the case number."""
    photo = standin_bytes("astronaut.png")
    _upload(client, p, "orig", "uploader", photo, posted_at="2026-11-01T10:00:00Z")
    _upload(client, p, "again", "reuploader", photo, posted_at="2026-11-02T10:00:00Z")
    _share(client, p, "quote-1", "quoter", quotes="orig")
    _share(client, p, "repost-1", "reposter", reposts="orig")
    r = client.post("/v1/reports", json=parent_report(["orig"]))
    assert r.status_code == 201, r.text
    return r.json()["case_number"]


def _confirm(client, case: str, headers: dict[str, str]) -> None:
    r = client.post(
        f"/v1/cases/{case}/decisions",
        headers=headers,
        json={"outcome": "violation", "policy": "csam", "reasons": SPECIALIST_REASONS},
    )
    assert r.status_code == 201 and r.json()["effective"], r.text


def _account_actions(rt: Runtime) -> dict[str, str]:
    with rt.sessions() as s:
        return dict(
            s.execute(
                select(OutboxMessage.target_platform_id, OutboxMessage.topic).where(
                    OutboxMessage.target_type == "account"
                )
            ).all()
        )


def test_syncing_an_account_never_undoes_moderation(rt: Runtime, client):
    p = platform_headers(rt)
    case = _case_with_every_part(client, p)
    _confirm(client, case, user_headers(rt, "spec-a", "child_safety_specialist"))
    before = client.get("/v1/accounts/uploader", headers=p).json()
    assert before["status"] == "suspended" and before["strikes"] == 1
    assert before["suspended_by"] == [case]

    # A sync with only the handle changes only the handle.
    r = client.put("/v1/accounts/uploader", json={"handle": "renamed"}, headers=p)
    assert r.status_code == 200, r.text
    after = r.json()
    assert after["handle"] == "renamed"
    assert after["status"] == "suspended" and after["strikes"] == 1
    assert after["flagged"] is False and after["platform_status"] == "active"

    # A flag, with its reason, stays when later syncs leave it out.
    client.put(
        "/v1/accounts/uploader",
        json={"flagged": True, "flag_reason": "Known trader", "flag_source": "platform T&S"},
        headers=p,
    )
    kept = client.put("/v1/accounts/uploader", json={"handle": "again"}, headers=p).json()
    assert kept["flagged"] is True and kept["flag_reason"] == "Known trader"
    assert kept["flag_source"] == "platform T&S"

    # The platform says it is active (twice, as a sync would): recorded once, on the
    # account and on the case, and Takedown's suspension stands.
    client.put("/v1/accounts/uploader", json={"platform_status": "active"}, headers=p)
    r = client.put("/v1/accounts/uploader", json={"platform_status": "active"}, headers=p)
    assert r.json()["platform_status"] == "active" and r.json()["status"] == "suspended"
    assert r.json()["platform_reinstated_at"]
    detail = client.get(f"/v1/cases/{case}", headers=user_headers(rt, "legal-1", "legal")).json()
    row = next(a for a in detail["accounts"] if a["account_id"] == "uploader")
    assert row["reinstated_by_platform"] and row["status"] == "suspended"
    assert row["part"] == "uploader" and row["measure"] == "suspend"
    with rt.sessions() as s:
        assert (
            s.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(
                    AuditEvent.action == "account.reinstated_by_platform",
                    AuditEvent.object_type == "case",
                    AuditEvent.object_id == case,
                )
            )
            == 1
        )
    # The old field name still works and means the platform's status.
    old = client.put("/v1/accounts/uploader", json={"status": "deleted"}, headers=p).json()
    assert old["platform_status"] == "deleted" and old["status"] == "suspended"

    # GET shows state, strikes, cases and measures.
    got = client.get("/v1/accounts/uploader", headers=p).json()
    assert [c["case"] for c in got["cases"]] == [case]
    assert got["cases"][0]["outcome"] == "violation"
    assert [(m["case"], m["part"], m["measure"], m["strike"]) for m in got["measures"]] == [
        (case, "uploader", "suspend", True)
    ]
    missing = client.get("/v1/accounts/nobody", headers=p)
    assert missing.status_code == 404 and missing.json()["code"] == "account_not_found"


def test_what_the_platform_knows_of_an_account_raises_the_priority(rt: Runtime, client):
    p = platform_headers(rt)
    r = client.put("/v1/accounts/known", json={"prior_violations": 1}, headers=p)
    assert r.status_code == 422 and r.json()["code"] == "source_required"
    r = client.put(
        "/v1/accounts/known",
        json={"prior_violations": 1, "prior_violations_source": "platform moderation 2025"},
        headers=p,
    )
    assert r.status_code == 200 and r.json()["prior_violations"] == 1
    _share(client, p, "post-1", "known")
    case = client.post("/v1/reports", json=parent_report(["post-1"])).json()["case_number"]
    detail = client.get(f"/v1/cases/{case}", headers=user_headers(rt, "legal-1", "legal")).json()
    factor = next(f for f in detail["priority_factors"] if f["name"] == "account_history")
    assert "1 earlier confirmed violation(s), 0 flagged" in factor["detail"]
    # Flagging it afterwards re-ranks the open case at once.
    client.put(
        "/v1/accounts/known", json={"flagged": True, "flag_reason": "hash exchange"}, headers=p
    )
    again = client.get(f"/v1/cases/{case}", headers=user_headers(rt, "legal-2", "legal")).json()
    assert again["priority"] > detail["priority"]
    bad = client.put("/v1/accounts/known", json={"platform_status": "sleeping"}, headers=p)
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_status"
    both = client.put(
        "/v1/accounts/known", json={"status": "active", "platform_status": "deleted"}, headers=p
    )
    assert both.status_code == 422 and both.json()["code"] == "conflicting_fields"


def test_account_measures_fit_each_part_and_are_shown_before_confirming(rt: Runtime, client):
    p = platform_headers(rt)
    case = _case_with_every_part(client, p)
    detail = client.get(f"/v1/cases/{case}", headers=user_headers(rt, "legal-1", "legal")).json()
    assert detail["account_measures_preview"] == {
        "uploader": {"suspend": 1},
        "reuploader": {"suspend": 1},
        "quoter": {"warn": 1},
        "reposter": {"warn": 1},
    }
    # The specialist sees the same on the case page, before confirming.
    ensure_user(rt, "spec")
    csrf = sign_in(client, "spec")
    assert client.post(
        f"/console/cases/{case}/claim", data={"csrf": csrf}, follow_redirects=False
    ).status_code in (302, 303)
    page = client.get(f"/console/cases/{case}").text
    assert "If you confirm a violation" in page
    assert "reuploader: 1 suspend" in page and "reposter: 1 warn" in page
    client.cookies.clear()

    _confirm(client, case, user_headers(rt, "spec-a", "child_safety_specialist"))
    assert _account_actions(rt) == {
        "uploader": "account.suspend",
        "reuploader": "account.suspend",
        "quoter": "account.warn",
        "reposter": "account.warn",
    }
    reposter = client.get("/v1/accounts/reposter", headers=p).json()
    assert reposter["status"] == "active" and reposter["strikes"] == 1
    after = client.get(f"/v1/cases/{case}", headers=user_headers(rt, "legal-2", "legal")).json()
    assert after["account_measures_preview"] is None
    assert {a["account_id"]: a["measure"] for a in after["accounts"]} == {
        "uploader": "suspend",
        "reuploader": "suspend",
        "quoter": "warn",
        "reposter": "warn",
    }


def test_account_measures_are_the_deployments_to_set(settings: Settings, rt: Runtime):
    custom = settings.model_copy(
        update={
            "account_measures_minor_safety": (
                "uploader=suspend,reuploader=warn,quoter=strike,reposter=none"
            )
        }
    )
    other = open_runtime(custom, migrate=False)
    try:
        from fastapi.testclient import TestClient

        from takedown.api.app import create_app

        with TestClient(create_app(other), raise_server_exceptions=False) as client:
            p = platform_headers(other)
            case = _case_with_every_part(client, p)
            _confirm(client, case, user_headers(other, "spec-a", "child_safety_specialist"))
            assert _account_actions(other) == {
                "uploader": "account.suspend",
                "reuploader": "account.warn",
            }
            quoter = client.get("/v1/accounts/quoter", headers=p).json()
            assert quoter["strikes"] == 1 and quoter["status"] == "active"
            reposter = client.get("/v1/accounts/reposter", headers=p).json()
            assert reposter["strikes"] == 0 and reposter["measures"] == []
    finally:
        other.close()
    with pytest.raises(ValidationError, match="reposter"):
        Settings(account_measures_ncii="uploader=warn,reuploader=warn,quoter=warn")
    with pytest.raises(ValidationError, match="ban"):
        Settings(account_measures_ncii="uploader=ban,reuploader=warn,quoter=warn,reposter=none")
