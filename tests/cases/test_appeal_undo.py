"""An upheld appeal undoes what the overturned decision did: every item it removed is
restored, every account it suspended reinstated and every strike withdrawn (each with a
statement of reasons for the platform to pass on), its media no longer block uploads,
and the reporter is told.

Through the HTTP API on both backends; the stand-in is a photo from the scikit-image
wheel.
"""

from __future__ import annotations

import json

from sqlalchemy import select

from takedown.runtime import Runtime
from takedown.store.models import AuditEvent, MailMessage, OutboxMessage
from tests.cases.helpers import parent_report, platform_headers, user_headers
from tests.conftest import standin_bytes

PHOTO = standin_bytes("coffee.png")


def _decide(client, case: str, headers, outcome: str, reasons: str) -> dict:
    body = {"outcome": outcome, "reasons": reasons}
    if outcome == "violation":
        body["policy"] = "csam"
    r = client.post(f"/v1/cases/{case}/decisions", headers=headers, json=body)
    assert r.status_code == 201, r.text
    return r.json()


def _actions(rt: Runtime, topic: str) -> dict[str, dict]:
    with rt.sessions() as s:
        return {
            m.target_platform_id: json.loads(m.full_payload)
            for m in s.scalars(select(OutboxMessage).where(OutboxMessage.topic == topic))
        }


def test_an_upheld_appeal_restores_items_and_reinstates_accounts(rt: Runtime, client):
    p = platform_headers(rt)
    assert client.put("/v1/items/orig", json={"account_id": "uploader"}, headers=p).is_success
    assert client.post(
        "/v1/items/orig/media", headers=p, files={"file": ("f.png", PHOTO)}
    ).is_success
    for i in range(3):
        r = client.put(
            f"/v1/items/repost-{i}", json={"account_id": f"fan-{i}", "reposts": "orig"}, headers=p
        )
        assert r.is_success
    report = parent_report(["orig"], reporter_email="parent@example.org")
    case = client.post("/v1/reports", json=report).json()["case_number"]
    spec_a = user_headers(rt, "spec-a", "child_safety_specialist")
    spec_b = user_headers(rt, "spec-b", "child_safety_specialist")
    spec_c = user_headers(rt, "spec-c", "child_safety_specialist")
    _decide(client, case, spec_a, "violation", "This is child sexual abuse material.")
    assert client.get("/v1/items/orig", headers=p).json()["visibility"] == "removed"
    assert client.get("/v1/accounts/uploader", headers=p).json()["status"] == "suspended"
    assert client.get("/v1/accounts/fan-0", headers=p).json()["strikes"] == 1
    blocked = client.post("/v1/screen", files={"file": ("f.png", PHOTO)}, headers=p).json()
    assert blocked["verdict"] == "block"

    # The uploader appeals through the platform; two other specialists find no violation.
    r = client.post(
        f"/v1/cases/{case}/appeals",
        headers=p,
        json={"reason": "This is a photo of a cup of coffee, not what it was taken for."},
    )
    assert r.status_code == 201, r.text
    first = _decide(client, case, spec_b, "no_violation", "On appeal: a cup of coffee, benign.")
    assert first["effective"] is False  # minor safety: never one person alone
    second = _decide(client, case, spec_c, "no_violation", "Agreed on second review: benign.")
    assert second["effective"] is True

    # Every item the decision removed is restored, with its statement of reasons.
    for item in ["orig", "repost-0", "repost-1", "repost-2"]:
        state = client.get(f"/v1/items/{item}", headers=p).json()
        assert state["visibility"] == "visible" and state["monetization_paused"] is False
    restores = _actions(rt, "item.restore")
    assert set(restores) == {"orig", "repost-0", "repost-1", "repost-2"}
    assert restores["orig"]["reason"] == "appeal_upheld"
    assert "appeal" in restores["orig"]["statement_of_reasons"]["measure"].lower()
    # The suspended account is reinstated, every strike withdrawn.
    reinstated = _actions(rt, "account.reinstate")
    assert set(reinstated) == {"uploader"}
    assert reinstated["uploader"]["statement_of_reasons"]["measure"].startswith(
        "Account reinstated"
    )
    uploader = client.get("/v1/accounts/uploader", headers=p).json()
    assert uploader["status"] == "active" and uploader["strikes"] == 0
    assert uploader["suspended_by"] == []
    assert uploader["measures"][0]["reversed_by"] == second["id"]
    for i in range(3):
        assert client.get(f"/v1/accounts/fan-{i}", headers=p).json()["strikes"] == 0
    # Its media no longer block uploads.
    allowed = client.post("/v1/screen", files={"file": ("f.png", PHOTO)}, headers=p).json()
    assert allowed["verdict"] == "allow"
    # The reporter is told; the undoing is in the audit log.
    with rt.sessions() as s:
        mails = s.scalars(
            select(MailMessage.body).where(MailMessage.to_address == "parent@example.org")
        ).all()
        undone = s.scalars(
            select(AuditEvent.details).where(
                AuditEvent.action == "decision.undone", AuditEvent.object_id == case
            )
        ).all()
    assert any("Decision: no violation" in m for m in mails)
    assert len(undone) == 1
    details = json.loads(undone[0])
    assert details["items_restored"] == 4 and details["accounts_reinstated"] == 1
    assert details["strikes_withdrawn"] == 4 and details["bank_entries_disabled"] >= 1


def test_what_another_confirmed_case_did_stays(rt: Runtime, client):
    """Restoring undoes only this decision: the items and the account measure of another
    confirmed case (here the sweep of the account's other items) stay."""
    p = platform_headers(rt)
    spec_a = user_headers(rt, "spec-a", "child_safety_specialist")
    spec_b = user_headers(rt, "spec-b", "child_safety_specialist")
    spec_c = user_headers(rt, "spec-c", "child_safety_specialist")
    assert client.put("/v1/items/a", json={"account_id": "same"}, headers=p).is_success
    assert client.put("/v1/items/b", json={"account_id": "same"}, headers=p).is_success
    first = client.post("/v1/reports", json=parent_report(["a"])).json()["case_number"]
    _decide(client, first, spec_a, "violation", "This is child sexual abuse material.")
    # The suspension queued the account's other item in a case of its own.
    detail = client.get("/v1/accounts/same", headers=p).json()
    sweep = next(c["case"] for c in detail["cases"] if c["case"] != first)
    _decide(client, sweep, spec_a, "violation", "This too is child sexual abuse material.")
    r = client.post(
        f"/v1/cases/{first}/appeals", headers=p, json={"reason": "Item a was misjudged, see."}
    )
    assert r.status_code == 201
    _decide(client, first, spec_b, "no_violation", "On appeal: item a is benign.")
    _decide(client, first, spec_c, "no_violation", "Agreed: item a is benign.")
    assert client.get("/v1/items/a", headers=p).json()["visibility"] == "visible"
    assert client.get("/v1/items/b", headers=p).json()["visibility"] == "removed"
    account = client.get("/v1/accounts/same", headers=p).json()
    # The sweep's decision (a second minor-safety strike: terminated) stands.
    assert account["status"] == "terminated" and account["suspended_by"] == [sweep]
    assert account["strikes"] == 1
