"""`takedown serve` behind a reverse proxy: the per-address limit on public reports sees
the client named in X-Forwarded-For when (and only when) the connection comes from a
trusted proxy. Driven through a real server subprocess, one worker and two."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPORT = {
    "category": "other",
    "reporter_role": "user",
    "urls": ["https://social.example/p/1"],
    "explanation": "Spam with a phishing link.",
    "good_faith": True,
    "reporter_name": "Ann Example",
    "reporter_email": "ann@example.org",
}


def _serve(tmp_path: Path, template: Path, workers: int, args: list[str], env: dict[str, str]):
    database = tmp_path / "takedown.sqlite3"
    shutil.copy(template, database)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = subprocess.Popen(
        [sys.executable, "-m", "takedown.cli", "serve", "--port", str(port)]
        + ["--workers", str(workers), *args],
        env={
            **os.environ,
            "TAKEDOWN_DATABASE_URL": f"sqlite:///{database}",
            "TAKEDOWN_DATA_DIR": str(tmp_path / "data"),
            "TAKEDOWN_ACCESS_LOG": "false",
            "TAKEDOWN_REPORT_RATE_LIMIT_PER_HOUR": "2",
            **env,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300  # a server starting on a loaded machine
    while True:
        assert server.poll() is None, server.communicate()[1]
        try:
            if httpx.get(base + "/v1/health", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the server did not answer"
        time.sleep(0.1)
    return server, base


def _stop(server: subprocess.Popen[str]) -> None:
    server.send_signal(signal.SIGTERM)
    _, stderr = server.communicate(timeout=60)
    # One worker: uvicorn stops cleanly, then re-raises SIGTERM (exit by the signal).
    assert server.returncode in (0, -signal.SIGTERM), stderr
    assert "Traceback" not in stderr, stderr


def _report(client: httpx.Client, forwarded_for: str) -> int:
    # One keep-alive connection (the client's) stays with one worker, whose count it is.
    r = client.post("/v1/reports", json=REPORT, headers={"X-Forwarded-For": forwarded_for})
    assert r.status_code in (201, 429), r.text
    if r.status_code == 429:
        assert r.json()["code"] == "rate_limited"
    return r.status_code


@pytest.mark.parametrize("workers", [1, 2])
def test_behind_a_trusted_proxy_each_client_has_its_own_limit(
    sqlite_template: Path, tmp_path: Path, workers: int
):
    """The default trusts a proxy on this machine (127.0.0.1): the limit counts the
    address the proxy names, so two clients behind one proxy do not share a limit."""
    server, base = _serve(tmp_path, sqlite_template, workers, [], {})
    try:
        with httpx.Client(base_url=base, timeout=120) as client:
            assert _report(client, "203.0.113.5") == 201
            assert _report(client, "203.0.113.5") == 201
            assert _report(client, "203.0.113.5") == 429
            assert _report(client, "198.51.100.7") == 201  # another client: its own count
            assert _report(client, "198.51.100.7") == 201
            assert _report(client, "198.51.100.7") == 429
    finally:
        _stop(server)


@pytest.mark.parametrize(
    "workers,args,env",
    [
        (1, ["--forwarded-allow-ips", "192.0.2.1"], {}),
        (2, [], {"TAKEDOWN_FORWARDED_ALLOW_IPS": "192.0.2.1"}),
    ],
    ids=["option", "setting-2-workers"],
)
def test_an_untrusted_peer_cannot_dodge_the_limit_with_x_forwarded_for(
    sqlite_template: Path, tmp_path: Path, workers: int, args: list[str], env: dict[str, str]
):
    """When the peer (127.0.0.1) is not a trusted proxy, X-Forwarded-For is ignored: a
    client making up a new address on every request is still counted as itself."""
    server, base = _serve(tmp_path, sqlite_template, workers, args, env)
    try:
        with httpx.Client(base_url=base, timeout=120) as client:
            assert _report(client, "203.0.113.1") == 201
            assert _report(client, "203.0.113.2") == 201
            assert _report(client, "203.0.113.3") == 429
    finally:
        _stop(server)
