"""Delivering the platform's actions from the outbox, by signed webhook.

Every action (restrict, remove, restore an item…) was written to ``outbox`` in the same
transaction as the decision that caused it, so nothing decided can be lost. Here a
worker takes due rows and posts them; an action counts as executed only when the
platform answers 2xx.

- **Claim, then send, then record**, each its own short transaction, never holding a
  database transaction open while talking HTTP. A claim sets the row ``delivering`` with
  a lease; a worker that dies leaves the lease to run out and another takes the row.
  On PostgreSQL claims use ``FOR UPDATE SKIP LOCKED`` so several workers never take the
  same row; on SQLite the write lock serializes them.
- **Order per item**: a row is due only when no earlier row for the same target is
  still pending or delivering, so a platform never sees "restore" before "restrict".
- **Retries** with exponential backoff and jitter, for at least 72 hours (configurable);
  then the row goes to ``dead_letter``, visible to admins, who can redeliver it.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session, aliased, sessionmaker

from takedown.errors import Conflict, InvalidRequest, NotFound
from takedown.ids import utcnow
from takedown.integrations.webhooks import WebhookClient
from takedown.metrics import DELIVERY_FAILURES
from takedown.services.audit.chain import record
from takedown.store.db import unit_of_work
from takedown.store.models import Case, OutboxMessage

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
    return json.dumps(
        {
            "id": row.public_id,
            "idempotency_key": row.idempotency_key,
            "topic": row.topic,
            "target": {"type": row.target_type, "id": row.target_platform_id},
            "case": case_public_id,
            "created_at": row.created_at.isoformat(),
            "action": json.loads(row.payload),
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()


class DeliveryDispatcher:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        client: WebhookClient,
        policy: DeliveryPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._sessions = sessions
        self._client = client
        self._policy = policy or DeliveryPolicy()
        self._rng = rng or random.Random()

    def deliver_due(self, *, now: datetime | None = None, limit: int = 100) -> int:
        """Deliver up to ``limit`` due actions; returns how many were acknowledged."""
        delivered = 0
        for _ in range(limit):
            claimed = self._claim(now or utcnow())
            if claimed is None:
                break
            row_id, attempts, body, delivery_id, key = claimed
            status: int | None = None
            error: str | None = None
            try:
                status = self._client.post(body, delivery_id=delivery_id, idempotency_key=key)
            except httpx.HTTPError as exc:
                error = f"{exc.__class__.__name__}: {exc}"[:1000]
            ok = status is not None and 200 <= status < 300
            self._record(row_id, attempts, ok, status, error, now or utcnow())
            if ok:
                delivered += 1
            elif status is None:
                break  # the platform is unreachable: try again next round, not 100 times
        return delivered

    def _claim(self, now: datetime) -> tuple[int, int, bytes, str, str] | None:
        earlier = aliased(OutboxMessage)
        blocked = exists().where(
            and_(
                earlier.target_type == OutboxMessage.target_type,
                earlier.target_platform_id == OutboxMessage.target_platform_id,
                earlier.id < OutboxMessage.id,
                earlier.state.in_((PENDING, DELIVERING)),
            )
        )
        stmt = (
            select(OutboxMessage)
            .where(
                OutboxMessage.state.in_((PENDING, DELIVERING)),
                OutboxMessage.next_attempt_at <= now,
                ~blocked,
            )
            # Oldest due first, so one failing row cannot starve the others.
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        with unit_of_work(self._sessions) as s:
            row = s.scalars(stmt).first()
            if row is None:
                return None
            row.state = DELIVERING
            row.attempts += 1
            row.next_attempt_at = now + self._policy.lease  # the lease
            case_id = (
                s.scalar(select(Case.public_id).where(Case.id == row.case_id))
                if row.case_id
                else None
            )
            return (
                row.id,
                row.attempts,
                webhook_body(row, case_id),
                row.public_id,
                row.idempotency_key,
            )

    def _record(
        self,
        row_id: int,
        attempts: int,
        ok: bool,
        status: int | None,
        error: str | None,
        now: datetime,
    ) -> None:
        with unit_of_work(self._sessions) as s:
            row = s.get(OutboxMessage, row_id)
            # A worker whose lease ran out must not overwrite the row's new owner.
            if row is None or row.attempts != attempts or row.state != DELIVERING:
                return
            row.last_status = status
            if ok:
                row.state = ACKNOWLEDGED
                row.acknowledged_at = now
                row.last_error = None
                return
            row.last_error = error or f"HTTP {status}"
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
        with unit_of_work(self._sessions, write=False) as s:
            return dict(
                s.execute(
                    select(OutboxMessage.state, func.count()).group_by(OutboxMessage.state)
                ).all()
            )


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
        payload=json.loads(row.payload),
    )
