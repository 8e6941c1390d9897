"""What a CyberTipline report says, end to end against the protocol server: earlier
reports named in the schema's form, escalation only with a reason, ``fileViewedByEsp``
per reported account (through the console's reveal), and reports that break the schema
stopped before they leave."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from xml.etree import ElementTree as ET

import pytest
from sqlalchemy import select, update

from takedown.ids import utcnow
from takedown.runtime import Runtime
from takedown.services.registry.service import ItemInput, MediaInput
from takedown.store.db import unit_of_work
from takedown.store.models import AuditEvent, LegalFiling, Media
from tests.cases.helpers import parent_report, platform_headers, user_headers
from tests.conftest import standin_bytes
from tests.console.helpers import reveal_urls, sign_in
from tests.legal.helpers import confirmed_case, wire_ncmec
from tests.legal.ncmec_server import ncmec_server


def _by_account(filings: list[dict]) -> dict[str, dict]:
    return {f["subject"]: f for f in filings}


def _media(data: bytes) -> MediaInput:
    return MediaInput(sha256=hashlib.sha256(data).hexdigest(), md5=hashlib.md5(data).hexdigest())


def _decide(client, case_id: str, moderator: dict[str, str]) -> None:
    r = client.post(
        f"/v1/cases/{case_id}/decisions",
        headers=moderator,
        json={
            "outcome": "violation",
            "policy": "csam",
            "reasons": "Apparent child sexual abuse material (stand-in in tests).",
        },
    )
    assert r.status_code == 201, r.text


def _events(rt: Runtime, action: str) -> list[dict]:
    with unit_of_work(rt.sessions, write=False) as s:
        return [
            json.loads(d)
            for d in s.scalars(
                select(AuditEvent.details)
                .where(AuditEvent.action == action)
                .order_by(AuditEvent.id)
            )
        ]


def _sent_report(server, external_id: str) -> ET.Element:
    return ET.fromstring(server.reports[external_id]["xml"])


# -- 1. earlier reports ------------------------------------------------------------------------
def test_every_earlier_report_about_the_account_or_its_files_is_named(rt, client):
    c = confirmed_case(rt, client)  # acc-a posted file X (p1), acc-b file Y (p2)
    x, y = c.data[c.media["p1"]], c.data[c.media["p2"]]
    with ncmec_server() as (url, server):
        wire_ncmec(rt, url, c.data)
        first = _by_account(
            client.post(f"/v1/legal/cases/{c.case_id}/cybertipline", headers=c.legal).json()
        )
        t0 = utcnow()
        ra = rt.cybertipline.run(first["acc-a"]["id"], "user:lex", t0).external_id
        rb = rt.cybertipline.run(first["acc-b"]["id"], "user:lex", t0 + timedelta(minutes=1))
        assert ra and rb.state == "finished"
        rb_id = rb.external_id

        # A later case: acc-a again, with a new file.
        z = standin_bytes("coffee.png")  # a stand-in photo
        rt.registry.upsert_item(
            ItemInput(
                "p3", account_id="acc-a", url="https://social.example/p/3", media=[_media(z)]
            ),
            actor="t",
        )
        case2 = client.post("/v1/reports", json=parent_report(["p3"])).json()["case_number"]
        assert case2 != c.case_id
        _decide(client, case2, c.moderator)
        with unit_of_work(rt.sessions, write=False) as s:
            data = {
                pid: z
                for pid in s.scalars(
                    select(Media.public_id).where(Media.sha256 == hashlib.sha256(z).hexdigest())
                )
            }
        wire_ncmec(rt, url, {**c.data, **data})
        r = client.post(f"/v1/legal/cases/{case2}/cybertipline", headers=c.legal, json={})
        assert r.status_code == 201, r.text
        [again] = r.json()
        assert again["subject"] == "acc-a" and again["prior_report_ids"] == [ra]

        # A new account acc-c posts both files X and Y: the copies join the confirmed
        # case, and its report names both earlier reports about those files.
        rt.registry.upsert_item(
            ItemInput(
                "p4",
                account_id="acc-c",
                url="https://social.example/p/4",
                media=[_media(y), _media(x)],
            ),
            actor="t",
        )
        r = client.post(f"/v1/legal/cases/{c.case_id}/cybertipline", headers=c.legal, json={})
        assert r.status_code == 201, r.text
        [shared] = r.json()
        assert shared["subject"] == "acc-c" and shared["prior_report_ids"] == [ra, rb_id]

        for f, expected in ((again, [ra]), (shared, [ra, rb_id])):
            done = client.post(f"/v1/legal/filings/{f['id']}/submit", headers=c.legal).json()
            assert done["state"] == "finished", done  # the server accepted the report
            user = _sent_report(server, done["external_id"]).find("personOrUserReported")
            assert user is not None
            priors = user.findall("priorCTReports")
            assert [p.text for p in priors] == expected
            assert all(len(p) == 0 for p in priors)  # the number itself, no <reportId>
    drafted = [e for e in _events(rt, "cybertipline.drafted") if e["account"] == "acc-a"]
    assert drafted[-1]["prior_reports"] == [ra]


# -- 2. escalation ----------------------------------------------------------------------------
def test_escalation_is_sent_only_with_the_reason_legal_gives(rt, client):
    c = confirmed_case(rt, client)
    draft = f"/v1/legal/cases/{c.case_id}/cybertipline"
    with ncmec_server() as (url, server):
        wire_ncmec(rt, url, c.data)
        r = client.post(draft, headers=c.legal, json={"escalate_to_high_priority": True})
        assert r.status_code == 422 and r.json()["code"] == "escalation_reason_required"
        r = client.post(draft, headers=c.legal, json={"escalation_note": "Hurry."})
        assert r.status_code == 422 and r.json()["code"] == "escalation_reason_required"
        r = client.post(
            draft,
            headers=c.legal,
            json={"escalate_to_high_priority": False, "escalation_reason": "imminent_danger"},
        )
        assert r.status_code == 422 and r.json()["code"] == "escalation_conflict"
        r = client.post(draft, headers=c.legal, json={"escalation_reason": "urgent"})
        assert r.status_code == 422
        assert rt.cybertipline.for_case(c.case_id) == []  # a refusal leaves nothing

        r = client.post(
            draft,
            headers=c.legal,
            json={
                "escalation_reason": "child_identifiable",
                "escalation_note": "Named in the caption.",
            },
        )
        assert r.status_code == 201, r.text
        filings = _by_account(r.json())
        assert all(
            f["escalate"] and f["escalation_reason"] == "child_identifiable"
            for f in filings.values()
        )
        a = client.post(
            f"/v1/legal/filings/{filings['acc-a']['id']}/submit", headers=c.legal
        ).json()
        assert a["state"] == "finished"
        sent = _sent_report(server, a["external_id"]).findtext(
            "incidentSummary/escalateToHighPriority"
        )
        assert sent == "The child depicted appears to be identifiable. Named in the caption."
        detail = client.get(f"/v1/legal/filings/{filings['acc-a']['id']}", headers=c.legal).json()
        assert detail["filing"]["escalation_note"] == "Named in the caption."
        assert _events(rt, "cybertipline.drafted")[0]["escalation_reason"] == "child_identifiable"

        # acc-b's draft withdrawn (never sent), drafted again not escalated (the old
        # boolean, false): no element at all, and the server accepts it.
        client.post(f"/v1/legal/filings/{filings['acc-b']['id']}/retract", headers=c.legal)
        r = client.post(draft, headers=c.legal, json={"escalate_to_high_priority": False})
        [b] = r.json()
        assert b["subject"] == "acc-b" and b["escalate"] is False and b["escalation_reason"] is None
        b = client.post(f"/v1/legal/filings/{b['id']}/submit", headers=c.legal).json()
        assert b["state"] == "finished"
        summary = _sent_report(server, b["external_id"]).find("incidentSummary")
        assert summary is not None and summary.find("escalateToHighPriority") is None
        assert b"<escalateToHighPriority>false" not in server.reports[b["external_id"]]["xml"]


def test_the_console_draft_form_offers_the_escalation_choice(rt, client):
    c = confirmed_case(rt, client)
    wire_ncmec(rt, None, c.data)
    csrf = sign_in(client, "legal")
    page = client.get(f"/console/cases/{c.case_id}").text
    assert 'id="cybertipline-form"' in page and 'id="escalation-suggested"' in page
    assert 'value="imminent_danger"' in page and 'value="ongoing_abuse"' in page
    refused = client.post(
        f"/console/cases/{c.case_id}/cybertipline",
        data={"csrf": csrf, "escalation_reason": "", "escalation_note": "Hurry."},
    )
    assert refused.status_code == 422 and 'id="legal-error"' in refused.text
    r = client.post(
        f"/console/cases/{c.case_id}/cybertipline",
        data={"csrf": csrf, "escalation_reason": "ongoing_abuse", "escalation_note": ""},
    )
    assert r.status_code == 200 and "CyberTipline reports drafted" in r.text
    filings = rt.cybertipline.for_case(c.case_id)
    assert {f.escalation_reason for f in filings} == {"ongoing_abuse"}
    assert "Ongoing abuse" in r.text or "ongoing abuse" in r.text.lower()


# -- 5. fileViewedByEsp per reported account, through the console's reveal ---------------------
@pytest.mark.parametrize(("scope", "b_viewed"), [("account", "false"), ("file", "true")])
def test_a_reveal_counts_for_the_account_whose_copy_was_shown(rt, client, scope, b_viewed):
    photo = standin_bytes("camera.png")  # a stand-in photo, never real material
    p = platform_headers(rt)
    for item, account in (("x1", "acc-a"), ("x2", "acc-b")):
        r = client.put(
            f"/v1/items/{item}",
            headers=p,
            json={"account_id": account, "url": f"https://social.example/p/{item}"},
        )
        assert r.is_success, r.text
        r = client.post(f"/v1/items/{item}/media", headers=p, files={"file": ("f.png", photo)})
        assert r.status_code == 200, r.text
    with rt.sessions() as s:
        media = s.scalars(select(Media)).one()  # the same bytes: one file, two copies
    case_id = client.post("/v1/reports", json=parent_report(["x1", "x2"])).json()["case_number"]

    csrf = sign_in(client, "mod")
    page = client.get(f"/console/cases/{case_id}").text
    assert '<select name="item">' in page  # the file is on two items: say which one
    [reveal] = reveal_urls(page)
    link = client.post(
        reveal,
        data={"csrf": csrf, "purpose": "review", "item": "x1"},
        headers={"Accept": "application/json"},
    ).json()["url"]
    assert client.get(link).content == photo
    [view] = [e for e in _events(rt, "media.viewed") if e["full"]]
    assert view["item"] == "x1" and view["account"] == "acc-a"
    client.cookies.clear()

    _decide(client, case_id, user_headers(rt, "apimod", "moderator"))
    legal = user_headers(rt, "lex", "legal")
    with ncmec_server() as (url, server):
        wire_ncmec(rt, url, {media.public_id: photo}, ncmec_viewed_scope=scope)
        filings = _by_account(
            client.post(f"/v1/legal/cases/{case_id}/cybertipline", headers=legal).json()
        )
        viewed = {}
        for account, f in filings.items():
            done = client.post(f"/v1/legal/filings/{f['id']}/submit", headers=legal).json()
            assert done["state"] == "finished", done
            [info] = server.reports[done["external_id"]]["fileinfo"]
            viewed[account] = ET.fromstring(info).findtext("fileViewedByEsp")
    assert viewed == {"acc-a": "true", "acc-b": b_viewed}


def test_a_view_that_names_no_item_counts_only_for_the_file_scope():
    from takedown.domain import cybertipline as ct

    old = [("user:mod", {"full": True})]  # before views named the item
    assert not ct.viewed_in_full(old, ct.ViewedScope.ACCOUNT, ["x1"])
    assert ct.viewed_in_full(old, ct.ViewedScope.FILE, ["x1"])
    mine = [("user:mod", {"full": True, "item": "x1"})]
    assert ct.viewed_in_full(mine, ct.ViewedScope.ACCOUNT, ["x1"])
    assert not ct.viewed_in_full(mine, ct.ViewedScope.ACCOUNT, ["x2"])
    assert not ct.viewed_in_full([("system", {"full": True, "item": "x1"})], ct.ViewedScope.FILE)


# -- 6. checked before it leaves -------------------------------------------------------------
def test_a_report_that_breaks_the_schema_is_not_sent(rt, client):
    c = confirmed_case(rt, client)
    with ncmec_server() as (url, server):
        wire_ncmec(rt, url, c.data, ncmec_platform_name="   ")  # blank: an empty element
        r = client.post(f"/v1/legal/cases/{c.case_id}/cybertipline", headers=c.legal)
        assert r.status_code == 201, r.text
        f = _by_account(r.json())["acc-a"]
        assert f["state"] == "invalid"
        assert "/report/incidentSummary/platform" in f["last_error"] and "empty" in f["last_error"]
        again = client.post(f"/v1/legal/filings/{f['id']}/submit", headers=c.legal).json()
        assert again["state"] == "invalid"
        assert server.requests == []  # nothing left for NCMEC
        [entry] = [
            e
            for e in client.get("/v1/legal/queue", headers=c.legal).json()
            if e["case_id"] == c.case_id
        ]
        shown = {t["subject"]: t for t in entry["reported_to"]}
        assert shown["acc-a"]["state"] == "invalid"
        assert "platform" in shown["acc-a"]["problem"]
        events = _events(rt, "cybertipline.invalid")
        assert events and events[0]["element"] == "/report/incidentSummary/platform"
        # Fixed by a person: withdraw the draft, correct the setting, draft again.
        client.post(f"/v1/legal/filings/{f['id']}/retract", headers=c.legal)
        wire_ncmec(rt, url, c.data)
        [redo] = [
            x
            for x in client.post(
                f"/v1/legal/cases/{c.case_id}/cybertipline", headers=c.legal
            ).json()
            if x["subject"] == "acc-a"
        ]
        assert redo["state"] == "drafted"
        done = client.post(f"/v1/legal/filings/{redo['id']}/submit", headers=c.legal).json()
        assert done["state"] == "finished"


def test_a_stored_draft_in_the_old_form_is_stopped_before_submit(rt, client):
    c = confirmed_case(rt, client)
    with ncmec_server() as (url, server):
        wire_ncmec(rt, url, c.data)
        f = _by_account(
            client.post(f"/v1/legal/cases/{c.case_id}/cybertipline", headers=c.legal).json()
        )["acc-a"]
        with unit_of_work(rt.sessions) as s:  # drafted by an earlier version
            xml = s.scalar(select(LegalFiling.report_xml).where(LegalFiling.public_id == f["id"]))
            old = xml.replace(
                "</personOrUserReported>",
                "<priorCTReports><reportId>100001</reportId></priorCTReports>"
                "</personOrUserReported>",
            )
            s.execute(
                update(LegalFiling).where(LegalFiling.public_id == f["id"]).values(report_xml=old)
            )
        done = client.post(f"/v1/legal/filings/{f['id']}/submit", headers=c.legal).json()
        assert done["state"] == "invalid" and done["external_id"] is None
        assert "priorCTReports" in done["last_error"]
        assert [s for s, _ in server.requests if s == "submit"] == []


def test_file_details_that_break_the_schema_are_not_sent(rt, client, monkeypatch):
    from takedown.services.legal import cybertipline as filer

    real = filer.ct.file_details_xml

    def broken(report_id, file_id, f):  # a builder bug: a value outside the enumeration
        return real(report_id, file_id, f).replace(
            "<fileRelevance>Reported<", "<fileRelevance>Yes<"
        )

    monkeypatch.setattr(filer.ct, "file_details_xml", broken)
    c = confirmed_case(rt, client)
    with ncmec_server() as (url, server):
        wire_ncmec(rt, url, c.data)
        f = _by_account(
            client.post(f"/v1/legal/cases/{c.case_id}/cybertipline", headers=c.legal).json()
        )["acc-a"]
        done = client.post(f"/v1/legal/filings/{f['id']}/submit", headers=c.legal).json()
        assert done["state"] == "invalid" and done["external_id"]
        assert "/fileDetails/fileRelevance" in done["last_error"]
        steps = [step for step, _ in server.requests]
        assert steps == ["submit", "upload"]  # no fileinfo, no finish
        assert _events(rt, "cybertipline.invalid")[0]["document"] == "fileDetails"
