"""Banks and entries through the real app, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

from tests.conftest import standin_bytes

PDQ_A = "a" * 64
PDQ_B = "b" * 64
MD5_A = "0123456789abcdef" * 2


def test_create_list_describe_update_disable_bank(client, auth):
    r = client.post(
        "/v1/banks",
        headers=auth,
        json={
            "name": "ncmec-industry",
            "source": "ncmec",
            "match_action": "block",
            "description": "NCMEC industry hash list",
        },
    )
    assert r.status_code == 201
    bank = r.json()
    assert bank["pdq_threshold"] == 31 and bank["pdq_quality_floor"] == 50
    assert bank["created_by"] == "apikey:test-admin" and len(bank["id"]) == 26
    assert [b["name"] for b in client.get("/v1/banks", headers=auth).json()] == ["ncmec-industry"]
    assert client.get(f"/v1/banks/{bank['id']}", headers=auth).json()["name"] == "ncmec-industry"
    r = client.patch(
        "/v1/banks/ncmec-industry",
        headers=auth,
        json={"match_action": "review", "pdq_threshold": 20},
    )
    assert r.json()["match_action"] == "review" and r.json()["pdq_threshold"] == 20
    r = client.patch(
        "/v1/banks/ncmec-industry",
        headers=auth,
        json={"enabled": False, "reason": "list superseded"},
    )
    assert r.json()["enabled"] is False and r.json()["disabled_at"]
    r = client.patch("/v1/banks/ncmec-industry", headers=auth, json={"enabled": True})
    assert r.json()["enabled"] is True and r.json()["disabled_reason"] is None


def test_add_entries_by_hash_with_provenance_and_dedup(client, auth):
    client.post("/v1/banks", headers=auth, json={"name": "own"})
    r = client.post(
        "/v1/banks/own/entries",
        headers=auth,
        json={
            "entries": [
                {
                    "signal_type": "pdq",
                    "value": PDQ_A.upper(),
                    "quality": 90,
                    "source_id": "case-1",
                    "category": "csam",
                    "note": "confirmed by two reviewers",
                },
                {"signal_type": "md5", "value": MD5_A},
                {"signal_type": "md5", "value": MD5_A},
            ]
        },
    )
    assert r.status_code == 201
    body = r.json()
    assert (body["added"], body["duplicates_in_input"], body["already_present"]) == (2, 1, 0)
    pdq = next(e for e in body["entries"] if e["signal_type"] == "pdq")
    assert pdq["value"] == PDQ_A and pdq["quality"] == 90 and pdq["source"] == "own"
    assert pdq["source_id"] == "case-1" and pdq["added_by"] == "apikey:test-admin"
    again = client.post(
        "/v1/banks/own/entries",
        headers=auth,
        json={"entries": [{"signal_type": "pdq", "value": PDQ_A}]},
    ).json()
    assert (again["added"], again["already_present"]) == (0, 1)
    assert client.get(f"/v1/entries/{pdq['id']}", headers=auth).json()["note"] == (
        "confirmed by two reviewers"
    )
    assert client.get("/v1/banks/own", headers=auth).json()["entries"] == 2


def test_bad_hash_in_a_batch_adds_nothing(client, auth):
    client.post("/v1/banks", headers=auth, json={"name": "own"})
    r = client.post(
        "/v1/banks/own/entries",
        headers=auth,
        json={
            "entries": [
                {"signal_type": "pdq", "value": PDQ_A},
                {"signal_type": "pdq", "value": "xyz"},
            ]
        },
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_hash"
    assert client.get("/v1/banks/own", headers=auth).json()["entries"] == 0


def test_entry_pages(client, auth):
    client.post("/v1/banks", headers=auth, json={"name": "own"})
    hashes = [f"{i:064x}" for i in range(1, 8)]
    client.post(
        "/v1/banks/own/entries",
        headers=auth,
        json={"entries": [{"signal_type": "pdq", "value": h} for h in hashes]},
    )
    seen, after = [], None
    while True:
        params = {"limit": 3, **({"after": after} if after else {})}
        page = client.get("/v1/banks/own/entries", headers=auth, params=params).json()
        seen += [e["value"] for e in page["entries"]]
        after = page["next_cursor"]
        if not after:
            break
    assert seen == hashes


def test_import_all_or_nothing_then_skip_invalid(client, auth):
    client.post("/v1/banks", headers=auth, json={"name": "feed", "source": "stopncii"})
    body = f"pdq,{PDQ_A}\nmd5,{MD5_A}\npdq,nothex\nsha1,{'a' * 40}\n"
    r = client.post("/v1/banks/feed/import", params={"format": "csv"}, headers=auth, content=body)
    assert r.status_code == 422 and r.json()["code"] == "import_rejected"
    assert "skip_invalid=true" in r.json()["message"]  # the query parameter, as sent
    lines = [x["line"] for x in r.json()["details"]["rejected"]]
    assert lines == [3, 4]
    assert client.get("/v1/banks/feed", headers=auth).json()["entries"] == 0
    r = client.post(
        "/v1/banks/feed/import",
        headers=auth,
        content=body,
        params={"format": "csv", "skip_invalid": "true", "category": "ncii"},
    )
    assert r.status_code == 200
    out = r.json()
    assert out["added"] == 2 and [x["line_number"] for x in out["rejected"]] == [3, 4]
    entries = client.get("/v1/banks/feed/entries", headers=auth).json()["entries"]
    assert {e["source"] for e in entries} == {"stopncii"}
    assert {e["category"] for e in entries} == {"ncii"}


def test_export_round_trips_in_every_format(client, auth):
    client.post("/v1/banks", headers=auth, json={"name": "src"})
    client.post(
        "/v1/banks/src/entries",
        headers=auth,
        json={
            "entries": [
                {"signal_type": "pdq", "value": PDQ_A, "quality": 77, "source_id": "s1"},
                {"signal_type": "pdq", "value": PDQ_B},
                {"signal_type": "md5", "value": MD5_A},
            ]
        },
    )
    csv_text = client.get("/v1/banks/src/export", headers=auth, params={"format": "csv"}).text
    assert f"pdq,{PDQ_A}" in csv_text.splitlines() and f"md5,{MD5_A}" in csv_text.splitlines()
    jsonl = client.get("/v1/banks/src/export", headers=auth, params={"format": "jsonl"}).text
    first = json.loads(jsonl.splitlines()[0])
    assert first["signal"] == PDQ_A and first["quality"] == 77 and first["source_id"] == "s1"
    for fmt, text in (("csv", csv_text), ("jsonl", jsonl)):
        name = f"dst-{fmt}"
        client.post("/v1/banks", headers=auth, json={"name": name})
        r = client.post(
            f"/v1/banks/{name}/import", headers=auth, params={"format": fmt}, content=text
        )
        assert r.json()["added"] == 3, r.text
    r = client.get("/v1/banks/src/export", headers=auth, params={"format": "text"})
    assert r.status_code == 422  # a text list holds one signal type; this bank has two
    text_list = client.get(
        "/v1/banks/src/export", headers=auth, params={"format": "text", "signal_type": "pdq"}
    ).text
    assert text_list.split() == [PDQ_A, PDQ_B]
    client.post("/v1/banks", headers=auth, json={"name": "dst-text"})
    r = client.post(
        "/v1/banks/dst-text/import",
        headers=auth,
        content=text_list,
        params={"format": "text", "signal_type": "pdq"},
    )
    assert r.json()["added"] == 2


def test_disabled_entries_are_left_out_of_exports(client, auth):
    client.post("/v1/banks", headers=auth, json={"name": "own"})
    r = client.post(
        "/v1/banks/own/entries",
        headers=auth,
        json={
            "entries": [
                {"signal_type": "pdq", "value": PDQ_A},
                {"signal_type": "pdq", "value": PDQ_B},
            ]
        },
    )
    first = r.json()["entries"][0]["id"]
    client.patch(
        f"/v1/entries/{first}", headers=auth, json={"enabled": False, "reason": "false positive"}
    )
    text = client.get("/v1/banks/own/export", headers=auth, params={"format": "text"}).text
    assert text.split() == [PDQ_B]
    text = client.get(
        "/v1/banks/own/export", headers=auth, params={"format": "text", "include_disabled": "true"}
    ).text
    assert sorted(text.split()) == [PDQ_A, PDQ_B]


def test_media_below_quality_floor_banks_only_exact_hashes(client, auth):
    import numpy as np

    from tests.conftest import encode

    client.post("/v1/banks", headers=auth, json={"name": "own"})
    flat = encode(np.full((64, 64, 3), 128, dtype=np.uint8))  # PDQ quality 0
    r = client.post("/v1/banks/own/media", headers=auth, files={"file": ("f.png", flat)})
    assert r.status_code == 201
    body = r.json()
    assert {e["signal_type"] for e in body["entries"]} == {"md5", "sha256"}
    assert "quality" in body["skipped"][0]
    r = client.post(
        "/v1/banks/own/media",
        headers=auth,
        files={"file": ("a.png", standin_bytes("astronaut.png"))},
    )
    assert r.json()["entries"][0]["quality"] >= 50
