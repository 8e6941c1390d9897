"""Issue 19's false-positive controls and operators' view checked from outside, on both
database backends: a real ``takedown serve`` and ``takedown worker`` (subprocesses),
the CLI and the HTTP API, against the local NCMEC- and StopNCII-protocol servers.

The worker syncs both exchanges on schedule (StopNCII's withdrawn record disabled in the
same sync); a negative bank wins over an exchange's entry before any action; 101
distinct uploads of one listed hash within an hour quarantine its entry (it stops
blocking, the specialist is mailed), and a specialist's decision restores it; the
entry's match history shows it; ``exchange list --json`` shows last and next sync,
added, disabled and rejected; a refused password is a clear error. No secret appears in
any process's output, any answer or the audit log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlalchemy import select

from takedown.store.models import AuditEvent, MailMessage
from tests.cases.helpers import user_headers
from tests.conftest import start_server
from tests.exchanges.ncmec_hash_server import PASSWORD, USER
from tests.exchanges.stopncii_server import FEEDBACK_KEY, FETCH_KEY, SUBSCRIPTION_KEY
from tests.exchanges.test_pull import md5, ncmec, pdq, stopncii  # noqa: F401

SECRETS = (PASSWORD, FETCH_KEY, SUBSCRIPTION_KEY, FEEDBACK_KEY, "wrong-password-77")


def _env(database_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TAKEDOWN_DATABASE_URL": database_url,
        "TAKEDOWN_DATA_DIR": str(tmp_path / "data"),
        "TAKEDOWN_ACCESS_LOG": "false",
        "TAKEDOWN_EXCHANGE_CREDENTIALS_DIR": str(tmp_path),
        "TAKEDOWN_EXCHANGE_BASE_URLS": "http://127.0.0.1",
        "TAKEDOWN_EXCHANGE_POLL_SECONDS": "0.3",
        "TAKEDOWN_SPECIALIST_ALERT_EMAIL": "cs@example.org",
    }


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "takedown.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def _wait(condition: Callable[[], object], what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_false_positive_controls_and_operators_view_from_outside(
    rt,
    database_url,
    tmp_path,
    auth,
    ncmec,  # noqa: F811
    stopncii,  # noqa: F811
):
    env = _env(database_url, tmp_path)
    outputs: list[str] = []
    base = int(time.time()) - 3600
    for i in range(4):
        ncmec.add(7, f"n{i}", {"md5": md5(i), "pdq": pdq(i)}, base + i)
    ncmec.add(7, "sha1-only", {"sha1": "aa" * 20}, base + 5)  # a type not taken: rejected
    stopncii.put("ImagePDQ", pdq(20), "Active", base)
    stopncii.put("ImagePDQ", pdq(21), "Active", base + 1)
    (tmp_path / "ncmec.creds").write_text(f"{USER}:{PASSWORD}\n")
    (tmp_path / "wrong.creds").write_text(f"{USER}:wrong-password-77\n")
    (tmp_path / "stopncii.creds").write_text(f"{FETCH_KEY},{SUBSCRIPTION_KEY},{FEEDBACK_KEY}\n")

    # The operator sets up the banks and exchanges with the CLI.
    for args in (
        ("bank", "create", "csam", "--source", "ncmec", "--action", "block"),
        ("bank", "create", "ncii", "--source", "stopncii", "--action", "block"),
        ("bank", "create", "benign", "--action", "negative"),
        ("exchange", "add", "ncmec-ngo", "--type", "ncmec", "--bank", "csam",
         "--base-url", ncmec.url, "--credentials", str(tmp_path / "ncmec.creds"),
         "--interval", "3600"),
        ("exchange", "add", "ncmec-wrong", "--type", "ncmec", "--bank", "csam",
         "--base-url", ncmec.url, "--credentials", str(tmp_path / "wrong.creds")),
        ("exchange", "add", "stopncii", "--type", "stopncii", "--bank", "ncii",
         "--base-url", stopncii.url, "--credentials", str(tmp_path / "stopncii.creds")),
    ):  # fmt: skip
        done = _cli(env, *args)
        outputs += [done.stdout, done.stderr]
        assert done.returncode == 0, (args, done.stdout, done.stderr)

    # A refused password: a clear error, nothing applied, the secret never repeated.
    refused = _cli(env, "exchange", "sync", "ncmec-wrong")
    outputs += [refused.stdout, refused.stderr]
    assert refused.returncode != 0 and "exchange_credentials_refused" in refused.stderr

    spec = user_headers(rt, "spec-outside", "child_safety_specialist")
    server, port = start_server(env, workers=1)
    worker = subprocess.Popen(
        [sys.executable, "-m", "takedown.cli", "worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth, timeout=120) as http:

            def synced() -> bool:
                listed = {e["name"]: e for e in http.get("/v1/exchanges").json()}
                return all(listed[n]["last_success_at"] for n in ("ncmec-ngo", "stopncii"))

            def up() -> bool:
                assert server.poll() is None and worker.poll() is None
                try:
                    return http.get("/v1/exchanges").status_code == 200
                except httpx.TransportError:
                    return False

            _wait(up, "the server")
            _wait(synced, "the worker's first syncs")

            def screen(body: dict[str, object]) -> str:
                r = http.post("/v1/screen/hashes", json=body)
                assert r.status_code == 200, r.text
                return str(r.json()["verdict"])

            assert screen({"md5": md5(1)}) == "block"
            assert screen({"pdq": pdq(21), "pdq_quality": 90}) == "block"

            # StopNCII: the victim withdraws; the worker's next sync disables it.
            stopncii.put("ImagePDQ", pdq(21), "Withdrawn", int(time.time()) - 30)
            r = http.post("/v1/exchanges/stopncii/sync")
            assert r.status_code == 200 and r.json()["disabled"] == 1, r.text
            assert screen({"pdq": pdq(21), "pdq_quality": 90}) == "allow"

            # A negative bank wins over the exchange's entry, before any action.
            r = http.post("/v1/banks/benign/entries",
                          json={"entries": [{"signal_type": "md5", "value": md5(2)}]})  # fmt: skip
            assert r.status_code in (200, 201), r.text
            assert screen({"md5": md5(2)}) == "allow"

            # 100 distinct uploads of one listed picture within an hour: a flood. Each
            # blocks (the worker cannot count the 100th before it is screened); one more
            # would race the worker's sweep, which may already have quarantined it.
            for i in range(100):
                assert screen({"md5": md5(3), "content_ref": f"upload-{i}"}) == "block"

            def quarantined() -> list[dict[str, object]]:
                return list(http.get("/v1/quarantines").json())

            _wait(quarantined, "the worker's flood quarantine")
            (q,) = quarantined()
            assert q["uploads"] == 100, q
            assert q["value"] == md5(3) and q["state"] == "pending"
            assert screen({"md5": md5(3)}) == "allow"  # stopped blocking at once
            history = http.get(f"/v1/entries/{q['entry']}/matches").json()
            assert history["matches"] == 100 and history["last_match_at"]  # not since
            assert [x["state"] for x in history["quarantines"]] == ["pending"]
            # Its provenance: the exchange, the upstream id, labels, first and last seen.
            (up,) = history["upstream"]
            assert (up["exchange"], up["exchange_type"], up["signal_type"]) == (
                "ncmec-ngo", "ncmec", "md5")  # fmt: skip
            assert up["upstream_id"].endswith("n3") and up["labels"]["classification"] == "A1"
            assert up["first_seen_at"] and up["last_seen_at"] and up["removed_at"] is None
            # The specialist restores it: it blocks again.
            r = http.post(f"/v1/quarantines/{q['id']}/decision", json={"restore": True},
                          headers=spec)  # fmt: skip
            assert r.status_code == 200 and r.json()["state"] == "restored", r.text
            assert screen({"md5": md5(3)}) == "block"
            history = http.get(f"/v1/entries/{q['entry']}/matches").json()
            assert history["enabled"] and history["confirmed"] == 1 and history["matches"] == 101
            assert [x["state"] for x in history["quarantines"]] == ["restored"]
            answers = [http.get("/v1/exchanges").text, http.get("/v1/exchanges/ncmec-wrong").text]
    finally:
        worker.send_signal(signal.SIGTERM)
        w_out, w_err = worker.communicate(timeout=120)
        server.terminate()
        _, s_err = server.communicate(timeout=120)
    outputs += [w_out, w_err, s_err, *answers]

    # The operators' view: last and next sync, added, disabled, rejected, errors.
    listed = _cli(env, "exchange", "list", "--json")
    outputs += [listed.stdout, listed.stderr]
    assert listed.returncode == 0, listed.stderr
    text = listed.stdout.strip()
    rows = json.loads(text) if text.startswith("[") else [json.loads(x) for x in text.splitlines()]
    views = {v["name"]: v for v in rows}
    n = views["ncmec-ngo"]
    assert n["last_sync_at"] and n["last_success_at"] and n["next_sync_at"]
    assert (n["entries_added"], n["entries_rejected"], n["last_error"]) == (8, 1, None)
    assert views["stopncii"]["entries_disabled"] == 1
    assert "refused" in (views["ncmec-wrong"]["last_error"] or "")
    with rt.sessions() as s:
        mail = s.scalars(select(MailMessage).where(MailMessage.to_address == "cs@example.org"))
        assert any(q["id"] in m.body for m in mail)
        outputs += [e.details or "" for e in s.scalars(select(AuditEvent))]
        outputs += [m.body for m in s.scalars(select(MailMessage))]
    leaked = [x for x in SECRETS if any(x in out for out in outputs)]
    assert leaked == [], leaked
