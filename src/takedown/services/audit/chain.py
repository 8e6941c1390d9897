"""The audit trail: one append-only, hash-chained row per state change, written in the
same transaction as the change (so there is never a change without its record).

How the chain gets a well-defined order with many writers
---------------------------------------------------------
``record`` and ``record_many`` only queue the events on the session. Just before the
transaction commits (SQLAlchemy's ``before_commit``), the appender

1. takes the audit append lock — on PostgreSQL a transaction-scoped advisory lock,
   held until commit; SQLite already lets one writer at a time hold the database;
2. reads the head of the chain (the highest id and its hash) *inside* that lock;
3. gives the queued events the next ids and chains their hashes (one HMAC each, then a
   bulk insert), and writes a checkpoint when one is due.

So chain order is commit order: the next appender cannot read the head before this
transaction has committed (PostgreSQL releases transaction locks after the commit is
visible), and on PostgreSQL the lock is held only from this last step to the commit,
not for the whole use case. The chain position is the primary key, so even a writer
that somehow read a stale head (another isolation level, a missing lock) could not
fork the chain: its insert would fail on the key. A failed or rolled-back transaction
writes nothing and takes no position.

Events are visible to queries only after commit (or after ``append_pending``).
The key is derived from the master key (domain/audit_chain.py) and reaches the
appender through the session factory: ``attach(sessions, chain)`` at start-up.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, event, select
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from takedown.domain.audit_chain import (
    GENESIS,
    EventFields,
    canonical,
    canonical_checkpoint,
    canonical_event,
    derive_key,
    enc,
    mac,
    shared_part,
)
from takedown.ids import utcnow
from takedown.store.db import bulk_insert
from takedown.store.models import AuditCheckpoint, AuditEvent
from takedown.store.repositories import AUDIT_APPENDS, lock_inserts

_PENDING = "takedown_audit_pending"
_CHAIN = "takedown_audit_chain"
_INSERT_CHUNK = 5000

# An event's columns in the order the chain hashes them (domain/audit_chain.py).
CHAINED_COLUMNS = (
    AuditEvent.id,
    AuditEvent.at,
    AuditEvent.actor,
    AuditEvent.action,
    AuditEvent.object_type,
    AuditEvent.object_id,
    AuditEvent.details,
    AuditEvent.prev_hash,
    AuditEvent.event_hash,
)


@dataclass(frozen=True)
class AuditChain:
    """The audit key(s) and when to checkpoint. ``keys[0]`` MACs new events; the others
    (from rotated master keys) still verify old ones."""

    keys: tuple[bytes, ...]
    checkpoint_every_events: int = 10_000
    checkpoint_every: timedelta = timedelta(hours=1)

    @classmethod
    def from_master_keys(cls, master_keys: Iterable[bytes], **policy: Any) -> AuditChain:
        return cls(tuple(derive_key(k) for k in master_keys), **policy)


def attach(sessions: sessionmaker[Session], chain: AuditChain) -> None:
    """Every session from ``sessions`` appends its audit events to the chain."""
    sessions.configure(info={_CHAIN: chain})


def head_verifies(session: Session, chain: AuditChain) -> bool | None:
    """Whether the newest chained event was MACed under one of ``chain``'s keys; None
    when no event is chained yet. How a database that recorded no master key yet (one
    from before migration 0015) tells whether a key is its own."""
    row = session.execute(
        select(*CHAINED_COLUMNS)
        .where(AuditEvent.event_hash.is_not(None))
        .order_by(AuditEvent.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    message = canonical_event(EventFields(*row[:7]), row[7] or GENESIS)
    expected = row[8] or ""
    return any(hmac.compare_digest(mac(key, message), expected) for key in chain.keys)


def chain_of(session: Session) -> AuditChain:
    chain = session.info.get(_CHAIN)
    if chain is None:
        raise RuntimeError(
            "Audit events on a session without the audit chain: open sessions from the "
            "runtime's session factory (services.audit.attach)."
        )
    assert isinstance(chain, AuditChain)
    return chain


@dataclass(frozen=True)
class _Batch:
    at: datetime
    actor: str
    action: str
    object_type: str
    object_ids: list[str]
    details: str


def record(
    session: Session,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    details: Mapping[str, Any],
) -> None:
    _queue(session, _Batch(utcnow(), actor, action, object_type, [object_id], _json(details)))


def record_many(
    session: Session,
    actor: str,
    action: str,
    object_type: str,
    object_ids: Iterable[str],
    details: Mapping[str, Any],
) -> None:
    """One event per object, chained and inserted in bulk (restricting 100,000 copies is
    100,000 state changes, and each is its own event)."""
    _queue(session, _Batch(utcnow(), actor, action, object_type, list(object_ids), _json(details)))


def _json(details: Mapping[str, Any]) -> str:
    return json.dumps(details, default=str)


def _queue(session: Session, batch: _Batch) -> None:
    chain_of(session)  # fail at the call, not at commit, when the chain is not attached
    session.info.setdefault(_PENDING, []).append(batch)


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    append_pending(session)


@event.listens_for(Session, "after_transaction_end")
def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the outermost transaction: committed or not, done
        session.info.pop(_PENDING, None)


def append_pending(session: Session) -> None:
    """Chain and insert the queued events now (normally at commit; call it earlier only
    when the same transaction must read its own events — it holds the append lock)."""
    pending: list[_Batch] = session.info.pop(_PENDING, [])
    if not pending:
        return
    chain = chain_of(session)
    key = chain.keys[0]
    # Everything else this transaction writes goes out first: once it holds the append
    # lock it only inserts audit rows, so it never waits on another writer's row locks
    # while others wait on it.
    session.flush()
    lock_inserts(session, AUDIT_APPENDS)
    head = session.execute(
        select(AuditEvent.id, AuditEvent.event_hash).order_by(AuditEvent.id.desc()).limit(1)
    ).first()
    next_id = head[0] + 1 if head else 1
    prev = (head[1] if head else None) or GENESIS
    rows: list[dict[str, Any]] = []
    for b in pending:
        shared = shared_part(b.at, b.actor, b.action, b.object_type)
        details_enc = enc(b.details)
        for oid in b.object_ids:
            h = mac(key, canonical(next_id, shared, oid, details_enc, prev))
            rows.append(
                {
                    "id": next_id,
                    "at": b.at,
                    "actor": b.actor,
                    "action": b.action,
                    "object_type": b.object_type,
                    "object_id": oid,
                    "details": b.details,
                    "prev_hash": prev,
                    "event_hash": h,
                }
            )
            prev, next_id = h, next_id + 1
    # One DBAPI executemany (PostgreSQL: COPY), not the ORM's bulk insert nor Core's
    # executemany, which psycopg sends as one statement per row: a batch of 10,000
    # registered items writes 10,000 events (store/db.py's bulk_insert).
    table = cast(Table, AuditEvent.__table__)
    for start in range(0, len(rows), _INSERT_CHUNK):
        bulk_insert(session.connection(), table, rows[start : start + _INSERT_CHUNK])
    if rows:
        _checkpoint_if_due(session, chain, rows[-1]["id"], prev)


def _checkpoint_if_due(session: Session, chain: AuditChain, head_id: int, head: str) -> None:
    last = last_checkpoint(session)
    now = utcnow()
    if (
        last is None
        or head_id - last.event_id >= chain.checkpoint_every_events
        or now - last.made_at >= chain.checkpoint_every
    ):
        write_checkpoint(session, chain, last, head_id, head, "system", now)


def last_checkpoint(session: Session) -> AuditCheckpoint | None:
    return session.scalars(
        select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1)
    ).first()


def write_checkpoint(
    session: Session,
    chain: AuditChain,
    last: AuditCheckpoint | None,
    event_id: int,
    event_hash: str,
    made_by: str,
    made_at: datetime,
) -> AuditCheckpoint:
    """Append a checkpoint (the caller holds the append lock). Checkpoints chain too:
    each MAC covers the one before, so deleting one breaks the next."""
    cp_id = last.id + 1 if last else 1
    prev = last.mac if last else GENESIS
    message = canonical_checkpoint(cp_id, event_id, event_hash, made_at, made_by, prev)
    cp = AuditCheckpoint(
        id=cp_id,
        event_id=event_id,
        event_hash=event_hash,
        made_at=made_at,
        made_by=made_by,
        mac=mac(chain.keys[0], message),
    )
    session.add(cp)
    session.flush()
    return cp
