"""False-positive controls: a negative bank (known-benign hashes) wins over every other
bank before any action, in screening and when the platform registers content (no
restriction, no case). Both database backends."""

from __future__ import annotations

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
