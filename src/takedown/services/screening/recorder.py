"""Matched screenings written by group commit: one transaction for every screening that
arrived while the previous transaction was committing.

Why: a matched screening must be on disk before its answer leaves (the screening id in
the answer is what a case and a CyberTipline report later cite), but one transaction per
screening makes the database's commit -- and on SQLite the single write lock that every
worker process queues for -- the ceiling of the whole upload path. Here each serving
process has one writer thread. Callers hand it their record and wait for their own
commit; while the writer commits one batch the next requests queue up, so under load a
commit carries many screenings and when idle a screening still commits at once (no
timer, no added latency). This is the group commit that databases do for their own log,
done one level up because each of our transactions costs a lock hand-off between
processes. A caller on the event loop awaits an asyncio future instead of holding a
thread-pool thread while it waits.

If a batch fails, its screenings are retried one by one, so one bad record fails only
its own request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from takedown.ids import new_id, utcnow
from takedown.services.screening.matcher import Match, QuerySignals
from takedown.store.db import unit_of_work
from takedown.store.models import Base

log = logging.getLogger(__name__)

MAX_BATCH = 256  # screenings per transaction at most


@dataclass(frozen=True)
class ScreeningRecord:
    """A matched screening to keep (only matches are stored, never clean uploads)."""

    query: QuerySignals
    matches: list[Match]
    verdict: str
    actor: str
    content_ref: str | None


_Done = Callable[[str | None, BaseException | None], None]
_STOP = object()


class ScreeningRecorder:
    def __init__(self, sessions: sessionmaker[Session], max_batch: int = MAX_BATCH) -> None:
        self._sessions = sessions
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[ScreeningRecord, _Done] | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self._waiting = 0
        self.batches = 0  # transactions committed

    @property
    def waiting(self) -> int:
        """Screenings handed in and not yet committed (or failed)."""
        return self._waiting

    # -- callers ---------------------------------------------------------------------
    def record(self, record: ScreeningRecord) -> str:
        """Keep ``record``; returns its screening id once committed (blocks the thread)."""
        future: Future[str] = Future()

        def done(public_id: str | None, error: BaseException | None) -> None:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(public_id or "")

        self._submit(record, done)
        return future.result()

    async def record_async(self, record: ScreeningRecord) -> str:
        """Keep ``record``; the event loop goes on serving while the batch commits."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()

        def settle(public_id: str | None, error: BaseException | None) -> None:
            if future.done():  # the caller went away (cancelled)
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(public_id or "")

        def done(public_id: str | None, error: BaseException | None) -> None:
            loop.call_soon_threadsafe(settle, public_id, error)

        self._submit(record, done)
        return await future

    def close(self) -> None:
        """Write what is queued, then stop the writer thread."""
        with self._start_lock:
            self._closed = True
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join()

    # -- the writer --------------------------------------------------------------------
    def _submit(self, record: ScreeningRecord, done: _Done) -> None:
        with self._start_lock:
            if self._closed:
                raise RuntimeError("the screening recorder is closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="takedown-screening-recorder", daemon=True
                )
                self._thread.start()
            self._waiting += 1
            # Under the lock: a close() cannot slip between the check and the put.
            self._queue.put((record, done))

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            batch: list[tuple[ScreeningRecord, _Done]] = []
            stop = first is _STOP
            if not stop:
                batch.append(first)  # type: ignore[arg-type]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    continue
                batch.append(item)  # type: ignore[arg-type]
            if batch:
                self._write_batch(batch)
            if stop and self._queue.empty():
                return

    def _write_batch(self, batch: list[tuple[ScreeningRecord, _Done]]) -> None:
        try:
            ids = self._write([r for r, _ in batch])
        except Exception as exc:
            if len(batch) > 1:  # one bad record must not fail the others: one by one
                for item in batch:
                    self._write_batch([item])
                return
            log.exception("could not record a matched screening")
            self._settle(batch[0][1], None, exc)
            return
        self.batches += 1
        for (_, done), public_id in zip(batch, ids, strict=True):
            self._settle(done, public_id, None)

    def _settle(self, done: _Done, public_id: str | None, error: BaseException | None) -> None:
        with self._start_lock:
            self._waiting -= 1
        try:
            done(public_id, error)
        except Exception:  # a caller's loop already closed: nothing left to tell
            log.debug("a screening's caller is gone", exc_info=True)

    def _write(self, records: list[ScreeningRecord]) -> list[str]:
        """One transaction for the batch. The rows are built before it begins, and
        written with Core (two statements): the write lock, which on SQLite every
        worker process queues for, is held half as long as with ORM objects and a
        flush (measured: 0.6 vs 1.2 ms for 8 screenings)."""
        now = utcnow()
        public_ids = [new_id() for _ in records]
        screenings: list[dict[str, object]] = [
            {
                "public_id": public_id,
                "screened_at": now,
                "requested_by": r.actor,
                "content_ref": r.content_ref,
                "verdict": r.verdict,
                "md5": r.query.md5,
                "sha256": r.query.sha256,
                "pdq": r.query.pdq_variants[0][1] if r.query.pdq_variants else None,
                "pdq_quality": r.query.pdq_quality,
            }
            for public_id, r in zip(public_ids, records, strict=True)
        ]
        matches = [
            [
                {
                    "entry_id": m.entry.id,
                    "bank_id": m.bank.bank_id,
                    "signal_type": m.signal_type,
                    "distance": m.distance,
                    "threshold": m.threshold,
                    "variant": m.variant,
                    "video_match": json.dumps(video) if (video := m.video_dict()) else None,
                }
                for m in r.matches
            ]
            for r in records
        ]
        with unit_of_work(self._sessions) as s:
            connection = s.connection()
            ids = connection.execute(_INSERT_SCREENINGS, screenings).scalars().all()
            match_rows = [
                {**m, "screening_id": screening_id}
                for screening_id, found in zip(ids, matches, strict=True)
                for m in found
            ]
            if match_rows:  # a record is made for a match, but an empty list would
                connection.execute(_INSERT_MATCHES, match_rows)  # insert one blank row
        return public_ids


_SCREENINGS = Base.metadata.tables["screenings"]
# The new rows' ids in the order of the parameters (SQLAlchemy's "insertmanyvalues").
_INSERT_SCREENINGS = insert(_SCREENINGS).returning(_SCREENINGS.c.id, sort_by_parameter_order=True)
_INSERT_MATCHES = insert(Base.metadata.tables["screening_matches"])
