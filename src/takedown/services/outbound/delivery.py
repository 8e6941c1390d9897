"""Delivering the platform's actions from the outbox: by signed webhook, in batches, or
to a NATS JetStream subject.

Every action (restrict, remove, restore an item…) was written to ``outbox`` in the same
transaction as the decision that caused it, so nothing decided can be lost. Here a
worker takes due rows and hands them to a sink (``services/outbound/sinks.py``); an
action counts as executed only when the sink acknowledges it: the platform answers
2xx (for a batch, every action it names as accepted, or all of them), or JetStream
stores the message.

- **Claim, then send, then record**, each its own short transaction, never holding a
  database transaction open while talking to the platform. A claim takes up to
  ``batch_max`` due rows and sets them ``delivering`` with a lease; a worker that dies
  leaves the lease to run out and another takes the rows. On PostgreSQL claims use
  ``FOR UPDATE SKIP LOCKED`` so several workers never take the same row; on SQLite the
  claim is one write transaction (``BEGIN IMMEDIATE``), so claims queue on the write
  lock and a row is never claimed twice either.
- **Order per item**: a row is due only when no earlier row for the same target is
  still pending or delivering, so a platform never sees "restore" before "restrict";
  a batch therefore holds at most one action per target.
- **Partial acknowledgement**: the actions of a batch the platform did not accept are
  retried like a failed request, each on its own.
- **Retries** with exponential backoff and jitter, for at least 72 hours (configurable);
  then the row goes to ``dead_letter``, visible to admins, who can redeliver it.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring_ascii
from typing import Any

from sqlalchemy import (
    Integer,
    String,
    Table,
    and_,
    bindparam,
    exists,
    func,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.orm import Session, aliased, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from takedown.errors import Conflict, InvalidRequest, NotFound
from takedown.ids import utcnow
from takedown.integrations.webhooks import WebhookClient
from takedown.metrics import DELIVERY_FAILURES
from takedown.services.audit.chain import record
from takedown.services.outbound.sinks import Claimed, Sink, SinkResult, WebhookSink
from takedown.store import item_actions
from takedown.store.db import unit_of_work
from takedown.store.models import Case, OutboxMessage, OutboxStatement, action_payload
from takedown.store.valuesets import in_ids

log = logging.getLogger(__name__)

PENDING, DELIVERING, ACKNOWLEDGED, DEAD = "pending", "delivering", "acknowledged", "dead_letter"
STATES = (PENDING, DELIVERING, ACKNOWLEDGED, DEAD)


@dataclass(frozen=True)
class DeliveryPolicy:
    base_delay: timedelta = timedelta(seconds=10)
    max_delay: timedelta = timedelta(hours=1)
    give_up_after: timedelta = timedelta(hours=72)  # never sooner: platforms go down
    min_attempts: int = 5  # and never before this many tries, however old the row
    lease: timedelta = timedelta(minutes=2)
    jitter: float = 0.25  # each wait is shortened at random by up to this share

    def delay(self, attempts: int, rng: random.Random) -> timedelta:
        raw = min(self.max_delay, self.base_delay * (2 ** min(max(0, attempts - 1), 30)))
        return raw * (1 - self.jitter * rng.random())


@dataclass(frozen=True)
class OutboxView:
    id: str
    idempotency_key: str
    topic: str
    target_type: str
    target_id: str
    case: str | None
    state: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    acknowledged_at: datetime | None
    last_status: int | None
    last_error: str | None
    payload: dict[str, object]


def webhook_body(row: OutboxMessage, case_public_id: str | None) -> bytes:
    """What the platform receives for one action (docs/integrations/webhooks.md)."""
    return action_body(
        public_id=row.public_id,
        idempotency_key=row.idempotency_key,
        topic=row.topic,
        target_type=row.target_type,
        target_id=row.target_platform_id,
        case_public_id=case_public_id,
        created_at=row.created_at,
        payload=row.full_payload,
    )


def action_body(
    *,
    public_id: str,
    idempotency_key: str,
    topic: str,
    target_type: str,
    target_id: str,
    case_public_id: str | None,
    created_at: datetime,
    payload: str,
) -> bytes:
    """The action's JSON, keys sorted, the stored payload embedded as it is (it is
    JSON already: no parsing and dumping again for each of 100,000 actions)."""
    enc = _enc
    return (
        f'{{"action":{payload},"case":{enc(case_public_id)},'
        f'"created_at":{enc(created_at.isoformat())},"id":{enc(public_id)},'
        f'"idempotency_key":{enc(idempotency_key)},'
        f'"target":{{"id":{enc(target_id)},"type":{enc(target_type)}}},"topic":{enc(topic)}}}'
    ).encode()


def _enc(value: str | None) -> str:
    """A string (or None) as JSON, exactly as ``json.dumps`` writes it (ASCII, escaped),
    by the encoder's C function without the encoder's Python wrapper around it."""
    return "null" if value is None else encode_basestring_ascii(value)


# The due rows' ids on SQLite, oldest first, walking ix_outbox_open (the claim's rule;
# see DeliveryDispatcher._claim).
_SQLITE_DUE = text(
    "SELECT outbox.id FROM outbox INDEXED BY ix_outbox_open "
    "WHERE outbox.state IN ('pending', 'delivering') AND outbox.next_attempt_at <= :now "
    "AND NOT EXISTS (SELECT 1 FROM outbox AS earlier "
    "WHERE earlier.target_type = outbox.target_type "
    "AND earlier.target_platform_id = outbox.target_platform_id "
    "AND earlier.id < outbox.id AND earlier.state IN ('pending', 'delivering')) "
    "ORDER BY outbox.next_attempt_at, outbox.id LIMIT :n"
).bindparams(
    bindparam("now", type_=OutboxMessage.__table__.c.next_attempt_at.type),
    bindparam("n", type_=Integer()),
)


class DeliveryDispatcher:
    """Claims due actions in batches of up to ``batch_max`` and hands each batch to the
    sink. ``client`` is a :class:`WebhookClient` (wrapped in a webhook sink sending
    ``batch_max`` actions a request; 1 is the one-action request form) or any
    :class:`Sink`."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        client: WebhookClient | Sink,
        policy: DeliveryPolicy | None = None,
        rng: random.Random | None = None,
        *,
        batch_max: int = 1,
        claim_max: int | None = None,
    ) -> None:
        if batch_max < 1:
            raise ValueError("batch_max must be at least 1")
        # Rows claimed (and recorded) per transaction: a few requests' worth, so a
        # backlog costs a transaction per claim_max actions, not per request.
        self.claim_max = max(batch_max, claim_max or 4 * batch_max)
        self._sessions = sessions
        self._sink: Sink = (
            WebhookSink(client, batch=batch_max > 1)
            if isinstance(client, WebhookClient)
            else client
        )
        self._policy = policy or DeliveryPolicy()
        self._rng = rng or random.Random()
        self.batch_max = batch_max
        # The sending and the recording threads: made at the first delivery, shut down
        # by close() (made again if the dispatcher is used after it).
        self._threads: tuple[ThreadPoolExecutor, ThreadPoolExecutor] | None = None

    def _pools(self) -> tuple[ThreadPoolExecutor, ThreadPoolExecutor]:
        if self._threads is None:
            self._threads = (
                ThreadPoolExecutor(1, thread_name_prefix="takedown-delivery-send"),
                ThreadPoolExecutor(1, thread_name_prefix="takedown-delivery-record"),
            )
        return self._threads

    def close(self) -> None:
        """Let the sending and recording threads end (after the work they hold). The
        sink is its owner's to close."""
        threads, self._threads = self._threads, None
        for pool in threads or ():
            pool.shutdown(wait=True)

    def deliver_due(self, *, now: datetime | None = None, limit: int = 100) -> int:
        """Deliver up to ``limit`` due actions; returns how many were acknowledged.

        Rows are claimed ``claim_max`` at a time (one transaction) and sent
        ``batch_max`` a request; what the sink answered for a whole claim is recorded in
        one transaction. Three things overlap, each in its own thread and (for the
        database) transaction: a claim is with the platform while the next is claimed
        and the answers to the one before are recorded. A claim never holds an action
        for a target of a claim in flight or not yet recorded (those are still
        ``delivering``), so order per item holds."""
        delivered = 0
        claimed = self._claim(now or utcnow(), min(self.claim_max, limit))
        tried = len(claimed)
        if not claimed:
            return 0
        pool, recorder = self._pools()
        sending: Future[Any] | None = pool.submit(self._send_all, claimed)
        recording: Future[int] | None = None
        try:
            while sending is not None:
                following: list[Claimed] = []
                if tried < limit:
                    following = self._claim(now or utcnow(), min(self.claim_max, limit - tried))
                    tried += len(following)
                sent, unsent = sending.result()
                sending = None
                # The platform is unreachable: what was not sent is given back as it
                # was (its lease undone), to be tried again next round, not now.
                unreachable = bool(unsent) or bool(following and _unreachable(sent[-1][1]))
                if following and not unreachable:
                    sending = pool.submit(self._send_all, following)
                if recording is not None:
                    delivered += recording.result()  # one recording at a time
                recording = recorder.submit(self._record_sent, sent, now or utcnow())
                if unreachable:
                    self._release([*unsent, *following], now or utcnow())
            if recording is not None:
                delivered += recording.result()
                recording = None
        finally:
            # Something failed with a claim in flight: it is left to its lease (retried),
            # but nothing goes on after this call returns.
            for task in (sending, recording):
                if task is not None:
                    task.exception()
        return delivered

    def _record_sent(
        self, sent: Sequence[tuple[Sequence[Claimed], SinkResult]], now: datetime
    ) -> int:
        """:meth:`_record_all`; returns how many actions were acknowledged."""
        self._record_all(sent, now)
        return sum(1 for chunk, result in sent for c in chunk if c.public_id in result.accepted)

    def _send_all(
        self, claimed: Sequence[Claimed]
    ) -> tuple[list[tuple[Sequence[Claimed], SinkResult]], list[Claimed]]:
        """A claim's actions to the sink, ``batch_max`` at a time, in order; stops at
        the first request nothing answered. Returns each request's actions with the
        answer, and the actions not sent."""
        sent: list[tuple[Sequence[Claimed], SinkResult]] = []
        for start in range(0, len(claimed), self.batch_max):
            chunk = claimed[start : start + self.batch_max]
            result = self._sink.send(chunk)
            sent.append((chunk, result))
            if _unreachable(result):
                return sent, list(claimed[start + self.batch_max :])
        return sent, []

    def _release(self, claimed: Sequence[Claimed], now: datetime) -> None:
        if not claimed:
            return
        o = OutboxMessage
        with unit_of_work(self._sessions) as s:
            by_id(s)
            by_attempts: dict[int, list[int]] = {}
            for c in claimed:
                by_attempts.setdefault(c.attempts, []).append(c.row_id)
            for attempts, ids in by_attempts.items():
                s.execute(
                    update(o)
                    .where(in_ids(s, o.id, ids), o.attempts == attempts, _still_delivering(o))
                    .values(state=PENDING, attempts=o.attempts - 1, next_attempt_at=now)
                    .execution_options(synchronize_session=False)
                )

    def _claim(self, now: datetime, n: int) -> list[Claimed]:
        """Up to ``n`` actions, set ``delivering`` with a lease: first the due rows,
        oldest first (:meth:`_claim_due`), then, to fill the claim, a viral measure's
        actions written from its fan-out already claimed (``item_actions.claim_next``:
        one INSERT instead of an INSERT and a claim's UPDATE of every row; after the
        due rows, so that a fan-out never holds back an older action). The statement
        of reasons the rows share is read once, not with each row."""
        t = OutboxMessage.__table__
        assert isinstance(t, Table)
        columns = (
            t.c.id,
            t.c.attempts,  # after the claim
            t.c.public_id,
            t.c.idempotency_key,
            t.c.topic,
            t.c.target_type,
            t.c.target_platform_id,
            t.c.case_id,
            # As the driver gives it: the body needs its text, and the rows of one
            # measure share it (converted once, _claimed).
            type_coerce(t.c.created_at, String()),
            t.c.payload,
            t.c.statement_id,
        )
        lease_until = now + self._policy.lease
        with unit_of_work(self._sessions) as s:
            rows = self._claim_due(s, now, n, columns, lease_until)
            if len(rows) < n:
                rows += item_actions.claim_next(s, n - len(rows), columns, lease_until=lease_until)
            if not rows:
                return []
            case_ids = sorted({r[7] for r in rows if r[7] is not None})
            cases = (
                dict(s.execute(select(Case.id, Case.public_id).where(Case.id.in_(case_ids))).all())
                if case_ids
                else {}
            )
            statement_ids = sorted({r[10] for r in rows if r[10] is not None})
            statements = (
                dict(
                    s.execute(
                        select(OutboxStatement.id, OutboxStatement.body).where(
                            OutboxStatement.id.in_(statement_ids)
                        )
                    ).all()
                )
                if statement_ids
                else {}
            )
        return _claimed(rows, cases, statements)

    @staticmethod
    def _claim_due(
        s: Session, now: datetime, n: int, columns: Sequence[Any], lease_until: datetime
    ) -> list[Any]:
        """Up to ``n`` due rows, oldest first, set ``delivering`` until
        ``lease_until``: on PostgreSQL one statement (``WITH due AS (SELECT … FOR
        UPDATE SKIP LOCKED) UPDATE … RETURNING``), on SQLite the due ids and one
        ``UPDATE … RETURNING``."""
        earlier = aliased(OutboxMessage)
        blocked = exists().where(
            and_(
                earlier.target_type == OutboxMessage.target_type,
                earlier.target_platform_id == OutboxMessage.target_platform_id,
                earlier.id < OutboxMessage.id,
                earlier.state.in_((PENDING, DELIVERING)),
            )
        )
        o = OutboxMessage
        t = OutboxMessage.__table__
        assert isinstance(t, Table)
        lease = update(t).values(
            state=DELIVERING, attempts=t.c.attempts + 1, next_attempt_at=lease_until
        )
        if s.get_bind().dialect.name == "postgresql":
            due = (
                select(o.id, o.next_attempt_at.label("due_at"))
                .where(o.state.in_((PENDING, DELIVERING)), o.next_attempt_at <= now, ~blocked)
                # Oldest due first, so one failing row cannot starve the others; the
                # partial index ix_outbox_open (next_attempt_at, id) over the rows still
                # to deliver gives them in this order without a sort, however many rows
                # were delivered before.
                .order_by(o.next_attempt_at, o.id)
                .limit(n)
                .with_for_update(skip_locked=True, of=o)
                .cte("due")
            )
            # Walk ix_outbox_open in order and stop at n rows. Left to choose, the
            # planner (whose statistics lag 100,000 rows inserted at once) checked the
            # order rule for every open row and sorted them: 13 s a claim instead of
            # 7 ms with a viral item's actions waiting.
            s.execute(text("SET LOCAL enable_sort = off"))
            got = s.execute(lease.where(t.c.id == due.c.id).returning(*columns, due.c.due_at))
            return [r[:-1] for r in sorted(got, key=lambda r: (r[-1], r[0]))]
        # SQLite's planner takes another index instead (the partial index's condition
        # cannot be proved from bound parameters), checks the order rule for every due
        # row and sorts them all: a claim cost O(backlog), 0.2 s per 2,000 rows with
        # 100,000 waiting. INDEXED BY.
        ids = s.scalars(_SQLITE_DUE, {"now": now, "n": n}).all()
        if not ids:
            return []
        by_row = {
            r[0]: r for r in s.execute(lease.where(in_ids(s, t.c.id, ids)).returning(*columns))
        }
        return [by_row[i] for i in ids]

    def _record(self, claimed: Sequence[Claimed], result: SinkResult, now: datetime) -> None:
        self._record_all([(claimed, result)], now)

    def _record_all(
        self, sent: Sequence[tuple[Sequence[Claimed], SinkResult]], now: datetime
    ) -> None:
        """What the sink answered for each request of a claim, in one transaction: the
        acknowledged rows set-wise, the others retried (or dead-lettered) one by one."""
        o = OutboxMessage
        with unit_of_work(self._sessions) as s:
            acked: dict[tuple[int, int | None], list[int]] = {}
            failed: dict[int, tuple[Claimed, SinkResult]] = {}
            for claimed, result in sent:
                for c in claimed:
                    if c.public_id in result.accepted:
                        acked.setdefault((c.attempts, result.status), []).append(c.row_id)
                    else:
                        failed[c.row_id] = (c, result)
            if acked:
                by_id(s)
            for (attempts, status), ids in acked.items():
                # A worker whose lease ran out must not overwrite the rows' new owner.
                s.execute(
                    update(o)
                    .where(in_ids(s, o.id, ids), o.attempts == attempts, _still_delivering(o))
                    .values(
                        state=ACKNOWLEDGED,
                        acknowledged_at=now,
                        last_status=status,
                        last_error=None,
                    )
                    .execution_options(synchronize_session=False)
                )
            if not failed:
                return
            for row in s.scalars(select(o).where(in_ids(s, o.id, sorted(failed)))):
                c, result = failed[row.id]
                if row.attempts != c.attempts or row.state != DELIVERING:
                    continue
                row.last_status = result.status
                row.last_error = (
                    result.errors.get(c.public_id) or result.error or f"HTTP {result.status}"
                )[:1000]
                if (
                    now - row.created_at >= self._policy.give_up_after
                    and row.attempts >= self._policy.min_attempts
                ):
                    row.state = DEAD
                    DELIVERY_FAILURES.labels("dead_letter").inc()
                    record(
                        s,
                        "delivery",
                        "outbox.dead_letter",
                        "outbox",
                        row.public_id,
                        {"attempts": row.attempts, "last_error": row.last_error},
                    )
                else:
                    row.state = PENDING
                    row.next_attempt_at = now + self._policy.delay(row.attempts, self._rng)
                    DELIVERY_FAILURES.labels("retry").inc()


def by_id(s: Session) -> None:
    """Rows named by id are found through the primary key, whatever the statistics say
    (PostgreSQL; this transaction). A viral item's 100,000 actions arrive in seconds,
    faster than ANALYZE follows: the planner, believing the outbox small, scanned the
    whole table (or the state index) and compared each row with each of a claim's 2,000
    ids, ~0.3-0.4 s an acknowledgement (measured: 5.2 s of the server's time for
    100,000 actions became 2.8 s with the fan-out's claimed writes)."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SET LOCAL enable_seqscan = off"))
        s.execute(text("SET LOCAL enable_bitmapscan = off"))


def _still_delivering(o: Any) -> ColumnElement[bool]:
    """``state = 'delivering'`` through an expression no index is on: the rows are named
    by id (:func:`by_id`), and the partial state index, which also holds stale entries
    of rows acknowledged since, would otherwise be walked whole."""
    return func.coalesce(o.state, "") == DELIVERING


def _claimed(
    rows: Sequence[Any], cases: dict[int, str], statements: dict[int, str]
) -> list[Claimed]:
    """The claimed rows with their bodies, exactly as :func:`action_body` writes them;
    the values the actions of one measure share (topic, target type, case, creation
    time) are encoded once, not per action."""
    enc: dict[object, str] = {None: "null"}
    stamps: dict[object, str] = {}
    out = []
    for r in rows:
        row_id, attempts, public_id, key, topic, target_type, target_id = r[:7]
        case_id, created, payload, statement_id = r[7:11]
        stamp = stamps.get(created)
        if stamp is None:
            stamp = stamps[created] = _enc(_as_utc(created).isoformat())
        case = enc.get(case_id)
        if case is None:
            case = enc[case_id] = _enc(cases.get(case_id))
        head = enc.get(topic)
        if head is None:
            head = enc[topic] = _enc(topic)
        kind = enc.get(target_type)
        if kind is None:
            kind = enc[target_type] = _enc(target_type)
        body = (
            f'{{"action":{action_payload(payload, statements.get(statement_id))},"case":{case},'
            f'"created_at":{stamp},"id":{_enc(public_id)},'
            f'"idempotency_key":{_enc(key)},'
            f'"target":{{"id":{_enc(target_id)},"type":{kind}}},"topic":{head}}}'
        ).encode()
        out.append(Claimed(row_id, attempts, public_id, key, target_type, target_id, body))
    return out


def _as_utc(value: datetime | str) -> datetime:
    """A UTC column's value as the driver returned it (SQLite: its stored text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _unreachable(result: SinkResult) -> bool:
    return result.status is None and not result.accepted


class OutboxService:
    """What admins see of deliveries, and manual redelivery of dead letters."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def list(self, *, state: str | None = None, limit: int = 100) -> list[OutboxView]:
        if state is not None and state not in STATES:
            raise InvalidRequest(f"state is one of {', '.join(STATES)}.", code="invalid_state")
        if not 1 <= limit <= 1000:
            raise InvalidRequest("limit must be between 1 and 1000.", code="invalid_limit")
        with unit_of_work(self._sessions, write=False) as s:
            stmt = select(OutboxMessage, Case.public_id).outerjoin(
                Case, Case.id == OutboxMessage.case_id
            )
            if state:
                stmt = stmt.where(OutboxMessage.state == state)
            rows = s.execute(stmt.order_by(OutboxMessage.id.desc()).limit(limit)).all()
            return [_view(r, c) for r, c in rows]

    def redeliver(self, outbox_id: str, *, actor: str) -> OutboxView:
        with unit_of_work(self._sessions) as s:
            row = s.scalars(
                select(OutboxMessage).where(OutboxMessage.public_id == outbox_id).with_for_update()
            ).first()
            if row is None:
                raise NotFound(f"No outbox message {outbox_id[:40]!r}.", code="outbox_not_found")
            if row.state != DEAD:
                raise Conflict("Only dead letters are redelivered by hand.", code="not_dead_letter")
            row.state = PENDING
            row.next_attempt_at = utcnow()
            row.created_at = utcnow()  # a fresh retry window
            record(s, actor, "outbox.redeliver", "outbox", row.public_id, {})
            case = s.scalar(select(Case.public_id).where(Case.id == row.case_id))
            return _view(row, case)

    def counts(self) -> dict[str, int]:
        """Actions per state; ``pending`` includes those still in a fan-out."""
        with unit_of_work(self._sessions, write=False) as s:
            counts = dict(
                s.execute(
                    select(OutboxMessage.state, func.count()).group_by(OutboxMessage.state)
                ).all()
            )
            unwritten, _ = item_actions.unwritten(s)
        if unwritten:
            counts[PENDING] = counts.get(PENDING, 0) + unwritten
        return counts


def _view(row: OutboxMessage, case: str | None) -> OutboxView:
    return OutboxView(
        id=row.public_id,
        idempotency_key=row.idempotency_key,
        topic=row.topic,
        target_type=row.target_type,
        target_id=row.target_platform_id,
        case=case,
        state=row.state,
        attempts=row.attempts,
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at,
        acknowledged_at=row.acknowledged_at,
        last_status=row.last_status,
        last_error=row.last_error,
        payload=json.loads(row.full_payload),
    )
