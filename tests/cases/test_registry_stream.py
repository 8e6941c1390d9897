"""takedown consume: registry events from NATS JetStream (the real server on
127.0.0.1:4222), the consumer a real subprocess killed with SIGKILL mid-stream."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from sqlalchemy import func, select

from takedown.config import Settings
from takedown.runtime import Runtime
from takedown.store.models import AppliedMessage, AuditEvent, Item, ItemViews

NATS_URL = "nats://127.0.0.1:4222"
ITEMS = 800
VIEWS = 200  # view counts 1..VIEWS for one item, in order


def _events() -> list[tuple[str, dict[str, object]]]:
    events: list[tuple[str, dict[str, object]]] = [
        ("account", {"account": {"id": "acc-0", "handle": "streamer"}})
    ]
    for k in range(ITEMS):
        body: dict[str, object] = {"id": f"i{k}", "account_id": f"acc-{k % 50}"}
        if k % 4 == 3:
            body["reposts"] = f"i{k - 1}"
        else:
            body["media"] = [{"sha256": f"{k:064x}", "md5": f"{k:032x}"}]
        events.append(("item", {"item": body}))
        if k % (ITEMS // VIEWS) == 0:
            n = k // (ITEMS // VIEWS) + 1
            events.append(("views", {"views": {"item_id": "i0", "view_count": n}}))
    return events


async def _publish(subject: str, stream: str, events, again: int) -> None:
    import nats

    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    await js.add_stream(name=stream, subjects=[subject.rsplit(".", 1)[0] + ".>"])
    base = subject.rsplit(".", 1)[0]
    for k, (kind, event) in enumerate(events + events[:again]):
        await js.publish(
            f"{base}.{kind}",
            json.dumps(event).encode(),
            headers={"Nats-Msg-Id": f"ev-{k % len(events)}"},
        )
    await nc.close()


async def _nats(coro_name: str, stream: str, durable: str | None = None) -> object:
    import nats

    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    try:
        if coro_name == "messages":
            return (await js.stream_info(stream)).state.messages
        if coro_name == "delete_consumer":
            return await js.delete_consumer(stream, durable)
        return await js.delete_stream(stream)
    finally:
        await nc.close()


def _counts(rt: Runtime) -> tuple[int, int, int, int]:
    with rt.sessions() as s:
        return (
            s.scalar(select(func.count()).select_from(Item)) or 0,
            s.scalar(select(func.count()).select_from(ItemViews)) or 0,
            s.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.action == "item.registered")
            )
            or 0,
            s.scalar(select(func.count()).select_from(AppliedMessage)) or 0,
        )


def _consume(env: dict[str, str], *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "takedown.cli", "consume", "--json", *extra],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_kill_9_mid_stream_loses_nothing_and_applies_nothing_twice(
    rt: Runtime, settings: Settings, database_url: str
):
    pytest.importorskip("nats")
    name = uuid.uuid4().hex[:12]
    stream, subject, durable = f"TD_TEST_{name}", f"td.test.{name}.>", f"td-test-{name}"
    env = {
        "TAKEDOWN_DATABASE_URL": database_url,
        "TAKEDOWN_DATA_DIR": str(settings.data_dir),
        "TAKEDOWN_NATS_URL": NATS_URL,
        "TAKEDOWN_NATS_STREAM": stream,
        "TAKEDOWN_NATS_SUBJECT": subject,
        "TAKEDOWN_NATS_DURABLE": durable,
        "TAKEDOWN_NATS_ACK_WAIT_S": "1",
        "TAKEDOWN_NATS_BATCH": "20",
    }
    events = _events()
    events.append(("item", {"item": {"id": "nul\u0000", "url": "x"}}))  # refused, acknowledged
    # The first 30 published twice with the same Nats-Msg-Id: the stream keeps one.
    asyncio.run(_publish(subject.replace(">", "x"), stream, events, again=30))
    try:
        assert asyncio.run(_nats("messages", stream)) == len(events)
        first = _consume(env)
        deadline = time.monotonic() + 300
        while _counts(rt)[0] < ITEMS // 5:
            assert first.poll() is None, first.stderr.read() if first.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert _counts(rt)[0] < ITEMS  # killed mid-stream
        second = _consume(env, "--idle-exit", "2")
        stdout, stderr = second.communicate(timeout=120)
        assert second.returncode == 0, stderr
        stats = json.loads(stdout.strip().splitlines()[-1])
        assert stats["rejected"] == 1  # the NUL (invalid_character), whichever run met it
        # Every event once: each item registered once, each view count kept once
        # (the first item's registration has none), each message recorded once.
        assert _counts(rt) == (ITEMS, VIEWS, ITEMS, len(events) - 1)
        with rt.sessions() as s:
            assert s.scalar(select(Item.view_count).where(Item.platform_id == "i0")) == VIEWS

        # Every message delivered again (the consumer forgotten): nothing applied twice.
        asyncio.run(_nats("delete_consumer", stream, durable))
        # A new consumer, nothing to take over: a long ack wait, so that a batch applied
        # slowly on a loaded machine is not redelivered (and counted twice) meanwhile.
        third = _consume({**env, "TAKEDOWN_NATS_ACK_WAIT_S": "60"}, "--idle-exit", "2")
        stdout, stderr = third.communicate(timeout=120)
        assert third.returncode == 0, stderr
        again = json.loads(stdout.strip().splitlines()[-1])
        assert again["messages"] == len(events) and again["duplicates"] == len(events) - 1
        assert again["applied"] == 0 and again["rejected"] == 1
        assert _counts(rt) == (ITEMS, VIEWS, ITEMS, len(events) - 1)
    finally:
        asyncio.run(_nats("delete_stream", stream))
