"""The Matrix connector end to end: a real Synapse (SQLite, started once for this module
with `takedown.connectors.synapse.TakedownModule` in its homeserver.yaml), a real
Takedown server process, and real Matrix clients (matrix-nio).

The connector holds only Takedown's public API key and its webhook secret; the test
acts on Takedown only through its HTTP API too (as a bank admin and as specialists).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
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
from takedown.runtime import open_runtime
from tests.cases.helpers import PASSWORD
from tests.conftest import encode, standin_bytes, standin_rgb, start_server

pytest.importorskip("synapse")
nio = pytest.importorskip("nio")

SHARED_SECRET = "registration secret for the test homeserver"
WEBHOOK_SECRET = "webhook secret shared by takedown and synapse"
SERVER_NAME = "matrix.test"
USER_PASSWORD = "a password for the matrix users"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Homeserver:
    url: str
    takedown: str
    admin_token: str
    platform_key: str
    bank_admin: dict[str, str]
    specialists: list[dict[str, str]]
    log: Path

    def register(self, username: str, admin: bool = False) -> str:
        """A user by shared-secret registration; answers the user's id."""
        nonce = httpx.get(f"{self.url}/_synapse/admin/v1/register").json()["nonce"]
        mac = hmac.new(SHARED_SECRET.encode(), digestmod=hashlib.sha1)
        mac.update(
            b"\x00".join(
                [
                    nonce.encode(),
                    username.encode(),
                    USER_PASSWORD.encode(),
                    b"admin" if admin else b"notadmin",
                ]
            )
        )
        r = httpx.post(
            f"{self.url}/_synapse/admin/v1/register",
            json={
                "nonce": nonce,
                "username": username,
                "password": USER_PASSWORD,
                "admin": admin,
                "mac": mac.hexdigest(),
            },
        )
        assert r.status_code == 200, r.text
        return str(r.json()["user_id"])


def _synapse_config(tmp: Path, port: int, takedown_url: str, platform_key: str) -> Path:
    config = {
        "server_name": SERVER_NAME,
        "public_baseurl": f"http://127.0.0.1:{port}/",
        "pid_file": str(tmp / "homeserver.pid"),
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": {"name": "sqlite3", "args": {"database": str(tmp / "homeserver.db")}},
        "media_store_path": str(tmp / "media"),
        "signing_key_path": str(tmp / "signing.key"),
        "report_stats": False,
        "registration_shared_secret": SHARED_SECRET,
        "macaroon_secret_key": "macaroon secret of the test homeserver",
        "form_secret": "form secret of the test homeserver",
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "url_preview_enabled": False,
        "rc_message": {"per_second": 1000, "burst_count": 1000},
        "rc_login": {
            "address": {"per_second": 1000, "burst_count": 1000},
            "account": {"per_second": 1000, "burst_count": 1000},
            "failed_attempts": {"per_second": 1000, "burst_count": 1000},
        },
        "rc_registration": {"per_second": 1000, "burst_count": 1000},
        "modules": [
            {
                "module": "takedown.connectors.synapse.TakedownModule",
                "config": {
                    "takedown_url": takedown_url,
                    "api_key": platform_key,
                    "webhook_secret": WEBHOOK_SECRET,
                    "admin_user": f"@takedown:{SERVER_NAME}",
                    # Written once the admin is registered (after the server starts).
                    "admin_access_token_file": str(tmp / "admin_token"),
                    "homeserver_url": f"http://127.0.0.1:{port}",
                    "report_poll_seconds": 0.5,
                    "operator_email": "abuse@matrix.test",
                },
            }
        ],
    }
    path = tmp / "homeserver.yaml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


@pytest.fixture(scope="module")
def homeserver(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Homeserver]:
    tmp = tmp_path_factory.mktemp("matrix")
    database = tmp / "takedown.sqlite3"
    shutil.copy(sqlite_template, database)
    data = tmp / "data"
    rt = open_runtime(Settings(database_url=f"sqlite:///{database}", data_dir=data), migrate=False)
    try:
        _, platform_key = rt.api_keys.create("matrix-connector", ["platform"], actor="test")
        _, bank_key = rt.api_keys.create("bank-admin", ["admin"], actor="test")
        for name in ("spec-a", "spec-b", "spec-c"):
            rt.users.create(name, PASSWORD, "child_safety_specialist", actor="test")
    finally:
        rt.close()
    synapse_port = _free_port()
    takedown, port = start_server(
        {
            "TAKEDOWN_DATABASE_URL": f"sqlite:///{database}",
            "TAKEDOWN_DATA_DIR": str(data),
            "TAKEDOWN_ACCESS_LOG": "false",
            "TAKEDOWN_WEBHOOK_URL": f"http://127.0.0.1:{synapse_port}/_takedown/webhook",
            "TAKEDOWN_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "TAKEDOWN_DELIVERY_POLL_SECONDS": "0.2",
            # The public form's limit per address: the connector's reports are not
            # counted against it (they come with its key).
            "TAKEDOWN_REPORT_RATE_LIMIT_PER_HOUR": "1",
        },
        workers=1,
    )
    base = f"http://127.0.0.1:{port}"
    config = _synapse_config(tmp, synapse_port, base, platform_key)
    log = tmp / "synapse.log"
    from signedjson.key import generate_signing_key, write_signing_keys

    with (tmp / "signing.key").open("w") as key_file:  # what --generate-keys writes
        write_signing_keys(key_file, [generate_signing_key("a_test")])
    with log.open("w") as out:
        synapse = subprocess.Popen(
            [sys.executable, "-m", "synapse.app.homeserver", "-c", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{synapse_port}"
    try:
        _wait(lambda: httpx.get(base + "/v1/health").status_code == 200, "takedown")
        _wait(
            lambda: synapse.poll() is None and httpx.get(url + "/health").status_code == 200,
            "synapse",
        )
        specialists = []
        for name in ("spec-a", "spec-b", "spec-c"):
            r = httpx.post(base + "/v1/auth/token", json={"username": name, "password": PASSWORD})
            specialists.append({"Authorization": f"Bearer {r.json()['token']}"})
        server = Homeserver(
            url, base, "", platform_key, {"Authorization": f"Bearer {bank_key}"}, specialists, log
        )
        server.register("takedown", admin=True)
        r = httpx.post(
            url + "/_matrix/client/v3/login",
            json={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "takedown"},
                "password": USER_PASSWORD,
            },
        )
        server.admin_token = r.json()["access_token"]
        (tmp / "admin_token").write_text(server.admin_token)
        yield server
    finally:
        for process in (synapse, takedown):
            process.send_signal(signal.SIGTERM)
        for process in (synapse, takedown):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _client(hs: Homeserver, user: str) -> Any:
    client = nio.AsyncClient(hs.url, f"@{user}:{SERVER_NAME}")
    r = await client.login(USER_PASSWORD)
    assert isinstance(r, nio.LoginResponse), r
    return client


async def _upload(client: Any, data: bytes, name: str) -> Any:
    response, _ = await client.upload(
        io.BytesIO(data), content_type="image/png", filename=name, filesize=len(data)
    )
    return response


async def _can_download(client: Any, mxc: str) -> bool:
    r = await client.download(mxc=mxc)
    return isinstance(r, nio.DownloadResponse)


def _eventually(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    _wait(check, what, timeout)


# -- the tests ---------------------------------------------------------------------------
def test_an_upload_of_banked_material_is_refused_with_the_message(homeserver: Homeserver):
    hs = homeserver
    r = httpx.post(
        f"{hs.takedown}/v1/banks",
        json={"name": "matrix-block", "match_action": "block"},
        headers=hs.bank_admin,
    )
    assert r.status_code == 201, r.text
    banked = standin_bytes("astronaut.png")  # a stand-in, never real material
    r = httpx.post(
        f"{hs.takedown}/v1/banks/matrix-block/media",
        files={"file": ("standin.png", banked)},
        data={"category": "csam", "source": "test"},
        headers=hs.bank_admin,
    )
    assert r.status_code == 201, r.text
    hs.register("mallory")

    async def scenario() -> tuple[Any, Any]:
        client = await _client(hs, "mallory")
        try:
            refused = await _upload(client, banked, "holiday.png")
            fine = await _upload(client, encode(standin_rgb("coffee.png")), "coffee.png")
            return refused, fine
        finally:
            await client.close()

    refused, fine = _run(scenario())
    assert isinstance(refused, nio.UploadError), refused
    assert refused.status_code == "M_FORBIDDEN"
    assert "matches material this server does not allow" in refused.message
    assert isinstance(fine, nio.UploadResponse), fine


def test_a_reported_post_is_quarantined_removed_then_restored_on_appeal(homeserver: Homeserver):
    hs = homeserver
    poster, reporter = hs.register("paul"), hs.register("rita")
    picture = encode(standin_rgb("chelsea.png"))  # a new stand-in, in no bank

    async def post() -> tuple[str, str, str]:
        paul, rita = await _client(hs, "paul"), await _client(hs, "rita")
        try:
            room = await paul.room_create(invite=[reporter])
            assert isinstance(room, nio.RoomCreateResponse), room
            joined = await rita.join(room.room_id)
            assert isinstance(joined, nio.JoinResponse), joined
            uploaded = await _upload(paul, picture, "cat.png")
            assert isinstance(uploaded, nio.UploadResponse), uploaded
            sent = await paul.room_send(
                room.room_id,
                "m.room.message",
                {"msgtype": "m.image", "body": "cat.png", "url": uploaded.content_uri},
            )
            assert isinstance(sent, nio.RoomSendResponse), sent
            assert await _can_download(rita, uploaded.content_uri)
            return room.room_id, sent.event_id, uploaded.content_uri
        finally:
            await paul.close()
            await rita.close()

    room_id, event_id, mxc = _run(post())
    # The connector registered the event with its media and its sender.
    _eventually(
        lambda: (
            httpx.get(f"{hs.takedown}/v1/items/{event_id}", headers=hs.bank_admin).status_code
            == 200
        ),
        "the item registered",
    )
    account = httpx.get(f"{hs.takedown}/v1/accounts/{poster}", headers=hs.bank_admin)
    assert account.status_code == 200, account.text

    # Rita reports it with Matrix's report API; the connector files it in Takedown.
    async def report_and_check() -> bool:
        rita = await _client(hs, "rita")
        try:
            r = httpx.post(
                f"{hs.url}/_matrix/client/v3/rooms/{room_id}/report/{event_id}",
                json={"reason": "this is a child being abused", "score": -100},
                headers={"Authorization": f"Bearer {rita.access_token}"},
            )
            assert r.status_code == 200, r.text
            return True
        finally:
            await rita.close()

    started = time.monotonic()
    _run(report_and_check())

    def downloadable(user: str) -> bool:
        async def check() -> bool:
            client = await _client(hs, user)
            try:
                return await _can_download(client, mxc)
            finally:
                await client.close()

        return bool(_run(check()))

    # Restrict first: the media is quarantined for everyone, poster included.
    _eventually(lambda: not downloadable("rita"), "the media quarantined")
    restricted_after = time.monotonic() - started
    assert not downloadable("paul")
    _eventually(lambda: _redacted(hs, room_id, event_id), "the event redacted")
    cases = httpx.get(f"{hs.takedown}/v1/cases", headers=hs.specialists[0]).json()
    case = next(c for c in cases if c["state"] == "restricted")
    detail = httpx.get(f"{hs.takedown}/v1/cases/{case['id']}", headers=hs.specialists[0]).json()
    assert detail["categories"] == ["csam"]  # "child" in the reason
    [report] = detail["reports"]
    assert (report["reporter_role"], report["channel"]) == ("user", "api")
    assert report["locations"]["item_ids"] == [event_id]
    assert [(c["item_id"], c["account"]) for c in detail["copies"]] == [(event_id, poster)]

    # A specialist confirms it: removed, and the poster suspended.
    r = httpx.post(
        f"{hs.takedown}/v1/cases/{case['id']}/decisions",
        json={
            "outcome": "violation",
            "policy": "child-safety",
            "reasons": "The image shows child sexual abuse (a stand-in in this test).",
        },
        headers=hs.specialists[0],
    )
    assert r.status_code in (200, 201), r.text
    _eventually(lambda: _suspended(hs, poster), "the poster suspended")
    assert _redacted(hs, room_id, event_id)
    assert not downloadable("rita")

    # The poster appeals through the platform; two other specialists overturn it.
    platform = {"Authorization": f"Bearer {hs.platform_key}"}
    r = httpx.post(
        f"{hs.takedown}/v1/cases/{case['id']}/appeals",
        json={"reason": "It is my cat, not what the report says."},
        headers=platform,
    )
    assert r.status_code in (200, 201), r.text
    for specialist in hs.specialists[1:]:
        r = httpx.post(
            f"{hs.takedown}/v1/cases/{case['id']}/decisions",
            json={"outcome": "no_violation", "reasons": "A photo of a cat; the report was wrong."},
            headers=specialist,
        )
        assert r.status_code in (200, 201), r.text
    _eventually(lambda: downloadable("rita"), "the media back after the appeal")
    _eventually(lambda: not _suspended(hs, poster), "the poster reinstated")
    print(f"report → quarantined for everyone: {restricted_after:.2f} s")


def _suspended(hs: Homeserver, user_id: str) -> bool:
    r = httpx.get(
        f"{hs.url}/_synapse/admin/v2/users/{user_id}",
        headers={"Authorization": f"Bearer {hs.admin_token}"},
    )
    return bool(r.json().get("suspended"))


def _redacted(hs: Homeserver, room_id: str, event_id: str) -> bool:
    """The event as a member of the room sees it: redacted, its content gone."""
    token = httpx.post(
        f"{hs.url}/_matrix/client/v3/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "rita"},
            "password": USER_PASSWORD,
        },
    ).json()["access_token"]
    r = httpx.get(
        f"{hs.url}/_matrix/client/v3/rooms/{room_id}/event/{event_id}",
        headers={"Authorization": f"Bearer {token}"},
    )
    event = r.json()
    return "redacted_because" in event.get("unsigned", {}) and "url" not in event["content"]


def test_reports_go_through_the_connectors_key_and_keywords_pick_the_category(
    homeserver: Homeserver,
):
    hs = homeserver
    hs.register("victor")
    reporter = hs.register("wendy")

    async def post_and_report() -> list[tuple[str, str]]:
        victor, wendy = await _client(hs, "victor"), await _client(hs, "wendy")
        try:
            room = await victor.room_create(invite=[reporter])
            assert isinstance(await wendy.join(room.room_id), nio.JoinResponse)
            posted = []
            for name in ("camera.png", "rocket.jpg"):  # stand-ins, in no bank
                uploaded = await _upload(victor, encode(standin_rgb(name)), name)
                sent = await victor.room_send(
                    room.room_id,
                    "m.room.message",
                    {"msgtype": "m.image", "body": name, "url": uploaded.content_uri},
                )
                posted.append((sent.event_id, uploaded.content_uri))
            for event_id, _ in posted:
                r = httpx.post(
                    f"{hs.url}/_matrix/client/v3/rooms/{room.room_id}/report/{event_id}",
                    json={"reason": "An intimate picture of me, posted without consent"},
                    headers={"Authorization": f"Bearer {wendy.access_token}"},
                )
                assert r.status_code == 200, r.text
            return posted
        finally:
            await victor.close()
            await wendy.close()

    posted = _run(post_and_report())

    def ncii_items() -> set[str]:
        cases = httpx.get(
            f"{hs.takedown}/v1/cases", params={"category": "ncii"}, headers=hs.bank_admin
        ).json()
        found = set()
        for case in cases:
            detail = httpx.get(f"{hs.takedown}/v1/cases/{case['id']}", headers=hs.bank_admin)
            found.update(c["item_id"] for c in detail.json()["copies"])
        return found

    # Two reports from one address, over the public form's limit of one an hour.
    _eventually(lambda: ncii_items() == {e for e, _ in posted}, "both reports filed")
    cases = httpx.get(
        f"{hs.takedown}/v1/cases", params={"category": "ncii"}, headers=hs.bank_admin
    ).json()
    detail = httpx.get(f"{hs.takedown}/v1/cases/{cases[0]['id']}", headers=hs.bank_admin).json()
    [report] = detail["reports"]
    assert (report["reporter_name"], report["reporter_email"]) == (reporter, "abuse@matrix.test")

    async def still_visible() -> bool:
        wendy = await _client(hs, "wendy")
        try:
            return all([await _can_download(wendy, mxc) for _, mxc in posted])
        finally:
            await wendy.close()

    # A bystander's report of intimate imagery hides nothing before review (Takedown's
    # policy): the connector carries out only what Takedown decides.
    assert _run(still_visible())


def test_signed_account_actions_are_carried_out_once(homeserver: Homeserver):
    from takedown.integrations.webhooks import sign

    hs = homeserver
    user = hs.register("terry")
    body = json.dumps(
        {
            "topic": "account.terminate",
            "target": {"id": user, "type": "account"},
            "case": "01TESTCASE",
            "action": {"action": "terminate"},
            "idempotency_key": "key-terminate-terry",
        }
    ).encode()

    def deliver() -> httpx.Response:
        return httpx.post(
            f"{hs.url}/_takedown/webhook",
            content=body,
            headers={
                "Takedown-Signature": sign(WEBHOOK_SECRET, body),
                "Idempotency-Key": "key-terminate-terry",
                "Content-Type": "application/json",
            },
        )

    first = deliver()
    assert first.status_code == 200 and first.json() == {"result": "done"}, first.text
    admin = {"Authorization": f"Bearer {hs.admin_token}"}
    r = httpx.get(f"{hs.url}/_synapse/admin/v2/users/{user}", headers=admin)
    assert r.json()["deactivated"] is True
    again = deliver()  # a retry after a lost answer: acknowledged, not done twice
    assert again.status_code == 200 and again.json() == {"result": "already done"}

    # A user of another server: acknowledged (else Takedown would retry for 72 hours),
    # nothing done; that server's operator decides about its users.
    remote = json.dumps(
        {"topic": "account.suspend", "target": {"id": "@eve:elsewhere.example"}}
    ).encode()
    r = httpx.post(
        f"{hs.url}/_takedown/webhook",
        content=remote,
        headers={"Takedown-Signature": sign(WEBHOOK_SECRET, remote), "Idempotency-Key": "k2"},
    )
    assert r.status_code == 200 and r.json() == {"result": "not a user of this server"}


def test_a_forged_webhook_is_refused(homeserver: Homeserver):
    body = json.dumps({"topic": "account.terminate", "target": {"id": "@paul:x"}}).encode()
    r = httpx.post(
        f"{homeserver.url}/_takedown/webhook",
        content=body,
        headers={"Takedown-Signature": f"t={int(time.time())},v1={'0' * 64}"},
    )
    assert r.status_code == 401
    assert r.json()["errcode"] == "M_UNAUTHORIZED"
