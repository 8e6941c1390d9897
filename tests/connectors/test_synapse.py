"""The Matrix connector end to end: a real Synapse (SQLite, started once for this module
with `takedown.connectors.synapse.TakedownModule` in its homeserver.yaml), a real
Takedown server process, and real Matrix clients (matrix-nio).

The connector holds only Takedown's public API key and its webhook secret; the test
acts on Takedown only through its HTTP API too (as a bank admin and as specialists).
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import encode, standin_bytes, standin_rgb
from tests.connectors.synapse_harness import (
    SERVER_NAME,
    USER_PASSWORD,
    WEBHOOK_SECRET,
    Homeserver,
    http,
    running,
    wait,
)

# One xdist worker runs this module, so its servers start once (scripts/test: loadgroup).
pytestmark = pytest.mark.xdist_group("synapse")

# Never import synapse in the test process: its package __init__ turns on Pillow's
# LOAD_TRUNCATED_IMAGES for the whole process, which Takedown's decoder refuses (every
# later image test on that worker would fail). The homeserver runs in its own process.
if importlib.util.find_spec("synapse") is None:
    pytest.skip("matrix-synapse is not installed", allow_module_level=True)
nio = pytest.importorskip("nio")


@pytest.fixture(scope="module")
def homeserver(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Homeserver]:
    tmp = tmp_path_factory.mktemp("matrix")
    database = tmp / "takedown.sqlite3"
    shutil.copy(sqlite_template, database)
    # The public form's limit per address is one report an hour here: the connector's
    # reports are not counted against it (they come with its key).
    with running(tmp, database, takedown_env={"TAKEDOWN_REPORT_RATE_LIMIT_PER_HOUR": "1"}) as hs:
        yield hs


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


async def _media_served(client: Any, mxc: str) -> bool | None:
    """True when the file is served whole and (Synapse makes these on request) as a
    thumbnail, False when neither is, None when only one is: a quarantine or its lifting
    caught between the two requests. A mismatch that lasts (a thumbnail leaking quarantined
    media) never settles, so a test waiting on True or False times out on it."""
    r = await client.download(mxc=mxc)
    server, media_id = mxc.removeprefix("mxc://").split("/")
    thumb = await client.thumbnail(server, media_id, 32, 32)
    whole, small = isinstance(r, nio.DownloadResponse), isinstance(thumb, nio.ThumbnailResponse)
    return whole if whole == small else None


def _eventually(check: Callable[[], bool], what: str, timeout: float = 180.0) -> None:
    """Generous: it returns as soon as the check holds; a loaded machine (CI) can take
    tens of seconds for a webhook round trip through both servers."""
    wait(check, what, timeout)


# -- the tests ---------------------------------------------------------------------------
def test_an_upload_of_banked_material_is_refused_with_the_message(homeserver: Homeserver):
    hs = homeserver
    r = http.post(
        f"{hs.takedown}/v1/banks",
        json={"name": "matrix-block", "match_action": "block"},
        headers=hs.bank_admin,
    )
    assert r.status_code == 201, r.text
    banked = standin_bytes("astronaut.png")  # a stand-in, never real material
    r = http.post(
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
            # Not an image: Takedown has nothing to screen (a 4xx), the upload passes.
            text, _ = await client.upload(
                io.BytesIO(b"minutes of the meeting"), content_type="text/plain", filesize=22
            )
            assert isinstance(text, nio.UploadResponse), text
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
            assert await _media_served(rita, uploaded.content_uri) is True
            return room.room_id, sent.event_id, uploaded.content_uri
        finally:
            await paul.close()
            await rita.close()

    room_id, event_id, mxc = _run(post())
    # The connector registered the event with its media and its sender.
    _eventually(
        lambda: (
            http.get(f"{hs.takedown}/v1/items/{event_id}", headers=hs.bank_admin).status_code == 200
        ),
        "the item registered",
    )
    account = http.get(f"{hs.takedown}/v1/accounts/{poster}", headers=hs.bank_admin)
    assert account.status_code == 200, account.text

    # Rita reports it with Matrix's report API; the connector files it in Takedown.
    async def report_and_check() -> bool:
        rita = await _client(hs, "rita")
        try:
            r = http.post(
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

    def served(user: str, uri: str = mxc) -> bool | None:
        async def check() -> bool | None:
            client = await _client(hs, user)
            try:
                return await _media_served(client, uri)
            finally:
                await client.close()

        result: bool | None = _run(check())
        return result

    # Restrict first: the media is quarantined for everyone, poster included.
    _eventually(lambda: served("rita") is False, "the media quarantined")
    restricted_after = time.monotonic() - started
    assert served("paul") is False
    _eventually(lambda: _redacted(hs, room_id, event_id), "the event redacted")
    cases = http.get(f"{hs.takedown}/v1/cases", headers=hs.specialists[0]).json()
    case = next(c for c in cases if c["state"] == "restricted")
    detail = http.get(f"{hs.takedown}/v1/cases/{case['id']}", headers=hs.specialists[0]).json()
    assert detail["categories"] == ["csam"]  # "child" in the reason
    [report] = detail["reports"]
    assert (report["reporter_role"], report["channel"]) == ("user", "api")
    assert report["locations"]["item_ids"] == [event_id]
    assert [(c["item_id"], c["account"]) for c in detail["copies"]] == [(event_id, poster)]

    # A near copy posted elsewhere by someone else joins the case as it is registered,
    # and is hidden at once too (Takedown's copy matching; the connector only acts).
    hs.register("quinn")
    near_copy = standin_rgb("chelsea.png").copy()
    near_copy[0, 0] = 255 - near_copy[0, 0]

    async def repost() -> str:
        quinn = await _client(hs, "quinn")
        try:
            room = await quinn.room_create()
            uploaded = await _upload(quinn, encode(near_copy), "kitty.png")
            sent = await quinn.room_send(
                room.room_id,
                "m.room.message",
                {"msgtype": "m.image", "body": "kitty.png", "url": uploaded.content_uri},
            )
            assert isinstance(sent, nio.RoomSendResponse), sent
            return str(uploaded.content_uri)
        finally:
            await quinn.close()

    copy_mxc = _run(repost())
    _eventually(lambda: served("quinn", copy_mxc) is False, "the near copy quarantined")

    # A specialist confirms it: removed, and the poster suspended.
    r = http.post(
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
    assert served("rita") is False

    # The poster appeals through the platform; two other specialists overturn it.
    platform = {"Authorization": f"Bearer {hs.platform_key}"}
    r = http.post(
        f"{hs.takedown}/v1/cases/{case['id']}/appeals",
        json={"reason": "It is my cat, not what the report says."},
        headers=platform,
    )
    assert r.status_code in (200, 201), r.text
    for specialist in hs.specialists[1:]:
        r = http.post(
            f"{hs.takedown}/v1/cases/{case['id']}/decisions",
            json={"outcome": "no_violation", "reasons": "A photo of a cat; the report was wrong."},
            headers=specialist,
        )
        assert r.status_code in (200, 201), r.text
    _eventually(lambda: served("rita") is True, "the media back after the appeal")
    _eventually(lambda: served("quinn", copy_mxc) is True, "the near copy back too")
    _eventually(lambda: not _suspended(hs, poster), "the poster reinstated")
    print(f"report → quarantined for everyone: {restricted_after:.2f} s")


def _suspended(hs: Homeserver, user_id: str) -> bool:
    r = http.get(
        f"{hs.url}/_synapse/admin/v2/users/{user_id}",
        headers={"Authorization": f"Bearer {hs.admin_token}"},
    )
    return bool(r.json().get("suspended"))


def _redacted(hs: Homeserver, room_id: str, event_id: str) -> bool:
    """The event as a member of the room sees it: redacted, its content gone."""
    token = http.post(
        f"{hs.url}/_matrix/client/v3/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "rita"},
            "password": USER_PASSWORD,
        },
    ).json()["access_token"]
    r = http.get(
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
                r = http.post(
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
        cases = http.get(
            f"{hs.takedown}/v1/cases", params={"category": "ncii"}, headers=hs.bank_admin
        ).json()
        found = set()
        for case in cases:
            detail = http.get(f"{hs.takedown}/v1/cases/{case['id']}", headers=hs.bank_admin)
            found.update(c["item_id"] for c in detail.json()["copies"])
        return found

    # Two reports from one address, over the public form's limit of one an hour.
    _eventually(lambda: ncii_items() == {e for e, _ in posted}, "both reports filed")
    cases = http.get(
        f"{hs.takedown}/v1/cases", params={"category": "ncii"}, headers=hs.bank_admin
    ).json()
    detail = http.get(f"{hs.takedown}/v1/cases/{cases[0]['id']}", headers=hs.bank_admin).json()
    [report] = detail["reports"]
    assert (report["reporter_name"], report["reporter_email"]) == (reporter, "abuse@matrix.test")

    async def still_visible() -> bool:
        wendy = await _client(hs, "wendy")
        try:
            return all([await _media_served(wendy, mxc) is True for _, mxc in posted])
        finally:
            await wendy.close()

    # A bystander's report of intimate imagery hides nothing before review (Takedown's
    # policy): the connector carries out only what Takedown decides.
    assert _run(still_visible())


def test_a_report_of_a_message_without_media_is_filed_too(homeserver: Homeserver):
    """A text message (grooming, a link to material elsewhere) carries no file, but its
    report still reaches review: the event is registered as an item without media."""
    hs = homeserver
    poster, reporter = hs.register("oscar"), hs.register("olga")

    async def post_and_report() -> str:
        oscar, olga = await _client(hs, "oscar"), await _client(hs, "olga")
        try:
            room = await oscar.room_create(invite=[reporter])
            assert isinstance(await olga.join(room.room_id), nio.JoinResponse)
            sent = await oscar.room_send(
                room.room_id,
                "m.room.message",
                {"msgtype": "m.text", "body": "A stand-in for a grooming message."},
            )
            assert isinstance(sent, nio.RoomSendResponse), sent
            r = http.post(
                f"{hs.url}/_matrix/client/v3/rooms/{room.room_id}/report/{sent.event_id}",
                json={"reason": "He is grooming a child in this room"},
                headers={"Authorization": f"Bearer {olga.access_token}"},
            )
            assert r.status_code == 200, r.text
            return str(sent.event_id)
        finally:
            await oscar.close()
            await olga.close()

    event_id = _run(post_and_report())

    def cases_of_the_message() -> list[dict[str, Any]]:
        found = []
        cases = http.get(
            f"{hs.takedown}/v1/cases", params={"category": "csam"}, headers=hs.bank_admin
        ).json()
        for case in cases:
            detail = http.get(f"{hs.takedown}/v1/cases/{case['id']}", headers=hs.bank_admin)
            if any(c["item_id"] == event_id for c in detail.json()["copies"]):
                found.append(detail.json())
        return found

    _eventually(lambda: len(cases_of_the_message()) == 1, "the report filed")
    [detail] = cases_of_the_message()
    [report] = detail["reports"]
    assert report["locations"]["item_ids"] == [event_id]
    assert [(c["item_id"], c["account"]) for c in detail["copies"]] == [(event_id, poster)]


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
        return http.post(
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
    r = http.get(f"{hs.url}/_synapse/admin/v2/users/{user}", headers=admin)
    assert r.json()["deactivated"] is True
    again = deliver()  # a retry after a lost answer: acknowledged, not done twice
    assert again.status_code == 200 and again.json() == {"result": "already done"}

    # A user of another server: acknowledged (else Takedown would retry for 72 hours),
    # nothing done; that server's operator decides about its users.
    remote = json.dumps(
        {"topic": "account.suspend", "target": {"id": "@eve:elsewhere.example"}}
    ).encode()
    r = http.post(
        f"{hs.url}/_takedown/webhook",
        content=remote,
        headers={"Takedown-Signature": sign(WEBHOOK_SECRET, remote), "Idempotency-Key": "k2"},
    )
    assert r.status_code == 200 and r.json() == {"result": "not a user of this server"}

    # Signed but without an Idempotency-Key: refused, not done (two such deliveries
    # would otherwise share one key and the second be skipped as "already done").
    sam = hs.register("sam")
    keyless = json.dumps({"topic": "account.suspend", "target": {"id": sam}}).encode()
    r = http.post(
        f"{hs.url}/_takedown/webhook",
        content=keyless,
        headers={"Takedown-Signature": sign(WEBHOOK_SECRET, keyless)},
    )
    assert r.status_code == 400 and r.json()["errcode"] == "M_MISSING_PARAM", r.text
    assert not _suspended(hs, sam)


def test_a_forged_webhook_is_refused(homeserver: Homeserver):
    body = json.dumps({"topic": "account.terminate", "target": {"id": "@paul:x"}}).encode()
    r = http.post(
        f"{homeserver.url}/_takedown/webhook",
        content=body,
        headers={"Takedown-Signature": f"t={int(time.time())},v1={'0' * 64}"},
    )
    assert r.status_code == 401
    assert r.json()["errcode"] == "M_UNAUTHORIZED"
