"""Types stored and exchanged but not matchable here: TMK+PDQF video hashes, far longer
than a bank entry's value, go into a bank whole and come out whole, through the API --
and, where Meta's ``tmkpy`` is installed, match uploaded videos.

The TMK files are synthetic stand-ins made here (a valid header and arbitrary floats),
or computed from stand-in videos; not hashes of any real video.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import struct

import pytest
from fastapi.testclient import TestClient

from takedown.errors import InvalidHash
from takedown.signals import TMK, signal_type


def standin_tmk(seed: int, periods: int = 2, coefficients: int = 32) -> bytes:
    """A synthetic TMK+PDQF feature-vector file: the layout tmk-hash-video writes."""
    rng = random.Random(seed)
    dimension = 256
    header = struct.pack(
        "<4s4s4s5i", b"TMK1", b"FVEC", b"PDQF", 15, periods, coefficients, dimension, 0
    )
    floats = coefficients + dimension + 2 * periods * coefficients * dimension
    body = struct.pack(f"<{periods}i", *[2**k * 83 for k in range(periods)])
    body += struct.pack(f"<{floats}f", *(rng.uniform(-1, 1) for _ in range(floats)))
    return header + body


@pytest.fixture
def without_tmkpy(monkeypatch):
    """As on a machine where tmkpy is not installed: TMK is stored only."""
    from takedown.signals import builtin

    monkeypatch.setattr(builtin, "_tmkpy_installed", lambda: False)


def test_tmk_values_are_read_and_checked(without_tmkpy):
    raw = standin_tmk(1)
    canonical = base64.b64encode(raw).decode()
    assert len(canonical) > 170_000
    assert TMK.normalize(canonical) == canonical == TMK.normalize(raw.hex())
    assert signal_type("video_tmk") is TMK and not TMK.matchable and not TMK.computable
    assert TMK.stored_value(canonical) == hashlib.sha256(canonical.encode()).hexdigest()
    for bad in (raw[:-4], b"TMK2" + raw[4:], raw[:20], b"not a tmk file at all"):
        with pytest.raises(InvalidHash):
            TMK.normalize(base64.b64encode(bad).decode())
    with pytest.raises(InvalidHash):
        TMK.normalize("%%% not base64 %%%")


def test_a_bank_keeps_tmk_whole_and_exports_it(
    client: TestClient, auth: dict[str, str], without_tmkpy: None
):
    assert (
        client.post(
            "/v1/banks", json={"name": "videos", "source": "stopncii"}, headers=auth
        ).status_code
        == 201
    )
    first, second = (base64.b64encode(standin_tmk(s)).decode() for s in (1, 2))
    lines = [
        json.dumps({"signal_type": "tmk", "signal": first, "source_id": "sx-1"}),
        json.dumps({"signal_type": "video_tmk", "signal": standin_tmk(2).hex()}),
        json.dumps({"signal_type": "tmk", "signal": first}),  # the same value again
        json.dumps({"signal_type": "pdq", "signal": "f" * 64}),
    ]
    r = client.post(
        "/v1/banks/videos/import",
        params={"format": "jsonl"},
        content="\n".join(lines),
        headers=auth,
    )
    assert r.status_code == 200, r.text
    assert (r.json()["added"], r.json()["duplicates_in_input"]) == (3, 1)

    # Entries are valued by the SHA-256 of the whole value; exports carry it whole.
    page = client.get("/v1/banks/videos/entries", headers=auth).json()["entries"]
    tmk = [e for e in page if e["signal_type"] == "tmk"]
    assert [e["value"] for e in tmk] == [
        hashlib.sha256(v.encode()).hexdigest() for v in (first, second)
    ]
    exported = client.get("/v1/banks/videos/export", params={"format": "jsonl"}, headers=auth)
    rows = [json.loads(line) for line in exported.text.splitlines()]
    assert [(x["signal_type"], x["signal"]) for x in rows if x["signal_type"] == "tmk"] == [
        ("tmk", first),
        ("tmk", second),
    ]
    assert [x.get("source_id") for x in rows if x["signal_type"] == "tmk"] == ["sx-1", None]

    # Importing the export again adds nothing; a CSV list carries it as well.
    r = client.post(
        "/v1/banks/videos/import", params={"format": "jsonl"}, content=exported.text, headers=auth
    )
    assert (r.json()["added"], r.json()["already_present"]) == (0, 3)
    csv_body = f"signal_type,signal\ntmk,{base64.b64encode(standin_tmk(3)).decode()}\n"
    r = client.post(
        "/v1/banks/videos/import", params={"format": "csv"}, content=csv_body, headers=auth
    )
    assert r.status_code == 200 and r.json()["added"] == 1, r.text

    # A malformed value is a rejected line that names the problem; nothing goes in.
    broken = base64.b64encode(standin_tmk(4)[:-8]).decode()
    r = client.post(
        "/v1/banks/videos/import", params={"format": "csv"}, content=f"tmk,{broken}\n", headers=auth
    )
    assert r.status_code == 422 and r.json()["code"] == "import_rejected"
    assert "does not match what the header declares" in r.json()["details"]["rejected"][0]["reason"]

    types = {t["name"]: t for t in client.get("/v1/signal-types", headers=auth).json()}
    assert types["tmk"]["index"] == "none" and not types["tmk"]["matchable"]
    bank = client.get("/v1/banks/videos", headers=auth).json()
    assert bank["signal_settings"]["tmk"] == {"matchable": False}


def test_banked_tmk_matches_a_reencoded_upload_and_not_another_video(client, auth):
    """TMK+PDQF computed from stand-in videos with Meta's tmkpy, banked as an exchange
    would send it, matched against uploads by Meta's level-1 and level-2 scores."""
    pytest.importorskip("tmkpy")
    from takedown.media.video import hash_video_bytes
    from takedown.media.video_limits import VideoSampling
    from tests.media.videos import other_video, slow_video, transcode

    banked = hash_video_bytes(slow_video(), sampling=VideoSampling(tmk=True)).tmk
    assert banked is not None and TMK.normalize(banked) == banked
    client.post("/v1/banks", json={"name": "ncii", "match_action": "block"}, headers=auth)
    line = json.dumps({"signal_type": "tmk", "signal": banked, "source_id": "stand-in"})
    r = client.post("/v1/banks/ncii/import", params={"format": "jsonl"}, content=line, headers=auth)
    assert r.status_code == 200 and r.json()["added"] == 1, r.text

    copy = transcode(slow_video(), size=(128, 96), crf=35)
    r = client.post("/v1/screen", headers=auth, files={"file": ("c.mp4", copy, "video/mp4")})
    assert r.status_code == 200, r.text
    [tmk] = [m for m in r.json()["matches"] if m["signal_type"] == "tmk"]
    assert r.json()["verdict"] == "block" and tmk["video"]["kind"] == "tmk"
    assert tmk["video"]["level1"] >= 0.7 and tmk["video"]["level2"] >= 0.7
    assert tmk["video"]["level2_threshold"] == 0.7

    r = client.post(
        "/v1/screen", headers=auth, files={"file": ("o.mp4", other_video(), "video/mp4")}
    )
    assert r.json()["verdict"] == "allow" and r.json()["matches"] == []

    settings = {"signal_settings": {"tmk": {"threshold": 3}}}
    r = client.patch("/v1/banks/ncii", json=settings, headers=auth)
    assert r.status_code == 422 and r.json()["code"] == "invalid_threshold"
    assert "level 1 and level 2" in r.json()["message"]
