"""Hash-only reports: the reporter sends the hashes of the image, never the image.

The hashes are computed here by the server's own hashing of stand-in photos (the
browser computes the same ones: tests/web/test_pdq_vectors.py); the browser flow is
tested end to end in tests/web/test_hash_report_browser.py.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image
from sqlalchemy import select

from takedown.media import hash_image_bytes
from takedown.runtime import Runtime
from takedown.store.models import CaseLocation
from tests.cases.helpers import platform_headers, user_headers
from tests.conftest import standin_bytes

PHOTO = standin_bytes("astronaut.png")  # a stand-in photo, never real material
OTHER = standin_bytes("coffee.png")  # an unrelated stand-in


def _hashes(data: bytes) -> dict[str, object]:
    sig = hash_image_bytes(data)
    return {
        "md5": sig.md5,
        "pdq": sig.pdq.hash,
        "pdq_quality": sig.pdq.quality,
        "dihedral": [h for _, h in sig.pdq.dihedral],
    }


def _rotated_jpeg(data: bytes) -> bytes:
    buf = io.BytesIO()
    img = Image.open(io.BytesIO(data)).convert("RGB").transpose(Image.Transpose.ROTATE_90)
    img.resize((img.width // 2, img.height // 2)).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def _register(client, headers, item: str, data: bytes, url: str | None = None) -> dict:
    body = {"account_id": f"acct-{item}", "url": url or f"https://social.example/{item}"}
    assert client.put(f"/v1/items/{item}", json=body, headers=headers).is_success
    r = client.post(f"/v1/items/{item}/media", headers=headers, files={"file": ("f", data)})
    assert r.status_code == 200, r.text
    return r.json()


def _report(client, hashes: list[dict], **extra) -> dict:
    body = {
        "category": "csam",
        "reporter_role": "person_depicted",
        "explanation": "This is a picture of me at 15; I never agreed to it being shared.",
        "good_faith": True,
        "hashes": hashes,
        **extra,
    }
    r = client.post("/v1/reports", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def test_hashes_find_exact_and_rotated_copies_and_restrict_them(rt: Runtime, client):
    p = platform_headers(rt)
    _register(client, p, "same-bytes", PHOTO)
    _register(client, p, "rotated-smaller-jpeg", _rotated_jpeg(PHOTO))
    _register(client, p, "unrelated", OTHER)
    receipt = _report(client, [_hashes(PHOTO)])
    assert receipt["restricted_items"] == 2  # restrict first, as any minor-safety report
    for item, visibility in [
        ("same-bytes", "restricted"),
        ("rotated-smaller-jpeg", "restricted"),
        ("unrelated", "visible"),
    ]:
        assert client.get(f"/v1/items/{item}", headers=p).json()["visibility"] == visibility
    case = client.get(
        f"/v1/cases/{receipt['case_number']}", headers=user_headers(rt, "spec", "legal")
    ).json()
    reasons = {c["item_id"]: (c["reason"], c["distance"]) for c in case["copies"]}
    assert reasons["same-bytes"] == ("reported_hash", 0)
    assert reasons["rotated-smaller-jpeg"][0] == "reported_hash"
    assert 0 < reasons["rotated-smaller-jpeg"][1] <= 31
    assert case["reports"][0]["locations"]["hashes"][0]["md5"] == _hashes(PHOTO)["md5"]


def test_a_later_upload_joins_the_case_and_is_restricted(rt: Runtime, client):
    receipt = _report(client, [_hashes(PHOTO)])
    assert receipt["restricted_items"] == 0  # nothing registered yet
    p = platform_headers(rt)
    later = _register(client, p, "later-rotated", _rotated_jpeg(PHOTO))
    assert later["cases"] == [receipt["case_number"]]
    assert later["visibility"] == "restricted"
    exact = _register(client, p, "later-exact", PHOTO)
    assert exact["cases"] == [receipt["case_number"]] and exact["visibility"] == "restricted"
    assert _register(client, p, "later-other", OTHER)["cases"] == []


def test_only_md5_is_enough_and_low_quality_pdq_is_not_used(rt: Runtime, client):
    p = platform_headers(rt)
    _register(client, p, "exact", PHOTO)
    flat = {"md5": "0" * 32, "pdq": _hashes(PHOTO)["pdq"], "pdq_quality": 10}
    receipt = _report(client, [flat])
    assert receipt["restricted_items"] == 0  # a PDQ of quality 10 matches nothing
    receipt = _report(client, [{"md5": _hashes(PHOTO)["md5"]}])
    assert receipt["restricted_items"] == 1


def test_hashes_that_match_a_bank_are_named_on_the_case(rt: Runtime, client, auth):
    bank = client.post("/v1/banks", json={"name": "ncmec-standin", "source": "ncmec"}, headers=auth)
    assert bank.is_success, bank.text
    r = client.post("/v1/banks/ncmec-standin/media", headers=auth, files={"file": ("a.png", PHOTO)})
    assert r.is_success, r.text
    receipt = _report(client, [_hashes(_rotated_jpeg(PHOTO))])
    case = client.get(
        f"/v1/cases/{receipt['case_number']}", headers=user_headers(rt, "legal-1", "legal")
    ).json()
    assert "ncmec" in case["hash_sources"]


@pytest.mark.parametrize(
    "hashes,code",
    [
        ([{"md5": "xyz"}], "invalid_hash"),
        ([{}], "invalid_hash"),
        ([{"pdq": "f" * 64, "pdq_quality": 101}], "invalid_hash"),
        ([{"pdq": "f" * 64, "dihedral": ["0" * 64] * 8}], "invalid_hash"),
        ([{"md5": f"{i:032x}"} for i in range(21)], "too_many_files"),
    ],
)
def test_bad_hashes_are_refused_and_nothing_is_kept(rt: Runtime, client, hashes, code):
    body = {
        "category": "csam",
        "reporter_role": "user",
        "explanation": "x",
        "good_faith": True,
        "hashes": hashes,
    }
    r = client.post("/v1/reports", json=body)
    if code == "too_many_files":
        assert r.status_code == 422  # the API's own bound (20) answers first
        from takedown.domain.reports import ReportedHash, ReportInput, validate_report
        from takedown.errors import InvalidRequest

        with pytest.raises(InvalidRequest) as err:
            validate_report(
                ReportInput(
                    "csam",
                    "user",
                    "x",
                    good_faith=True,
                    hashes=[ReportedHash(md5=h["md5"]) for h in hashes],
                )
            )
        assert err.value.code == code
    else:
        assert r.status_code == 422 and r.json()["code"] == code, r.text
    with rt.sessions() as s:
        assert s.scalars(select(CaseLocation)).first() is None


def test_withdrawn_hashes_no_longer_pull_later_uploads(rt: Runtime, client):
    p = platform_headers(rt)
    receipt = _report(client, [_hashes(PHOTO)])
    assert receipt["restricted_items"] == 0  # nothing registered carries it yet
    creds = {"case_number": receipt["case_number"], "token": receipt["status_token"]}
    assert client.post("/v1/reports/withdraw", json=creds).status_code == 200
    assert _register(client, p, "later", _rotated_jpeg(PHOTO))["cases"] == []


def test_withdraw_stops_the_clock_and_the_hashes_but_keeps_content_hidden(rt: Runtime, client):
    p = platform_headers(rt)
    _register(client, p, "first", PHOTO)
    receipt = _report(
        client,
        [_hashes(PHOTO)],
        category="ncii",
        signature="Ann Example",
        not_consensual=True,
        reporter_name="Ann Example",
        reporter_email="ann@example.org",
    )
    assert receipt["takedown_request"] and receipt["restricted_items"] == 1
    creds = {"case_number": receipt["case_number"], "token": receipt["status_token"]}
    status = client.post("/v1/reports/status", json=creds).json()
    assert status["hashed_files"] == 1 and status["withdrawn_at"] is None
    r = client.post("/v1/reports/withdraw", json=creds)
    assert r.status_code == 200 and r.json()["withdrawn_at"]
    assert [e["event"] for e in r.json()["timeline"]][-1] == "withdrawn"
    again = client.post("/v1/reports/withdraw", json=creds)  # idempotent
    assert again.json()["withdrawn_at"] == r.json()["withdrawn_at"]
    assert client.get("/v1/items/first", headers=p).json()["visibility"] == "restricted"
    legal = user_headers(rt, "legal-1", "legal")
    case = client.get(f"/v1/cases/{receipt['case_number']}", headers=legal).json()
    assert not any(c["name"] == "take_it_down_48h" for c in case["clocks"])
    # The withdrawn hashes no longer pull later uploads into the case: a rotated copy
    # of the hidden item still joins, as a copy of it (the copy graph searches all 8
    # rotations and flips), not by the hashes.
    assert _register(client, p, "later", _rotated_jpeg(PHOTO))["cases"] == [receipt["case_number"]]
    case = client.get(f"/v1/cases/{receipt['case_number']}", headers=legal).json()
    assert {c["item_id"]: c["reason"] for c in case["copies"]}["later"] == "pdq"
    wrong = client.post("/v1/reports/withdraw", json={**creds, "token": "nope"})
    assert wrong.status_code == 404 and wrong.json()["code"] == "report_not_found"
