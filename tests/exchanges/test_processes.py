"""Exchanges driven from outside: the CLI (a sync killed with kill -9 resumes without
duplicates or gaps), ``takedown worker`` (syncs on schedule), and the HTTP API. Both
database backends."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from takedown.runtime import Runtime
from takedown.store.models import BankEntry, ExchangeEntry
from tests.exchanges.ncmec_hash_server import PASSWORD, USER, NcmecHashServer


def md5(n: int) -> str:
    return hashlib.md5(f"stand-in {n}".encode()).hexdigest()


@pytest.fixture
def ncmec() -> Iterator[NcmecHashServer]:
    server = NcmecHashServer(page_size=3).start()
    yield server
    server.stop()


def _env(database_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "TAKEDOWN_DATABASE_URL": database_url,
        "TAKEDOWN_DATA_DIR": str(tmp_path / "data"),
        "TAKEDOWN_ACCESS_LOG": "false",
        "TAKEDOWN_EXCHANGE_CREDENTIALS_DIR": str(tmp_path),  # as tests/exchanges/conftest.py
        "TAKEDOWN_EXCHANGE_BASE_URLS": "http://127.0.0.1",
        **extra,
    }


def _cli(env: dict[str, str], *args: str, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "takedown.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,  # type: ignore[call-overload]
    )


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "takedown.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _creds(tmp_path: Path) -> Path:
    creds = tmp_path / "ncmec.creds"
    creds.write_text(f"{USER}:{PASSWORD}\n")
    return creds


def _add_ncmec(rt: Runtime, tmp_path: Path, ncmec: NcmecHashServer, **kw: object) -> Path:
    """The bank `ncmec` and the exchange `ncmec-ngo` pulling into it, in-process; returns
    the credentials file."""
    creds = _creds(tmp_path)
    rt.banks.create_bank("ncmec", actor="t", source="ncmec")
    rt.exchanges.add(
        "ncmec-ngo",
        type="ncmec",
        bank="ncmec",
        actor="t",
        base_url=ncmec.url,
        credentials_file=str(creds),
        **kw,  # type: ignore[arg-type]
    )
    return creds


def _wait_for(
    condition: Callable[[], bool], what: str, proc: subprocess.Popen[str], timeout: float = 180
) -> None:
    """Wait for ``condition`` while ``proc`` runs (a generous deadline for a loaded
    machine; polls, never a fixed pause)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the process ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _counts(rt: Runtime) -> tuple[int, int, int]:
    with rt.sessions() as s:
        entries = s.scalar(select(func.count()).select_from(BankEntry)) or 0
        rows = s.scalar(select(func.count()).select_from(ExchangeEntry)) or 0
        distinct = (
            s.scalar(
                select(func.count()).select_from(
                    select(ExchangeEntry.upstream_id).distinct().subquery()
                )
            )
            or 0
        )
        return int(entries), int(rows), int(distinct)


def test_kill_9_mid_sync_then_resume(rt, database_url, tmp_path, ncmec):
    base = int(time.time()) - 3600
    for i in range(30):  # 10 pages of 3
        ncmec.add(1, f"e{i}", {"md5": md5(i)}, base + i)
    ncmec.delete(1, "e0", base + 40)  # the last page deletes the first entry
    env = _env(database_url, tmp_path)
    # Added from outside in test_cli_exchange_add (tests/exchanges): here in-process.
    creds = _add_ncmec(rt, tmp_path, ncmec)
    ncmec.hold_page = 13  # the fifth page
    proc = _cli(env, "exchange", "sync", "ncmec-ngo")
    assert ncmec.held.wait(180), proc.stderr.read() if proc.stderr else ""
    # What was fetched before the held page is being committed: killed once a first
    # batch is in (a fixed pause left none on a loaded machine), maybe mid-way through
    # the next one.
    _wait_for(lambda: _counts(rt)[0] > 0, "a first batch committed", proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(60)
    ncmec.hold_page = None
    ncmec.release.set()
    # Whole pages only: pages are fetched ahead and applied in batches, so one to four
    # of the pages before the held one were committed.
    applied, rows, distinct = _counts(rt)
    assert applied == rows == distinct and applied in (3, 6, 9, 12)
    view = rt.exchanges.get("ncmec-ngo")
    assert view.checkpoint.get("next") == "(mid-sync)" and view.live_entries == applied
    r = _run(env, "exchange", "sync", "ncmec-ngo", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["pages"] == 11 - applied // 3 and result["added"] == 30 - applied
    assert result["complete"]
    assert result["disabled"] == 1
    assert _counts(rt) == (30, 30, 30)  # no duplicate, no gap
    with rt.sessions() as s:
        values = {v: e for v, e in s.execute(select(BankEntry.value, BankEntry.enabled))}
    assert {md5(i) for i in range(30)} == set(values) and not values[md5(0)]
    # The resumed request went on from the stored next link, in the same range.
    gets = [p for m, p in ncmec.requests if "/v2/entries" in p]
    assert sum("start=13" in p for p in gets) == 2
    listed = _run(env, "exchange", "list", "--json")
    row = json.loads(listed.stdout.splitlines()[0])
    assert row["entries_added"] == 30 and row["entries_disabled"] == 1
    assert row["credentials"] == f"file:{creds}" and PASSWORD not in listed.stdout
    assert row["last_error"] is None and row["live_entries"] == 29
    assert PASSWORD not in r.stdout + r.stderr


def test_worker_syncs_on_schedule(rt, database_url, tmp_path, ncmec):
    base = int(time.time()) - 3600
    for i in range(5):
        ncmec.add(1, f"e{i}", {"md5": md5(i)}, base + i)
    _add_ncmec(rt, tmp_path, ncmec, interval_seconds=3600)
    worker = _cli(_env(database_url, tmp_path, TAKEDOWN_EXCHANGE_POLL_SECONDS="0.2"), "worker")
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            view = rt.exchanges.get("ncmec-ngo")
            if view.last_success_at is not None:
                break
            time.sleep(0.2)
        assert view.last_success_at is not None and view.live_entries == 5
        # Next one in an hour; the worker leaves it alone meanwhile.
        assert (view.next_sync_at - view.last_success_at).total_seconds() == pytest.approx(
            3600, abs=2
        )
        asked = len(ncmec.requests)
        time.sleep(1)
        assert len(ncmec.requests) == asked
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)


def test_api(client, auth, tmp_path, ncmec):
    base = int(time.time()) - 3600
    for i in range(4):
        ncmec.add(1, f"e{i}", {"md5": md5(i)}, base + i)
    creds = _creds(tmp_path)
    assert client.post("/v1/banks", json={"name": "ncmec"}, headers=auth).status_code == 201
    body = {
        "name": "ncmec-ngo",
        "type": "ncmec",
        "bank": "ncmec",
        "base_url": ncmec.url,
        "credentials_file": str(creds),
    }
    assert client.post("/v1/exchanges", json=body).status_code == 401
    r = client.post("/v1/exchanges", json=body, headers=auth)
    assert r.status_code == 201, r.text
    assert r.json()["credentials"] == f"file:{creds}"
    again = client.post("/v1/exchanges", json=body, headers=auth)
    assert again.status_code == 409 and again.json()["code"] == "exchange_exists"
    bad = client.post("/v1/exchanges", json={**body, "name": "x", "type": "fax"}, headers=auth)
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_exchange_type"
    r = client.post("/v1/exchanges/ncmec-ngo/sync", headers=auth)
    assert r.status_code == 200 and r.json()["added"] == 4 and r.json()["pages"] == 2
    listed = client.get("/v1/exchanges", headers=auth).json()
    assert [e["name"] for e in listed] == ["ncmec-ngo"] and listed[0]["live_entries"] == 4
    one = client.get("/v1/exchanges/ncmec-ngo", headers=auth).json()
    assert one["last_success_at"] and one["entries_added"] == 4 and PASSWORD not in str(one)
    missing = client.post("/v1/exchanges/nope/sync", headers=auth)
    assert missing.status_code == 404 and missing.json()["code"] == "exchange_not_found"
    # Refused credentials: a 409 with a sentence, nothing applied.
    wrong = tmp_path / "wrong.creds"
    wrong.write_text(f"{USER}:wrong-one\n")
    body = {**body, "name": "ncmec-wrong", "credentials_file": str(wrong)}
    assert client.post("/v1/exchanges", json=body, headers=auth).status_code == 201
    refused = client.post("/v1/exchanges/ncmec-wrong/sync", headers=auth)
    assert refused.status_code == 409
    assert refused.json()["code"] == "exchange_credentials_refused"
    assert "wrong-one" not in refused.text
    after = client.get("/v1/exchanges/ncmec-wrong", headers=auth).json()
    assert after["checkpoint"] == {} and after["live_entries"] == 0 and after["last_error"]


def test_console_page(rt, client, tmp_path, ncmec):
    from tests.console.helpers import csrf_of, sign_in

    ncmec.add(1, "e1", {"md5": md5(1), "sha1": "b" * 40}, int(time.time()) - 3600)
    _add_ncmec(rt, tmp_path, ncmec)
    sign_in(client, "legal")  # reads banks, may not sync
    page = client.get("/console/exchanges")
    assert page.status_code == 200 and "ncmec-ngo" in page.text and "never" in page.text
    assert "Sync ncmec-ngo now" not in page.text
    sign_in(client, "spec")
    page = client.get("/console/exchanges")
    assert 'href="/console/exchanges"' in page.text
    done = client.post(
        "/console/exchanges/ncmec-ngo/sync",
        data={"csrf": csrf_of(page.text)},
        follow_redirects=True,
    )
    assert done.status_code == 200
    assert "ncmec-ngo: 1 page(s), 1 added, 0 disabled, 1 rejected." in done.text
    assert PASSWORD not in done.text


def test_cli_exchange_add_and_refusals(rt, database_url, tmp_path, monkeypatch):
    """`takedown exchange add` (in-process through Typer's runner: the same command)."""
    from typer.testing import CliRunner

    from takedown.cli import app

    monkeypatch.setenv("TAKEDOWN_DATABASE_URL", database_url)
    monkeypatch.setenv("TAKEDOWN_DATA_DIR", str(tmp_path / "data"))
    rt.banks.create_bank("ncmec", actor="t", source="ncmec")
    creds = _creds(tmp_path)
    runner = CliRunner()
    args = ["exchange", "add", "x", "--type", "ncmec", "--bank", "ncmec"]
    r = runner.invoke(app, [*args, "--credentials", str(creds), "--base-url", "http://h"])
    assert r.exit_code == 0 and "added exchange x (ncmec)" in r.output, r.output
    r = runner.invoke(app, [*args, "--credentials", str(creds)])
    assert r.exit_code == 2 and "exchange_exists" in r.output
    r = runner.invoke(app, ["exchange", "add", "y", "--type", "threatexchange", "--bank",
                            "ncmec", "--credentials", str(creds)])  # fmt: skip
    assert r.exit_code == 2 and "invalid_exchange_privacy_group" in r.output
    r = runner.invoke(app, ["exchange", "list"])
    assert r.exit_code == 0 and "never" in r.output and PASSWORD not in r.output
    assert rt.exchanges.get("x").credentials == f"file:{creds}"
    # Its own threshold and action (the matching: test_exchange_policy.py).
    r = runner.invoke(app, ["exchange", "add", "z", "--type", "ncmec", "--bank", "ncmec",
                            "--credentials", str(creds), "--threshold", "10",
                            "--action", "review"])  # fmt: skip
    assert r.exit_code == 0, r.output
    z = rt.exchanges.get("z")
    assert (z.threshold, z.action) == (10, "review")
    r = runner.invoke(app, ["exchange", "add", "w", "--type", "ncmec", "--bank", "ncmec",
                            "--credentials", str(creds), "--action", "negative"])  # fmt: skip
    assert r.exit_code == 2 and "invalid_exchange_action" in r.output
    r = runner.invoke(app, ["exchange", "set", "z", "--threshold", "12"])
    assert r.exit_code == 0 and "threshold 12, action the bank's" in r.output, r.output
    assert (rt.exchanges.get("z").threshold, rt.exchanges.get("z").action) == (12, None)
