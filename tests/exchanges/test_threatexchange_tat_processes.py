"""ThreatExchange and TCAP driven from outside, against their local protocol servers:
the CLI (add, a sync killed with kill -9 resuming without duplicates or gaps, list),
a real `takedown serve` process (add and sync through the HTTP API, entries matched by
screening, an upstream deletion ending the match, refused credentials on the
exchange's status, a reviewer's opinion) and `takedown worker` (the opinion's reaction
arriving at the ThreatExchange server). Both database backends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from sqlalchemy import func, select

from takedown.runtime import Runtime
from takedown.store.models import BankEntry, ExchangeEntry
from tests.cases.helpers import user_headers
from tests.conftest import start_server
from tests.exchanges.tat_server import PASSWORD as TAT_PASSWORD
from tests.exchanges.tat_server import USER as TAT_USER
from tests.exchanges.tat_server import TatServer
from tests.exchanges.test_processes import _cli, _env, _run
from tests.exchanges.test_threatexchange_tat import md5, pdq
from tests.exchanges.threatexchange_server import GROUP, TOKEN, ThreatExchangeServer


@pytest.fixture
def te() -> Iterator[ThreatExchangeServer]:
    server = ThreatExchangeServer(page_size=3).start()
    yield server
    server.stop()


@pytest.fixture
def tat() -> Iterator[TatServer]:
    server = TatServer(page_size=3).start()
    yield server
    server.stop()


def _wait(condition: Callable[[], object], what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _counts(rt: Runtime) -> tuple[int, int, int]:
    with rt.sessions() as s:
        entries = s.scalar(select(func.count()).select_from(BankEntry)) or 0
        rows = s.scalar(select(func.count()).select_from(ExchangeEntry)) or 0
        distinct = s.scalar(
            select(func.count()).select_from(
                select(ExchangeEntry.upstream_id).distinct().subquery()
            )
        )
        return int(entries), int(rows), int(distinct or 0)


def test_threatexchange_cli_kill_9_resume_and_worker_reactions(
    rt, client, database_url, tmp_path, te
):
    base = int(time.time()) - 3600
    for i in range(30):  # 10 pages of 3
        te.put(100 + i, "HASH_MD5", md5(i), base + i)
    token = tmp_path / "te.token"
    token.write_text(TOKEN + "\n")
    env = _env(database_url, tmp_path)
    rt.banks.create_bank("terror", actor="t")
    r = _run(env, "exchange", "add", "gifct", "--type", "threatexchange", "--bank", "terror",
             "--credentials", str(token), "--base-url", te.url,
             "--privacy-group", str(GROUP))  # fmt: skip
    assert r.returncode == 0 and "added exchange gifct (threatexchange)" in r.stdout, r.stderr
    te.hold_after = 5  # the fifth page
    proc = _cli(env, "exchange", "sync", "gifct")
    assert te.held.wait(120), proc.stderr.read() if proc.stderr else ""
    # What was fetched before the held page is being committed: killed once a first
    # batch is in (a fixed pause left none on a loaded machine), maybe mid-way through
    # the next one.
    _wait(lambda: _counts(rt)[0] > 0 or proc.poll() is not None, "a first batch committed")
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(60)
    te.hold_after = None
    te.release.set()
    te.delete(101, base + 40)  # meanwhile upstream deletes an applied indicator
    # Whole pages only (fetched ahead, applied in batches): one to four pages applied.
    applied, rows, distinct = _counts(rt)
    assert applied == rows == distinct and applied in (3, 6, 9, 12)
    view = rt.exchanges.get("gifct")
    assert view.checkpoint == {"update_time": base + applied - 1}
    r = _run(env, "exchange", "sync", "gifct", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["complete"] and result["disabled"] == 1
    assert result["added"] == 30 - applied  # the resumed second's indicator: seen again
    assert _counts(rt) == (30, 30, 30)  # no duplicate, no gap
    resumed = [p for m, p in te.requests if "threat_updates" in p and "start_time" in p]
    assert f"start_time={base + applied - 1}" in resumed[0]
    listed = _run(env, "exchange", "list", "--json")
    row = json.loads(listed.stdout.splitlines()[0])
    assert row["privacy_group"] == GROUP and row["live_entries"] == 29
    assert row["entries_added"] == 30 and row["entries_disabled"] == 1
    secret = TOKEN.split("|")[1]
    assert secret not in listed.stdout + r.stdout + r.stderr
    # A reviewer confirms a match; `takedown worker` sends the reaction.
    with rt.sessions() as s:
        public = s.scalars(select(BankEntry.public_id).where(BankEntry.value == md5(5))).one()
    mod = user_headers(rt, "mod", "moderator")
    r2 = client.post(f"/v1/entries/{public}/opinion", json={"confirmed": True}, headers=mod)
    assert r2.json() == {"queued": 1}
    worker = _cli(_env(database_url, tmp_path, TAKEDOWN_EXCHANGE_POLL_SECONDS="0.2"), "worker")
    try:
        _wait(lambda: te.reactions, "the reaction at the ThreatExchange server")
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    assert te.reactions == [(1051, "HELPFUL")]
    assert secret not in err


def test_tat_and_threatexchange_through_a_server_process(rt, database_url, tmp_path, tat, te, auth):
    base = time.time() - 3600
    for i in range(4):
        tat.put(10 + i, "PDQ", pdq(i), base + i)
    te.put(500, "HASH_PDQ", pdq(50), int(base))
    creds = tmp_path / "tat.creds"
    creds.write_text(f"{TAT_USER}:{TAT_PASSWORD}\n")
    wrong = tmp_path / "wrong.creds"
    wrong.write_text(f"{TAT_USER}:not-the-password\n")
    token = tmp_path / "te.token"
    token.write_text(TOKEN + "\n")
    server, port = start_server(_env(database_url, tmp_path), workers=1)
    api = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=api, headers=auth, timeout=120) as http:
            _wait(lambda: _healthy(http, server), "the server")
            assert http.post("/v1/banks", json={"name": "terror"}).status_code == 201
            body = {"name": "tcap", "type": "tat", "bank": "terror", "base_url": tat.url,
                    "credentials_file": str(creds)}  # fmt: skip
            r = http.post("/v1/exchanges", json=body)
            assert r.status_code == 201, r.text
            r = http.post("/v1/exchanges/tcap/sync")
            assert r.status_code == 200 and r.json()["added"] == 4 and r.json()["pages"] == 2
            assert _screen(http, pdq(2)) == "review"
            # Upstream deletes it: the next sync disables it, screening no longer matches.
            tat.delete(12, base + 100)
            r = http.post("/v1/exchanges/tcap/sync")
            assert r.status_code == 200 and r.json()["disabled"] == 1
            assert _screen(http, pdq(2)) == "allow" and _screen(http, pdq(3)) == "review"
            # Refused credentials: a 409 with a sentence, the error on the exchange.
            r = http.post("/v1/exchanges", json={**body, "name": "tcap-wrong",
                                                 "credentials_file": str(wrong)})  # fmt: skip
            assert r.status_code == 201
            refused = http.post("/v1/exchanges/tcap-wrong/sync")
            assert refused.status_code == 409
            assert refused.json()["code"] == "exchange_credentials_refused"
            state = http.get("/v1/exchanges/tcap-wrong").json()
            assert "TCAP refused" in state["last_error"] and state["live_entries"] == 0
            assert "not-the-password" not in refused.text + json.dumps(state)
            # ThreatExchange through the API: the privacy group is its parameter.
            te_body = {"name": "gifct", "type": "threatexchange", "bank": "terror",
                       "base_url": te.url, "credentials_file": str(token)}  # fmt: skip
            missing = http.post("/v1/exchanges", json=te_body)
            assert missing.status_code == 422
            assert missing.json()["code"] == "invalid_exchange_privacy_group"
            r = http.post("/v1/exchanges", json={**te_body, "privacy_group": GROUP})
            assert r.status_code == 201 and r.json()["privacy_group"] == GROUP
            r = http.post("/v1/exchanges/gifct/sync")
            assert r.status_code == 200 and r.json()["added"] == 1
            assert _screen(http, pdq(50)) == "review"
            listed = http.get("/v1/exchanges")
            assert TOKEN.split("|")[1] not in listed.text and TAT_PASSWORD not in listed.text
    finally:
        server.terminate()
        _, err = server.communicate(timeout=60)
    assert TOKEN.split("|")[1] not in err and TAT_PASSWORD not in err


def _healthy(http: httpx.Client, server: subprocess.Popen[str]) -> bool:
    assert server.poll() is None, server.stderr.read() if server.stderr else ""
    try:
        return http.get("/v1/health").status_code == 200
    except httpx.TransportError:
        return False


def _screen(http: httpx.Client, value: str) -> str:
    r = http.post("/v1/screen/hashes", json={"pdq": value, "pdq_quality": 90})
    assert r.status_code == 200, r.text
    return str(r.json()["verdict"])
