"""IP events, upload file names and the platform's visibility in the registry: through
the public API, as the platform sends them and as legal staff read them back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from takedown.runtime import Runtime
from takedown.store.models import AuditEvent, IpEvent
from tests.cases.helpers import parent_report, platform_headers, user_headers
from tests.conftest import standin_bytes

SIGNED_UP = datetime(2025, 11, 2, 8, 0, tzinfo=UTC)
LOGGED_IN = datetime(2026, 2, 27, 21, 15, tzinfo=UTC)
EVENTS = [
    {"ip": "198.51.100.23", "event": "registration", "at": SIGNED_UP.isoformat(), "port": 51234},
    # Written the long way: kept (and sent) as ipaddress writes it, 2001:db8::7.
    {"ip": "2001:DB8:0:0:0:0:0:7", "event": "login", "at": LOGGED_IN.isoformat()},
    {"ip": "192.0.2.55", "event": "purchase"},  # no time: still kept
]


def _ip_rows(rt: Runtime) -> int:
    with rt.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(IpEvent)) or 0)


def test_ip_events_are_read_by_legal_staff_only_and_kept_once(rt: Runtime, client):
    p = platform_headers(rt)
    r = client.put(
        "/v1/accounts/acc-ip", json={"handle": "ip_user", "ip_events": EVENTS}, headers=p
    )
    assert r.status_code == 200, r.text
    assert r.json()["ip_events"] is None  # the platform's key never reads them back
    upload = {"ip": "203.0.113.9", "at": "2026-03-01T10:30:00+01:00", "port": 443}
    r = client.put(
        "/v1/items/ip-1", json={"account_id": "acc-ip", "ip_events": [upload]}, headers=p
    )
    assert r.status_code == 200 and r.json()["created"], r.text
    assert _ip_rows(rt) == 4

    # The same events again (in another order, one written differently) add nothing.
    again = [EVENTS[2], EVENTS[0], {**EVENTS[1], "ip": "2001:db8::7"}]
    r = client.put("/v1/accounts/acc-ip", json={"ip_events": again}, headers=p)
    assert r.status_code == 200, r.text
    r = client.put(
        "/v1/items/ip-1", json={"account_id": "acc-ip", "ip_events": [upload]}, headers=p
    )
    assert r.status_code == 200 and r.json()["changed"] is False, r.text
    assert _ip_rows(rt) == 4
    with rt.sessions() as s:
        added = s.scalars(
            select(AuditEvent).where(AuditEvent.action.like("%.ip_events_added"))
        ).all()
    assert len(added) == 2  # once per first sending, and no address in the audit log
    assert all("198.51" not in a.details and "203.0" not in a.details for a in added)

    # Read: legal staff and admins see them; the platform and a moderator do not.
    legal = user_headers(rt, "lex", "legal")
    admin = user_headers(rt, "ada", "admin")
    moderator = user_headers(rt, "mo", "moderator")
    for who in (legal, admin):
        r = client.get("/v1/accounts/acc-ip", headers=who)
        assert r.status_code == 200, r.text
        shown = {(e["ip"], e["event"], e["port"]) for e in r.json()["ip_events"]}
        assert shown == {
            ("198.51.100.23", "registration", 51234),
            ("2001:db8::7", "login", None),
            ("192.0.2.55", "purchase", None),
        }
        (item_event,) = client.get("/v1/items/ip-1", headers=who).json()["ip_events"]
        assert item_event["event"] == "upload"  # an item's event is its upload by default
        assert datetime.fromisoformat(item_event["at"]) == datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    r = client.get("/v1/accounts/acc-ip", headers=p)
    assert r.status_code == 200 and r.json()["ip_events"] is None
    assert client.get("/v1/items/ip-1", headers=p).json()["ip_events"] is None
    assert client.get("/v1/accounts/acc-ip", headers=moderator).status_code == 403
    assert client.get("/v1/items/ip-1", headers=moderator).status_code == 403
    _, admin_key = rt.api_keys.create("ops", ["admin"], actor="test")
    r = client.get("/v1/accounts/acc-ip", headers={"Authorization": f"Bearer {admin_key}"})
    assert r.status_code == 200 and r.json()["ip_events"] is None  # a machine: no
    with rt.sessions() as s:
        reads = s.scalars(
            select(AuditEvent.actor).where(AuditEvent.action.like("%.ip_events_viewed"))
        ).all()
    assert sorted(set(reads)) == ["user:ada", "user:lex"]  # every read is in the log


def test_bad_ip_events_are_refused_whole(rt: Runtime, client):
    p = platform_headers(rt)
    cases = [
        ({"ip": "203.0.113.300", "event": "login"}, "invalid_ip_address"),
        ({"ip": "not an address", "event": "login"}, "invalid_ip_address"),
        ({"ip": "fe80::1%eth0", "event": "login"}, "invalid_ip_address"),
        ({"ip": "203.0.113.7"}, "invalid_ip_event"),  # an account's event is said
        ({"ip": "203.0.113.7", "event": "teleport"}, "invalid_request"),
        ({"ip": "203.0.113.7", "event": "login", "port": 70000}, "invalid_request"),
        ({"ip": "203.0.113.7", "event": "login", "at": "2026-03-01T10:00:00"}, "invalid_request"),
    ]
    for bad, code in cases:
        good = {"ip": "198.51.100.1", "event": "login"}
        r = client.put("/v1/accounts/acc-bad", json={"ip_events": [good, bad]}, headers=p)
        assert r.status_code == 422 and r.json()["code"] == code, (bad, r.text)
    too_many = [
        {
            "ip": f"198.51.100.{i % 250}",
            "event": "login",
            "at": (SIGNED_UP + timedelta(i)).isoformat(),
        }
        for i in range(101)
    ]
    r = client.put("/v1/accounts/acc-bad", json={"ip_events": too_many}, headers=p)
    assert r.status_code == 422, r.text
    # Nothing of the refused requests was kept, not even the account.
    assert _ip_rows(rt) == 0
    assert client.get("/v1/accounts/acc-bad", headers=p).status_code == 404


def test_file_names_and_visibility_are_checked(rt: Runtime, client):
    p = platform_headers(rt)
    sha = "a" * 64
    for name in ("../etc/passwd", "photos/beach.jpg", "C:\\Users\\x.jpg", "bad\x07.jpg", ".."):
        body = {"media": [{"sha256": sha, "file_name": name}]}
        r = client.put("/v1/items/fn-1", json=body, headers=p)
        assert r.status_code == 422 and r.json()["code"] == "invalid_file_name", (name, r.text)
    r = client.put(
        "/v1/items/fn-1", json={"media": [{"sha256": sha, "file_name": "x" * 256}]}, headers=p
    )
    assert r.status_code == 422, r.text
    r = client.put("/v1/items/fn-1", json={"visibility": "friends"}, headers=p)
    assert r.status_code == 422, r.text
    body = {"visibility": "public", "media": [{"sha256": sha, "file_name": "été 2025.jpg"}]}
    r = client.put("/v1/items/fn-1", json=body, headers=p)
    assert r.status_code == 200 and r.json()["created"], r.text
    # A file sent as bytes keeps the name it was uploaded with.
    photo = standin_bytes("coffee.png")  # a benign stand-in photo
    r = client.post("/v1/items/fn-1/media", headers=p, files={"file": ("mug shot.png", photo)})
    assert r.status_code == 200, r.text
    from takedown.store.models import ItemMedia

    with rt.sessions() as s:
        names = sorted(s.scalars(select(ItemMedia.file_name)).all())
    assert names == ["mug shot.png", "été 2025.jpg"]


def test_preserved_evidence_keeps_the_ip_events_while_held(rt: Runtime, client):
    p = platform_headers(rt)
    assert client.put("/v1/accounts/acc-ev", json={"ip_events": EVENTS[:1]}, headers=p).is_success
    body = {
        "account_id": "acc-ev",
        "visibility": "public",
        "media": [{"sha256": "b" * 64, "file_name": "clip.mp4", "media_type": "video"}],
        "ip_events": [{"ip": "203.0.113.10", "at": "2026-03-01T09:30:00Z"}],
    }
    assert client.put("/v1/items/ev-1", json=body, headers=p).is_success
    case_id = client.post("/v1/reports", json=parent_report(["ev-1"])).json()["case_number"]
    legal = user_headers(rt, "lex", "legal")
    why = "Checking what the preserved record holds (test)."
    r = client.post("/v1/evidence", json={"case_id": case_id, "purpose": why}, headers=legal)
    assert r.status_code == 201, r.text
    ev = r.json()["id"]
    done = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    r = client.post(
        f"/v1/evidence/cases/{case_id}/reported", json={"completed_at": done}, headers=legal
    )
    assert r.status_code == 200, r.text
    doc = client.get(f"/v1/evidence/{ev}/context", params={"purpose": why}, headers=legal).json()
    (account,) = doc["accounts"]
    assert [(e["ip"], e["event"]) for e in account["ip_events"]] == [
        ("198.51.100.23", "registration")
    ]
    (item,) = doc["items"]
    assert [(e["ip"], e["event"]) for e in item["ip_events"]] == [("203.0.113.10", "upload")]
    assert item["file_names"] == {"b" * 64: "clip.mp4"}
    assert item["publicly_available_when_found"] is True
    assert item["platform_visibility"] == "public"
    # Held: the evidence (and the addresses in it) cannot be deleted.
    r = client.post(f"/v1/evidence/{ev}/delete", json={"reason": "cleanup"}, headers=legal)
    assert r.status_code == 409 and r.json()["code"] == "evidence_held"
    assert _ip_rows(rt) == 2  # and the registry's own rows are never purged


def test_the_service_checks_what_the_api_schema_also_bounds(rt: Runtime):
    """The registry service is called in-process too (CLI, connectors): it checks the
    bounds itself, with codes of its own."""
    from takedown.errors import InvalidRequest
    from takedown.services.registry.service import AccountInput, IpEventInput, ItemInput

    def code(call) -> str:
        try:
            call()
        except InvalidRequest as exc:
            return exc.code
        raise AssertionError("accepted")

    many = tuple(IpEventInput(f"192.0.2.{i}", "login") for i in range(101))
    assert (
        code(lambda: rt.registry.upsert_account(AccountInput("s1", ip_events=many), actor="t"))
        == "too_many_ip_events"
    )
    port = (IpEventInput("192.0.2.1", "login", port=65536),)
    assert (
        code(lambda: rt.registry.upsert_account(AccountInput("s1", ip_events=port), actor="t"))
        == "invalid_port"
    )
    naive = (IpEventInput("192.0.2.1", "login", at=datetime(2026, 3, 1)),)
    assert (
        code(lambda: rt.registry.upsert_account(AccountInput("s1", ip_events=naive), actor="t"))
        == "invalid_ip_event"
    )
    assert (
        code(lambda: rt.registry.upsert_item(ItemInput("s-1", visibility="friends"), actor="t"))
        == "invalid_visibility"
    )
    assert _ip_rows(rt) == 0
