"""Sharing driven from outside, on both database backends: the CLI sets a bank to share
and lists the shares; the legal team decides in the console (others are refused); a
running ``takedown worker`` sends the approved share to the local NCMEC-protocol server,
retrying a 5xx, so that the entry reaches it once; and to the local ThreatExchange
server, then takes it back when the decision is overturned."""

from __future__ import annotations

import json
import signal
import time

from sqlalchemy import select
from typer.testing import CliRunner

from takedown.cli import app
from takedown.store.models import AuditEvent
from tests.cases.helpers import user_headers
from tests.console.helpers import csrf_of, sign_in
from tests.exchanges.ncmec_hash_server import MEMBER_ID, PASSWORD, USER
from tests.exchanges.test_processes import _cli, _env, _run
from tests.exchanges.test_pull import creds_file, md5, ncmec, pdq  # noqa: F401
from tests.exchanges.test_share_withdrawal import overturn
from tests.exchanges.test_sharing import OWN, confirm
from tests.exchanges.test_sharing_threatexchange import te  # noqa: F401
from tests.exchanges.threatexchange_server import GROUP, TOKEN


def _shares(env: dict[str, str], *args: str) -> list[dict]:
    r = _run(env, "exchange", "shares", "--json", *args)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def test_cli_console_and_worker(rt, client, database_url, tmp_path, ncmec, monkeypatch):  # noqa: F811
    env = _env(database_url, tmp_path, TAKEDOWN_EXCHANGE_POLL_SECONDS="0.2")
    spec = user_headers(rt, "specialist", "child_safety_specialist")
    rt.banks.create_bank("csam", actor="t", source="ncmec")
    rt.exchanges.add("ncmec", type="ncmec", bank="csam", actor="t", base_url=ncmec.url,
                     credentials_file=creds_file(tmp_path, f"{USER}:{PASSWORD}", "n"))  # fmt: skip
    confirm(rt, client, 1, spec)  # off by default: nothing proposed
    assert rt.shares.list() == []

    # The CLI turns sharing on for the own bank (and refuses what cannot share).
    runner = CliRunner()  # the same commands in-process, where no process is needed
    monkeypatch.setenv("TAKEDOWN_DATABASE_URL", database_url)
    monkeypatch.setenv("TAKEDOWN_DATA_DIR", env["TAKEDOWN_DATA_DIR"])
    r = runner.invoke(app, ["bank", "update", OWN, "--share-to", "nope"])
    assert r.exit_code == 2 and "exchange_not_found" in r.output, r.output
    r = _run(env, "bank", "update", OWN, "--share-to", "ncmec")
    assert r.returncode == 0 and "shares to ncmec" in r.stdout, r.stderr
    case = confirm(rt, client, 2, spec)
    (share,) = _shares(env, "--state", "pending")
    assert share["case_id"] == case and share["signals"]["md5"] == md5(2)
    listed = runner.invoke(app, ["exchange", "shares"])
    assert listed.exit_code == 0 and share["id"] in listed.output and PASSWORD not in listed.output

    # The console: the legal team's page; others are refused.
    for who in ("spec", "admin"):
        sign_in(client, who)
        page = client.get("/console/legal/shares")
        assert page.status_code == 403, who
        assert 'href="/console/legal/shares"' not in client.get("/console/settings").text
    sign_in(client, "legal")
    page = client.get("/console/legal/shares")
    assert page.status_code == 200 and share["id"] in page.text and md5(2) in page.text
    done = client.post(
        f"/console/legal/shares/{share['id']}/approve",
        data={"csrf": csrf_of(page.text), "classification": "A2"},
        follow_redirects=True,
    )
    assert done.status_code == 200 and "approved" in done.text, done.text[:2000]
    with rt.sessions() as s:
        (event,) = s.scalars(
            select(AuditEvent).where(AuditEvent.action == "exchange.share_approved")
        ).all()
    assert event.actor == "user:legal" and event.object_id == share["id"]

    # A running worker sends it: NCMEC answers 503 first, the outbox tries again.
    ncmec.fail_next(503, method="POST")  # (the worker's syncs GET meanwhile)
    worker = _cli(env, "worker")
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and rt.shares.get(share["id"]).state == "approved":
            time.sleep(0.2)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(120)
    (now,) = _shares(env, "--state", "sent")
    assert now["id"] == share["id"], now
    assert now["upstream_id"] == f"{MEMBER_ID}-{share['id']}" and now["attempts"] == 2
    assert now["last_error"] is None and now["sent_at"]
    posts = [p for m, p in ncmec.requests if m == "POST"]
    assert posts == ["/v2/entries", "/v2/entries"]  # the 503, then the one taken
    assert len(ncmec.submissions) == 1 and list(ncmec.own_entries()) == [share["id"]]
    assert b"<classification>A2</classification>" in ncmec.submissions[0]

    # A refusal in the console needs a reason, and sends nothing.
    confirm(rt, client, 3, spec)
    (pending,) = rt.shares.list(state="pending")
    pending = pending.__dict__
    page = client.get("/console/legal/shares")
    bare = client.post(
        f"/console/legal/shares/{pending['id']}/refuse",
        data={"csrf": csrf_of(page.text), "reason": ""},
        follow_redirects=True,
    )
    assert "Say why the share is refused" in bare.text
    done = client.post(
        f"/console/legal/shares/{pending['id']}/refuse",
        data={"csrf": csrf_of(page.text), "reason": "Not within the list's scope."},
        follow_redirects=True,
    )
    assert done.status_code == 200 and "Not within the list" in done.text
    assert f"{MEMBER_ID}-{share['id']}" in done.text  # the sent one, with its upstream id
    refused = rt.shares.get(pending["id"])
    assert refused.decided_by == "user:legal" and refused.reason.startswith("Not within")
    assert rt.shares.send_due() == 0 and len(ncmec.submissions) == 1


def test_worker_shares_to_threatexchange_and_takes_it_back(rt, client, database_url, tmp_path, te):  # noqa: F811
    """The CLI sets the own bank to share to ThreatExchange; the legal team approves; a
    running worker sends the descriptors; the decision is overturned on appeal and a
    running worker deletes them again."""
    env = _env(database_url, tmp_path, TAKEDOWN_EXCHANGE_POLL_SECONDS="0.2")
    spec = user_headers(rt, "specialist", "child_safety_specialist")
    legal = user_headers(rt, "lee", "legal")
    rt.banks.create_bank("gifct", actor="t", source="threatexchange")
    cred = creds_file(tmp_path, TOKEN, "te")
    rt.exchanges.add("te", type="threatexchange", bank="gifct", actor="t", base_url=te.url,
                     privacy_group=GROUP, credentials_file=cred)  # fmt: skip
    confirm(rt, client, 1, spec)
    r = _run(env, "bank", "update", OWN, "--share-to", "te")
    assert r.returncode == 0 and "shares to te" in r.stdout, r.stderr
    case = confirm(rt, client, 2, spec)
    (share,) = _shares(env, "--state", "pending")
    r = client.post(f"/v1/exchange-shares/{share['id']}/approve", headers=legal, json={})
    assert r.is_success, r.text

    def run_worker_until(state: str) -> None:
        worker = _cli(env, "worker")
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and rt.shares.get(share["id"]).state != state:
                time.sleep(0.2)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(120)

    run_worker_until("sent")
    (sent,) = _shares(env, "--state", "sent")
    assert sorted(sent["upstream_id"].split(",")) == sorted(te.own_descriptors().values())
    assert set(te.own_descriptors()) == {md5(2), pdq(2)}

    overturn(rt, client, case)
    assert rt.shares.get(share["id"]).state == "withdrawing"
    run_worker_until("withdrawn")
    (gone,) = _shares(env, "--state", "withdrawn")
    assert gone["id"] == share["id"] and gone["withdrawn_at"]
    assert "overturned on appeal" in gone["withdraw_reason"]
    assert te.own_descriptors() == {} and len(te.deletions) == 2
