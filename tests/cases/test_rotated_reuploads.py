"""A rotated or mirrored re-upload of confirmed material joins the case of what it
copies, and a case opened by a bank match takes what the entry carries.

Through the HTTP API on both backends; the stand-in is a photo from the scikit-image
wheel, transformed by the test (mirrored, 5 % of its area cropped, re-encoded at quality
60).
"""

from __future__ import annotations

import hashlib
import io

from PIL import Image

from takedown.media import hash_image_bytes
from takedown.runtime import Runtime
from tests.cases.helpers import parent_report, platform_headers, user_headers
from tests.conftest import standin_bytes

PHOTO = standin_bytes("chelsea.png")
REASONS = "The person depicted is a minor; this is child sexual abuse material."


def _mirrored_cropped(data: bytes, quality: int = 60) -> bytes:
    img = Image.open(io.BytesIO(data)).convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    w, h = img.size
    dx, dy = w // 80, h // 80  # 1.25 % off each side: 5 % of the area
    buf = io.BytesIO()
    img.crop((dx, dy, w - dx, h - dy)).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _confirmed_case(rt: Runtime, client, p: dict[str, str]) -> str:
    assert client.put("/v1/items/orig", json={"account_id": "uploader"}, headers=p).is_success
    r = client.post("/v1/items/orig/media", headers=p, files={"file": ("f.png", PHOTO)})
    assert r.status_code == 200, r.text
    case = client.post("/v1/reports", json=parent_report(["orig"])).json()["case_number"]
    r = client.post(
        f"/v1/cases/{case}/decisions",
        headers=user_headers(rt, "spec-a", "child_safety_specialist"),
        json={"outcome": "violation", "policy": "csam", "reasons": REASONS},
    )
    assert r.status_code == 201 and r.json()["effective"], r.text
    return case


def test_a_mirrored_cropped_reupload_joins_the_confirmed_case(rt: Runtime, client):
    p = platform_headers(rt)
    case = _confirmed_case(rt, client, p)
    assert client.put("/v1/items/mirror", json={"account_id": "again"}, headers=p).is_success
    r = client.post(
        "/v1/items/mirror/media", headers=p, files={"file": ("m.jpg", _mirrored_cropped(PHOTO))}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["cases"] == [case] and body["visibility"] == "removed"
    assert body["verdict"] == "block" and body["matched_banks"] == ["own-confirmed"]
    legal = user_headers(rt, "legal-1", "legal")
    detail = client.get(f"/v1/cases/{case}", headers=legal).json()
    assert detail["categories"] == ["csam"] and detail["minor_safety"] is True
    reason = {c["item_id"]: c["reason"] for c in detail["copies"]}["mirror"]
    assert reason in ("pdq", "hash_match")
    # Its account is measured as a re-uploader of confirmed material.
    account = client.get("/v1/accounts/again", headers=p).json()
    assert account["status"] == "suspended"
    assert [(m["part"], m["measure"]) for m in account["measures"]] == [("reuploader", "suspend")]
    # No second case was opened.
    assert client.get("/v1/cases", headers=legal).json() == []  # nothing open
    decided = client.get("/v1/cases?state=decided", headers=legal).json()
    assert [c["id"] for c in decided] == [case]


def test_media_registered_by_hashes_carry_their_variants(rt: Runtime, client):
    p = platform_headers(rt)
    case = _confirmed_case(rt, client, p)
    copy = _mirrored_cropped(PHOTO, quality=80)
    sig = hash_image_bytes(copy)
    media = {
        "sha256": sig.sha256,
        "md5": sig.md5,
        "pdq": sig.pdq.hash,
        "pdq_quality": sig.pdq.quality,
        "dihedral": [h for _, h in sig.pdq.dihedral],
    }
    r = client.put(
        "/v1/items/by-hashes", json={"account_id": "hasher", "media": [media]}, headers=p
    )
    assert r.status_code == 200, r.text
    assert r.json()["cases"] == [case] and r.json()["visibility"] == "removed"
    # Seven variants, or a first one that is not the PDQ: a clear error, nothing kept.
    bad = {**media, "sha256": "cd" * 32, "dihedral": media["dihedral"][:7]}
    r = client.put("/v1/items/bad", json={"media": [bad]}, headers=p)
    assert r.status_code == 422 and r.json()["code"] == "invalid_hash"
    assert client.get("/v1/items/bad", headers=p).status_code == 404


def test_an_exact_copy_by_md5_joins_the_case_it_was_banked_from(rt: Runtime, client):
    """Only the bank entry links them (another file's SHA-256, the same MD5, no PDQ):
    the copy joins the case the entry was banked from, not a new one."""
    p = platform_headers(rt)
    case = _confirmed_case(rt, client, p)
    media = {"sha256": hashlib.sha256(b"other bytes").hexdigest(), "md5": _md5(PHOTO)}
    r = client.put("/v1/items/md5-copy", json={"account_id": "x", "media": [media]}, headers=p)
    assert r.status_code == 200, r.text
    assert r.json()["cases"] == [case] and r.json()["visibility"] == "removed"


def test_a_case_opened_by_a_bank_match_takes_the_entrys_category_and_clock(
    rt: Runtime, client, auth
):
    p = platform_headers(rt)
    r = client.post(
        "/v1/banks",
        json={
            "name": "partner-list",
            "source": "ncmec",
            "match_action": "block",
            "restrict_on_match": True,
        },
        headers=auth,
    )
    assert r.status_code == 201, r.text
    r = client.post(
        "/v1/banks/partner-list/entries",
        json={"entries": [{"signal_type": "md5", "value": _md5(PHOTO), "category": "csam"}]},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    media = {"sha256": hashlib.sha256(PHOTO).hexdigest(), "md5": _md5(PHOTO)}
    r = client.put("/v1/items/match", json={"account_id": "y", "media": [media]}, headers=p)
    assert r.status_code == 200 and len(r.json()["cases"]) == 1, r.text
    assert r.json()["visibility"] == "restricted"
    detail = client.get(
        f"/v1/cases/{r.json()['cases'][0]}", headers=user_headers(rt, "legal-1", "legal")
    ).json()
    assert detail["categories"] == ["csam"] and detail["minor_safety"] is True
    clock = next(c for c in detail["clocks"] if c["name"] == "decision")
    hours = (_at(clock["due_at"]) - _at(detail["opened_at"])).total_seconds() / 3600
    assert round(hours) == rt.settings.decision_target_minor_hours
    # Severity and a minor involved count from the start, with the match.
    factors = {f["name"] for f in detail["priority_factors"]}
    assert {"severity", "minor_involved", "hash_match"} <= factors


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _at(text: str):
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))
