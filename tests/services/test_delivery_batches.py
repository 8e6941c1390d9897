"""Batched webhooks and the JetStream sink, against a real local receiver and the real
NATS server: batches signed and keyed, order per item, partial acknowledgement and
retries, several worker processes sharing the outbox without posting anything twice."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select, update

from takedown.domain.access import Principal
from takedown.domain.cases import UserRole
from takedown.ids import utcnow
from takedown.integrations.jetstream import JetStreamPublisher
from takedown.integrations.webhooks import SIGNATURE_HEADER, WebhookClient, verify
from takedown.runtime import Runtime
from takedown.services.outbound.delivery import DeliveryDispatcher, DeliveryPolicy, webhook_body
from takedown.services.outbound.sinks import JetStreamSink, accepted_in, batch_key
from takedown.store.models import Case, OutboxMessage, OutboxStatement
from tests.services.test_delivery import SECRET, _closed_port_url, _restrict_some, _states

NATS_URL = "nats://127.0.0.1:4222"


class BatchReceiver:
    """A platform endpoint taking batches: checks the signature and the batch key,
    executes each action once (by its idempotency key) and answers what ``answer`` says
    (default: an empty 204, which accepts the whole batch)."""

    def __init__(self, answer: Callable[[list[dict]], dict | None] | None = None) -> None:
        self.batches: list[dict] = []
        self.executed: dict[str, dict] = {}  # action idempotency key -> action
        self.posted: list[str] = []  # every action id in every accepted batch
        self.bad = 0
        self.answer = answer
        self.lock = threading.Lock()
        me = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    verify(SECRET, self.headers.get(SIGNATURE_HEADER), body)
                    doc = json.loads(body)
                    assert doc["batch"]["idempotency_key"] == self.headers["Idempotency-Key"]
                    assert doc["batch"]["count"] == len(doc["actions"])
                    assert self.headers["Takedown-Batch-Size"] == str(len(doc["actions"]))
                except Exception:  # noqa: BLE001 - anything wrong is a refused request
                    with me.lock:
                        me.bad += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                with me.lock:
                    me.batches.append(doc)
                    answer = me.answer(doc["actions"]) if me.answer else None
                    taken = (
                        doc["actions"]
                        if answer is None
                        else [a for a in doc["actions"] if a["id"] in answer["accepted"]]
                    )
                    for a in taken:
                        me.posted.append(a["id"])
                        me.executed.setdefault(a["idempotency_key"], a)
                if answer is None:
                    self.send_response(204)
                    self.end_headers()
                    return
                out = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/takedown"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def batch_receiver() -> Iterator[BatchReceiver]:
    r = BatchReceiver()
    yield r
    r.close()


def _batched(rt: Runtime, url: str, n: int) -> DeliveryDispatcher:
    return DeliveryDispatcher(
        rt.sessions,
        # Generous: a batch timed out on a loaded machine would be posted twice.
        WebhookClient(url, SECRET, timeout_s=60),
        DeliveryPolicy(),
        rng=random.Random(1),
        batch_max=n,
    )


def _restore_all(rt: Runtime) -> None:
    """Two reviewers find no violation: a restore after each restrict."""
    with rt.sessions() as s:
        case_id = s.scalars(select(Case.public_id)).one()
    for uid, role in (("u1", UserRole.MODERATOR), ("u2", UserRole.CHILD_SAFETY_SPECIALIST)):
        rt.cases.decide(
            case_id,
            outcome="no_violation",
            reasons="A harmless photo of a cat.",
            principal=Principal("user", uid, uid, frozenset(), role),
        )


def test_batches_are_signed_keyed_and_keep_order_per_item(rt: Runtime, batch_receiver):
    _restrict_some(rt, 7)
    _restore_all(rt)
    assert _states(rt) == {"pending": 14}
    d = _batched(rt, batch_receiver.url, 3)
    t = utcnow()
    for _ in range(10):
        d.deliver_due(now=t)
        t += timedelta(seconds=1)
    assert _states(rt) == {"acknowledged": 14}
    assert batch_receiver.bad == 0
    assert all(1 <= len(b["actions"]) <= 3 for b in batch_receiver.batches)
    assert len(batch_receiver.posted) == 14 == len(set(batch_receiver.posted))
    per_item: dict[str, list[str]] = {}
    for b in batch_receiver.batches:
        assert len({a["target"]["id"] for a in b["actions"]}) == len(b["actions"])
        for a in b["actions"]:
            per_item.setdefault(a["target"]["id"], []).append(a["action"]["action"])
    assert set(per_item) == {"orig"} | {f"r{i}" for i in range(1, 7)}
    assert all(v == ["restrict", "restore"] for v in per_item.values()), per_item


def test_a_measure_on_many_items_stores_its_statement_once(rt: Runtime, batch_receiver):
    """The restriction of 7 copies and their restoration: two statements of reasons
    stored (not 14), and every action the platform receives carries its own."""
    _restrict_some(rt, 7)
    _restore_all(rt)
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(OutboxStatement)) == 2
    d = _batched(rt, batch_receiver.url, 500)
    d.deliver_due(now=utcnow())  # the restrictions; then each item's restoration
    d.deliver_due(now=utcnow() + timedelta(seconds=1))
    got = [a["action"] for b in batch_receiver.batches for a in b["actions"]]
    assert len(got) == 14
    measures = {a["action"]: a["statement_of_reasons"]["measure"] for a in got}
    assert set(measures) == {"restrict", "restore"}
    assert "restricted" in measures["restrict"].lower()
    assert all(a["statement_of_reasons"]["measure"] == measures[a["action"]] for a in got)
    assert {a["item_id"] for a in got} == {"orig"} | {f"r{i}" for i in range(1, 7)}


def test_claimed_bodies_are_each_rows_webhook_body(rt: Runtime):
    """A claim writes each action's body from the row's columns, encoding the values
    the actions of one measure share once: byte for byte the body of the one-action
    form (the row read whole, its statement put back), with and without a case."""
    _restrict_some(rt, 4)
    with rt.sessions.begin() as s:
        s.execute(update(OutboxMessage).where(OutboxMessage.id == 1).values(case_id=None))
    d = _batched(rt, _closed_port_url(), 10)
    claimed = d._claim(utcnow(), 10)
    assert len(claimed) == 4
    with rt.sessions() as s:
        for c in claimed:
            row = s.get(OutboxMessage, c.row_id)
            assert row is not None
            case = s.scalar(select(Case.public_id).where(Case.id == row.case_id))
            assert c.body == webhook_body(row, case)
            assert (case is None) == (row.id == 1)
            assert json.loads(c.body)["case"] == case


def test_a_partly_acknowledged_batch_retries_only_the_rest(rt: Runtime):
    """The receiver takes the first two actions of each batch and rejects the others;
    they are retried after their backoff, and nothing is executed twice."""

    def first_two(actions: list[dict]) -> dict:
        return {
            "accepted": [a["id"] for a in actions[:2]],
            "rejected": [{"id": a["id"], "error": "busy"} for a in actions[2:]],
        }

    receiver = BatchReceiver(first_two)
    try:
        _restrict_some(rt, 5)
        d = _batched(rt, receiver.url, 10)
        now = utcnow()
        assert d.deliver_due(now=now) == 2
        assert _states(rt) == {"acknowledged": 2, "pending": 3}
        with rt.sessions() as s:
            rows = s.scalars(select(OutboxMessage).where(OutboxMessage.state == "pending")).all()
            assert all(r.last_error == "rejected by the platform: busy" for r in rows)
            assert all(r.next_attempt_at > now and r.attempts == 1 for r in rows)
        assert d.deliver_due(now=now) == 0  # not due yet
        t = now
        for _ in range(5):
            t += timedelta(minutes=10)
            d.deliver_due(now=t)
        assert _states(rt) == {"acknowledged": 5}
        assert len(receiver.executed) == 5 == len(receiver.posted)
        assert [len(b["actions"]) for b in receiver.batches] == [5, 3, 1]
    finally:
        receiver.close()


def test_batch_answers_and_keys():
    from takedown.services.outbound.sinks import Claimed

    acts = [Claimed(i, 1, f"id{i}", f"k{i}", "item", f"p{i}", b"{}") for i in range(3)]
    every = {"id0", "id1", "id2"}
    assert accepted_in(b"", acts) == (every, {})
    assert accepted_in(b"ok", acts) == (every, {})
    assert accepted_in(b'{"received": 3}', acts) == (every, {})
    got, errors = accepted_in(b'{"accepted": ["id0", "k1"], "rejected": ["id2"]}', acts)
    assert got == {"id0", "id1"} and errors == {"id2": "rejected by the platform: rejected"}
    got, errors = accepted_in(b'{"accepted": []}', acts)
    assert got == set() and set(errors) == every
    assert batch_key(acts) == batch_key(list(acts)) != batch_key(acts[:2])


def test_a_batch_without_an_answer_waits(rt: Runtime):
    _restrict_some(rt, 3)
    d = _batched(rt, _closed_port_url(), 10)
    now = utcnow()
    assert d.deliver_due(now=now) == 0
    assert _states(rt) == {"pending": 3}
    with rt.sessions() as s:
        rows = s.scalars(select(OutboxMessage)).all()
        assert all(r.attempts == 1 and "Connect" in (r.last_error or "") for r in rows)


def test_two_worker_processes_share_the_outbox(settings, batch_receiver, tmp_path):
    """`takedown worker` twice, batches of 7, on the same database: every action
    posted exactly once (SKIP LOCKED on PostgreSQL, the write lock on SQLite)."""
    from takedown.runtime import open_runtime

    rt = open_runtime(settings)
    try:
        _restrict_some(rt, 60)
        env = {
            **os.environ,
            "TAKEDOWN_DATA_DIR": str(settings.data_dir),
            "TAKEDOWN_WEBHOOK_URL": batch_receiver.url,
            "TAKEDOWN_WEBHOOK_SECRET": SECRET,
            "TAKEDOWN_WEBHOOK_BATCH_MAX": "7",
            "TAKEDOWN_DELIVERY_POLL_SECONDS": "0.05",
            # The receiver is a thread of this busy process: a post it answers late must
            # not time out and be posted again (the test counts each action once).
            "TAKEDOWN_WEBHOOK_TIMEOUT_S": "60",
        }
        if settings.database_url:
            env["TAKEDOWN_DATABASE_URL"] = settings.database_url
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "takedown.cli", "worker"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=(tmp_path / f"worker{i}.log").open("w"),
            )
            for i in range(2)
        ]
        try:
            deadline = time.monotonic() + 180  # two `takedown worker` processes start
            while time.monotonic() < deadline and _states(rt) != {"acknowledged": 60}:
                time.sleep(0.1)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(60)
        logs = "".join((tmp_path / f"worker{i}.log").read_text() for i in range(2))
        assert _states(rt) == {"acknowledged": 60}, logs[-2000:]
        assert len(batch_receiver.posted) == 60 == len(set(batch_receiver.posted))
        assert all(len(b["actions"]) <= 7 for b in batch_receiver.batches)
    finally:
        rt.close()


async def _read_stream(stream: str, subject: str) -> list[tuple[str, dict, bytes]]:
    import nats

    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        # Every message the stream holds: read until that many came (an empty short
        # fetch on a loaded machine is no proof that none is left).
        stored = (await js.stream_info(stream)).state.messages
        sub = await js.pull_subscribe(f"{subject}.>", durable=None, stream=stream)
        out: list[tuple[str, dict, bytes]] = []
        deadline = time.monotonic() + 120
        while len(out) < stored:
            assert time.monotonic() < deadline, f"read {len(out)} of {stored} messages"
            try:
                msgs = await sub.fetch(100, timeout=5)
            except TimeoutError:
                continue
            for m in msgs:
                out.append((m.subject, dict(m.headers or {}), m.data))
                await m.ack()
        return out
    finally:
        await nc.close()


async def _drop_stream(stream: str) -> None:
    import nats

    nc = await nats.connect(NATS_URL)
    try:
        await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()


def test_actions_published_to_jetstream_once_in_order(rt: Runtime):
    stream = f"TDTEST_{uuid.uuid4().hex[:10]}"
    subject = f"tdtest.{uuid.uuid4().hex[:10]}"
    sink = JetStreamSink(
        JetStreamPublisher(NATS_URL, stream, [f"{subject}.>"]),
        subject,
        partitions=3,
        secret=SECRET,
    )
    d = DeliveryDispatcher(rt.sessions, sink, DeliveryPolicy(), batch_max=4)
    try:
        _restrict_some(rt, 6)
        _restore_all(rt)
        t = utcnow()
        for _ in range(6):
            d.deliver_due(now=t)
            t += timedelta(seconds=1)
        assert _states(rt) == {"acknowledged": 12}
        # A lost acknowledgement: the same actions published again are dropped by
        # JetStream (Nats-Msg-Id), not stored twice.
        with rt.sessions.begin() as s:
            s.execute(update(OutboxMessage).values(state="pending", next_attempt_at=t))
        for _ in range(6):
            d.deliver_due(now=t)
            t += timedelta(seconds=1)
        assert _states(rt) == {"acknowledged": 12}
        got = asyncio.run(_read_stream(stream, subject))
        assert len(got) == 12
        with rt.sessions() as s:
            keys = set(s.scalars(select(OutboxMessage.idempotency_key)))
            assert s.scalar(select(func.count()).select_from(OutboxMessage)) == 12
        assert {h["Nats-Msg-Id"] for _, h, _ in got} == keys
        per_item: dict[str, list[str]] = {}
        subjects: dict[str, set[str]] = {}
        for subj, headers, data in got:
            verify(SECRET, headers["Takedown-Signature"], data)
            doc = json.loads(data)
            per_item.setdefault(doc["target"]["id"], []).append(doc["action"]["action"])
            subjects.setdefault(doc["target"]["id"], set()).add(subj)
        assert all(v == ["restrict", "restore"] for v in per_item.values()), per_item
        assert all(len(v) == 1 for v in subjects.values())  # one item, one partition
    finally:
        sink.close()
        asyncio.run(_drop_stream(stream))


def test_an_unreachable_nats_leaves_actions_pending(rt: Runtime):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sink = JetStreamSink(
        JetStreamPublisher(f"nats://127.0.0.1:{port}", "TDX", ["tdx.>"], timeout_s=0.5), "tdx"
    )
    d = DeliveryDispatcher(rt.sessions, sink, DeliveryPolicy(), batch_max=10)
    try:
        _restrict_some(rt, 2)
        assert d.deliver_due(now=utcnow()) == 0
        assert _states(rt) == {"pending": 2}
    finally:
        sink.close()


def test_a_claim_spans_several_requests_and_the_worker_delivers_each_action_once(
    rt: Runtime, batch_receiver
):
    """Claims of 20 rows sent 7 a request by the delivery worker's thread, as ``takedown
    serve`` runs it: the receiver holds every restriction once, no request is larger
    than the batch, and every row is acknowledged."""
    from takedown.runtime.workers import DeliveryWorker

    _restrict_some(rt, 60)
    d = DeliveryDispatcher(
        rt.sessions,
        WebhookClient(batch_receiver.url, SECRET, timeout_s=60),  # never posted twice for lateness
        batch_max=7,
        claim_max=20,
    )
    worker = DeliveryWorker(d, interval_s=0.05).start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _states(rt) != {"acknowledged": 60}:
            time.sleep(0.05)
    finally:
        worker.stop()
    assert _states(rt) == {"acknowledged": 60}
    assert batch_receiver.bad == 0
    assert all(1 <= len(b["actions"]) <= 7 for b in batch_receiver.batches)
    assert len(batch_receiver.posted) == 60 == len(set(batch_receiver.posted))
    targets = {a["target"]["id"] for a in batch_receiver.executed.values()}
    assert targets == {"orig"} | {f"r{i}" for i in range(1, 60)}


def test_an_unreachable_platform_mid_claim_gives_back_what_was_not_sent(rt: Runtime):
    """The first request of a claim gets no answer: its actions wait for their backoff,
    the rest of the claim is given back untried, due again at once."""
    _restrict_some(rt, 12)
    d = _batched(rt, _closed_port_url(), 5)
    assert d.claim_max == 20
    now = utcnow()
    assert d.deliver_due(now=now, limit=100) == 0
    with rt.sessions() as s:
        rows = s.execute(select(OutboxMessage.attempts, OutboxMessage.next_attempt_at)).all()
    tried = [r for r in rows if r[0] == 1]
    untried = [r for r in rows if r[0] == 0]
    assert len(tried) == 5 and all(at > now for _, at in tried)
    assert len(untried) == 7 and all(at <= now for _, at in untried)
    assert _states(rt) == {"pending": 12}


def test_jetstream_publishes_past_a_small_in_flight_window_once_each(rt: Runtime):
    """At most 3 messages await their acknowledgement at a time: 25 actions are all
    stored once, in order, and a subject no stream takes leaves its actions pending."""
    stream = f"TDTEST_{uuid.uuid4().hex[:10]}"
    subject = f"tdtest.{uuid.uuid4().hex[:10]}"
    publisher = JetStreamPublisher(NATS_URL, stream, [f"{subject}.>"], in_flight=3)
    d = DeliveryDispatcher(rt.sessions, JetStreamSink(publisher, subject), batch_max=10)
    # The same stream, but a subject it does not take: nothing stores these.
    stray = JetStreamSink(
        JetStreamPublisher(NATS_URL, stream, [f"{subject}.>"], timeout_s=30),
        f"{subject}x",
    )
    try:
        _restrict_some(rt, 25)
        assert d.deliver_due(now=utcnow(), limit=100) == 25
        assert _states(rt) == {"acknowledged": 25}
        got = asyncio.run(_read_stream(stream, subject))
        ids = [json.loads(data)["id"] for _, _, data in got]
        with rt.sessions() as s:
            in_order = list(s.scalars(select(OutboxMessage.public_id).order_by(OutboxMessage.id)))
        assert ids == in_order
        with rt.sessions.begin() as s:
            s.execute(update(OutboxMessage).values(state="pending", next_attempt_at=utcnow()))
        lost = DeliveryDispatcher(rt.sessions, stray, batch_max=10)
        assert lost.deliver_due(now=utcnow(), limit=10) == 0
        with rt.sessions() as s:
            errors = list(
                s.scalars(select(OutboxMessage.last_error).where(OutboxMessage.attempts == 2))
            )
        assert len(errors) == 10 and all("no stream stored it" in (e or "") for e in errors)
        assert len(asyncio.run(_read_stream(stream, subject))) == 25
    finally:
        d._sink.close()
        stray.close()
        asyncio.run(_drop_stream(stream))


def test_jetstream_answers_read_as_stored_or_not():
    """JetStream's answers to a publish, as the server writes them: stored (or a
    duplicate of a stored message) read without parsing, anything else with its reason."""
    from types import SimpleNamespace

    from takedown.integrations.jetstream import _ack_error

    def answer(data: bytes, headers: dict | None = None) -> str | None:
        return _ack_error(SimpleNamespace(data=data, headers=headers))

    assert answer(b'{"stream":"TD","seq":7}') is None
    assert answer(b'{"stream":"TD","seq":7,"duplicate":true}') is None
    assert answer(b'{"stream":"error","seq":1}') is None  # a stream named "error"
    assert answer(b"", {"Status": "503"}) == "no stream stored it (status 503)"
    err = b'{"error":{"code":503,"description":"maximum messages exceeded"},"stream":"TD"}'
    assert answer(err) == "JetStream error 503: maximum messages exceeded"
    assert answer(b'{"stream":"TD","error":{"code":400,"description":"bad"}}') == (
        "JetStream error 400: bad"
    )
    assert answer(b"nonsense") == "unreadable acknowledgement"
    assert answer(b'{"other":1}') == "unexpected acknowledgement"
