"""The Mastodon connector (docs/integrations/mastodon.md), driven from outside.

A real Takedown server process (``takedown serve``, SQLite) and the connector as its own
process (``takedown connector mastodon --config FILE``) talk over HTTP; Mastodon is the
local server of tests/connectors/fake_mastodon.py, which speaks Mastodon's documented API
and webhooks. The request shapes the connector sends are compared with what the
Mastodon.py client sends for the same calls.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from takedown.config import Settings
from takedown.connectors.mastodon import (
    Config,
    ConfigError,
    MastodonClient,
    Unavailable,
    form_encode,
    mastodon_signature,
    mastodon_signature_ok,
    takedown_signature_ok,
)
from takedown.runtime import open_runtime
from tests.conftest import standin_bytes, start_server
from tests.connectors.fake_mastodon import FakeMastodon, Recorded

# One xdist worker runs this module, so its servers start once (scripts/test: loadgroup).
pytestmark = pytest.mark.xdist_group("mastodon")

TOKEN = "service-account-token-0123456789"
TD_SECRET = "takedown-webhook-secret-0123456789"
PASSWORD = "a long specialist passphrase 42"
SPECIALISTS = ("specialist", "second", "third")
# Requests to the servers: a loaded machine (CI) can take longer to answer than httpx's
# default of 5 s.
http = httpx.Client(timeout=120)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait(condition: Callable[[], Any], what: str, timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.05)


def _up(url: str) -> bool:
    try:
        return http.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class World:
    fake: FakeMastodon
    takedown: str
    connector: str
    admin: dict[str, str]
    specialists: list[dict[str, str]]
    platform: dict[str, str]

    @property
    def hook(self) -> str:
        return self.connector + "/webhooks/mastodon"


@pytest.fixture(scope="module")
def world(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("mastodon")
    database = tmp / "takedown.sqlite3"
    shutil.copy(sqlite_template, database)
    data = tmp / "data"
    rt = open_runtime(Settings(database_url=f"sqlite:///{database}", data_dir=data), migrate=False)
    try:
        _, platform_key = rt.api_keys.create("mastodon", ["platform"], actor="test")
        _, admin_key = rt.api_keys.create("admin", ["admin"], actor="test")
        for name in SPECIALISTS:
            rt.users.create(name, PASSWORD, "child_safety_specialist", actor="test")
    finally:
        rt.close()
    fake = FakeMastodon(TOKEN)
    connector_port = _free_port()
    connector = f"http://127.0.0.1:{connector_port}"
    server, port = start_server(
        {
            "TAKEDOWN_DATABASE_URL": f"sqlite:///{database}",
            "TAKEDOWN_DATA_DIR": str(data),
            "TAKEDOWN_ACCESS_LOG": "false",
            "TAKEDOWN_WEBHOOK_URL": connector + "/webhooks/takedown",
            "TAKEDOWN_WEBHOOK_SECRET": TD_SECRET,
            "TAKEDOWN_DELIVERY_POLL_SECONDS": "0.1",
        },
        workers=1,
    )
    takedown = f"http://127.0.0.1:{port}"
    config = tmp / "mastodon.toml"
    config.write_text(
        f"""
[takedown]
url = "{takedown}"
api_key = "{platform_key}"
webhook_secret = "{TD_SECRET}"

[mastodon]
url = "{fake.url}"
access_token_file = "token.txt"
webhook_secret = "{fake.webhook_secret}"

[connector]
port = {connector_port}
state_file = "state/connector.sqlite3"
contact_email = "moderation@social.example"
max_rate_limit_wait_seconds = 5
""",
        encoding="utf-8",
    )
    (tmp / "token.txt").write_text(TOKEN + "\n", encoding="utf-8")
    log = (tmp / "connector.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "takedown.cli", "connector", "mastodon", "--config", str(config)],
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        _wait(lambda: _up(takedown + "/v1/health") or server.poll() is not None, "takedown", 300)
        _wait(lambda: _up(connector + "/health") or proc.poll() is not None, "connector", 300)
        assert server.poll() is None and proc.poll() is None
        tokens = [
            http.post(
                takedown + "/v1/auth/token",
                json={"username": name, "password": PASSWORD},
                timeout=120,  # may wait in the queue of a worker still starting
            ).json()["token"]
            for name in SPECIALISTS
        ]
        yield World(
            fake,
            takedown,
            connector,
            {"Authorization": f"Bearer {admin_key}"},
            [{"Authorization": f"Bearer {t}"} for t in tokens],
            {"Authorization": f"Bearer {platform_key}"},
        )
    finally:
        for p in (proc, server):
            p.send_signal(signal.SIGTERM)
        for p in (proc, server):
            try:
                p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        fake.close()
        log.close()
        sys.stderr.write((tmp / "connector.log").read_text())


def _actions(fake: FakeMastodon, account: str) -> list[dict[str, Any]]:
    return [r.fields for r in fake.calls("POST", rf"/api/v1/admin/accounts/{account}/action")]


def _report_of(fake: FakeMastodon, report_id: str) -> dict[str, Any]:
    return fake.reports[report_id]


# -- end to end ------------------------------------------------------------------------
def test_a_bad_signature_is_refused_and_changes_nothing(world: World):
    fake = world.fake
    dave = fake.add_account("dave")
    sid = fake.add_status(dave, standin_bytes("camera.png"))
    r = fake.webhook(world.hook, "status.created", fake.status(sid), secret="not-the-secret")
    assert r.status_code == 401 and r.json()["code"] == "bad_signature"
    body = json.dumps({"topic": "account.suspend", "target": {"id": f"mastodon:{dave}"}})
    r = http.post(
        world.connector + "/webhooks/takedown",
        content=body,
        headers={"Takedown-Signature": f"t={int(time.time())},v1={'0' * 64}"},
    )
    assert r.status_code == 401 and r.json()["code"] == "bad_signature"
    r = http.get(f"{world.takedown}/v1/items/mastodon:{sid}", headers=world.admin)
    assert r.status_code == 404
    assert not fake.accounts[dave]["suspended"] and _actions(fake, dave) == []


def test_a_banked_standin_is_screened_and_its_account_actioned(world: World):
    fake = world.fake
    r = http.post(
        world.takedown + "/v1/banks",
        json={"name": "known", "match_action": "block", "restrict_on_match": True},
        headers=world.admin,
    )
    assert r.status_code == 201, r.text
    banked = standin_bytes("chelsea.png")  # a stand-in photo (a cat), never real material
    r = http.post(
        world.takedown + "/v1/banks/known/media",
        files={"file": ("standin.png", banked)},
        data={"category": "csam"},
        headers=world.admin,
        timeout=60,
    )
    assert r.status_code == 201, r.text

    alice = fake.add_account("alice")
    sid = fake.add_status(alice)  # a text post: registered, nothing to screen
    r = fake.webhook(world.hook, "status.created", fake.status(sid))
    assert r.status_code == 200 and r.json()["result"] == f"registered mastodon:{sid}", r.text
    # Edited to add the banked stand-in: status.updated screens it.
    edited = fake.add_status(alice, banked)
    fake.statuses[sid]["media_attachments"] = fake.statuses.pop(edited)["media_attachments"]
    r = fake.webhook(world.hook, "status.updated", fake.status(sid))
    assert r.status_code == 200, r.text
    assert r.json()["result"] == f"registered mastodon:{sid} (block)"
    # Takedown restricts it first; the connector reports the post as the service
    # account and acts on that report (Mastodon has no call for one post).
    actions = _wait(lambda: _actions(fake, alice), "the admin action on alice")
    assert actions[0]["type"] == "sensitive" and "report_id" in actions[0]
    report = _report_of(fake, actions[0]["report_id"])
    assert report["status_ids"] == [sid] and report["account_id"] == fake.service
    assert report["action_taken"] and fake.accounts[alice]["sensitized"]
    item = http.get(f"{world.takedown}/v1/items/mastodon:{sid}", headers=world.admin).json()
    assert item["visibility"] == "restricted", item
    account = http.get(f"{world.takedown}/v1/accounts/mastodon:{alice}", headers=world.admin)
    assert account.json()["handle"] == "@alice"

    # A remote post (relayed to this server) is not this server's to screen.
    remote = fake.add_account("erin", domain="elsewhere.example")
    rid = fake.add_status(remote, banked)
    r = fake.webhook(world.hook, "status.created", fake.status(rid))
    assert r.json()["result"] == "ignored: not a local post"
    assert _actions(fake, remote) == []


def test_a_reported_post_is_restricted_then_removed_and_the_account_suspended(world: World):
    fake = world.fake
    bob, carol = fake.add_account("bob"), fake.add_account("carol")
    sid = fake.add_status(bob, standin_bytes("coffee.png"))
    r = fake.webhook(world.hook, "status.created", fake.status(sid))
    assert r.json()["result"] == f"registered mastodon:{sid} (allow)"
    assert _actions(fake, bob) == []

    rid = fake.add_report(carol, bob, [sid], "This is child sexual abuse material")
    r = fake.webhook(world.hook, "report.created", fake.admin_report(rid))
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert result.startswith("filed as case ") and result.endswith("(csam, user)")
    case_id = result.split()[3]
    case = http.get(f"{world.takedown}/v1/cases/{case_id}", headers=world.admin).json()
    reporter = case["reports"][0]
    assert reporter["reporter_role"] == "user" and reporter["category"] == "csam"

    # Restricted first: a report of the post, acted on (sensitive).
    first = _wait(lambda: _actions(fake, bob), "the interim restriction")
    assert first[0]["type"] == "sensitive"
    assert _report_of(fake, first[0]["report_id"])["status_ids"] == [sid]
    assert fake.reports[rid]["action_taken"]  # the user's report is resolved with it

    # Mastodon spends its budget: the next call is refused (429) until the reset, which
    # the connector waits for.
    fake.exhaust(1.0)
    r = http.post(
        f"{world.takedown}/v1/cases/{case_id}/decisions",
        json={
            "outcome": "violation",
            "policy": "csam",
            "reasons": "Confirmed by a specialist: the stand-in stands for abuse material.",
        },
        headers=world.specialists[0],
    )
    assert r.status_code == 201 and r.json()["effective"] is True, r.text
    _wait(lambda: fake.accounts[bob]["suspended"], "bob suspended")
    kinds = [a["type"] for a in _actions(fake, bob)]
    assert kinds == ["sensitive", "sensitive", "suspend"], kinds
    assert any(r.status == 429 for r in fake.requests)
    # The removal leaves a report open for a moderator to delete the post... which the
    # suspension then resolves (a suspended account's posts are gone from view).
    deletes = [r for r in fake.reports.values() if "Delete this post" in r["comment"]]
    assert len(deletes) == 1 and deletes[0]["status_ids"] == [sid]

    def acknowledged() -> bool:
        outbox = http.get(world.takedown + "/v1/outbox", headers=world.admin).json()
        mine = [m for m in outbox if m["case"] == case_id]
        return len(mine) >= 3 and all(m["state"] == "acknowledged" for m in mine)

    _wait(acknowledged, "every action of the case acknowledged")

    # The uploader appeals (the operator files it: Mastodon sends no webhook for a
    # strike's appeal); two other specialists find no violation: the account is
    # unsuspended and its media no longer marked sensitive.
    r = http.post(
        f"{world.takedown}/v1/cases/{case_id}/appeals",
        json={"reason": "This is a photo of a cup of coffee, nothing else."},
        headers=world.platform,
    )
    assert r.status_code == 201, r.text
    for reviewer in world.specialists[1:]:
        r = http.post(
            f"{world.takedown}/v1/cases/{case_id}/decisions",
            json={"outcome": "no_violation", "reasons": "On appeal: a cup of coffee, benign."},
            headers=reviewer,
        )
        assert r.status_code == 201, r.text
    _wait(lambda: not fake.accounts[bob]["suspended"], "bob unsuspended")
    _wait(lambda: not fake.accounts[bob]["sensitized"], "bob's media no longer sensitive")
    assert fake.calls("POST", rf"/api/v1/admin/accounts/{bob}/unsuspend")


def test_a_forwarded_report_files_as_the_remote_servers_moderators(world: World):
    fake = world.fake
    frank = fake.add_account("frank")
    remote = fake.add_account("mod", domain="other.example")
    sid = fake.add_status(frank, standin_bytes("camera.png"))
    rid = fake.add_report(remote, frank, [sid], "", rules=["No spam"])
    r = fake.webhook(world.hook, "report.created", fake.admin_report(rid))
    assert r.status_code == 200, r.text
    assert r.json()["result"].endswith("(other, user)")
    case_id = r.json()["result"].split()[3]
    case = http.get(f"{world.takedown}/v1/cases/{case_id}", headers=world.admin).json()
    report = case["reports"][0]
    assert report["reporter_name"] == "Moderators of other.example"
    assert report["reporter_email"] == "moderation@social.example"
    assert "forwarded by the server other.example" in report["explanation"]
    # Spam is Mastodon's moderators' work, unless the reporter names abuse imagery.
    spam = fake.add_report(remote, frank, [sid], "buy now", category="spam")
    r = fake.webhook(world.hook, "report.created", fake.admin_report(spam))
    assert r.json()["result"] == "left to Mastodon's moderators: a spam report"
    spam = fake.add_report(remote, frank, [sid], "spam with intimate images", category="spam")
    r = fake.webhook(world.hook, "report.created", fake.admin_report(spam))
    assert r.json()["result"].endswith("(ncii, user)")
    # The connector's own reports (filed to act) are not turned back into reports.
    own = fake.add_report(fake.service, frank, [sid], "Takedown case …")
    r = fake.webhook(world.hook, "report.created", fake.admin_report(own))
    assert r.json()["result"] == "ignored: the connector's own report"


def _signed_action(world: World, key: str, event: dict[str, Any]) -> httpx.Response:
    from takedown.integrations.webhooks import sign

    body = json.dumps(event).encode()
    return http.post(
        world.connector + "/webhooks/takedown",
        content=body,
        headers={"Takedown-Signature": sign(TD_SECRET, body), "Idempotency-Key": key},
        timeout=30,
    )


def test_an_action_is_done_once_per_key_and_a_refusal_is_kept_for_retry(world: World):
    fake = world.fake
    hank = fake.add_account("hank")
    warn = {
        "topic": "account.warn",
        "target": {"id": f"mastodon:{hank}", "type": "account"},
        "case": "C-2",
        "action": {"action": "warn", "statement_of_reasons": {"facts": "A stand-in."}},
    }
    fake.refuse_admin = 403  # a token without admin:write
    try:
        r = _signed_action(world, "k-2", warn)
        assert r.status_code == 502 and r.json()["code"] == "upstream_refused"
    finally:
        fake.refuse_admin = None
    assert _signed_action(world, "k-2", warn).json()["result"] == f"account {hank}: none"
    assert _signed_action(world, "k-2", warn).json()["result"] == "already done"
    actions = _actions(fake, hank)
    assert len(actions) == 1 and actions[0]["type"] == "none"
    assert "A stand-in." in actions[0]["text"]
    r = http.post(
        world.connector + "/webhooks/mastodon",
        content=b"not json",
        headers={"X-Hub-Signature": mastodon_signature(fake.webhook_secret, b"not json")},
    )
    assert r.status_code == 400 and r.json()["code"] == "bad_request"
    r = http.post(world.connector + "/webhooks/takedown", content=b"x" * (3 << 20))
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"


def test_a_post_the_token_may_not_read_is_retried_not_taken_for_gone(world: World):
    """An action on a post the connector has no record of (its state file lost) looks
    the post up; a token without read:statuses is refused (403), which must keep the
    action for retry, while a post deleted from Mastodon (404) is acknowledged."""
    fake = world.fake
    jill = fake.add_account("jill")
    sid = fake.add_status(jill)
    restrict = {
        "topic": "item.restrict",
        "target": {"id": f"mastodon:{sid}", "type": "item"},
        "case": "C-4",
        "action": {"action": "restrict"},
    }
    fake.refuse_status_lookup = 403
    try:
        r = _signed_action(world, "k-4", restrict)
        assert r.status_code == 502 and r.json()["code"] == "upstream_refused", r.text
        assert _actions(fake, jill) == []
    finally:
        fake.refuse_status_lookup = None
    r = _signed_action(world, "k-4", restrict)
    assert r.json()["result"].endswith("acted on (sensitive)"), r.text
    assert fake.accounts[jill]["sensitized"]
    gone = {**restrict, "target": {"id": "mastodon:999999999999999999", "type": "item"}}
    r = _signed_action(world, "k-5", gone)
    assert r.json()["result"] == "status 999999999999999999 is gone from Mastodon"


def test_a_redelivery_during_the_first_delivery_waits_for_it(world: World):
    """Takedown redelivers after its timeout while the connector still waits for
    Mastodon's rate limit: the action is done once."""
    from concurrent.futures import ThreadPoolExecutor

    fake = world.fake
    ivy = fake.add_account("ivy")
    warn = {
        "topic": "account.warn",
        "target": {"id": f"mastodon:{ivy}", "type": "account"},
        "case": "C-3",
        "action": {"action": "warn"},
    }
    fake.exhaust(1.0)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(_signed_action, world, "k-3", warn)
        time.sleep(0.2)
        second = pool.submit(_signed_action, world, "k-3", warn)
        results = sorted([first.result().json()["result"], second.result().json()["result"]])
    assert results == [f"account {ivy}: none", "already done"]
    assert len(_actions(fake, ivy)) == 1


def test_a_rate_limit_beyond_the_wait_answers_503_and_takedown_retries(world: World):
    fake = world.fake
    gina = fake.add_account("gina")
    fake.exhaust(60)
    try:
        event = {
            "topic": "account.warn",
            "target": {"id": f"mastodon:{gina}", "type": "account"},
            "case": "C-1",
            "action": {"action": "warn"},
        }
        r = _signed_action(world, "k-1", event)
        assert r.status_code == 503 and r.json()["code"] == "upstream_unavailable"
        assert int(r.headers["Retry-After"]) >= 50
        assert _actions(fake, gina) == []
    finally:
        fake.exhaust(0)


# -- request shapes against Mastodon.py -----------------------------------------------
def _shape(r: Recorded) -> tuple[str, str, list[tuple[str, str]]]:
    return r.method, r.path, sorted(r.form)


def test_requests_have_the_shapes_mastodon_py_sends(tmp_path: Path):
    from mastodon import Mastodon

    fake = FakeMastodon(TOKEN)
    try:
        target = fake.add_account("target")
        sid = fake.add_status(target)
        client = Mastodon(
            access_token=TOKEN,
            api_base_url=fake.url,
            version_check_mode="none",
            ratelimit_method="throw",
        )
        text = "Takedown case 01J: hidden while it is reviewed."
        report_id = str(client.report(target, status_ids=[sid], comment=text, category="other").id)
        client.admin_account_moderate(target, action="sensitive", report_id=report_id, text=text)
        client.admin_account_moderate(target, action="suspend", text=text)
        client.admin_account_unsuspend(target)
        client.admin_account_unsensitive(target)
        theirs = [_shape(r) for r in fake.requests]
        del fake.requests[:]

        ours = MastodonClient(fake.url, TOKEN, max_wait=1)
        ours.request(
            "POST",
            "/api/v1/reports",
            {"account_id": target, "status_ids": [sid], "comment": text, "category": "other"},
        )
        ours.request(
            "POST",
            f"/api/v1/admin/accounts/{target}/action",
            {
                "type": "sensitive",
                "report_id": report_id,
                "text": text,
                "send_email_notification": True,
            },
        )
        ours.request(
            "POST",
            f"/api/v1/admin/accounts/{target}/action",
            {"type": "suspend", "report_id": None, "text": text, "send_email_notification": True},
        )
        ours.request("POST", f"/api/v1/admin/accounts/{target}/unsuspend")
        ours.request("POST", f"/api/v1/admin/accounts/{target}/unsensitive")
        assert [_shape(r) for r in fake.requests] == theirs
        assert theirs[0][2] == sorted(
            [
                ("account_id", target),
                ("status_ids[]", sid),
                ("comment", text),
                ("category", "other"),
            ]
        )
        ours.close()
    finally:
        fake.close()


# -- unit rules ----------------------------------------------------------------------
def test_signatures():
    body = b'{"event":"status.created"}'
    header = mastodon_signature("s3cret", body)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert mastodon_signature_ok("s3cret", header, body)
    assert not mastodon_signature_ok("s3cret", header, body + b" ")
    assert not mastodon_signature_ok("s3cret", None, body)
    from takedown.integrations.webhooks import sign

    now = time.time()
    assert takedown_signature_ok("x" * 20, sign("x" * 20, body), body)
    assert not takedown_signature_ok("x" * 20, sign("y" * 20, body), body)
    old = sign("x" * 20, body, int(now) - 600)
    assert not takedown_signature_ok("x" * 20, old, body)
    assert not takedown_signature_ok("x" * 20, "t=abc,v1=00", body)


def test_form_encoding_is_mastodons():
    assert form_encode({"a": None, "b": True, "c": False, "ids": ["1", "2"], "t": "x"}) == [
        ("b", "1"),
        ("c", "0"),
        ("ids[]", "1"),
        ("ids[]", "2"),
        ("t", "x"),
    ]


def test_config_names_what_is_missing(tmp_path: Path):
    base = {
        "takedown": {"url": "http://td", "api_key": "k", "webhook_secret": "s"},
        "mastodon": {"url": "https://m", "access_token": "t", "webhook_secret": "w"},
        "connector": {"contact_email": "mods@m.example"},
    }
    assert Config.from_mapping(base).remote_reporter_role == "user"
    for section, key, value, needle in [
        ("takedown", "api_key", None, "api_key"),
        ("mastodon", "url", "ftp://m", "url"),
        ("connector", "contact_email", None, "contact_email"),
        ("connector", "remote_reporter_role", "admin", "remote_reporter_role"),
    ]:
        broken = {k: dict(v) for k, v in base.items()}
        broken[section][key] = value
        if value is None:
            del broken[section][key]
        with pytest.raises(ConfigError, match=needle):
            Config.from_mapping(broken)


def test_a_long_rate_limit_wait_is_not_slept(tmp_path: Path):
    fake = FakeMastodon(TOKEN)
    try:
        slept: list[float] = []

        def sleep(seconds: float) -> None:
            slept.append(seconds)
            time.sleep(seconds)

        client = MastodonClient(fake.url, TOKEN, max_wait=2, sleep=sleep)
        fake.exhaust(0.5)
        client.request("GET", "/api/v1/accounts/verify_credentials")  # 429, waits 0.5 s
        assert slept and slept[0] <= 0.5
        fake.exhaust(120)
        with pytest.raises(Unavailable):
            client.request("GET", "/api/v1/accounts/verify_credentials")
        client.close()
    finally:
        fake.close()


def test_the_command_names_a_config_mistake(tmp_path: Path):
    config = tmp_path / "mastodon.toml"
    config.write_text(
        '[takedown]\nurl = "http://127.0.0.1:1"\n[mastodon]\nurl = "https://social.example"\n',
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "takedown.cli", "connector", "mastodon", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "[connector] contact_email (the moderators' address)" in (
        done.stderr
    ), done.stderr
