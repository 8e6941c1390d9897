"""False-positive controls: a negative bank (known-benign hashes) wins over every other
bank before any action, in screening and when the platform registers content (no
restriction, no case). Both database backends."""

from __future__ import annotations

from takedown.services.banks.quarantine import QuarantineService
from tests.cases.helpers import platform_headers

LISTED = "f0" * 32  # a stand-in PDQ "on an exchange's list"
NEAR = "f0" * 31 + "f1"  # 1 bit away: the same picture, a benign meme


def _banks(client, auth) -> None:
    for name, action in (("ncmec", "block"), ("benign", "negative")):
        r = client.post(
            "/v1/banks",
            headers=auth,
            json={
                "name": name,
                "source": "ncmec" if name == "ncmec" else "own",
                "match_action": action,
                "restrict_on_match": name == "ncmec",
            },
        )
        assert r.status_code == 201, r.text
    r = client.post(
        "/v1/banks/ncmec/entries",
        headers=auth,
        json={"entries": [{"signal_type": "pdq", "value": LISTED}]},
    )
    assert r.status_code in (200, 201), r.text


def test_a_negative_bank_wins_in_screening(rt, client, auth):
    _banks(client, auth)
    r = client.post("/v1/screen/hashes", json={"pdq": NEAR, "pdq_quality": 90}, headers=auth)
    assert r.json()["verdict"] == "block"
    client.post(
        "/v1/banks/benign/entries",
        headers=auth,
        json={"entries": [{"signal_type": "pdq", "value": NEAR, "note": "meme"}]},
    )
    r = client.post("/v1/screen/hashes", json={"pdq": NEAR, "pdq_quality": 90}, headers=auth)
    body = r.json()
    assert body["verdict"] == "allow"
    assert [m["action"] for m in body["matches"]] == ["negative", "block"]


def test_a_negative_bank_stops_restrict_first(rt, client, auth):
    _banks(client, auth)
    client.post(
        "/v1/banks/benign/entries",
        headers=auth,
        json={"entries": [{"signal_type": "pdq", "value": LISTED}]},
    )
    item = {"account_id": "acc-1", "media": [{"sha256": "ab" * 32, "pdq": NEAR, "pdq_quality": 90}]}
    r = client.put("/v1/items/i1", json=item, headers=platform_headers(rt)).json()
    assert r["verdict"] == "allow" and r["cases"] == []
    assert r["visibility"] != "restricted"
    assert sorted(r["matched_banks"]) == ["benign", "ncmec"]


def test_flood_quarantine(rt, client, auth):
    """An entry matching N distinct uploads within an hour stops blocking, is audited
    and alerted, and waits for a child-safety specialist: restored (not quarantined
    again for that flood) or left disabled."""
    from sqlalchemy import select

    from takedown.services.banks.quarantine import QuarantineService
    from takedown.store.models import AuditEvent, MailMessage
    from tests.cases.helpers import user_headers

    rt.quarantine = QuarantineService(rt.sessions, uploads=3, alert_to="cs@example.org")
    _banks(client, auth)
    client.post(
        "/v1/banks/ncmec/entries",
        headers=auth,
        json={"entries": [{"signal_type": "md5", "value": "ab" * 16}]},
    )

    def screen(body):
        return client.post("/v1/screen/hashes", json=body, headers=auth).json()["verdict"]

    for i in range(3):  # three distinct uploads of the listed picture
        assert screen({"pdq": NEAR, "pdq_quality": 90, "content_ref": f"u{i}"}) == "block"
    assert screen({"md5": "ab" * 16}) == "block"  # one upload only: no flood
    assert rt.quarantine.sweep() and rt.quarantine.sweep() == []
    assert screen({"pdq": NEAR, "pdq_quality": 90}) == "allow"  # stopped blocking
    assert screen({"md5": "ab" * 16}) == "block"
    pending = client.get("/v1/quarantines", headers=auth).json()
    assert len(pending) == 1 and pending[0]["uploads"] == 3 and pending[0]["value"] == LISTED
    with rt.sessions() as s:
        mail = s.scalars(select(MailMessage)).one()
        assert mail.to_address == "cs@example.org" and pending[0]["id"] in mail.body
        actions = set(s.scalars(select(AuditEvent.action)))
        assert "entry.quarantined" in actions
    qid = pending[0]["id"]
    mod = user_headers(rt, "mod", "moderator")
    r = client.post(f"/v1/quarantines/{qid}/decision", json={"restore": True}, headers=mod)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    spec = user_headers(rt, "spec", "child_safety_specialist")
    r = client.post(f"/v1/quarantines/{qid}/decision", json={"restore": True}, headers=spec)
    assert r.status_code == 200 and r.json()["state"] == "restored"
    assert screen({"pdq": NEAR, "pdq_quality": 90}) == "block"
    assert rt.quarantine.sweep() == []  # restored during this flood: left be
    history = client.get(f"/v1/entries/{pending[0]['entry']}/matches", headers=auth).json()
    assert history["matches"] == history["matches_last_hour"] == 4  # 3 + the one after
    assert history["last_match_at"] and history["enabled"]
    assert (history["confirmed"], history["rejected"]) == (1, 0)
    assert [q["state"] for q in history["quarantines"]] == ["restored"]
    nope = client.get("/v1/entries/nope/matches", headers=auth)
    assert nope.status_code == 404 and nope.json()["code"] == "entry_not_found"
    again = client.post(f"/v1/quarantines/{qid}/decision", json={"restore": False}, headers=spec)
    assert again.status_code == 409 and again.json()["code"] == "quarantine_decided"
    missing = client.post("/v1/quarantines/nope/decision", json={"restore": True}, headers=spec)
    assert missing.status_code == 404 and missing.json()["code"] == "quarantine_not_found"
    # A second entry floods, and the specialist leaves it disabled.
    client.post(
        "/v1/banks/ncmec/entries",
        headers=auth,
        json={"entries": [{"signal_type": "sha256", "value": "cd" * 32}]},
    )
    for i in range(3):
        screen({"sha256": "cd" * 32, "content_ref": f"v{i}"})
    (q,) = rt.quarantine.sweep()
    r = client.post(f"/v1/quarantines/{q.id}/decision", json={"restore": False}, headers=spec)
    assert r.json()["state"] == "disabled" and screen({"sha256": "cd" * 32}) == "allow"
    assert client.get("/v1/quarantines", headers=auth).json() == []


def test_a_flood_of_registered_uploads_quarantines_the_entry(rt, client, auth):
    """The platform registers its uploads (``PUT /v1/items``) rather than screening
    them: N distinct items matching one entry within an hour quarantine it like N
    screenings, and its match history counts them. The same item registered again is
    one upload; an item a negative bank spares does not count."""
    from tests.cases.helpers import platform_headers, user_headers

    rt.quarantine = QuarantineService(rt.sessions, uploads=3, alert_to="cs@example.org")
    _banks(client, auth)
    listed_md5 = "ab" * 16
    r = client.post("/v1/banks/ncmec/entries", headers=auth,
                    json={"entries": [{"signal_type": "md5", "value": listed_md5}]})  # fmt: skip
    assert r.status_code in (200, 201), r.text
    platform = platform_headers(rt)

    def register(n: int, md5: str = listed_md5) -> dict:
        media = {"sha256": f"{n:064x}", "md5": md5, "media_type": "image"}
        r = client.put(f"/v1/items/up-{n}", headers=platform,
                       json={"account_id": f"acc-{n}", "media": [media]})  # fmt: skip
        assert r.is_success, r.text
        return r.json()

    assert register(1)["matched_banks"] == ["ncmec"]
    register(1)  # the same upload registered again
    register(2)
    assert rt.quarantine.sweep() == []  # two distinct uploads so far
    assert register(3)["matched_banks"] == ["ncmec"]
    (q,) = rt.quarantine.sweep()
    assert (q.value, q.uploads) == (listed_md5, 3)
    assert register(4)["matched_banks"] == []  # it stopped matching at once
    history = client.get(f"/v1/entries/{q.entry}/matches", headers=auth).json()
    assert history["matches_last_hour"] >= 3 and history["last_match_at"]
    spec = user_headers(rt, "spec", "child_safety_specialist")
    r = client.post(f"/v1/quarantines/{q.id}/decision", json={"restore": True}, headers=spec)
    assert r.status_code == 200 and r.json()["state"] == "restored", r.text
    assert register(5)["matched_banks"] == ["ncmec"]
