"""Retroactive matching (issue 20): a hash a bank learns today finds the media registered
before it existed -- through the API, `takedown worker` and `takedown retroscan`, on
SQLite and PostgreSQL. Stand-in photos from the scikit-image wheel only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from takedown.cli import app
from takedown.config import Settings
from takedown.media import ImageLimits
from takedown.media.video import hash_image_upload
from takedown.runtime import Runtime
from takedown.services.registry.batch import register_batch
from takedown.services.registry.service import ItemInput, MediaInput
from takedown.store.db import unit_of_work
from takedown.store.models import AuditEvent, BankEntry, RetroscanMatch
from tests.conftest import encode, standin_bytes, standin_rgb

runner = CliRunner()


def _hashes(data: bytes) -> dict[str, object]:
    s = hash_image_upload(data, ImageLimits())
    return {
        "sha256": s.sha256,
        "md5": s.md5,
        "pdq": s.pdq.hash,
        "pdq_quality": s.pdq.quality,
        "dihedral": [v for _, v in s.pdq.dihedral],
    }


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "TAKEDOWN_DATABASE_URL": settings.resolved_database_url,
        "TAKEDOWN_DATA_DIR": str(settings.data_dir),
        "TAKEDOWN_RETROSCAN_POLL_SECONDS": "0.1",
        **extra,
    }


def _worker(settings: Settings, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "takedown.cli", "worker"],
        env=_env(settings, **extra),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _jobs(client: TestClient, auth: dict[str, str], bank: str) -> list[dict[str, object]]:
    r = client.get(f"/v1/banks/{bank}/retroscans", headers=auth)
    assert r.status_code == 200, r.text
    jobs: list[dict[str, object]] = r.json()
    return jobs


def _wait(pred, timeout: float = 180.0, step: float = 0.1) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(step)
    raise AssertionError("timed out")


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TAKEDOWN_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("TAKEDOWN_DATA_DIR", str(settings.data_dir))
    yield


def test_a_hash_learned_today_finds_the_copies_registered_before(
    client: TestClient, auth: dict[str, str], rt: Runtime, settings: Settings, cli: None
) -> None:
    photo = standin_bytes("astronaut.png")
    flipped_photo = encode(np.ascontiguousarray(np.fliplr(standin_rgb("astronaut.png"))))
    exact_only = standin_bytes("coffee.png")
    innocent = standin_bytes("camera.png")
    # Registered first, while no bank knows them: nothing happens.
    for item, data in (("a", photo), ("c", exact_only), ("d", innocent)):
        h = _hashes(data)
        r = client.put(f"/v1/items/{item}", headers=auth, json={"media": [h]})
        assert r.status_code == 200, r.text
        assert r.json()["visibility"] == "visible"
    r = client.post(
        "/v1/banks",
        headers=auth,
        json={
            "name": "ncmec",
            "source": "ncmec",
            "match_action": "block",
            "restrict_on_match": True,
        },
    )
    assert r.status_code == 201, r.text
    # The list brings the PDQ of a mirrored copy (the registered one is the original:
    # found through its dihedral variants) and the MD5 of another file.
    lines = [
        json.dumps({"signal_type": "pdq", "signal": _hashes(flipped_photo)["pdq"]}),
        json.dumps({"signal_type": "md5", "signal": _hashes(exact_only)["md5"]}),
    ]
    r = client.post(
        "/v1/banks/ncmec/import?format=jsonl", headers=auth, content="\n".join(lines) + "\n"
    )
    assert r.status_code == 200, r.text
    assert r.json()["added"] == 2
    [job] = _jobs(client, auth, "ncmec")
    assert job["state"] == "queued" and job["kind"] == "new_entries"

    worker = _worker(settings)
    try:
        _wait(lambda: _jobs(client, auth, "ncmec")[0]["state"] == "done")
    finally:
        worker.terminate()
        worker.wait(60)
    [job] = _jobs(client, auth, "ncmec")
    assert job["matches"] == 2 and job["media_scanned"] == 3
    for item, restricted in (("a", True), ("c", True), ("d", False)):
        r = client.get(f"/v1/items/{item}", headers=auth)
        assert (r.json()["visibility"] == "restricted") is restricted, (item, r.json())
    cases = client.get("/v1/cases", headers=auth).json()
    assert len(cases["cases"] if isinstance(cases, dict) else cases) >= 1

    # A rescan of the whole bank finds the same pairs and acts on none of them again.
    result = runner.invoke(app, ["retroscan", "ncmec", "--json"])
    assert result.exit_code == 0, result.output
    rescan = json.loads(result.stdout.splitlines()[-1])
    assert rescan["kind"] == "whole_bank" and rescan["state"] == "done"
    assert rescan["matches"] == 0 and rescan["media_scanned"] == 3
    with unit_of_work(rt.sessions, write=False) as s:
        assert s.scalar(select(func.count()).select_from(RetroscanMatch)) == 2
        acted = s.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "item.retroactive_match")
        )
    assert acted == 2
    # The console's bank page shows the scans and their progress.
    from tests.console.helpers import sign_in

    sign_in(client, "mod")
    page = client.get("/console/banks/ncmec")
    assert page.status_code == 200, page.text
    assert "Retroactive scans" in page.text and "3 of 3" in page.text
    status = runner.invoke(app, ["retroscan", "ncmec", "--status", "--json"])
    assert [json.loads(x)["kind"] for x in status.stdout.splitlines()] == [
        "whole_bank",
        "new_entries",
    ]


TOTAL = 401  # registered media in the kill test


def test_a_killed_worker_is_resumed_from_its_checkpoint(
    client: TestClient, auth: dict[str, str], rt: Runtime, settings: Settings
) -> None:
    data = standin_bytes("astronaut.png")
    h = _hashes(data)
    media = MediaInput(
        str(h["sha256"]),
        str(h["md5"]),
        str(h["pdq"]),
        int(h["pdq_quality"]),  # type: ignore[call-overload]
    )
    rng = np.random.default_rng(7)
    # 200 unrelated media, then the copy, then 200 more: the kill lands among them. A
    # worker scans ~80 a second here: with 81 in all it could finish before a loaded
    # machine's next look at its progress, and the kill came too late.
    events = []
    for n in range(TOTAL):
        if n == TOTAL // 2:
            m = media
        else:
            sha = rng.bytes(32).hex()
            m = MediaInput(sha, rng.bytes(16).hex(), rng.bytes(32).hex(), 90)
        events.append((n, ItemInput(platform_id=f"i{n}", media=[m])))
    assert not register_batch(rt.registry, events, actor="test").rejected
    r = client.post(
        "/v1/banks",
        headers=auth,
        json={
            "name": "hashes",
            "source": "ncmec",
            "match_action": "block",
            "restrict_on_match": True,
        },
    )
    assert r.status_code == 201
    r = client.post(
        "/v1/banks/hashes/import?format=text&signal_type=pdq", headers=auth, content=f"{h['pdq']}\n"
    )
    assert r.status_code == 200, r.text
    worker = _worker(settings, TAKEDOWN_RETROSCAN_CHUNK="1", TAKEDOWN_RETROSCAN_LEASE_SECONDS="1")
    try:
        _wait(lambda: int(_jobs(client, auth, "hashes")[0]["media_scanned"]) >= 5, step=0.01)
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(60)
    [job] = _jobs(client, auth, "hashes")
    assert job["state"] == "running" and 5 <= int(job["media_scanned"]) < TOTAL
    scanned_at_kill = int(job["media_scanned"])
    again = _worker(settings, TAKEDOWN_RETROSCAN_LEASE_SECONDS="1")
    try:
        _wait(lambda: _jobs(client, auth, "hashes")[0]["state"] == "done")
    finally:
        again.terminate()
        again.wait(60)
    [job] = _jobs(client, auth, "hashes")
    # Resumed, not restarted: every media counted once.
    assert job["media_scanned"] == TOTAL and scanned_at_kill < TOTAL
    assert job["matches"] == 1
    assert client.get(f"/v1/items/i{TOTAL // 2}", headers=auth).json()["visibility"] == "restricted"
    with unit_of_work(rt.sessions, write=False) as s:
        acted = s.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "item.retroactive_match")
        )
    assert acted == 1


def test_a_video_banked_today_finds_its_copy_registered_before_by_the_frame_rule(
    client: TestClient, auth: dict[str, str], rt: Runtime, settings: Settings, cli: None
) -> None:
    from tests.media.videos import SCENES_A, SCENES_B, make_video, transcode

    # Short, small stand-in videos (5 s, 160 x 120): panning windows over benign photos.
    video = make_video(SCENES_A[:2], 2.5, fps=10, size=(160, 120))
    unrelated = make_video(SCENES_B[:2], 2.5, fps=10, size=(160, 120))
    # Registered first, while no bank knows them: nothing happens.
    for item, data in (("v", video), ("w", unrelated)):
        r = client.put(f"/v1/items/{item}", headers=auth, json={"account_id": f"acct-{item}"})
        assert r.status_code == 200, r.text
        r = client.post(f"/v1/items/{item}/media", headers=auth, files={"file": ("f.mp4", data)})
        assert r.status_code == 200, r.text
        assert r.json()["visibility"] == "visible" and r.json()["cases"] == []
    r = client.post(
        "/v1/banks",
        headers=auth,
        json={
            "name": "csam",
            "source": "ncmec",
            "match_action": "block",
            "restrict_on_match": True,
        },
    )
    assert r.status_code == 201, r.text
    # The bank learns a re-encoded copy: other bytes (its MD5 and SHA-256 match nothing),
    # so only the frame rule can find the registered video.
    banked = transcode(video, crf=32)
    assert banked != video
    r = client.post(
        "/v1/banks/csam/media",
        headers=auth,
        files={"file": ("b.mp4", banked, "video/mp4")},
        data={"category": "stand-in"},
    )
    assert r.status_code == 201, r.text
    assert {e["signal_type"] for e in r.json()["entries"]} == {"vpdq", "md5", "sha256"}
    vpdq = next(e["id"] for e in r.json()["entries"] if e["signal_type"] == "vpdq")
    [job] = _jobs(client, auth, "csam")
    assert job["state"] == "queued"

    done = subprocess.run(
        [sys.executable, "-m", "takedown.cli", "worker", "--once"],
        env=_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    [job] = _jobs(client, auth, "csam")
    assert job["state"] == "done", job
    assert job["matches"] == 1 and job["cases"] == 1 and job["media_scanned"] == 2
    copy = client.get("/v1/items/v", headers=auth).json()
    assert copy["visibility"] == "restricted", copy
    assert client.get("/v1/items/w", headers=auth).json()["visibility"] == "visible"
    cases = client.get("/v1/cases", headers=auth).json()
    [case] = cases["cases"] if isinstance(cases, dict) else cases
    detail = client.get(f"/v1/cases/{case['id']}", headers=auth).json()
    assert [c["item_id"] for c in detail["copies"]] == ["v"], detail

    # A rescan of the whole bank finds the same pair and acts on nothing new.
    result = runner.invoke(app, ["retroscan", "csam", "--json"])
    assert result.exit_code == 0, result.output
    rescan = json.loads(result.stdout.splitlines()[-1])
    assert rescan["state"] == "done" and rescan["matches"] == 0 and rescan["cases"] == 0
    assert rescan["media_scanned"] == 2
    cases = client.get("/v1/cases", headers=auth).json()
    assert len(cases["cases"] if isinstance(cases, dict) else cases) == 1
    with unit_of_work(rt.sessions, write=False) as s:
        pairs = s.execute(
            select(BankEntry.public_id, BankEntry.signal_type).join(
                RetroscanMatch, RetroscanMatch.entry_id == BankEntry.id
            )
        ).all()
        acted = s.scalars(
            select(AuditEvent.object_id).where(AuditEvent.action == "item.retroactive_match")
        ).all()
    assert [tuple(p) for p in pairs] == [(vpdq, "vpdq")]  # found by the frame rule
    assert acted == ["v"]


def _flip(hex_hash: str, bits: int, rng: np.random.Generator) -> str:
    value = int(hex_hash, 16)
    for b in rng.choice(256, size=bits, replace=False):
        value ^= 1 << int(b)
    return f"{value:064x}"


def test_the_banks_threshold_and_quality_floor_hold_for_every_path(
    client: TestClient, auth: dict[str, str], settings: Settings, cli: None, tmp_path: Path
) -> None:
    """A bank's PDQ threshold may be wider than the scan index's 47 bits (up to 128):
    the scan still runs, within it. A stored PDQ below the bank's quality floor matches
    nothing, in the worker as at upload, and matches said to be found elsewhere
    (``--ingest``) are acted on only where the same rule confirms them on the media
    registered here."""
    rng = np.random.default_rng(47)
    entry, low, other = (rng.bytes(32).hex() for _ in range(3))
    media = {
        "wide": {"sha256": rng.bytes(32).hex(), "pdq": _flip(entry, 55, rng), "pdq_quality": 90},
        "past": {"sha256": rng.bytes(32).hex(), "pdq": _flip(entry, 70, rng), "pdq_quality": 90},
        "faint": {"sha256": rng.bytes(32).hex(), "pdq": low, "pdq_quality": 20},
        "unrelated": {"sha256": rng.bytes(32).hex(), "pdq": other, "pdq_quality": 90},
    }
    for item, m in media.items():
        r = client.put(f"/v1/items/{item}", headers=auth, json={"media": [m]})
        assert r.status_code == 200, r.text
    r = client.post(
        "/v1/banks",
        headers=auth,
        json={"name": "wide", "source": "ncmec", "match_action": "block", "pdq_threshold": 60},
    )
    assert r.status_code == 201, r.text
    r = client.post(
        "/v1/banks/wide/import?format=text&signal_type=pdq",
        headers=auth,
        content=f"{entry}\n{low}\n",
    )
    assert r.status_code == 200 and r.json()["added"] == 2, r.text
    done = subprocess.run(
        [sys.executable, "-m", "takedown.cli", "worker", "--once"],
        env=_env(settings),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    [job] = _jobs(client, auth, "wide")
    assert job["state"] == "done" and job["error"] is None, job
    assert job["matches"] == 1 and job["media_scanned"] == 4, job
    assert _case_items(client, auth) == [["wide"]]

    # Matches from elsewhere: the faint PDQ and an unrelated item are refused by the
    # rule; the wide match was acted on already. Nothing new is acted on.
    entries = client.get("/v1/banks/wide/entries", headers=auth).json()
    rows = entries["entries"] if isinstance(entries, dict) else entries
    ids = {e["value"]: e["id"] for e in rows}
    claims = tmp_path / "claims.ndjson"
    claims.write_text(
        "".join(
            json.dumps({"entry_id": ids[e], "item_id": i, "distance": 0}) + "\n"
            for e, i in ((low, "faint"), (entry, "unrelated"), (entry, "past"), (entry, "wide"))
        )
    )
    result = runner.invoke(app, ["retroscan", "wide", "--ingest", str(claims), "--json"])
    assert result.exit_code == 0, result.output
    ingested = json.loads(result.stdout)
    assert ingested["lines"] == 4 and ingested["new_pairs"] == 0, ingested
    assert ingested["already_known"] == 1 and ingested["cases"] == [], ingested
    assert _case_items(client, auth) == [["wide"]]


def _case_items(client: TestClient, auth: dict[str, str]) -> list[list[str]]:
    cases = client.get("/v1/cases", headers=auth).json()
    listed = cases["cases"] if isinstance(cases, dict) else cases
    out = []
    for c in listed:
        detail = client.get(f"/v1/cases/{c['id']}", headers=auth).json()
        out.append(sorted(x["item_id"] for x in detail["copies"]))
    return out


def test_a_rescan_leaves_alone_what_was_matched_at_upload(
    client: TestClient, auth: dict[str, str], rt: Runtime, settings: Settings, cli: None
) -> None:
    """Media uploaded after the entry was banked was matched then; a rescan of the bank
    finds the pair again and does not act on it a second time."""
    h = _hashes(standin_bytes("coffee.png"))
    r = client.post(
        "/v1/banks",
        headers=auth,
        json={"name": "cs", "source": "ncmec", "match_action": "block", "restrict_on_match": True},
    )
    assert r.status_code == 201, r.text
    r = client.post(
        "/v1/banks/cs/import?format=text&signal_type=pdq", headers=auth, content=f"{h['pdq']}\n"
    )
    assert r.status_code == 200, r.text
    r = client.put("/v1/items/later", headers=auth, json={"media": [h]})
    assert r.status_code == 200, r.text
    assert r.json()["visibility"] == "restricted" and len(r.json()["cases"]) == 1
    result = runner.invoke(app, ["retroscan", "cs", "--json"])
    assert result.exit_code == 0, result.output
    jobs = [json.loads(x) for x in result.stdout.splitlines()]
    assert [(j["state"], j["matches"], j["cases"]) for j in jobs] == [("done", 0, 0)]
    assert all(j["matches"] == 0 for j in _jobs(client, auth, "cs"))
    with unit_of_work(rt.sessions, write=False) as s:
        acted = s.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "item.retroactive_match")
        )
    assert acted == 0
