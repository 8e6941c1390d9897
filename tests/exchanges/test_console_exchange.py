"""The console's exchange pages (issue 19, items 3 and 6): each exchange's policy
(threshold, action, the negative banks and the flood quarantine in front of it), its
sync state (last and next sync, entries added, disabled and rejected, errors) and the
match history of its entries (matches, the last one, confirmed versus rejected), for
the console's roles; who may see and do what, over plain HTTP on both backends. The
same pages in Chromium: test_console_exchange_browser.py."""

from __future__ import annotations

import re
import time

from takedown.console_demo import PASSWORD
from takedown.runtime import Runtime
from takedown.services.banks.quarantine import QuarantineService
from tests.cases.helpers import user_headers
from tests.console.helpers import sign_in
from tests.exchanges.stopncii_server import FETCH_KEY, SUBSCRIPTION_KEY, StopNciiServer
from tests.exchanges.test_pull import creds_file, pdq, stopncii  # noqa: F401


def seed_exchange(rt: Runtime, client, auth, tmp_path, server: StopNciiServer) -> dict[str, str]:
    """A StopNCII exchange with its own threshold (8) and action (review), a negative
    bank, and two entries with a history: one flooded (3 uploads), restored by a
    specialist and matched again; one matched once. Returns their entry ids."""
    rt.quarantine = QuarantineService(rt.sessions, uploads=3)
    base = int(time.time()) - 3600
    for i in (1, 2, 3):
        server.put("ImagePDQ", pdq(i), "Active", base + i)
    for name, action in (("ncii", "block"), ("benign", "negative")):
        r = client.post("/v1/banks", headers=auth, json={"name": name, "match_action": action})
        assert r.status_code == 201, r.text
    r = client.post(
        "/v1/banks/benign/entries",
        headers=auth,
        json={"entries": [{"signal_type": "pdq", "value": "0f" * 32}]},
    )
    assert r.status_code in (200, 201), r.text
    body = {
        "name": "stopncii",
        "type": "stopncii",
        "bank": "ncii",
        "base_url": server.url,
        "credentials_file": creds_file(tmp_path, f"{FETCH_KEY},{SUBSCRIPTION_KEY}"),
        "threshold": 8,
        "action": "review",
    }
    assert client.post("/v1/exchanges", headers=auth, json=body).status_code == 201
    assert client.post("/v1/exchanges/stopncii/sync", headers=auth).status_code == 200

    def screen(value: str, ref: str) -> None:
        r = client.post(
            "/v1/screen/hashes",
            headers=auth,
            json={"pdq": value, "pdq_quality": 90, "content_ref": ref},
        )
        assert r.status_code == 200 and r.json()["verdict"] == "review", r.text

    for i in range(3):
        screen(pdq(1), f"upload-{i}")
    [flood] = rt.quarantine.sweep()
    spec = user_headers(rt, "spec-seed", "child_safety_specialist")
    r = client.post(f"/v1/quarantines/{flood.id}/decision", json={"restore": True}, headers=spec)
    assert r.status_code == 200, r.text
    screen(pdq(1), "upload-3")
    screen(pdq(2), "upload-4")
    matched = next(
        m["entry_id"]
        for m in client.post(
            "/v1/screen/hashes", headers=auth, json={"pdq": pdq(2), "pdq_quality": 90}
        ).json()["matches"]
    )
    return {"flooded": flood.entry, "once": matched}


def _row(html: str, entry: str) -> str:
    found = re.search(rf"<tr><td class=\"mono\">{entry}</td>(.*?)</tr>", html, re.S)
    assert found, html[-3000:]
    return re.sub(r"<[^>]+>", " ", found.group(1))


def test_the_exchange_page_shows_policy_sync_state_and_match_history(
    rt,
    client,
    auth,
    tmp_path,
    stopncii,  # noqa: F811
):
    ids = seed_exchange(rt, client, auth, tmp_path, stopncii)
    sign_in(client, "mod")  # a moderator reads banks: sees it, may not sync
    listing = client.get("/console/exchanges")
    assert listing.status_code == 200
    assert 'href="/console/exchanges/stopncii"' in listing.text
    assert "PDQ ≤ 8" in listing.text and "review" in listing.text
    page = client.get("/console/exchanges/stopncii")
    assert page.status_code == 200, page.text
    text = page.text
    assert "PDQ and video frames ≤ 8 bits (the exchange's 8; the bank's 31" in text
    assert "review (the exchange's; the bank's is block)" in text
    assert "never blocks or restricts by itself" in text
    assert 'href="/console/banks/benign">benign</a> (1 entries)' in text
    assert "matching 3 distinct uploads within an hour" in text
    assert "0 of its entries waiting now" in text
    assert "3 live · 3 added · 0 disabled · 0 rejected" in text
    assert "Sync stopncii now" not in text
    flooded = _row(text, ids["flooded"]).split()
    once = _row(text, ids["once"]).split()
    # upstream id, signal, value, matches, last hour, last match (date time UTC),
    # confirmed, rejected, state
    assert flooded[3:5] == ["4", "4"] and flooded[-6:] == [
        "1",
        "0",
        "enabled",
        "·",
        "flood",
        "restored",
    ]
    assert once[3:5] == ["2", "2"] and once[-3:] == ["0", "0", "enabled"]
    assert text.index(ids["once"]) < text.index(ids["flooded"])  # the latest match first
    assert "2 of its entries matched" in text


def test_who_sees_the_exchange_pages(rt, client, auth, tmp_path, stopncii):  # noqa: F811
    seed_exchange(rt, client, auth, tmp_path, stopncii)
    client.cookies.clear()
    anonymous = client.get("/console/exchanges/stopncii", follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/console/login"
    rt.users.create("integration", PASSWORD, "platform", actor="t")
    sign_in(client, "integration", csrf=False)  # reads banks, but no console role
    refused = client.get("/console/exchanges/stopncii")
    assert refused.status_code == 403 and "forbidden" in refused.text
    assert "Match history" not in refused.text
    for role in ("legal", "mod"):  # the console's readers: the page, no sync button
        sign_in(client, role)
        page = client.get("/console/exchanges/stopncii")
        assert page.status_code == 200 and "Match history" in page.text
        assert "Sync stopncii now" not in page.text
    sign_in(client, "spec")  # a bank curator: may sync from it
    page = client.get("/console/exchanges/stopncii")
    assert page.status_code == 200 and "Sync stopncii now" in page.text
    missing = client.get("/console/exchanges/nope")
    assert missing.status_code == 404 and "exchange_not_found" in missing.text
    # The API answers the same figures to an API key with banks:read only.
    _, key = rt.api_keys.create("reader", ["banks:read"], actor="t")
    r = client.get("/v1/exchanges/stopncii", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200 and r.json()["threshold"] == 8
