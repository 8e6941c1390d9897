"""A measure's outbox actions, one per item: written at once, or for a measure on many
items (a viral item's 100,000 copies) from a fan-out after the measure's transaction.

A measure on fewer than ``fanout_min`` items writes its actions in its own transaction
(one INSERT … SELECT). A larger one writes one ``outbox_fanouts`` row instead — the
items, the parts each action's row is made of — and its actions are written from it
later, a chunk per transaction: by the delivery worker, claimed by it as they are
written (:func:`claim_next`), and by whatever must see them all first
(:func:`write_next`, :func:`settle`: DSA statements, the transparency report). The
items are restricted in the measure's transaction either way; only the platform's
copies of the news wait (measured on the 2-core machine, PostgreSQL: 100,000 actions
are 1.9 s of the server's CPU, 2.8-4.0 s of a 5-10 s report).

The rows are the same either way: an action's id and idempotency key are the measure's
``key_prefix`` followed by the item's id in ten digits, its times the measure's (a
claimed one's state, attempts and next attempt are its claim's).

Order per item: the outbox delivers an item's actions in the order of their row ids.
Before writing actions, :func:`insert_item_actions` writes out every unfinished fan-out
that holds one of its items, so a later measure's action (the removal after a
restriction) always gets the higher id. A chunk's rows and the fan-out's progress
commit together: a worker killed mid-way leaves no gap and writes nothing twice.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import (
    Integer,
    String,
    bindparam,
    cast,
    exists,
    func,
    insert,
    literal,
    literal_column,
    select,
    update,
)
from sqlalchemy import case as sql_case
from sqlalchemy.orm import Session, aliased, defer, sessionmaker
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.schema import Table

from takedown.ids import utcnow
from takedown.store.db import unit_of_work
from takedown.store.models import Item, OutboxFanout, OutboxMessage, OutboxStatement
from takedown.store.valuesets import named_value_set, value_set_argument

# Actions a measure writes at once, at most; beyond, a fan-out (Settings.outbox_fanout_min).
FANOUT_MIN = 10_000
# Actions a fan-out writes per transaction when settled in one go.
SETTLE_CHUNK = 10_000


@dataclass(frozen=True)
class ActionParts:
    """What every action of one measure is made of: ``payload_head`` + the item's
    platform id as a JSON string + ``payload_tail`` is its payload."""

    key_prefix: str  # 16 characters of a fresh ULID
    topic: str
    case_id: int
    payload_head: str
    payload_tail: str
    statement_id: int
    now: datetime


def insert_item_actions(
    session: Session,
    item_ids: Sequence[int],
    *,
    key_prefix: str,
    topic: str,
    case_id: int,
    payload_head: str,
    payload_tail: str,
    statement: str,
    now: datetime,
    fanout_min: int = FANOUT_MIN,
) -> None:
    """One pending outbox action per item, built by the database (INSERT … SELECT)
    rather than row by row in Python; ``statement`` (the statement of reasons, JSON)
    stored once for all of them (``OutboxStatement``). ``fanout_min`` items or more:
    one fan-out row now, the actions after this transaction (the module's docstring)."""
    if len(key_prefix) != 16:
        raise ValueError("key_prefix is 16 characters")
    if not item_ids:
        return
    statement_id = session.execute(_NEW_STATEMENT, {"body": statement}).scalar_one()
    parts = ActionParts(key_prefix, topic, case_id, payload_head, payload_tail, statement_id, now)
    _finish_fanouts_holding(session, item_ids)
    if len(item_ids) < fanout_min:
        _write(session, item_ids, parts)
        return
    ids = sorted(set(item_ids))
    session.add(
        OutboxFanout(
            key_prefix=key_prefix,
            topic=topic,
            case_id=case_id,
            payload_head=payload_head,
            payload_tail=payload_tail,
            statement_id=statement_id,
            item_ids=json.dumps(ids),
            total=len(ids),
            written=0,
            created_at=now,
        )
    )
    session.flush()


def write_next(session: Session, max_rows: int, *, wait: bool = False) -> int:
    """Write up to ``max_rows`` actions of the oldest unfinished fan-out no other
    transaction is writing (SKIP LOCKED on PostgreSQL; ``wait``: the oldest one, waiting
    for a transaction writing it); returns how many (0: none waiting, or the one waited
    for was finished meanwhile)."""
    row = _next_fanout(session, skip_locked=not wait)
    if row is None:
        return 0
    return _write_from(session, row, max_rows)


def _next_fanout(session: Session, *, skip_locked: bool = True) -> OutboxFanout | None:
    """The oldest unfinished fan-out (no other transaction is writing), locked."""
    return session.scalars(
        select(OutboxFanout)
        .where(OutboxFanout.finished_at.is_(None))
        .order_by(OutboxFanout.id)
        .limit(1)
        .with_for_update(skip_locked=skip_locked)
        # Its item ids are read (and parsed) once per process, not once per chunk.
        .options(defer(OutboxFanout.item_ids))
    ).first()


def claim_next(
    session: Session,
    max_rows: int,
    returning: Sequence[ColumnElement[Any]],
    *,
    lease_until: datetime,
) -> list[Any]:
    """Write up to ``max_rows`` actions of the oldest unfinished fan-out no other
    transaction is writing, claimed by the caller as they are written: ``delivering``,
    first attempt, leased until ``lease_until`` -- unless an earlier action for the
    item is still open (pending or delivering), in which case it is written
    ``pending``, for a claim after that one (order per item). Returns the claimed rows'
    ``returning`` columns, by id.

    The delivery worker's claim of rows no one else could have seen yet, without the
    claim's UPDATE of each (a new row version and an entry in each of the outbox's six
    indexes): 100,000 actions to an instant sink took 3.3 s of PostgreSQL's CPU against
    5.3 s written pending and then claimed (measured, 2 cores, load 4-6)."""
    row = _next_fanout(session)
    if row is None:
        return []
    dialect = session.get_bind().dialect.name
    statement = _CLAIMING.get(dialect)
    if statement is None:
        statement = _CLAIMING[dialect] = _item_actions(dialect, claiming=True)
    state = OutboxMessage.__table__.c.state
    got: list[Any] = []

    def write(ids: Sequence[int], parts: ActionParts) -> None:
        params = {**_params(dialect, ids, parts), "lease": lease_until}
        got.extend(session.execute(statement.returning(*returning, state), params))

    _write_from(session, row, max_rows, write)
    return sorted((r[:-1] for r in got if r[-1] == "delivering"), key=lambda r: r[0])


def settle(sessions: sessionmaker[Session], chunk: int = SETTLE_CHUNK) -> int:
    """Every fan-out written out, a chunk per transaction; returns the actions written.
    For readers that must see every action (DSA statements, transparency): a fan-out a
    delivery worker is writing at that moment is waited for, not skipped (skipped, the
    reader went on while its last actions were still to be written)."""
    written = 0
    while True:
        with unit_of_work(sessions) as s:
            n = write_next(s, chunk, wait=True)
            if not n and s.scalar(_UNFINISHED) is None:
                return written
        written += n


_UNFINISHED = select(OutboxFanout.id).where(OutboxFanout.finished_at.is_(None)).limit(1)


def unwritten(session: Session) -> tuple[int, datetime | None]:
    """Actions of fan-outs not written yet, and when the oldest was decided: pending
    for whoever counts the outbox."""
    count, oldest = session.execute(
        select(
            func.coalesce(func.sum(OutboxFanout.total - OutboxFanout.written), 0),
            func.min(OutboxFanout.created_at),
        ).where(OutboxFanout.finished_at.is_(None))
    ).one()
    return int(count), oldest


# Built once: a batch announces its cases' measures one case at a time (hundreds of
# small calls a chunk), and building these cost about as much as running them.
_NEW_STATEMENT = insert(OutboxStatement).returning(OutboxStatement.id)
_UNFINISHED_ROWS = select(OutboxFanout.id, OutboxFanout.item_ids, OutboxFanout.written).where(
    OutboxFanout.finished_at.is_(None)
)


def _finish_fanouts_holding(session: Session, item_ids: Sequence[int]) -> None:
    """Write out every unfinished fan-out sharing an item with ``item_ids`` (waiting on
    PostgreSQL for a worker writing one of its chunks), so that the actions about to be
    written come after theirs."""
    waiting = session.execute(_UNFINISHED_ROWS).all()
    if not waiting:
        return
    wanted = set(item_ids)
    for fanout_id, ids_json, written in sorted(waiting):
        if wanted.isdisjoint(json.loads(ids_json)[written:]):
            continue
        row = session.scalars(
            select(OutboxFanout).where(OutboxFanout.id == fanout_id).with_for_update()
        ).one()
        if row.finished_at is None:
            _write_from(session, row, row.total)


# A fan-out's item ids, parsed, by (row id, key prefix): they never change, and its
# 100,000 ids are 0.7 MB of JSON a chunk would otherwise read and parse again. The
# prefix (a fresh ULID's) tells apart two databases' rows of the same id.
_IDS: dict[tuple[int, str], list[int]] = {}
_IDS_KEPT = 4
_IDS_LOCK = threading.Lock()


def _item_ids(session: Session, row: OutboxFanout) -> list[int]:
    key = (row.id, row.key_prefix)
    with _IDS_LOCK:
        ids = _IDS.get(key)
    if ids is None:
        text = session.scalar(select(OutboxFanout.item_ids).where(OutboxFanout.id == row.id))
        ids = json.loads(text or "[]")
        with _IDS_LOCK:
            while len(_IDS) >= _IDS_KEPT:
                _IDS.pop(next(iter(_IDS)))
            _IDS[key] = ids
    return ids


def _write_from(
    session: Session,
    row: OutboxFanout,
    max_rows: int,
    write: Callable[[Sequence[int], ActionParts], None] | None = None,
) -> int:
    """The next ``max_rows`` actions of ``row`` written (by ``write``, else pending)
    and its progress, in the session's transaction."""
    ids = _item_ids(session, row)[row.written : row.written + max_rows]
    parts = ActionParts(
        row.key_prefix,
        row.topic,
        row.case_id,
        row.payload_head,
        row.payload_tail,
        row.statement_id,
        row.created_at,
    )
    (write or partial(_write, session))(ids, parts)
    written = row.written + len(ids)
    session.execute(
        update(OutboxFanout)
        .where(OutboxFanout.id == row.id)
        .values(written=written, finished_at=utcnow() if written >= row.total else None)
        .execution_options(synchronize_session=False)
    )
    session.expire(row)
    if written >= row.total:
        with _IDS_LOCK:
            _IDS.pop((row.id, row.key_prefix), None)
    return len(ids)


def _write(session: Session, item_ids: Sequence[int], parts: ActionParts) -> None:
    dialect = session.get_bind().dialect.name
    sql = _ITEM_ACTIONS.get(dialect)
    if sql is None:
        sql = _ITEM_ACTIONS[dialect] = _item_actions(dialect)
    session.execute(sql, _params(dialect, item_ids, parts))


def _params(dialect: str, item_ids: Sequence[int], parts: ActionParts) -> dict[str, Any]:
    return {
        "ids": value_set_argument(dialect, item_ids),
        "key_prefix": parts.key_prefix,
        "topic": parts.topic,
        "case_id": parts.case_id,
        "head": parts.payload_head,
        "tail": parts.payload_tail,
        "statement_id": parts.statement_id,
        "now": parts.now,
    }


# The actions' statement, built once per dialect (a case restricts its copies in many
# small calls too: one per copy that joins it later).
_ITEM_ACTIONS: dict[str, Insert] = {}
_CLAIMING: dict[str, Insert] = {}


def _item_actions(dialect: str, *, claiming: bool = False) -> Insert:
    """The INSERT … SELECT of a measure's actions, one per item of the ``ids`` value
    set; ``claiming``: each claimed as written (:func:`claim_next`) unless its item has
    an earlier open action."""
    if dialect == "postgresql":
        padded = func.lpad(cast(Item.id, String), 10, "0")
        quoted: ColumnElement[str] = cast(func.to_json(Item.platform_id), String)
    else:
        padded = func.substr(literal("0000000000") + cast(Item.id, String), -10)
        quoted = func.json_quote(Item.platform_id)
    key = bindparam("key_prefix", type_=String) + padded
    o = OutboxMessage.__table__.c
    stamp = bindparam("now", type_=o.created_at.type)
    columns = [
        o.public_id,
        o.idempotency_key,
        o.topic,
        o.target_type,
        o.target_platform_id,
        o.case_id,
        o.payload,
        o.statement_id,
        o.state,
        o.attempts,
        o.created_at,
        o.next_attempt_at,
    ]
    state: ColumnElement[Any] = literal("pending")
    attempts: ColumnElement[Any] = literal(0)
    due: ColumnElement[Any] = stamp
    if claiming:
        earlier = aliased(OutboxMessage)
        waits = exists().where(
            earlier.target_type == "item",
            earlier.target_platform_id == Item.platform_id,
            # Written out, not bound: the condition of the partial index
            # ix_outbox_target_order, which a planner can only match to literal values
            # (with bound ones SQLite scanned the outbox for each action: minutes).
            earlier.state.in_([literal_column("'pending'"), literal_column("'delivering'")]),
        )
        lease = bindparam("lease", type_=o.next_attempt_at.type)
        state = sql_case((waits, literal("pending")), else_=literal("delivering"))
        attempts = sql_case((waits, literal(0)), else_=literal(1))
        due = sql_case((waits, stamp), else_=lease)
    rows = select(
        key,
        key,
        bindparam("topic", type_=String),
        literal("item"),
        Item.platform_id,
        bindparam("case_id", type_=Integer),
        bindparam("head", type_=String) + quoted + bindparam("tail", type_=String),
        bindparam("statement_id", type_=Integer),
        state,
        attempts,
        stamp,
        due,
    ).where(Item.id.in_(named_value_set(dialect, "ids")))
    # The table's insert, not the entity's: an ORM insert would take the parameters
    # for rows to bulk-insert.
    table: Table = OutboxMessage.__table__  # type: ignore[assignment]
    return insert(table).from_select(columns, rows)
