"""Upload screening through the real app, on SQLite and PostgreSQL."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from takedown.runtime import Runtime
from tests.conftest import encode, standin_bytes, standin_rgb


def _bank(client: TestClient, auth: dict[str, str], name: str, action: str, **kw: object) -> None:
    r = client.post("/v1/banks", json={"name": name, "match_action": action, **kw}, headers=auth)
    assert r.status_code == 201, r.text


def _add_media(client: TestClient, auth: dict[str, str], bank: str, data: bytes) -> dict:
    r = client.post(
        f"/v1/banks/{bank}/media",
        files={"file": ("x.png", data)},
        data={"source_id": "standin-1", "category": "test"},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    return r.json()


def _screen(client: TestClient, auth: dict[str, str], data: bytes) -> dict:
    r = client.post("/v1/screen", files={"file": ("upload.jpg", data)}, headers=auth)
    assert r.status_code == 200, r.text
    return r.json()


def test_near_duplicate_upload_is_blocked_with_provenance(client, auth):
    _bank(client, auth, "known", "block")
    added = _add_media(client, auth, "known", standin_bytes("chelsea.png"))
    assert added["added"] == 3 and {e["signal_type"] for e in added["entries"]} == {
        "pdq",
        "md5",
        "sha256",
    }
    # A re-encoded, resized copy: different bytes, same picture.
    img = Image.open(__import__("io").BytesIO(standin_bytes("chelsea.png"))).convert("RGB")
    copy = encode(img.resize((300, 225)), "JPEG", quality=60)
    body = _screen(client, auth, copy)
    assert body["verdict"] == "block"
    [m] = body["matches"]
    assert m["bank"] == "known" and m["signal_type"] == "pdq"
    assert 0 <= m["distance"] <= 31 and m["threshold"] == 31
    assert m["source_id"] == "standin-1" and m["category"] == "test" and m["source"] == "own"
    assert body["screening_id"]


def test_exact_copy_matches_all_three_signals(client, auth):
    _bank(client, auth, "known", "block")
    data = standin_bytes("coffee.png")
    _add_media(client, auth, "known", data)
    body = _screen(client, auth, data)
    assert {m["signal_type"] for m in body["matches"]} == {"pdq", "md5", "sha256"}
    assert all(m["distance"] == 0 for m in body["matches"])


def test_rotated_and_flipped_copies_match_through_dihedral_variants(client, auth):
    _bank(client, auth, "known", "block")
    _add_media(client, auth, "known", standin_bytes("astronaut.png"))
    pixels = standin_rgb("astronaut.png")
    for transformed, variant in ((np.rot90(pixels), "rotate90"), (pixels[:, ::-1], None)):
        body = _screen(client, auth, encode(transformed))
        assert body["verdict"] == "block"
        assert body["matches"][0]["variant"] != "original"
        if variant:
            assert body["matches"][0]["variant"].startswith("rotate")


def test_unrelated_image_is_allowed_and_not_stored(client, auth, rt: Runtime):
    _bank(client, auth, "known", "block")
    _add_media(client, auth, "known", standin_bytes("chelsea.png"))
    body = _screen(client, auth, standin_bytes("camera.png"))
    assert body == {**body, "verdict": "allow", "matches": [], "screening_id": None}
    from sqlalchemy import func, select

    from takedown.store.models import Screening

    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Screening)) == 0


def test_verdict_follows_strictest_bank_and_record_banks_do_not_block(client, auth):
    data = standin_bytes("rocket.jpg")
    _bank(client, auth, "watch", "record")
    _add_media(client, auth, "watch", data)
    assert _screen(client, auth, data)["verdict"] == "allow"
    assert _screen(client, auth, data)["matches"]  # recorded, but allowed
    _bank(client, auth, "unverified", "review")
    _add_media(client, auth, "unverified", data)
    assert _screen(client, auth, data)["verdict"] == "review"
    _bank(client, auth, "confirmed", "block")
    _add_media(client, auth, "confirmed", data)
    body = _screen(client, auth, data)
    assert body["verdict"] == "block"
    assert body["matches"][0]["action"] == "block"  # strictest first


def test_disabling_an_entry_takes_effect_on_the_next_query_and_can_be_undone(client, auth):
    _bank(client, auth, "known", "block")
    pdq_hash = "f" * 16 + "0" * 48
    r = client.post(
        "/v1/banks/known/entries",
        headers=auth,
        json={"entries": [{"signal_type": "pdq", "value": pdq_hash, "source_id": "x"}]},
    )
    entry_id = r.json()["entries"][0]["id"]
    near = "f" * 16 + "0" * 47 + "7"  # 3 bits away
    ask = {"pdq": near, "pdq_quality": 100}
    assert client.post("/v1/screen/hashes", json=ask, headers=auth).json()["verdict"] == "block"
    r = client.patch(
        f"/v1/entries/{entry_id}",
        json={"enabled": False, "reason": "false positive: stand-in"},
        headers=auth,
    )
    assert r.status_code == 200 and r.json()["disabled_reason"] == "false positive: stand-in"
    assert client.post("/v1/screen/hashes", json=ask, headers=auth).json()["verdict"] == "allow"
    client.patch(f"/v1/entries/{entry_id}", json={"enabled": True}, headers=auth)
    assert client.post("/v1/screen/hashes", json=ask, headers=auth).json()["verdict"] == "block"


def test_bank_threshold_and_quality_floor_apply(client, auth):
    _bank(client, auth, "strict", "block", pdq_threshold=2, pdq_quality_floor=80)
    base = "0" * 64
    client.post(
        "/v1/banks/strict/entries",
        headers=auth,
        json={"entries": [{"signal_type": "pdq", "value": base}]},
    )
    three_bits = "7" + "0" * 63
    r = client.post("/v1/screen/hashes", json={"pdq": three_bits}, headers=auth).json()
    assert r["verdict"] == "allow"
    client.patch("/v1/banks/strict", json={"pdq_threshold": 3}, headers=auth)
    assert (
        client.post("/v1/screen/hashes", json={"pdq": three_bits}, headers=auth).json()["verdict"]
        == "block"
    )
    low = client.post(
        "/v1/screen/hashes", json={"pdq": three_bits, "pdq_quality": 60}, headers=auth
    ).json()
    assert low["verdict"] == "allow"  # query quality below the bank's floor


def test_disabled_bank_stops_matching(client, auth):
    _bank(client, auth, "known", "block")
    client.post(
        "/v1/banks/known/entries",
        headers=auth,
        json={"entries": [{"signal_type": "md5", "value": "a" * 32}]},
    )
    ask = {"md5": "A" * 32}
    assert client.post("/v1/screen/hashes", json=ask, headers=auth).json()["verdict"] == "block"
    r = client.patch(
        "/v1/banks/known", json={"enabled": False, "reason": "list withdrawn"}, headers=auth
    )
    assert r.json()["enabled"] is False
    assert client.post("/v1/screen/hashes", json=ask, headers=auth).json()["verdict"] == "allow"


def test_hash_screening_with_variants_and_sha256(client, auth):
    _bank(client, auth, "known", "review")
    sha = "ab" * 32
    client.post(
        "/v1/banks/known/entries",
        headers=auth,
        json={
            "entries": [
                {"signal_type": "sha256", "value": sha},
                {"signal_type": "pdq", "value": "1" * 64},
            ]
        },
    )
    r = client.post("/v1/screen/hashes", json={"sha256": sha}, headers=auth).json()
    assert r["verdict"] == "review" and r["matches"][0]["signal_type"] == "sha256"
    r = client.post(
        "/v1/screen/hashes", headers=auth, json={"pdq": "e" * 64, "pdq_variants": ["1" * 64]}
    ).json()
    assert r["matches"][0]["variant"] == "variant1" and r["matches"][0]["distance"] == 0
