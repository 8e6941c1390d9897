"""`takedown serve --workers N`: one listening socket per worker (SO_REUSEPORT), a dead
worker replaced on its socket, every worker stopped on SIGTERM."""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from takedown.api.server import listen_sockets
from tests.conftest import start_server


def _accepted(sockets: list[socket.socket], timeout: float = 2.0) -> list[int]:
    """How many pending connections each listening socket accepts."""
    counts = [0] * len(sockets)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select(sockets, [], [], 0.1)
        if not ready and sum(counts):
            break
        for sock in ready:
            conn, _ = sock.accept()
            conn.close()
            counts[sockets.index(sock)] += 1
    return counts


def test_workers_sockets_share_the_port_and_the_connections():
    sockets = listen_sockets("127.0.0.1", 0, 2)
    try:
        port = sockets[0].getsockname()[1]
        assert sockets[1].getsockname()[1] == port
        for sock in sockets:
            sock.listen(128)
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(64)]
        counts = _accepted(sockets)
        for client in clients:
            client.close()
        # The kernel spreads connections by address hash: both sockets get a share
        # (the chance that 64 all land on one is 2 in 2**64).
        assert sum(counts) == 64 and min(counts) > 0, counts
        with pytest.raises(OSError):  # a second server on the same port
            listen_sockets("127.0.0.1", port, 2)
    finally:
        for sock in sockets:
            sock.close()


def test_a_port_held_by_another_program_is_refused():
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        with pytest.raises(OSError):
            listen_sockets("127.0.0.1", other.getsockname()[1], 2)


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_on_a_taken_port_fails_before_doing_anything(tmp_path: Path, workers: int):
    """The address is taken first: nothing is created (no database, no key) and the
    sentence names the address."""
    import subprocess
    import sys

    data = tmp_path / "data"
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "takedown.cli", "serve", "--port", str(port)]
            + ["--workers", str(workers)],
            env={**os.environ, "TAKEDOWN_DATA_DIR": str(data)},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1, done.stderr
    assert f"Cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "in use" in done.stderr
    assert not data.exists() or not any(data.iterdir())


def _children(pid: int) -> set[int]:
    """Worker processes of the supervisor (multiprocessing's helpers left out)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            found.add(int(stat.parent.name))
    return found


def _wait(condition, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.1)


def _healthy(base: str) -> bool:
    try:
        return httpx.get(base + "/v1/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_serve_replaces_a_dead_worker_and_stops_on_sigterm(sqlite_template: Path, tmp_path: Path):
    database = tmp_path / "takedown.sqlite3"
    shutil.copy(sqlite_template, database)
    env = {
        "TAKEDOWN_DATABASE_URL": f"sqlite:///{database}",
        "TAKEDOWN_DATA_DIR": str(tmp_path / "data"),
        "TAKEDOWN_ACCESS_LOG": "false",
    }
    server, port = start_server(env, workers=2)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: len(_children(server.pid)) == 2, "two workers")
        _wait(lambda: _healthy(base), "the server answers")
        first = _children(server.pid)
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        _wait(lambda: len(_children(server.pid) - first) == 1, "a replacement worker")
        # Every connection is answered again, whichever socket the kernel picks.
        _wait(lambda: all(_healthy(base) for _ in range(20)), "20 answers in a row")
        workers = _children(server.pid)
        assert victim not in workers and len(workers) == 2
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=60)
    assert server.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    # Start-up said where it listens, with how many workers, and what it uses.
    assert f"serving on http://127.0.0.1:{port} with 2 worker processes" in stderr
    assert f"database: sqlite:///{database}" in stderr
    assert f"data directory: {tmp_path / 'data'}" in stderr
