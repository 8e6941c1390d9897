"""An exchange's own threshold and action for its entries: the stricter of the bank's
and the exchange's PDQ threshold applies, and the exchange's action replaces the bank's,
in screening and when the platform registers content; a person's entries in the same
bank keep the bank's. Through the HTTP API against the local StopNCII-protocol server,
on both database backends."""

from __future__ import annotations

import time

from tests.cases.helpers import platform_headers
from tests.exchanges.stopncii_server import FETCH_KEY, SUBSCRIPTION_KEY
from tests.exchanges.test_pull import creds_file, pdq, stopncii  # noqa: F401


def _flip(value: str, bits: int) -> str:
    """A stand-in PDQ ``bits`` bits away from ``value``."""
    return f"{int(value, 16) ^ ((1 << bits) - 1):064x}"


def _screen(client, auth, value: str) -> dict:
    r = client.post("/v1/screen/hashes", json={"pdq": value, "pdq_quality": 90}, headers=auth)
    assert r.status_code == 200, r.text
    return r.json()


def test_exchange_threshold_and_action(rt, client, auth, tmp_path, stopncii):  # noqa: F811
    stopncii.put("ImagePDQ", pdq(1), "Active", int(time.time()) - 3600)
    r = client.post(
        "/v1/banks",
        headers=auth,
        json={"name": "ncii", "source": "stopncii", "match_action": "block"},
    )
    assert r.status_code == 201, r.text
    body = {
        "name": "stopncii",
        "type": "stopncii",
        "bank": "ncii",
        "base_url": stopncii.url,
        "credentials_file": creds_file(tmp_path, f"{FETCH_KEY},{SUBSCRIPTION_KEY}"),
    }
    # Mistakes first: nothing is added.
    bad = client.post("/v1/exchanges", headers=auth, json={**body, "action": "negative"})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_exchange_action"
    bad = client.post("/v1/exchanges", headers=auth, json={**body, "threshold": 500})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_threshold"
    assert client.get("/v1/exchanges", headers=auth).json() == []
    r = client.post(
        "/v1/exchanges", headers=auth, json={**body, "threshold": 8, "action": "review"}
    )
    assert r.status_code == 201, r.text
    assert (r.json()["threshold"], r.json()["action"]) == (8, "review")
    assert client.post("/v1/exchanges/stopncii/sync", headers=auth).status_code == 200
    # A person's entry in the same bank keeps the bank's threshold (31) and action.
    own = pdq(2)
    r = client.post(
        "/v1/banks/ncii/entries",
        headers=auth,
        json={"entries": [{"signal_type": "pdq", "value": own}]},
    )
    assert r.status_code in (200, 201), r.text

    near = _screen(client, auth, _flip(pdq(1), 4))
    assert near["verdict"] == "review"
    assert [m["action"] for m in near["matches"]] == ["review"]
    assert _screen(client, auth, _flip(pdq(1), 12))["verdict"] == "allow"  # past 8 bits
    assert _screen(client, auth, _flip(own, 12))["verdict"] == "block"  # within 31

    # Registered content: the exchange's action decides (review: a case, no block).
    item = {"account_id": "acc-1", "media": [{"sha256": "ab" * 32, "pdq": _flip(pdq(1), 4),
                                              "pdq_quality": 90}]}  # fmt: skip
    r = client.put("/v1/items/i1", json=item, headers=platform_headers(rt)).json()
    assert r["verdict"] == "review" and len(r["cases"]) == 1
    item = {"account_id": "acc-2", "media": [{"sha256": "cd" * 32, "pdq": _flip(pdq(1), 12),
                                              "pdq_quality": 90}]}  # fmt: skip
    r = client.put("/v1/items/i2", json=item, headers=platform_headers(rt)).json()
    # No bank match (it still joins i1's case as a near copy of i1).
    assert r["verdict"] == "allow" and r["matched_banks"] == []

    # Changed later (PUT …/policy, audited): back to the bank's, then a new threshold.
    policy = "/v1/exchanges/stopncii/policy"
    r = client.put(policy, headers=auth, json={"threshold": None, "action": None})
    assert r.status_code == 200 and (r.json()["threshold"], r.json()["action"]) == (None, None)
    assert _screen(client, auth, _flip(pdq(1), 12))["verdict"] == "block"  # the bank's 31
    r = client.put(policy, headers=auth, json={"threshold": 10, "action": "record"})
    assert r.status_code == 200
    assert _screen(client, auth, _flip(pdq(1), 12))["verdict"] == "allow"
    assert _screen(client, auth, _flip(pdq(1), 4))["matches"][0]["action"] == "record"
    bad = client.put(policy, headers=auth, json={"threshold": -1})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_threshold"
    bad = client.put(policy, headers=auth, json={"action": "allow"})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_exchange_action"
    assert client.get("/v1/exchanges/stopncii", headers=auth).json()["threshold"] == 10
    missing = client.put("/v1/exchanges/nope/policy", headers=auth, json={})
    assert missing.status_code == 404 and missing.json()["code"] == "exchange_not_found"
