"""Use cases on the audit log itself: verify the chain, write a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from takedown.domain.audit_chain import (
    GENESIS,
    EventFields,
    Problem,
    StoredCheckpoint,
    StoredEvent,
    Verifier,
)
from takedown.ids import utcnow
from takedown.services.audit.chain import (
    CHAINED_COLUMNS,
    AuditChain,
    append_pending,
    last_checkpoint,
    write_checkpoint,
)
from takedown.store.db import unit_of_work
from takedown.store.models import AuditCheckpoint, AuditEvent
from takedown.store.repositories import AUDIT_APPENDS, lock_inserts

_PAGE = 10_000
_COLUMNS = CHAINED_COLUMNS


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    events_checked: int
    events_before_chain: int
    head_id: int | None
    checkpoints: int
    problems: list[Problem]

    @property
    def first_bad_event(self) -> int | None:
        return next((p.event_id for p in self.problems if p.event_id is not None), None)


@dataclass(frozen=True)
class CheckpointView:
    id: int
    event_id: int
    event_hash: str
    made_at: str
    made_by: str
    mac: str


class AuditLog:
    def __init__(self, sessions: sessionmaker[Session], chain: AuditChain) -> None:
        self._sessions = sessions
        self._chain = chain

    def verify(self, anchors: list[tuple[int, str]] | None = None) -> VerifyReport:
        """Walk the whole chain in id order, a page at a time (one read transaction, so
        the walk sees one consistent state while writers go on appending)."""
        with unit_of_work(self._sessions, write=False) as s:
            checkpoints = [
                StoredCheckpoint(c.id, c.event_id, c.event_hash, c.made_at, c.made_by, c.mac)
                for c in s.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id))
            ]
            v = Verifier(self._chain.keys, checkpoints, anchors or [])
            after = -1
            while True:
                page = s.execute(
                    select(*_COLUMNS)
                    .where(AuditEvent.id > after)
                    .order_by(AuditEvent.id)
                    .limit(_PAGE)
                ).all()
                for r in page:
                    v.check(StoredEvent(EventFields(*r[:7]), r[7], r[8]))
                if len(page) < _PAGE:
                    break
                after = page[-1][0]
            problems = v.finish()
            return VerifyReport(
                ok=not problems,
                events_checked=v.checked,
                events_before_chain=v.legacy,
                head_id=v.last_id,
                checkpoints=len(checkpoints),
                problems=problems,
            )

    def checkpoint(self, actor: str) -> CheckpointView:
        """Checkpoint the current head now (also written automatically as events come
        in). Print it and keep a copy outside the database: an anchor."""
        with unit_of_work(self._sessions) as s:
            append_pending(s)
            lock_inserts(s, AUDIT_APPENDS)
            head = s.execute(
                select(AuditEvent.id, AuditEvent.event_hash).order_by(AuditEvent.id.desc()).limit(1)
            ).first()
            event_id, event_hash = (head[0], head[1] or GENESIS) if head else (0, GENESIS)
            cp = write_checkpoint(
                s, self._chain, last_checkpoint(s), event_id, event_hash, actor, utcnow()
            )
            return CheckpointView(
                cp.id, cp.event_id, cp.event_hash, cp.made_at.isoformat(), cp.made_by, cp.mac
            )
