"""CyberTipline reports, end to end against a local server that speaks NCMEC's protocol."""

from __future__ import annotations

from datetime import timedelta
from xml.etree import ElementTree as ET

from sqlalchemy import select

from takedown.config import NCMEC_ENVIRONMENTS, Settings
from takedown.ids import utcnow
from takedown.runtime import Runtime
from takedown.services.audit.chain import record
from takedown.store.db import unit_of_work
from takedown.store.models import Media
from tests.legal.helpers import confirmed_case, wire_ncmec
from tests.legal.ncmec_server import check_sequence, ncmec_server


def _view(
    rt: Runtime, actor: str, media_id: str, case_id: str, full: bool, item: str | None = None
) -> None:
    with unit_of_work(rt.sessions) as s:
        record(
            s,
            actor,
            "media.viewed",
            "media",
            media_id,
            {"purpose": "review", "case": case_id, "full": full, "user_id": "01USER", "item": item},
        )


def _by_account(filings: list[dict]) -> dict[str, dict]:
    return {f["subject"]: f for f in filings}


def test_a_confirmed_case_is_reported_once_per_account_with_the_whole_workflow(rt, client):
    c = confirmed_case(rt, client)
    m1, m2 = c.media["p1"], c.media["p2"]
    _view(rt, "user:mod", m1, c.case_id, True, "p1")  # a named reviewer opened the whole file
    _view(rt, "user:mod", m2, c.case_id, False, "p2")  # only a blurred preview
    _view(rt, "apikey:platform", m2, c.case_id, True, "p2")  # a machine is nobody
    with ncmec_server() as (url, server):
        wire_ncmec(rt, url, c.data)
        r = client.post(f"/v1/legal/cases/{c.case_id}/cybertipline", headers=c.legal, json={})
        assert r.status_code == 201, r.text
        filings = _by_account(r.json())
        assert set(filings) == {"acc-a", "acc-b"}
        assert all(f["state"] == "drafted" and f["environment"] == "test" for f in filings.values())
        # A parent reported: the queue suggests escalation, but nobody gave a reason.
        assert filings["acc-a"]["escalate"] is False
        assert filings["acc-a"]["escalation_reason"] is None
        for f in filings.values():
            r = client.post(f"/v1/legal/filings/{f['id']}/submit", headers=c.legal)
            assert r.status_code == 200, r.text
            assert r.json()["state"] == "finished", r.json()
            assert r.json()["external_id"]
        assert len(server.finished()) == 2
        steps = [step for step, _ in server.requests]
        assert steps.count("submit") == 2 and steps.count("finish") == 2

        detail = client.get(f"/v1/legal/filings/{filings['acc-a']['id']}", headers=c.legal).json()
        assert [e["step"] for e in detail["exchanges"]] == [
            "submit",
            "upload",
            "fileinfo",
            "finish",
        ]
        assert all(e["response_code"] == 0 for e in detail["exchanges"])
        sent_xml = detail["exchanges"][0]["request"]
        report = server.reports[detail["filing"]["external_id"]]
        assert report["xml"] == sent_xml.encode()  # the exact XML sent is what is stored
        root = ET.fromstring(sent_xml)
        assert check_sequence(root) is None
        assert [el.tag for el in root] == [
            "incidentSummary",
            "internetDetails",
            "reporter",
            "personOrUserReported",
            "additionalInfo",
        ]
        assert root.findtext("incidentSummary/incidentType").startswith("Child Pornography")
        assert root.findtext("incidentSummary/incidentDateTime") == "2026-03-01T09:30:00Z"
        assert root.findtext("personOrUserReported/espIdentifier") == "acc-a"
        assert root.findtext("reporter/reportingPerson/email") == "legal@platform.example"
        info = ET.fromstring(report["fileinfo"][0])
        assert info.findtext("fileViewedByEsp") == "true"
        assert info.findtext("industryClassification") == "B2"
        assert [a.tag for a in info.find("fileAnnotations")] == ["viral", "possibleSelfProduction"]
        assert list(report["files"].values()) == [c.data[m1]]  # the bytes went up

        other = server.reports[
            _by_account(client.get(f"/v1/legal/cases/{c.case_id}/filings", headers=c.legal).json())[
                "acc-b"
            ]["external_id"]
        ]
        info2 = ET.fromstring(other["fileinfo"][0])
        assert info2.findtext("fileViewedByEsp") == "false"  # no full view by a person
        assert info2.find("industryClassification") is None

        # Never twice: a finished report is not sent again, nor drafted again.
        again = client.post(f"/v1/legal/filings/{filings['acc-a']['id']}/submit", headers=c.legal)
        assert again.status_code == 409 and again.json()["code"] == "filing_finished"
        r = client.post(f"/v1/legal/filings/{filings['acc-a']['id']}/retract", headers=c.legal)
        assert r.status_code == 409 and r.json()["code"] == "filing_finished"
        r = client.post(f"/v1/legal/cases/{c.case_id}/cybertipline", headers=c.legal, json={})
        assert r.status_code == 409 and r.json()["code"] == "already_reported"
        assert len([s for s, _ in server.requests if s == "submit"]) == 2
    queue = client.get("/v1/legal/queue", headers=c.legal).json()
    assert queue == []  # nothing left to report


def test_validation_failure_stops_and_waits_for_a_person(rt, client):
    c = confirmed_case(rt, client)
    with ncmec_server() as (url, server):
        wire_ncmec(rt, url, c.data)
        filings = rt.cybertipline.draft(c.case_id, _legal(rt))
        server.fail_next["submit"] = [4100]
        f = client.post(f"/v1/legal/filings/{filings[0].id}/submit", headers=c.legal).json()
        assert f["state"] == "failed" and f["last_code"] == 4100
        assert rt.cybertipline.run_due(utcnow() + timedelta(days=1)) == 0  # not retried alone


def test_a_lost_answer_is_retried_inside_the_window_and_never_submitted_twice(rt, client):
    c = confirmed_case(rt, client)
    with ncmec_server() as (url, server):
        wire_ncmec(rt, url, c.data)
        fid = rt.cybertipline.draft(c.case_id, _legal(rt))[0].id
        server.fail_next["upload"] = [503, 503]
        now = utcnow()
        f = rt.cybertipline.run(fid, "user:lex", now)
        assert f.state == "submitted" and f.external_id and f.last_code is None
        assert now < f.next_attempt_at <= now + timedelta(hours=1)
        assert rt.cybertipline.run_due(now) == 0  # not due yet
        later = f.next_attempt_at
        assert rt.cybertipline.run_due(later) == 1  # second 503
        f2 = rt.cybertipline.get(fid)
        assert f2.state == "submitted" and f2.next_attempt_at > later
        rt.cybertipline.run_due(f2.next_attempt_at)
        done = rt.cybertipline.get(fid)
        assert done.state == "finished" and done.external_id == f.external_id
        assert [s for s, _ in server.requests].count("submit") == 1


def test_already_finished_counts_as_finished(rt, client):
    c = confirmed_case(rt, client)
    with ncmec_server() as (url, server):
        wire_ncmec(rt, url, c.data)
        fid = rt.cybertipline.draft(c.case_id, _legal(rt))[0].id
        server.fail_next["finish"] = [5102]  # finished, but our first answer was lost
        f = rt.cybertipline.run(fid, "user:lex")
        assert f.state == "finished" and f.last_code == 5102


def test_an_expired_report_is_opened_again(rt, client):
    c = confirmed_case(rt, client)
    with ncmec_server() as (url, server):
        wire_ncmec(rt, url, c.data)
        fid = rt.cybertipline.draft(c.case_id, _legal(rt))[0].id
        server.fail_next["upload"] = [503]
        first = rt.cybertipline.run(fid, "user:lex")
        server.expire(first.external_id)
        rt.cybertipline.run_due(first.next_attempt_at)  # 5001: NCMEC dropped it
        assert rt.cybertipline.get(fid).state == "drafted"
        rt.cybertipline.run_due(utcnow() + timedelta(hours=2))
        done = rt.cybertipline.get(fid)
        assert done.state == "finished" and done.external_id != first.external_id


def test_retract_an_open_report_then_report_again(rt, client):
    c = confirmed_case(rt, client)
    with ncmec_server() as (url, server):
        wire_ncmec(rt, url, c.data)
        filings = rt.cybertipline.draft(c.case_id, _legal(rt))
        fid = filings[0].id
        server.fail_next["upload"] = [503]
        opened = rt.cybertipline.run(fid, "user:lex")
        r = client.post(f"/v1/legal/filings/{fid}/retract", headers=c.legal)
        assert r.status_code == 200 and r.json()["state"] == "retracted"
        assert server.reports[opened.external_id]["state"] == "retracted"
        r = client.post(f"/v1/legal/filings/{fid}/submit", headers=c.legal)
        assert r.status_code == 409 and r.json()["code"] == "filing_retracted"
        r = client.post(f"/v1/legal/filings/{fid}/retract", headers=c.legal)
        assert r.status_code == 409 and r.json()["code"] == "filing_retracted"
        redo = client.post(f"/v1/legal/cases/{c.case_id}/cybertipline", headers=c.legal, json={})
        assert redo.status_code == 201 and [f["subject"] for f in redo.json()] == [
            filings[0].subject
        ]


def test_refusals(rt, client):
    c = confirmed_case(rt, client)
    wire_ncmec(rt, None, {})
    fid = client.post(f"/v1/legal/cases/{c.case_id}/cybertipline", headers=c.legal, json={}).json()[
        0
    ]["id"]
    r = client.post(f"/v1/legal/filings/{fid}/submit", headers=c.legal)
    assert r.status_code == 409 and r.json()["code"] == "ncmec_not_configured"
    with ncmec_server() as (url, _server):
        wire_ncmec(rt, url, {})  # the bytes are not held
        r = client.post(f"/v1/legal/filings/{fid}/submit", headers=c.legal)
        assert r.status_code == 409 and r.json()["code"] == "media_bytes_unavailable"
    r = client.get("/v1/legal/filings/01NOSUCH", headers=c.legal)
    assert r.status_code == 404 and r.json()["code"] == "filing_not_found"
    r = client.post(f"/v1/legal/cases/{c.case_id}/cybertipline", headers=c.moderator, json={})
    assert r.status_code == 403
    r = client.post("/v1/legal/cases/01NOSUCH/cybertipline", headers=c.legal, json={})
    assert r.json()["code"] == "case_not_found"


def test_only_minor_safety_violations_are_reportable(rt, client):
    from takedown.services.registry.service import ItemInput
    from tests.cases.helpers import user_headers

    rt.registry.upsert_item(ItemInput("n1", account_id="x"), actor="t")
    body = {
        "category": "other",
        "reporter_role": "user",
        "item_ids": ["n1"],
        "explanation": "Spam with a scam link in every post.",
        "good_faith": True,
        "reporter_name": "Sam Doe",
        "reporter_email": "sam@example.org",
    }
    case_id = client.post("/v1/reports", json=body).json()["case_number"]
    mod = user_headers(rt, "mod2", "moderator")
    r = client.post(
        f"/v1/cases/{case_id}/decisions",
        headers=mod,
        json={"outcome": "violation", "policy": "spam", "reasons": "Spam, against the terms."},
    )
    assert r.status_code == 201
    wire_ncmec(rt, None, {})
    legal = user_headers(rt, "lex2", "legal")
    r = client.post(f"/v1/legal/cases/{case_id}/cybertipline", headers=legal, json={})
    assert r.status_code == 409 and r.json()["code"] == "not_reportable"


def test_test_environment_is_the_default():
    assert Settings().ncmec_environment == "test"
    assert (
        Settings().ncmec_url == NCMEC_ENVIRONMENTS["test"] == "https://exttest.cybertip.org/ispws"
    )
    assert Settings(ncmec_environment="production").ncmec_url == "https://report.cybertip.org/ispws"


def _legal(rt: Runtime):
    from takedown.domain.access import ROLE_PERMISSIONS, Principal
    from takedown.domain.cases import UserRole

    return Principal("user", "01LEGAL", "lex", ROLE_PERMISSIONS[UserRole.LEGAL], UserRole.LEGAL)


def test_files_come_from_the_encrypted_media_store(rt, client):
    from takedown.services.legal.cybertipline import StoredMediaBytes
    from tests.cases.helpers import platform_headers
    from tests.conftest import standin_bytes

    photo = standin_bytes("coffee.png")  # a stand-in photo
    p = platform_headers(rt)
    assert client.put("/v1/items/x1", json={"account_id": "a1"}, headers=p).is_success
    r = client.post("/v1/items/x1/media", headers=p, files={"file": ("f.png", photo)})
    assert r.status_code == 200
    with rt.sessions() as s:
        media = s.scalars(select(Media)).one()
    source = StoredMediaBytes(rt.sessions, rt.blobs)
    assert source.read(media.public_id, media.sha256) == photo
    assert source.read(media.public_id, "0" * 64) is None  # not the file the report names
    assert source.read("01NOSUCHMEDIA", media.sha256) is None


def test_a_finished_production_report_starts_the_preservation_hold(rt, client):
    c = confirmed_case(rt, client)
    with ncmec_server() as (url, _server):
        wire_ncmec(rt, url, c.data, ncmec_environment="production")
        r = client.post(f"/v1/legal/cases/{c.case_id}/cybertipline", headers=c.legal, json={})
        filing = _by_account(r.json())["acc-a"]
        r = client.post(f"/v1/legal/filings/{filing['id']}/submit", headers=c.legal)
        assert r.status_code == 200 and r.json()["state"] == "finished", r.text
    [evidence] = rt.evidence.list_for_case(c.case_id, "user:lex", "hold check in a test")
    assert evidence.reported_at is not None and evidence.held_until is not None
    assert evidence.held_until >= evidence.reported_at + timedelta(days=365)
    assert "report" in {f.role for f in evidence.files}  # the exact XML sent is kept


def test_test_environment_reports_start_no_hold(rt, client):
    c = confirmed_case(rt, client)
    with ncmec_server() as (url, _server):
        wire_ncmec(rt, url, c.data)
        r = client.post(f"/v1/legal/cases/{c.case_id}/cybertipline", headers=c.legal, json={})
        filing = _by_account(r.json())["acc-a"]
        assert client.post(f"/v1/legal/filings/{filing['id']}/submit", headers=c.legal).is_success
    assert rt.evidence.list_for_case(c.case_id, "user:lex", "hold check in a test") == []
