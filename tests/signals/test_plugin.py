"""A third-party signal type, installed through the ``takedown.signals`` entry point,
end to end against a real server and the real CLI, on SQLite and PostgreSQL: `takedown
hash` prints it, a bank takes a threshold for it and imports and exports it, screening
by hashes and by bytes matches it within that threshold, a report's hashes accept it.
PhotoDNA, a type stored but not matchable here, is said so rather than ignored.

Images are benign stand-in photos shipped inside the scikit-image wheel.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from takedown.config import Settings
from takedown.media.decode import decode_for_pdq
from takedown.runtime import open_runtime
from tests.conftest import encode, standin_bytes, standin_path, start_server
from tests.signals.dhash_plugin import DHashSignal

PLUGIN_MODULE = Path(__file__).with_name("dhash_plugin.py")
PHOTODNA_BYTES = bytes(i % 256 for i in range(144))  # a made-up 144-byte hash
PHOTODNA = ",".join(map(str, PHOTODNA_BYTES))  # one of the ways it is written


def install_plugin(target: Path) -> Path:
    """Lay the plug-in out as pip installs a wheel: the module, and a .dist-info whose
    entry_points.txt registers it in the takedown.signals group."""
    target.mkdir(parents=True)
    shutil.copy(PLUGIN_MODULE, target / "takedown_dhash_example.py")
    info = target / "takedown_dhash_example-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: takedown-dhash-example\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(
        "[takedown.signals]\ndhash = takedown_dhash_example:DHashSignal\n"
    )
    return target


def dhash_of(data: bytes) -> str:
    """What the plug-in computes for an upload: from the pixels takedown.media decodes."""
    return DHashSignal().hash_image(Image.fromarray(decode_for_pdq(data).pixels))[0]


def flip_bits(value: str, n: int) -> str:
    return f"{int(value, 16) ^ ((1 << n) - 1):016x}"


@pytest.fixture
def plugin_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    plugin = install_plugin(tmp_path / "site")
    path = os.pathsep.join(filter(None, [str(plugin), os.environ.get("PYTHONPATH")]))
    return {
        "TAKEDOWN_DATABASE_URL": database_url,
        "TAKEDOWN_DATA_DIR": str(tmp_path / "data"),
        "TAKEDOWN_ACCESS_LOG": "false",
        "PYTHONPATH": path,
    }


@pytest.fixture
def server(plugin_env: dict[str, str]) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    settings = Settings(
        database_url=plugin_env["TAKEDOWN_DATABASE_URL"],
        data_dir=Path(plugin_env["TAKEDOWN_DATA_DIR"]),
    )
    rt = open_runtime(settings, migrate=False)
    _, key = rt.api_keys.create("plugin-test", ["admin"], actor="test")
    rt.close()
    proc, port = start_server(plugin_env, workers=1)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                if client.get("/v1/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        yield client, {"Authorization": f"Bearer {key}"}
    finally:
        client.close()
        proc.terminate()
        proc.wait(120)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "takedown.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_takedown_hash_prints_a_plugin_signal(plugin_env: dict[str, str]):
    done = cli(plugin_env, "hash", str(standin_path("astronaut.png")))
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    expected = dhash_of(standin_bytes("astronaut.png"))
    assert record["signals"] == {"dhash": {"hash": expected, "quality": None}}
    assert record["pdq"]["hash"]  # the built-ins are still there
    # Without the plug-in installed, the output has no such key.
    plain = cli(
        {k: v for k, v in plugin_env.items() if k != "PYTHONPATH"},
        "hash",
        str(standin_path("astronaut.png")),
    )
    assert "signals" not in json.loads(plain.stdout)


def test_plugin_signal_end_to_end(
    server: tuple[httpx.Client, dict[str, str]], plugin_env: dict[str, str]
):
    client, auth = server
    types = {t["name"]: t for t in client.get("/v1/signal-types", headers=auth).json()}
    assert types["dhash"]["matchable"] and types["dhash"]["computable"]
    assert types["dhash"]["index"] == "hamming" and types["dhash"]["default_threshold"] == 10
    assert not types["photodna"]["matchable"] and not types["photodna"]["computable"]
    assert client.get("/v1/signal-types").status_code == 401

    photo = standin_bytes("astronaut.png")
    banked = dhash_of(photo)
    r = client.post(
        "/v1/banks",
        json={
            "name": "plug",
            "match_action": "block",
            "source": "ncmec",
            "signal_settings": {"dhash": {"threshold": 8}},
        },
        headers=auth,
    )
    assert r.status_code == 201, r.text
    assert r.json()["signal_settings"]["dhash"] == {"matchable": True, "threshold": 8}
    assert r.json()["pdq_threshold"] == 31  # the PDQ settings are still the bank's

    # Import: a CSV list with the plug-in's type, an alias and PhotoDNA (stored only).
    other = dhash_of(standin_bytes("camera.png"))
    body = (
        f"signal_type,signal\ndhash,{banked}\ndifference_hash,{other}\n"
        f"photodna,{PHOTODNA_BYTES.hex()}\n"
    )
    r = client.post("/v1/banks/plug/import", params={"format": "csv"}, content=body, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["added"] == 3
    exported = client.get("/v1/banks/plug/export", params={"format": "csv"}, headers=auth)
    lines = set(exported.text.splitlines())
    assert {f"dhash,{banked}", f"dhash,{other}"} <= lines
    assert f"photodna,{PHOTODNA_BYTES.hex()}" in lines

    # Banking a file banks the plug-in's signal with the built-ins.
    r = client.post("/v1/banks", json={"name": "files"}, headers=auth)
    assert r.status_code == 201
    r = client.post(
        "/v1/banks/files/media",
        files={"file": ("c.png", standin_bytes("camera.png"), "image/png")},
        headers=auth,
    )
    assert r.status_code in (200, 201), r.text
    banked_types = {e["signal_type"]: e["value"] for e in r.json()["entries"]}
    assert banked_types["dhash"] == other and {"pdq", "md5", "sha256"} <= set(banked_types)

    # Screening by hashes: within the bank's threshold (8), not beyond it.
    near = client.post(
        "/v1/screen/hashes", json={"signals": {"dhash": flip_bits(banked, 5)}}, headers=auth
    ).json()
    assert near["verdict"] == "block"
    (match,) = near["matches"]
    assert (match["signal_type"], match["distance"], match["threshold"]) == ("dhash", 5, 8)
    far = client.post(
        "/v1/screen/hashes", json={"signals": {"dhash": flip_bits(banked, 9)}}, headers=auth
    ).json()
    assert far["verdict"] == "allow" and far["matches"] == []

    # Screening by bytes: the server computes the plug-in's signal itself.
    r = client.post("/v1/screen", files={"file": ("a.png", photo, "image/png")}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["verdict"] == "block" and r.json()["signals"] == {"dhash": banked}
    assert [m["signal_type"] for m in r.json()["matches"]] == ["dhash"]
    copy = encode(Image.open(io.BytesIO(photo)).convert("RGB"), "JPEG", quality=60)
    distance = DHashSignal().distance(banked, dhash_of(copy))
    r = client.post("/v1/screen", files={"file": ("c.jpg", copy, "image/jpeg")}, headers=auth)
    assert r.json()["verdict"] == ("block" if distance <= 8 else "allow")

    # The bank's threshold for the type is honoured at once when changed.
    r = client.patch(
        "/v1/banks/plug", json={"signal_settings": {"dhash": {"threshold": 4}}}, headers=auth
    )
    assert r.status_code == 200 and r.json()["signal_settings"]["dhash"]["threshold"] == 4
    again = client.post(
        "/v1/screen/hashes", json={"signals": {"dhash": flip_bits(banked, 5)}}, headers=auth
    )
    assert again.json()["verdict"] == "allow"

    # PhotoDNA: stored and exchanged, not matchable here, and said so.
    r = client.post("/v1/screen/hashes", json={"signals": {"photodna": PHOTODNA}}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["verdict"] == "allow" and r.json()["not_matchable"] == ["photodna"]

    # With the plug-in removed, the bank still exports what it stores.
    env = {k: v for k, v in plugin_env.items() if k != "PYTHONPATH"}
    done = cli(env, "bank", "export", "plug", "--format", "csv")
    assert done.returncode == 0, done.stderr
    assert f"dhash,{banked}" in done.stdout.splitlines()

    # A report's hashes accept the plug-in's signal; the case knows the bank matched.
    r = client.post(
        "/v1/reports",
        json={
            "category": "ncii",
            "reporter_role": "person_depicted",
            "explanation": "an intimate image of me shared without consent",
            "reporter_name": "A. Person",
            "reporter_email": "me@example.test",
            "signature": "A. Person",
            "good_faith": True,
            "not_consensual": True,
            "hashes": [{"signals": {"dhash": banked}}],
        },
    )
    assert r.status_code == 201, r.text
    number = r.json()["case_number"]  # the case's id
    detail = client.get(f"/v1/cases/{number}", headers=auth).json()
    assert detail["hash_sources"] == ["ncmec"]


def test_signal_mistakes_are_clear_errors(server: tuple[httpx.Client, dict[str, str]]):
    client, auth = server
    assert client.post("/v1/banks", json={"name": "b"}, headers=auth).status_code == 201

    def error(method: str, url: str, body: object) -> tuple[int, str]:
        r = client.request(method, url, json=body, headers=auth)
        return r.status_code, r.json()["code"]

    pdq = "f" * 64
    assert error("POST", "/v1/screen/hashes", {"signals": {"vpdq": pdq}}) == (
        422,
        "invalid_request",
    )
    assert error("POST", "/v1/screen/hashes", {"pdq": pdq, "signals": {"pdq": "0" * 64}}) == (
        422,
        "conflicting_signals",
    )
    assert error("POST", "/v1/screen/hashes", {"signals": {"dhash": "xyz"}}) == (
        422,
        "invalid_hash",
    )
    assert error("POST", "/v1/screen/hashes", {"signals": {"sha1": "00"}}) == (
        422,
        "unknown_signal_type",
    )
    assert error("PATCH", "/v1/banks/b", {"signal_settings": {"photodna": {"threshold": 3}}}) == (
        422,
        "signal_not_matchable",
    )
    assert error("PATCH", "/v1/banks/b", {"signal_settings": {"dhash": {"threshold": 33}}}) == (
        422,
        "invalid_threshold",
    )
    assert error("PATCH", "/v1/banks/b", {"signal_settings": {"dhash": {"quality_floor": 3}}}) == (
        422,
        "invalid_quality_floor",
    )
    assert error(
        "POST", "/v1/banks/b/entries", {"entries": [{"signal_type": "vpdq", "value": pdq}]}
    ) == (422, "invalid_signal_type")
    # Nothing of the refused changes was kept.
    bank = client.get("/v1/banks/b", headers=auth).json()
    assert bank["signal_settings"]["dhash"]["threshold"] == 10
    assert "quality_floor" not in bank["signal_settings"]["dhash"]
