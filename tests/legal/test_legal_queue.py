"""The legal queue, overdue alerts, NCA references and the review's file findings."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from takedown.domain.cases import Outcome, validate_media_review
from takedown.domain.cybertipline import viewed_in_full
from takedown.ids import utcnow
from takedown.store.db import unit_of_work
from takedown.store.models import AuditEvent, MailMessage
from tests.legal.helpers import confirmed_case


def test_a_confirmed_case_waits_in_the_queue_and_alerts_once(rt, client):
    c = confirmed_case(rt, client)
    rt.legal.alert_email = "legal-alerts@platform.example"
    queue = client.get("/v1/legal/queue", headers=c.legal).json()
    assert [e["case_id"] for e in queue] == [c.case_id]
    entry = queue[0]
    assert entry["needs_report"] and entry["escalate_to_high_priority"]
    assert entry["accounts_unreported"] == ["acc-a", "acc-b"]
    assert entry["hours_since_knowledge"] >= 0 and not entry["overdue"]
    assert rt.legal.check_alerts() == []  # not overdue yet
    later = utcnow() + timedelta(hours=25)
    assert rt.legal.check_alerts(later) == [c.case_id]
    assert rt.legal.check_alerts(later + timedelta(hours=1)) == []  # once per case
    with unit_of_work(rt.sessions, write=False) as s:
        mails = list(
            s.scalars(
                select(MailMessage).where(MailMessage.to_address == "legal-alerts@platform.example")
            )
        )
        events = list(
            s.scalars(select(AuditEvent).where(AuditEvent.action == "legal.report_overdue"))
        )
    assert len(mails) == 1 and c.case_id in mails[0].subject
    assert len(events) == 1 and events[0].object_id == c.case_id


def test_an_nca_reference_covers_the_case_once(rt, client):
    c = confirmed_case(rt, client)
    r = client.post(
        f"/v1/legal/cases/{c.case_id}/nca", headers=c.legal, json={"reference": "NCA/2026/00123"}
    )
    assert (
        r.status_code == 201
        and r.json()["body"] == "nca"
        and r.json()["external_id"] == "NCA/2026/00123"
    )
    again = client.post(
        f"/v1/legal/cases/{c.case_id}/nca", headers=c.legal, json={"reference": "NCA-2"}
    )
    assert again.status_code == 409 and again.json()["code"] == "already_reported"
    bad = client.post(
        f"/v1/legal/cases/{c.case_id}/nca", headers=c.legal, json={"reference": "<script>"}
    )
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_nca_reference"
    assert client.get("/v1/legal/queue", headers=c.legal).json() == []
    everything = client.get("/v1/legal/queue?include_reported=true", headers=c.legal).json()
    assert everything[0]["reported_to"][0]["external_id"] == "NCA/2026/00123"
    assert everything[0]["report_finished_at"] is not None
    filings = client.get(f"/v1/legal/cases/{c.case_id}/filings", headers=c.legal).json()
    assert [f["body"] for f in filings] == ["nca"]


def test_file_findings_are_validated(rt, client):
    c = confirmed_case(rt, client, review=[])
    case = c.case_id
    from tests.cases.helpers import parent_report

    other = client.post("/v1/reports", json=parent_report(["zz"])).json()["case_number"]

    def decide(case_id, review, outcome="violation"):
        return client.post(
            f"/v1/cases/{case_id}/decisions",
            headers=c.moderator,
            json={
                "outcome": outcome,
                "policy": "csam",
                "reasons": "Written reasons here.",
                "media_review": review,
            },
        )

    m1 = c.media["p1"]
    r = decide(other, [{"media_id": m1, "classification": "C9"}])
    assert r.status_code == 422 and r.json()["code"] == "invalid_classification"
    r = decide(other, [{"media_id": m1, "annotations": ["cute"]}])
    assert r.json()["code"] == "invalid_annotation"
    r = decide(other, [{"media_id": m1}, {"media_id": m1}])
    assert r.json()["code"] == "duplicate_media_review"
    r = decide(other, [{"media_id": m1, "classification": "A1"}], outcome="needs_info")
    assert r.json()["code"] == "media_review_needs_violation"
    r = decide(other, [{"media_id": m1, "classification": "A1"}])
    assert r.status_code == 422 and r.json()["code"] == "media_not_in_case"
    detail = client.get(f"/v1/cases/{case}", headers=c.moderator).json()
    assert detail["decisions"][0]["media_review"] == []


def test_review_rules_are_pure():
    reviews = validate_media_review(
        Outcome.VIOLATION,
        [{"media_id": "m", "classification": "A2", "annotations": ["generativeAi", "viral"]}],
    )
    assert reviews[0].to_dict() == {
        "media_id": "m",
        "classification": "A2",
        "annotations": ["viral", "generativeAi"],
    }
    assert validate_media_review(Outcome.NO_VIOLATION, None) == ()
    assert viewed_in_full([("user:alice", {"full": True})])
    assert not viewed_in_full([("user:alice", {"full": "true"}), ("apikey:x", {"full": True})])
    assert not viewed_in_full([("user:", {"full": True}), ("system", {"full": True})])
