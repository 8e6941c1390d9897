"""The README runs as written: every command block of its Quick start and "Reports and
cases", in order, in one shell, against a real `takedown serve` (the only change is the
port, which is the test's own), on SQLite and PostgreSQL. The sample files are the
repository's examples/ (drawn stand-ins, never abuse material)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import start_server

ROOT = Path(__file__).resolve().parents[1]


def readme_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Quick start")
    end = text.index("### The review console")
    return re.findall(r"```sh\n(.*?)```", text[start:end], flags=re.S)


def _wait_healthy(base: str, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 300  # a server starting on a loaded machine
    while time.monotonic() < deadline:
        assert server.poll() is None, server.stderr.read() if server.stderr else ""
        try:
            if httpx.get(base + "/v1/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not answer")


def test_the_readme_quick_start_and_reports_run_as_written(database_url: str, tmp_path: Path):
    blocks = readme_blocks()
    assert len(blocks) >= 3  # quick start, the false positive, reports and cases
    env = {
        "TAKEDOWN_DATABASE_URL": database_url,
        "TAKEDOWN_DATA_DIR": str(tmp_path / "data"),
        "TAKEDOWN_ACCESS_LOG": "false",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    server, port = start_server(env, workers=1)
    base = f"http://127.0.0.1:{port}"
    work = tmp_path / "work"  # what the commands write (own.csv) stays here
    work.mkdir()
    (work / "examples").symlink_to(ROOT / "examples")
    try:
        _wait_healthy(base, server)
        script = "\n".join(blocks).replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=work,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        out = done.stdout.replace(" ", "")
        # What the README says each step answers.
        assert '"verdict":"block"' in out  # the re-encoded upload
        assert '"verdict":"review"' in out  # the shared list's hash
        assert re.search(r"\badded 6\b", done.stdout), done.stdout  # the sample list
        assert "disabledentry" in out
        assert '"status":"content_restricted"' not in out  # the report's answer is read
        assert '"outcome":"violation"' in out  # the decision was taken
        exported = (work / "own.csv").read_text().splitlines()
        assert [line.split(",")[0] for line in exported] == ["pdq", "md5", "sha256"]
        # The decision removed both items (the report had restricted them).
        admin_env = {**os.environ, **env}
        status = subprocess.run(
            [sys.executable, "-m", "takedown.cli", "outbox", "list", "--json"],
            env=admin_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        topics = [line for line in status.stdout.splitlines() if '"item.remove"' in line]
        assert len(topics) == 2, status.stdout[-1000:]
    finally:
        server.terminate()
        server.communicate(timeout=60)
