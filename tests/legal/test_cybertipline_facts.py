"""Where it happened, the files as they were, and the victim with consent: from the
platform's registry calls and a parent's report, through the console's legal API, to
the XML the local NCMEC-protocol server received (which checks the element order and
the eventName enumeration)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from xml.etree import ElementTree as ET

from sqlalchemy import select

from takedown.runtime import Runtime
from takedown.store.models import Media
from tests.cases.helpers import parent_report, platform_headers, user_headers
from tests.conftest import standin_bytes
from tests.legal.helpers import wire_ncmec
from tests.legal.ncmec_server import check_sequence, ncmec_server

POSTED = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
IP_ORDER = ["ipAddress", "eventName", "dateTime", "possibleProxy", "port"]


def _md(data: bytes, name: str | None = None) -> dict[str, str]:
    out = {"sha256": hashlib.sha256(data).hexdigest(), "md5": hashlib.md5(data).hexdigest()}
    return out | ({"file_name": name} if name else {})


def _file_case(rt: Runtime, client, report: dict) -> tuple[str, dict[str, bytes], dict]:
    """Three accounts' items, registered by the platform: acc-a's public with its file
    name and addresses, acc-b's private, acc-c's with nothing said; one report naming
    them; a moderator confirms. Stand-in photos only."""
    p = platform_headers(rt)
    one, two, three = (standin_bytes(n) for n in ("camera.png", "coins.png", "moon.png"))
    account = {
        "handle": "poster_a",
        "ip_events": [
            {"ip": "2001:db8::7", "event": "login", "at": "2026-02-27T21:15:00Z"},
            {
                "ip": "198.51.100.23",
                "event": "registration",
                "at": "2025-11-02T08:00:00Z",
                "port": 51234,
            },
            {"ip": "192.0.2.55", "event": "purchase"},
        ],
    }
    assert client.put("/v1/accounts/acc-a", json=account, headers=p).is_success
    items = {
        "p1": {
            "account_id": "acc-a",
            "url": "https://social.example/p/1",
            "posted_at": POSTED.isoformat(),
            "visibility": "public",
            "media": [_md(one, "IMG_0042.JPG")],
            "ip_events": [{"ip": "203.0.113.7", "at": POSTED.isoformat(), "port": 443}],
        },
        "p2": {
            "account_id": "acc-b",
            "url": "https://social.example/p/2",
            "visibility": "private",
            "media": [_md(two)],
        },
        "p3": {"account_id": "acc-c", "media": [_md(three)]},
        # acc-b posted the same bytes as p1 later, privately, under another name.
        "p4": {
            "account_id": "acc-b",
            "url": "https://social.example/p/4",
            "posted_at": "2026-03-02T12:00:00Z",
            "visibility": "private",
            "media": [_md(one, "copy.jpg")],
            "ip_events": [{"ip": "192.0.2.99", "event": "upload"}],
        },
    }
    for pid, body in items.items():
        r = client.put(f"/v1/items/{pid}", json=body, headers=p)
        assert r.status_code == 200, r.text
    r = client.post("/v1/reports", json=report)
    assert r.status_code == 201, r.text
    case_id = r.json()["case_number"]
    # Restrict-first hid them; the platform now says p1 is restricted: not as found.
    assert client.get("/v1/items/p1", headers=p).json()["visibility"] == "restricted"
    again = {**items["p1"], "visibility": "restricted"}
    assert client.put("/v1/items/p1", json=again, headers=p).is_success
    with rt.sessions() as s:
        ids = {sha: pid for sha, pid in s.execute(select(Media.sha256, Media.public_id)).all()}
    m1 = ids[hashlib.sha256(one).hexdigest()]
    moderator = user_headers(rt, "mod", "moderator")
    r = client.post(
        f"/v1/cases/{case_id}/decisions",
        headers=moderator,
        json={
            "outcome": "violation",
            "policy": "csam",
            "reasons": "Apparent child sexual abuse material (stand-in in tests).",
            "media_review": [{"media_id": m1, "classification": "B2"}],
        },
    )
    assert r.status_code == 201, r.text
    data = {ids[hashlib.sha256(b).hexdigest()]: b for b in (one, two, three)}
    return case_id, data, user_headers(rt, "lex", "legal")


def _infos(got: dict) -> dict[str, ET.Element]:
    """The fileDetails the server received for one report, by the file's MD5."""
    out = {}
    for body in got["fileinfo"]:
        info = ET.fromstring(body)
        out[info.findtext("originalFileHash")] = info
    return out


def _file_all(rt: Runtime, client, case_id: str, data: dict, legal: dict) -> dict[str, dict]:
    """Draft and submit every report of the case; what the server got, by account."""
    with ncmec_server() as (url, server):
        wire_ncmec(rt, url, data)
        r = client.post(f"/v1/legal/cases/{case_id}/cybertipline", headers=legal, json={})
        assert r.status_code == 201, r.text
        out = {}
        for f in r.json():
            r = client.post(f"/v1/legal/filings/{f['id']}/submit", headers=legal)
            assert r.status_code == 200 and r.json()["state"] == "finished", r.text
            out[f["subject"]] = server.reports[r.json()["external_id"]]
    return out


def test_reports_carry_addresses_file_names_visibility_location_and_time(rt, client):
    case_id, data, legal = _file_case(rt, client, parent_report(["p1", "p2", "p3"]))
    sent = _file_all(rt, client, case_id, data, legal)
    assert set(sent) == {"acc-a", "acc-b", "acc-c"}

    root = ET.fromstring(sent["acc-a"]["xml"])
    assert check_sequence(root) is None
    user = root.find("personOrUserReported")
    tags = [el.tag for el in user]
    assert tags[:2] == ["espIdentifier", "espService"]
    assert tags.count("ipCaptureEvent") == 3
    assert tags.index("ipCaptureEvent") > tags.index("screenName")  # after the profile
    events = [{child.tag: child.text for child in ev} for ev in user.findall("ipCaptureEvent")]
    for ev in user.findall("ipCaptureEvent"):
        order = [child.tag for child in ev]
        assert order == sorted(order, key=IP_ORDER.index)  # the schema's order
    assert events == [  # oldest first, the one without a time last
        {
            "ipAddress": "198.51.100.23",
            "eventName": "Registration",
            "dateTime": "2025-11-02T08:00:00Z",
            "port": "51234",
        },
        {"ipAddress": "2001:db8::7", "eventName": "Login", "dateTime": "2026-02-27T21:15:00Z"},
        {"ipAddress": "192.0.2.55", "eventName": "Purchase"},
    ]

    md5 = {n: hashlib.md5(standin_bytes(n)).hexdigest() for n in ("camera.png", "coins.png")}
    (info_a,) = _infos(sent["acc-a"]).values()
    assert info_a.findtext("originalFileName") == "IMG_0042.JPG"
    assert info_a.findtext("uploadedToEspTimestamp") == "2026-03-01T09:30:00Z"
    assert info_a.findtext("locationOfFile") == "https://social.example/p/1"
    assert info_a.findtext("publiclyAvailable") == "true"  # public when found
    (upload,) = info_a.findall("ipCaptureEvent")
    assert [(c.tag, c.text) for c in upload] == [
        ("ipAddress", "203.0.113.7"),
        ("eventName", "Upload"),
        ("dateTime", "2026-03-01T09:30:00Z"),
        ("port", "443"),
    ]
    tags = [el.tag for el in info_a]
    assert tags.index("originalFileHash") < tags.index("ipCaptureEvent")

    # The same file, as acc-b posted it: its own item's place, time, name and address.
    infos_b = _infos(sent["acc-b"])
    copy = infos_b[md5["camera.png"]]
    assert copy.findtext("locationOfFile") == "https://social.example/p/4"
    assert copy.findtext("uploadedToEspTimestamp") == "2026-03-02T12:00:00Z"
    assert copy.findtext("originalFileName") == "copy.jpg"
    assert copy.findtext("publiclyAvailable") == "false"
    assert [ev.findtext("ipAddress") for ev in copy.findall("ipCaptureEvent")] == ["192.0.2.99"]
    info_b = infos_b[md5["coins.png"]]
    assert info_b.findtext("publiclyAvailable") == "false"  # the platform said private
    assert info_b.findtext("locationOfFile") == "https://social.example/p/2"
    assert info_b.find("originalFileName") is None and info_b.find("ipCaptureEvent") is None
    assert ET.fromstring(sent["acc-b"]["xml"]).find("personOrUserReported/ipCaptureEvent") is None

    (info_c,) = _infos(sent["acc-c"]).values()
    for absent in ("publiclyAvailable", "originalFileName", "locationOfFile", "ipCaptureEvent"):
        assert info_c.find(absent) is None, absent  # unknown: left out, not guessed


CONSENTED = {
    "reporter_name": "Pat Parent",
    "reporter_email": "pat.parent@example.org",
    "victim_consent": True,
    "victim_first_name": "Sam",
    "victim_last_name": "Example",
    "victim_phone": "+1 555 0100",
    "victim_email": "sam@example.org",
    "victim_age": 13,
    "victim_date_of_birth": "2012-05-04",
}


def test_the_victim_section_carries_what_was_given_with_consent(rt, client):
    case_id, data, legal = _file_case(rt, client, parent_report(["p1"], **CONSENTED))
    sent = _file_all(rt, client, case_id, data, legal)
    root = ET.fromstring(sent["acc-a"]["xml"])
    (victim,) = root.findall("victim")
    person = victim.find("victimPerson")
    assert [(c.tag, c.text) for c in person] == [
        ("firstName", "Sam"),
        ("lastName", "Example"),
        ("phone", "+1 555 0100"),
        ("email", "sam@example.org"),
        ("age", "13"),
        ("dateOfBirth", "2012-05-04"),
    ]
    assert "consented" in victim.findtext("additionalInfo")
    body = sent["acc-a"]["xml"].decode()
    assert "Pat Parent" not in body and "pat.parent@example.org" not in body  # the reporter
    # The platform's own reporting person, from settings, as before.
    assert root.findtext("reporter/reportingPerson/email") == "legal@platform.example"


def test_without_consent_nothing_of_theirs_is_sent(rt, client):
    report = parent_report(
        ["p1"],
        reporter_role="person_depicted",
        reporter_name="Sam Example",
        reporter_email="sam@example.org",
    )
    case_id, data, legal = _file_case(rt, client, report)
    sent = _file_all(rt, client, case_id, data, legal)
    for got in sent.values():
        body = got["xml"].decode()
        assert ET.fromstring(body).find("victim") is None
        assert "Sam" not in body and "sam@example.org" not in body


def test_the_protocol_server_refuses_misordered_or_unknown_ip_events():
    def user(event: str) -> ET.Element:
        return ET.fromstring(
            f"<personOrUserReported><espIdentifier>a</espIdentifier>{event}</personOrUserReported>"
        )

    good = (
        "<ipCaptureEvent><ipAddress>192.0.2.1</ipAddress><eventName>Login</eventName>"
        "<dateTime>2026-03-01T09:30:00Z</dateTime><port>443</port></ipCaptureEvent>"
    )
    assert check_sequence(user(good)) is None
    swapped = good.replace(
        "<ipAddress>192.0.2.1</ipAddress><eventName>Login</eventName>",
        "<eventName>Login</eventName><ipAddress>192.0.2.1</ipAddress>",
    )
    assert "out of order" in (check_sequence(user(swapped)) or "")
    late_port = good.replace("<port>443</port>", "").replace(
        "<dateTime>", "<port>443</port><dateTime>"
    )
    assert "out of order" in (check_sequence(user(late_port)) or "")
    assert "eventName" in (check_sequence(user(good.replace("Login", "login"))) or "")
    assert "lacks ipAddress" in (
        check_sequence(user("<ipCaptureEvent><eventName>Login</eventName></ipCaptureEvent>")) or ""
    )


def test_a_long_lived_account_sends_its_registration_and_newest_log_ins(rt, client):
    from datetime import timedelta

    p = platform_headers(rt)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    logins = [
        {
            "ip": f"198.51.100.{i % 200 + 1}",
            "event": "login",
            "at": (start + timedelta(i)).isoformat(),
        }
        for i in range(150)
    ]
    signup = {"ip": "192.0.2.1", "event": "registration", "at": "2023-12-31T00:00:00Z"}
    for part in ([signup, *logins[:99]], logins[99:]):
        r = client.put("/v1/accounts/acc-a", json={"ip_events": part}, headers=p)
        assert r.status_code == 200, r.text
    case_id, data, legal = _file_case(rt, client, parent_report(["p1"]))
    sent = _file_all(rt, client, case_id, data, legal)
    user = ET.fromstring(sent["acc-a"]["xml"]).find("personOrUserReported")
    times = [ev.findtext("dateTime") for ev in user.findall("ipCaptureEvent")]
    assert len(times) == 100
    assert times[0] == "2023-12-31T00:00:00Z"  # the registration, first
    newest = (start + timedelta(149)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert newest in times and "2024-01-01T00:00:00Z" not in times  # newest log-ins kept
    assert times[1:] == sorted(t for t in times[1:] if t)  # oldest first after it
