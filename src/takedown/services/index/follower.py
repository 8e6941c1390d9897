"""An in-memory PDQ index that follows a table by increasing row id.

Why this shape (and not HMA's): HMA rebuilds its whole index on any bank change and
reloads it every 30 s. Here an index only ever *grows* by the rows it has not seen:
rows have an increasing integer id, and a follower reads the rows above its cursor
(one indexed range query that usually returns nothing) before a search when due, or in
a :class:`Poller` thread every interval. Writers take a
lock while inserting (``store.repositories.lock_inserts``), so ids become visible in
commit order and no row can slip behind the cursor.

A follower reads through its *own* short read-only transaction, never the caller's: a
caller in the middle of a write would otherwise show it rows that may still be rolled
back, and the cursor would move past ids that SQLite can hand out again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from takedown.matching import (
    HammingIndex,
    MultiIndexHammingIndex,
    SearchResult,
    hex_to_bytes_array,
    stored_hex_to_bytes_array,
)
from takedown.memory import release_freed_memory
from takedown.periodic import PeriodicWorker
from takedown.store.db import raw_rows, unit_of_work

# Rows per read: large enough that a replay builds few shards (a million rows: 1.25 s
# at 250k a read, 2.2 s at 100k, which leaves 10 shards for the compactor to merge),
# small enough to bound the memory a read holds (~40 MB of row tuples).
_SYNC_BATCH = 250_000


class IndexFollower:
    """``rows_sql`` selects ``(id, pdq_hex_or_null)`` for ids above ``:cursor``, ordered by
    id, at most ``:n`` rows. Rows whose hash is null advance the cursor only.

    ``more_rows`` are further tables that share the same index, each as ``(sql,
    id_offset)``: their ids enter the index plus the offset (so they never collide with
    the first table's) and each has its own cursor. Video frame hashes share the index
    of image hashes this way."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        rows_sql: str,
        index: HammingIndex | None = None,
        sync_interval_s: float = 0.0,
        more_rows: Sequence[tuple[str, int]] = (),
    ) -> None:
        self._sessions = sessions
        self._sql = text(rows_sql)
        self._more = [(text(sql), offset) for sql, offset in more_rows]
        self._more_cursors = [0] * len(self._more)
        # Multi-index hashing: exact, ~0.1 ms per query at a million hashes, adds
        # visible at once (see matching/mih.py).
        self._index: HammingIndex = index or MultiIndexHammingIndex()
        self._cursor = 0
        self._lock = threading.Lock()
        self._sync_interval_s = sync_interval_s
        self._last_sync = float("-inf")
        # Adds committed by this process: marked stale (a count), read before the next
        # search whatever else is going on (``_synced`` is the mark the last read covers).
        self._stale = 0
        self._synced = 0
        self._last_added = 0  # hashes the last read brought
        # The snapshot generation the index was loaded from (services/index/snapshot.py).
        self.snapshot_generation: str | None = None
        # When new bank rows were last read (wall clock, for /metrics); None: never.
        self.last_read_at: float | None = None

    def __len__(self) -> int:
        return len(self._index)

    def sync(self, *, force: bool = False, wait: bool = True) -> int:
        """Load rows added since the last sync; returns how many hashes were added.

        ``wait=False``: when another thread is reading already (a poller in the middle
        of a large import), return at once instead of waiting for it."""
        now = time.monotonic()
        due = (
            force
            or not self._sync_interval_s
            or now - self._last_sync >= self._sync_interval_s
            or self._synced != self._stale  # own adds not read yet
        )
        if not due:
            return 0
        if not self._lock.acquire(blocking=wait):
            return 0
        try:
            stale = self._stale  # what this read will cover: marks made before it began
            with unit_of_work(self._sessions, write=False) as session:
                added = self._read(session)
            if added >= _SYNC_BATCH:  # a replay or an import: its row tuples are gone
                release_freed_memory()
            self._last_added = added
            self._last_sync = now
            self.last_read_at = time.time()
            self._synced = stale
            return added
        finally:
            self._lock.release()

    @property
    def catching_up(self) -> bool:
        """A read is under way, or the last one brought a full batch or more: a replay or
        a large import is being read (for work that can wait until it is done)."""
        return self._lock.locked() or self._last_added >= _SYNC_BATCH

    def _read(self, session: Session) -> int:
        cursors = [self._cursor, *self._more_cursors]
        added = self._read_into(session, self._index, cursors)
        self._cursor, *self._more_cursors = cursors
        return added

    def _read_into(self, session: Session, index: HammingIndex, cursors: list[int]) -> int:
        """Add every row above ``cursors`` (one per table, advanced in place) to
        ``index``; returns the hashes added."""
        added = 0
        tables = [(self._sql, 0), *self._more]
        for i, (sql, offset) in enumerate(tables):
            while True:
                # One statement reads every row above the cursor (hash or not), so the
                # cursor passes them all from one snapshot: nothing skipped between reads.
                rows = raw_rows(session, sql, {"cursor": cursors[i], "n": _SYNC_BATCH})
                if not rows:
                    break
                hashed = [(r[0], r[1]) for r in rows if r[1]]
                if hashed:
                    ids = np.fromiter(
                        (offset + row_id for row_id, _ in hashed),
                        dtype=np.int64,
                        count=len(hashed),
                    )
                    index.add(ids, stored_hex_to_bytes_array([v for _, v in hashed]))
                    added += len(hashed)
                cursors[i] = int(rows[-1][0])
                if len(rows) < _SYNC_BATCH:
                    break
        return added

    def mark_stale(self) -> None:
        """Rows were added in this process: read them before the next search, whatever
        the interval."""
        self._stale += 1

    # -- snapshots (services/index/snapshot.py) --------------------------------------
    def snapshot_state(self) -> tuple[HammingIndex, list[int]]:
        """The index and the cursors it covers (first table, then ``more_rows``)."""
        with self._lock:
            return self._index, [self._cursor, *self._more_cursors]

    def adopt(self, index: HammingIndex, cursors: list[int]) -> None:
        """Continue from a loaded index that covers rows up to ``cursors``; refused
        when the database holds fewer rows than the snapshot (it is another one).

        A follower that is already serving switches without a gap: the rows above the
        snapshot's cursors are read into the loaded index *before* it replaces the
        current one, all under the lock, so no search ever sees fewer rows than before.
        The replaced index is closed (its background merges stop; its memory goes)."""
        if len(cursors) != 1 + len(self._more):
            raise ValueError(f"{len(cursors)} cursors for {1 + len(self._more)} tables")
        with self._lock, unit_of_work(self._sessions, write=False) as session:
            for sql, cursor in zip([self._sql, *(m[0] for m in self._more)], cursors, strict=True):
                if cursor and not session.execute(sql, {"cursor": cursor - 1, "n": 1}).first():
                    raise ValueError(f"the database has no row {cursor} (another database?)")
            cursors = list(cursors)
            self._read_into(session, index, cursors)
            old, self._index = self._index, index
            self._cursor, *self._more_cursors = cursors
            self.last_read_at = time.time()
        if old is not index and isinstance(old, MultiIndexHammingIndex):
            old.close()
            del old
            release_freed_memory()

    def close(self) -> None:
        """Stop the index's background merges (searching and syncing still work)."""
        if isinstance(self._index, MultiIndexHammingIndex):
            self._index.close()

    def search(self, hexes: list[str] | np.ndarray, radius: int) -> SearchResult:
        """Search, after reading new rows when due. A search waits for a read only for
        this process's own adds; rows other processes added are left to a read already
        under way (a :class:`Poller`'s), so a million-row import never stalls queries.
        ``hexes``: PDQ hex strings, or an ``(n, 32)`` uint8 array of them already parsed
        (``hex_to_bytes_array``)."""
        # A follower without an interval (the registry's) is read-your-writes across
        # processes: it always waits for a read under way, as a read may hold the row.
        self.sync(wait=not self._sync_interval_s or self._synced != self._stale)
        queries = hexes if isinstance(hexes, np.ndarray) else hex_to_bytes_array(hexes)
        return self._index.search(queries, radius)


class Poller(PeriodicWorker):
    """A serving process's thread that reads new rows every ``interval_s``, so that a
    worker picks up another process's adds (a bank import) at once, in parallel with the
    other workers, rather than on its next query -- which would hold that query, and
    with sequential queries, one worker after the other (periodic.py)."""

    stop_timeout_s = 60.0

    def __init__(self, follower: IndexFollower, interval_s: float) -> None:
        super().__init__(interval_s, name="takedown-index-poller", wait_first=True)
        self._follower = follower

    def round(self) -> bool:
        self._follower.sync(force=True)
        return False
