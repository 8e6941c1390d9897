"""Delivery of the platform's actions by signed webhook, against a real local receiver
that refuses connections, times out and fails for a while, then recovers."""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select

from takedown.ids import utcnow
from takedown.integrations.webhooks import (
    SIGNATURE_HEADER,
    SignatureError,
    WebhookClient,
    sign,
    verify,
)
from takedown.runtime import Runtime
from takedown.runtime.workers import DeliveryWorker
from takedown.services.outbound.delivery import DeliveryDispatcher, DeliveryPolicy
from takedown.services.outbound.sinks import SinkResult
from takedown.services.registry.service import ItemInput
from takedown.store.models import OutboxMessage

SECRET = "a-shared-secret-of-some-length"


class Receiver:
    """A platform endpoint: checks signatures, dedupes by idempotency key, can be told
    to fail or hang."""

    def __init__(self) -> None:
        self.received: list[dict] = []  # every request that passed the signature check
        self.executed: dict[str, dict] = {}  # by idempotency key: what the platform did
        self.fail_next = 0
        self.hang_next = 0
        self.bad_signatures = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    if receiver.hang_next:
                        receiver.hang_next -= 1
                        hang = True
                    else:
                        hang = False
                if hang:
                    time.sleep(1.5)  # longer than the client's timeout
                    return
                try:
                    verify(SECRET, self.headers.get(SIGNATURE_HEADER), body)
                except SignatureError:
                    with receiver.lock:
                        receiver.bad_signatures += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                with receiver.lock:
                    if receiver.fail_next:
                        receiver.fail_next -= 1
                        self.send_response(500)
                        self.end_headers()
                        return
                    doc = json.loads(body)
                    receiver.received.append(doc)
                    receiver.executed.setdefault(self.headers["Idempotency-Key"], doc)
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/takedown"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/takedown"  # nothing listens there now


def _restrict_some(rt: Runtime, n: int) -> None:
    """A report that restricts n items: n restrict actions in the outbox."""
    rt.registry.upsert_item(ItemInput("orig", account_id="a0"), actor="t")
    for i in range(1, n):
        rt.registry.upsert_item(ItemInput(f"r{i}", account_id=f"a{i}", reposts="orig"), actor="t")
    from takedown.domain.reports import ReportInput

    rt.cases.submit_report(
        ReportInput(
            category="csam",
            reporter_role="user",
            item_ids=["orig"],
            explanation="abuse material",
            good_faith=True,
        ),
        channel="api",
    )


def _dispatcher(
    rt: Runtime, url: str, timeout_s: float = 60, **policy: object
) -> DeliveryDispatcher:
    """A dispatcher posting to ``url``. The timeout is generous: a post to the local
    receiver that timed out on a loaded machine would be sent again (twice received)
    or wait for its retry; only the test of a hanging receiver wants a short one."""
    return DeliveryDispatcher(
        rt.sessions,
        WebhookClient(url, SECRET, timeout_s=timeout_s),
        DeliveryPolicy(**policy),
        rng=random.Random(1),
    )  # type: ignore[arg-type]


def _delivery_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("takedown-deliv")}


def _states(rt: Runtime) -> dict[str, int]:
    with rt.sessions() as s:
        return dict(
            s.execute(select(OutboxMessage.state, func.count()).group_by(OutboxMessage.state)).all()
        )


def test_signatures_refuse_tampering_and_replays():
    body = b'{"a":1}'
    header = sign(SECRET, body)
    assert verify(SECRET, header, body) > 0
    with pytest.raises(SignatureError):
        verify(SECRET, header, b'{"a":2}')  # tampered body
    with pytest.raises(SignatureError):
        verify("another-secret-entirely", header, body)
    old = sign(SECRET, body, int(time.time()) - 3600)
    with pytest.raises(SignatureError):
        verify(SECRET, old, body)  # a replay an hour later
    forged = old.replace(old.split(",")[0], f"t={int(time.time())}")
    with pytest.raises(SignatureError):
        verify(SECRET, forged, body)  # a fresh timestamp on an old signature
    for bad in (None, "", "v1=abc", "t=x,v1=y"):
        with pytest.raises(SignatureError):
            verify(SECRET, bad, body)


def test_every_action_arrives_once_in_order_despite_failures(rt: Runtime, receiver):
    _restrict_some(rt, 5)
    # A decision that restores everything: a second action per item, which must come after.
    from takedown.store.models import Case

    with rt.sessions() as s:
        case_id = s.scalars(select(Case.public_id)).one()
    from takedown.domain.access import Principal
    from takedown.domain.cases import UserRole

    def person(uid: str, role: UserRole) -> Principal:
        return Principal("user", uid, uid, frozenset(), role)

    rt.cases.decide(
        case_id,
        outcome="no_violation",
        reasons="A harmless photo of a cat.",
        principal=person("u1", UserRole.MODERATOR),
    )
    rt.cases.decide(
        case_id,
        outcome="no_violation",
        reasons="Agreed: a photo of a cat.",
        principal=person("u2", UserRole.CHILD_SAFETY_SPECIALIST),
    )
    assert _states(rt) == {"pending": 10}

    now = utcnow()
    down = _dispatcher(rt, _closed_port_url())
    assert down.deliver_due(now=now) == 0  # connection refused: one try, then wait
    assert _states(rt) == {"pending": 10}
    with rt.sessions() as s:
        first = s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).first()
        assert first.attempts == 1 and "Connect" in (first.last_error or "")
        assert first.next_attempt_at > now

    up = _dispatcher(rt, receiver.url, timeout_s=0.5)  # the receiver hangs for 1.5 s once
    receiver.hang_next = 1
    receiver.fail_next = 3
    t = now
    for _ in range(30):
        t += timedelta(minutes=10)
        up.deliver_due(now=t)
        if _states(rt) == {"acknowledged": 10}:
            break
    assert _states(rt) == {"acknowledged": 10}
    assert len(receiver.executed) == 10 and receiver.bad_signatures == 0
    per_item: dict[str, list[str]] = {}
    for doc in receiver.received:
        per_item.setdefault(doc["target"]["id"], []).append(doc["action"]["action"])
    assert all(
        actions[0] == "restrict" and actions[-1] == "restore" for actions in per_item.values()
    ), per_item
    assert all(doc["case"] == case_id for doc in receiver.received)


def test_a_worker_whose_lease_ran_out_does_not_overwrite(rt: Runtime, receiver):
    _restrict_some(rt, 1)
    d = _dispatcher(rt, receiver.url)
    now = utcnow()
    claimed = d._claim(now, 1)
    assert len(claimed) == 1
    # The lease runs out; another worker takes the row and delivers it.
    other = _dispatcher(rt, receiver.url)
    assert other.deliver_due(now=now + timedelta(minutes=5)) == 1
    d._record(claimed, SinkResult(500, error="HTTP 500"), now)  # the late failure
    assert _states(rt) == {"acknowledged": 1}


def test_dead_letter_after_the_retry_window_and_manual_redelivery(rt: Runtime, receiver, client):
    from tests.api.test_observability import _samples, _value
    from tests.cases.helpers import user_headers

    admin = user_headers(rt, "root", "admin")
    before = _samples(client.get("/metrics", headers=admin).text)
    _restrict_some(rt, 2)
    d = _dispatcher(rt, _closed_port_url())
    t = utcnow()
    for _ in range(200):
        t += timedelta(hours=1)
        d.deliver_due(now=t)
        if _states(rt).get("dead_letter") == 2:
            break
    assert _states(rt) == {"dead_letter": 2}
    dead = client.get("/v1/outbox", params={"state": "dead_letter"}, headers=admin).json()
    assert len(dead) == 2 and dead[0]["attempts"] > 5
    # /metrics: every failed attempt counted, the two given up on as dead letters.
    after = _samples(client.get("/metrics", headers=admin).text)

    def failures(outcome: str) -> float:
        name = "takedown_outbox_delivery_failures_total"
        return _value(after, name, outcome=outcome) - _value(before, name, outcome=outcome)

    assert failures("dead_letter") == 2
    assert failures("retry") == sum(d["attempts"] for d in dead) - 2
    assert _value(after, "takedown_outbox_messages", state="dead_letter") == 2
    assert _value(after, "takedown_outbox_messages", state="pending") == 0
    r = client.post(f"/v1/outbox/{dead[0]['id']}/redeliver", headers=admin)
    assert r.status_code == 200 and r.json()["state"] == "pending"
    r = client.post(f"/v1/outbox/{dead[0]['id']}/redeliver", headers=admin)
    assert r.status_code == 409 and r.json()["code"] == "not_dead_letter"
    r = client.post("/v1/outbox/01NOSUCH/redeliver", headers=admin)
    assert r.status_code == 404 and r.json()["code"] == "outbox_not_found"
    r = client.get("/v1/outbox", params={"state": "lost"}, headers=admin)
    assert r.json()["code"] == "invalid_state"
    assert _dispatcher(rt, receiver.url).deliver_due() == 1
    assert len(receiver.executed) == 1


def test_two_workers_never_deliver_the_same_action(settings, receiver):
    """Two runtimes stand for two worker processes (SKIP LOCKED on PostgreSQL)."""
    from takedown.runtime import open_runtime

    a = open_runtime(settings, migrate=False)
    b = open_runtime(settings, migrate=False)
    try:
        _restrict_some(a, 40)
        before = _delivery_threads()
        workers = [
            DeliveryWorker(_dispatcher(x, receiver.url), interval_s=0.05) for x in (a, b, a, b)
        ]
        for w in workers:
            w.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _states(a) != {"acknowledged": 40}:
            time.sleep(0.05)
        for w in workers:
            w.stop()
        assert _states(a) == {"acknowledged": 40}
        assert len(receiver.received) == 40  # no action posted twice
        assert len({d["id"] for d in receiver.received}) == 40
        # A stopped worker leaves no thread behind: its dispatcher's sending and
        # recording threads ended with it (threads earlier tests left are not these).
        assert not [t.name for t in _delivery_threads() - before]
    finally:
        a.close()
        b.close()
