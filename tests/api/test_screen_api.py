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


# -- false positives banked by media: every signal of the file ---------------------------
def _entry_events(rt: Runtime) -> list[tuple[str, str, dict]]:
    import json

    from sqlalchemy import select

    from takedown.store.models import AuditEvent

    with rt.sessions() as s:
        rows = s.scalars(
            select(AuditEvent).where(AuditEvent.object_type == "bank_entry").order_by(AuditEvent.id)
        )
        return [(e.action, e.object_id, json.loads(e.details)) for e in rows]


def test_disabling_an_entry_banked_by_media_disables_all_its_signals(client, auth, rt):
    """A first user's false positive: an image banked by media is three entries; turning
    off the one the API answered with must stop the upload matching on every signal."""
    _bank(client, auth, "known", "block")
    data = standin_bytes("coffee.png")
    added = _add_media(client, auth, "known", data)
    ids = {e["signal_type"]: e["id"] for e in added["entries"]}
    assert set(ids) == {"pdq", "md5", "sha256"}
    sha = {e["media_sha256"] for e in added["entries"]}
    assert len(sha) == 1 and sha == {
        next(e["value"] for e in added["entries"] if e["signal_type"] == "sha256")
    }
    assert {m["signal_type"] for m in _screen(client, auth, data)["matches"]} == set(ids)

    r = client.patch(
        f"/v1/entries/{ids['pdq']}",
        json={"enabled": False, "reason": "false positive: a coffee cup"},
        headers=auth,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == ids["pdq"] and body["enabled"] is False
    assert {e["id"] for e in body["siblings"]} == {ids["md5"], ids["sha256"]}
    assert all(not e["enabled"] for e in body["siblings"])
    assert all(e["disabled_reason"] == "false positive: a coffee cup" for e in body["siblings"])
    # The same upload, and its hashes through the fast path, match nothing now.
    after = _screen(client, auth, data)
    assert after["verdict"] == "allow" and after["matches"] == []
    md5 = client.get(f"/v1/entries/{ids['md5']}", headers=auth).json()["value"]
    ask = {"md5": md5}
    assert client.post("/v1/screen/hashes", json=ask, headers=auth).json()["verdict"] == "allow"
    # One event per entry, in the same transaction, saying how it was asked for.
    events = _entry_events(rt)
    assert [(a, o) for a, o, _ in events] == [
        ("entry.disabled", ids["pdq"]),
        ("entry.disabled", ids["md5"]),
        ("entry.disabled", ids["sha256"]),
    ]
    assert events[1][2]["via"] == ids["pdq"] and "via" not in events[0][2]

    # Re-enabling one brings the file back on every signal.
    r = client.patch(f"/v1/entries/{ids['md5']}", json={"enabled": True}, headers=auth)
    assert r.status_code == 200 and len(r.json()["siblings"]) == 2
    assert len(_screen(client, auth, data)["matches"]) == 3

    # The single-entry disable is still there when asked for.
    r = client.patch(
        f"/v1/entries/{ids['md5']}",
        json={"enabled": False, "reason": "list entry withdrawn", "all_signals": False},
        headers=auth,
    )
    assert r.status_code == 200 and r.json()["siblings"] == []
    left = _screen(client, auth, data)
    assert left["verdict"] == "block"
    assert {m["signal_type"] for m in left["matches"]} == {"pdq", "sha256"}


def test_disabling_by_media_takes_the_files_entries_and_its_exact_signals(client, auth):
    _bank(client, auth, "known", "block")
    data = standin_bytes("chelsea.png")
    other = standin_bytes("coffee.png")
    _add_media(client, auth, "known", other)  # an unrelated file stays banked
    # The file's MD5 came earlier from a hash list (no file behind it); then the file
    # itself was banked: the list's entry joins the file's signals.
    md5 = __import__("hashlib").md5(data).hexdigest()
    client.post(
        "/v1/banks/known/entries",
        headers=auth,
        json={"entries": [{"signal_type": "md5", "value": md5}]},
    )
    added = _add_media(client, auth, "known", data)
    assert added["added"] == 2 and added["already_present"] == 1
    listed = client.get("/v1/banks/known/entries", headers=auth).json()["entries"]
    listed_md5 = next(e for e in listed if e["value"] == md5)
    assert listed_md5["media_sha256"] == added["entries"][0]["media_sha256"]

    r = client.post(
        "/v1/banks/known/media/disable",
        headers=auth,
        files={"file": ("fp.png", data)},
        data={"reason": "false positive: a cat"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["changed"] == 3 and body["enabled"] is False and body["bank"] == "known"
    assert {e["signal_type"] for e in body["entries"]} == {"pdq", "md5", "sha256"}
    assert _screen(client, auth, data)["verdict"] == "allow"
    assert _screen(client, auth, other)["verdict"] == "block"

    # Again: nothing left to change. By SHA-256 instead of the file: enabled again.
    again = client.post(
        "/v1/banks/known/media/disable",
        headers=auth,
        files={"file": ("fp.png", data)},
        data={"reason": "false positive: a cat"},
    )
    assert again.status_code == 200 and again.json()["changed"] == 0
    sha = body["media_sha256"]
    r = client.post("/v1/banks/known/media/enable", headers=auth, data={"sha256": sha.upper()})
    assert r.status_code == 200 and r.json()["changed"] == 3
    assert len(_screen(client, auth, data)["matches"]) == 3

    # Mistakes: no reason, neither file nor hash, a file the bank never saw.
    r = client.post("/v1/banks/known/media/disable", headers=auth, data={"sha256": sha})
    assert r.status_code == 422 and r.json()["code"] == "reason_required"
    r = client.post("/v1/banks/known/media/disable", headers=auth, data={"reason": "fp"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_request"
    r = client.post(
        "/v1/banks/known/media/disable",
        headers=auth,
        files={"file": ("x.png", standin_bytes("camera.png"))},
        data={"reason": "fp"},
    )
    assert r.status_code == 404 and r.json()["code"] == "media_not_in_bank"


def test_a_hash_list_entry_disabled_by_media(client, auth):
    """Entries from a hash list (no file behind them) are found by the file's signals."""
    _bank(client, auth, "list", "block")
    data = standin_bytes("astronaut.png")
    import hashlib

    entries = [
        {"signal_type": "md5", "value": hashlib.md5(data).hexdigest()},
        {"signal_type": "sha256", "value": hashlib.sha256(data).hexdigest()},
    ]
    client.post("/v1/banks/list/entries", headers=auth, json={"entries": entries})
    assert _screen(client, auth, data)["verdict"] == "block"
    r = client.post(
        "/v1/banks/list/media/disable",
        headers=auth,
        files={"file": ("a.png", data)},
        data={"reason": "false positive in the list"},
    )
    assert r.status_code == 200 and r.json()["changed"] == 2
    assert _screen(client, auth, data)["verdict"] == "allow"
