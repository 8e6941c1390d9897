"""Find every stored PDQ hash within a Hamming radius of a query hash.

PDQ matching is a radius query: two images are "the same" when their 256-bit hashes
differ in at most ~31 bits. This module defines the small :class:`HammingIndex`
protocol the matcher depends on and one implementation, :class:`BruteForceHammingIndex`,
which compares each query with every stored hash.

Brute force is O(n) per query, but fully vectorized over numpy arrays it costs a few
milliseconds per million hashes and per query, is exact, and is trivially correct under
incremental adds and removes. That is the right first implementation: it sets the
reference behaviour that a faster multi-index-hashing (MIH) index must reproduce, and
because callers only see the protocol, the MIH index can later replace it without
touching them (the tests of this module are written against the protocol for the same
reason).

Hashes cross the protocol as ``uint8`` arrays of shape ``(n, 32)``: the big-endian bytes
of the 64-digit hex string, i.e. ``bytes.fromhex(hex)``. That is the one representation
every tool agrees on, so no caller has to know how an index lays out its words.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from takedown.errors import InvalidRequest
from takedown.signals import PDQ

PDQ_BITS = 256
PDQ_BYTES = PDQ_BITS // 8
_WORDS = PDQ_BITS // 64

# Rows compared per step of a search. 65,536 rows keep the per-step temporaries
# (0.5 MiB of XOR words, 64 KiB of counts) inside the CPU cache, which measured faster
# than larger steps, and bound the memory a search needs whatever the index size.
SEARCH_CHUNK_ROWS = 65_536

_MIN_CAPACITY = 1_024
# Rewrite the buffers once more than this share of rows are tombstones: dead rows still
# cost scan time, and compaction is O(n), so waiting for a fixed share keeps its cost
# amortized O(1) per removal.
_COMPACT_TOMBSTONE_SHARE = 0.25


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, eq=False)
class SearchResult:
    """Every (query, id) pair within the radius, as three aligned arrays.

    Arrays rather than a list of objects because a radius-64 search over a large bank
    can return many pairs and callers mostly filter or join them in bulk. Rows are
    sorted by ``(query_index, distance, id)`` so the nearest match of each query comes
    first and results are reproducible. The arrays are read-only.
    """

    query_index: np.ndarray  # int32, index into the queries of the search
    ids: np.ndarray  # int64
    distances: np.ndarray  # int16, 0..256

    def __post_init__(self) -> None:
        for array in (self.query_index, self.ids, self.distances):
            array.setflags(write=False)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @classmethod
    def empty(cls) -> SearchResult:
        return cls(
            np.empty(0, dtype=np.int32), np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int16)
        )


@runtime_checkable
class HammingIndex(Protocol):
    """What the matcher needs from a PDQ index; see the module docstring for why."""

    def add(self, ids: np.ndarray, hashes: np.ndarray) -> None:
        """Store ``hashes`` (uint8, (n, 32)) under ``ids`` (int64, (n,)).

        An id already present has its hash replaced.
        """
        ...

    def remove(self, ids: np.ndarray) -> None:
        """Forget ``ids``: they are no longer returned. Unknown ids are ignored."""
        ...

    def search(self, queries: np.ndarray, radius: int) -> SearchResult:
        """Every live (query, id) pair with Hamming distance <= ``radius`` (0..256)."""
        ...

    def __len__(self) -> int:
        """Number of live entries."""
        ...


# --------------------------------------------------------------------------- conversions


def hex_to_bytes_array(hashes: Iterable[str]) -> np.ndarray:
    """Parse 64-digit PDQ hex strings into a ``(n, 32)`` uint8 array.

    Raises :class:`~takedown.errors.InvalidHash` (with the offending value) for anything
    that is not a PDQ hash, so a bad bank row is reported rather than silently skipped.
    """
    values = hashes if isinstance(hashes, list | tuple) else list(hashes)
    # First all at once: a length check and one ``bytes.fromhex`` over them all instead
    # of a pattern match per value (a million rows: 0.15 s instead of 1.7). It takes
    # exactly what the check takes (64 hex digits, either case); anything else, or a
    # value that is not a string, goes the checking way, which names it.
    width = 2 * PDQ_BYTES
    try:
        if set(map(len, values)) <= {width}:  # (map and set in C: no Python per value)
            raw = bytes.fromhex("".join(values))
            if len(raw) == PDQ_BYTES * len(values):  # fromhex skips spaces: count again
                return np.frombuffer(raw, dtype=np.uint8).reshape(-1, PDQ_BYTES).copy()
    except (TypeError, ValueError):
        pass
    normalized = "".join(PDQ.normalize(value) for value in values)
    raw = bytes.fromhex(normalized)
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, PDQ_BYTES).copy()


def stored_hex_to_bytes_array(hashes: Sequence[str]) -> np.ndarray:
    """:func:`hex_to_bytes_array` for hashes read back from our own tables (the same
    function: it parses all of them at once, checking each only should one fail)."""
    return hex_to_bytes_array(hashes)


def bytes_to_hex(hashes: np.ndarray) -> list[str]:
    """The inverse of :func:`hex_to_bytes_array`; a single ``(32,)`` row is accepted."""
    rows = _check_hash_bytes(np.atleast_2d(hashes), "hashes")
    text = rows.tobytes().hex()
    width = 2 * PDQ_BYTES
    return [text[i : i + width] for i in range(0, len(text), width)]


def _check_hash_bytes(hashes: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(hashes)
    if array.dtype != np.uint8 or array.ndim != 2 or array.shape[1] != PDQ_BYTES:
        raise ValueError(
            f"{name} must be a uint8 array of shape (n, {PDQ_BYTES}); "
            f"got {array.dtype} {array.shape}"
        )
    return np.ascontiguousarray(array)


def _to_words(hashes: np.ndarray, name: str) -> np.ndarray:
    """``(n, 32)`` bytes -> ``(n, 4)`` native uint64, word 0 = the first 16 hex digits."""
    array = _check_hash_bytes(hashes, name)
    return array.view(">u8").astype(np.uint64)


def _check_ids(ids: np.ndarray, expected: int | None = None) -> np.ndarray:
    array = np.asarray(ids)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise ValueError(f"ids must be a 1-D integer array; got {array.dtype} {array.shape}")
    if expected is not None and array.shape[0] != expected:
        raise ValueError(f"got {array.shape[0]} ids for {expected} hashes")
    return array.astype(np.int64, copy=False)


def _check_radius(radius: int) -> int:
    if isinstance(radius, bool):
        raise InvalidRequest("The radius must be a whole number of bits.", code="invalid_radius")
    try:
        value = operator.index(radius)
    except TypeError:
        raise InvalidRequest(
            f"The radius must be a whole number of bits; got {radius!r}.", code="invalid_radius"
        ) from None
    if not 0 <= value <= PDQ_BITS:
        raise InvalidRequest(
            f"The radius must be between 0 and {PDQ_BITS} bits; got {value}.",
            code="invalid_radius",
        )
    return value


def _last_occurrences(ids: np.ndarray) -> np.ndarray:
    """Positions of the last occurrence of each distinct id, in input order.

    When one batch names an id twice, the later hash wins, exactly as if the two had
    been added one after the other.
    """
    reversed_first = np.unique(ids[::-1], return_index=True)[1]
    return np.sort(ids.shape[0] - 1 - reversed_first)


# --------------------------------------------------------------------------- id map


class _IdMap:
    """id -> row, as a sorted array plus a small dict of recent inserts.

    A plain dict costs ~100 bytes per entry, about three times the hashes themselves
    for a bank of millions; sorted int64 arrays cost 16 bytes and look up a whole batch
    with one ``searchsorted``. Inserts go to the dict and are merged into the arrays once
    the dict outgrows a fraction of them, so one-at-a-time adds stay cheap (amortized
    O(log n)) without ever re-sorting per add. Removed ids in the arrays are marked with
    row -1 and dropped at the next merge or rebuild.
    """

    def __init__(self) -> None:
        self._keys = np.empty(0, dtype=np.int64)
        self._rows = np.empty(0, dtype=np.int64)
        self._recent: dict[int, int] = {}

    def rebuild(self, ids: np.ndarray, rows: np.ndarray) -> None:
        order = np.argsort(ids, kind="stable")
        self._keys = ids[order]
        self._rows = rows[order]
        self._recent = {}

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """Row of each id, or -1 where the id is not present."""
        found, slots = self._find(ids)
        rows = np.full(ids.shape[0], -1, dtype=np.int64)
        rows[found] = self._rows[slots[found]]
        if self._recent:
            self._lookup_recent(ids, rows)
        return rows

    def assign(self, ids: np.ndarray, rows: np.ndarray) -> None:
        """Point each (distinct) id at its row, whether or not it was present."""
        found, slots = self._find(ids)
        self._rows[slots[found]] = rows[found]
        new_ids, new_rows = ids[~found], rows[~found]
        if len(self._recent) + new_ids.shape[0] > max(_MIN_CAPACITY, self._keys.shape[0] // 8):
            self._merge(new_ids, new_rows)  # a bulk load never goes through the dict
        else:
            self._recent.update(zip(new_ids.tolist(), new_rows.tolist(), strict=True))

    def discard(self, ids: np.ndarray) -> None:
        found, slots = self._find(ids)
        self._rows[slots[found]] = -1
        if self._recent:
            for key in ids[~found].tolist():
                self._recent.pop(key, None)

    def _find(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which ids have a slot in the sorted arrays, and which slot."""
        return _sorted_find(self._keys, ids)

    def _lookup_recent(self, ids: np.ndarray, rows: np.ndarray) -> None:
        """Overlay rows from the dict: per id for small batches, vectorized for big ones."""
        recent = self._recent
        if ids.shape[0] <= len(recent):
            for i, key in enumerate(ids.tolist()):
                row = recent.get(key)
                if row is not None:
                    rows[i] = row
            return
        keys, values = self._recent_arrays()
        order = np.argsort(keys)
        keys, values = keys[order], values[order]
        found, slots = _sorted_find(keys, ids)
        rows[found] = values[slots[found]]

    def _recent_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        count = len(self._recent)
        keys = np.fromiter(self._recent.keys(), dtype=np.int64, count=count)
        values = np.fromiter(self._recent.values(), dtype=np.int64, count=count)
        return keys, values

    def _merge(self, extra_ids: np.ndarray, extra_rows: np.ndarray) -> None:
        """Fold the dict and ``extra`` (which wins over the dict) into the sorted arrays."""
        keep = self._rows >= 0
        recent_keys, recent_rows = self._recent_arrays()
        superseded = np.isin(recent_keys, extra_ids)
        self.rebuild(
            np.concatenate([self._keys[keep], recent_keys[~superseded], extra_ids]),
            np.concatenate([self._rows[keep], recent_rows[~superseded], extra_rows]),
        )


def _sorted_find(keys: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each id: is it in sorted ``keys``, and at which slot (clipped when absent)."""
    if keys.shape[0] == 0:
        return np.zeros(ids.shape[0], dtype=bool), np.zeros(ids.shape[0], dtype=np.intp)
    slots = np.minimum(np.searchsorted(keys, ids), keys.shape[0] - 1)
    return keys[slots] == ids, slots


# --------------------------------------------------------------------------- index


class BruteForceHammingIndex:
    """Exact PDQ radius search by comparing each query with every live hash.

    Cost: O(n) per query, vectorized (XOR, ``np.bitwise_count``, add) in cache-sized
    chunks, so roughly 2 ms per query per million hashes on one core and bounded extra
    memory. It implements :class:`HammingIndex`, so a multi-index-hashing index can
    replace it once banks grow past what a linear scan serves in time.

    Layout, and why:

    * Hashes live in a ``(4, capacity)`` uint64 buffer -- one row per 64-bit word, i.e.
      column-major ``(n, 4)``. Each XOR/popcount pass then reads one contiguous word
      array; with row-major ``(n, 4)`` the per-row sum over four words was 3-8x slower.
    * The buffers grow by doubling, so adding one hash copies nothing most of the time.
    * Removal only clears an ``alive`` flag (a tombstone); replacing a hash tombstones
      the old row and appends a new one. Rows are therefore never rewritten in place,
      which is what lets a search scan a snapshot without holding the lock: it copies the
      small ``alive`` mask under the lock and reads rows that no writer will change.
      :meth:`compact` (automatic past 25 % tombstones) writes fresh buffers.

    Thread safety: one writer at a time (mutations hold an ``RLock``); searches take the
    lock only to snapshot and may run concurrently with each other and with a writer.
    """

    def __init__(self, *, chunk_rows: int = SEARCH_CHUNK_ROWS) -> None:
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be positive")
        self._chunk_rows = chunk_rows
        self._lock = threading.RLock()
        self._words = np.empty((_WORDS, _MIN_CAPACITY), dtype=np.uint64)
        self._ids = np.empty(_MIN_CAPACITY, dtype=np.int64)
        self._alive = np.zeros(_MIN_CAPACITY, dtype=bool)
        self._size = 0  # rows written, live or dead
        self._live = 0
        self._id_map = _IdMap()

    # ----------------------------------------------------------------- introspection

    def __len__(self) -> int:
        return self._live

    @property
    def capacity(self) -> int:
        """Rows the buffers hold before the next growth."""
        return int(self._ids.shape[0])

    @property
    def tombstones(self) -> int:
        """Dead rows still occupying the buffers (removed or replaced hashes)."""
        return self._size - self._live

    # ----------------------------------------------------------------- mutation

    def add(self, ids: np.ndarray, hashes: np.ndarray) -> None:
        words = _to_words(hashes, "hashes")
        id_array = _check_ids(ids, expected=words.shape[0])
        if id_array.shape[0] == 0:
            return
        keep = _last_occurrences(id_array)
        id_array, words = id_array[keep], words[keep]
        with self._lock:
            old_rows = self._id_map.lookup(id_array)
            self._kill(old_rows[old_rows >= 0])
            new_rows = self._append(id_array, words)
            self._id_map.assign(id_array, new_rows)
            self._maybe_compact()

    def remove(self, ids: np.ndarray) -> None:
        id_array = _check_ids(ids)
        if id_array.shape[0] == 0:
            return
        id_array = np.unique(id_array)
        with self._lock:
            rows = self._id_map.lookup(id_array)
            self._kill(rows[rows >= 0])
            self._id_map.discard(id_array)
            self._maybe_compact()

    def compact(self) -> None:
        """Rewrite the buffers without tombstones (new arrays, so snapshots stay valid)."""
        with self._lock:
            live_rows = np.flatnonzero(self._alive[: self._size])
            capacity = max(_MIN_CAPACITY, live_rows.shape[0])
            words = np.empty((_WORDS, capacity), dtype=np.uint64)
            ids = np.empty(capacity, dtype=np.int64)
            alive = np.zeros(capacity, dtype=bool)
            count = live_rows.shape[0]
            words[:, :count] = self._words[:, live_rows]
            ids[:count] = self._ids[live_rows]
            alive[:count] = True
            self._words, self._ids, self._alive = words, ids, alive
            self._size = self._live = count
            self._id_map.rebuild(ids[:count].copy(), np.arange(count, dtype=np.int64))

    def _kill(self, rows: np.ndarray) -> None:
        self._alive[rows] = False
        self._live -= int(rows.shape[0])

    def _append(self, ids: np.ndarray, words: np.ndarray) -> np.ndarray:
        count = ids.shape[0]
        self._reserve(self._size + count)
        start, stop = self._size, self._size + count
        self._words[:, start:stop] = words.T
        self._ids[start:stop] = ids
        self._alive[start:stop] = True
        self._size = stop
        self._live += count
        return np.arange(start, stop, dtype=np.int64)

    def _reserve(self, rows: int) -> None:
        """Grow by doubling into new arrays (a searching snapshot keeps the old ones)."""
        capacity = self.capacity
        if rows <= capacity:
            return
        while capacity < rows:
            capacity *= 2
        words = np.empty((_WORDS, capacity), dtype=np.uint64)
        ids = np.empty(capacity, dtype=np.int64)
        alive = np.zeros(capacity, dtype=bool)
        words[:, : self._size] = self._words[:, : self._size]
        ids[: self._size] = self._ids[: self._size]
        alive[: self._size] = self._alive[: self._size]
        self._words, self._ids, self._alive = words, ids, alive

    def _maybe_compact(self) -> None:
        if self.tombstones > _COMPACT_TOMBSTONE_SHARE * self._size:
            self.compact()

    # ----------------------------------------------------------------- search

    def search(self, queries: np.ndarray, radius: int) -> SearchResult:
        radius = _check_radius(radius)
        query_words = _to_words(np.atleast_2d(queries), "queries")
        with self._lock:
            size = self._size
            words = self._words[:, :size]
            ids = self._ids[:size]
            alive = self._alive[:size].copy() if self._live < size else None
        if size == 0 or query_words.shape[0] == 0:
            return SearchResult.empty()
        query_index, rows, distances = _scan(words, query_words, radius, self._chunk_rows)
        if alive is not None:
            live = alive[rows]
            query_index, rows, distances = query_index[live], rows[live], distances[live]
        found_ids = ids[rows]
        order = np.lexsort((found_ids, distances, query_index))
        return SearchResult(query_index[order], found_ids[order], distances[order])


def _scan(
    words: np.ndarray, queries: np.ndarray, radius: int, chunk_rows: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (query, row, distance) with distance <= radius, dead rows included.

    The loops are over chunks and queries (a handful), never over rows.
    """
    size = words.shape[1]
    step = min(chunk_rows, size)
    per_step = chunk_rows // max(step, 1)
    if per_step > 1 and queries.shape[0] > 1:
        # A small index and many queries (a batch's own rows): several queries a step,
        # the same number of comparisons per step as one query over a full chunk.
        return _scan_many(words, queries, radius, per_step)
    scratch = _Scratch(step)
    found_q: list[np.ndarray] = []
    found_rows: list[np.ndarray] = []
    found_d: list[np.ndarray] = []
    for start in range(0, size, step):
        block = words[:, start : start + step]
        for q, query in enumerate(queries):
            distances = scratch.distances(block, query)
            hits = np.flatnonzero(distances <= radius)
            if hits.shape[0]:
                found_q.append(np.full(hits.shape[0], q, dtype=np.int32))
                found_rows.append(hits + start)
                found_d.append(distances[hits].astype(np.int16))
    if not found_q:
        return (np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.int16))
    return np.concatenate(found_q), np.concatenate(found_rows), np.concatenate(found_d)


def _scan_many(
    words: np.ndarray, queries: np.ndarray, radius: int, per_step: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_scan` for an index of at most one chunk: ``per_step`` queries compared
    with every row at once (a queries x rows matrix of distances)."""
    found_q: list[np.ndarray] = []
    found_rows: list[np.ndarray] = []
    found_d: list[np.ndarray] = []
    for start in range(0, queries.shape[0], per_step):
        block = queries[start : start + per_step]
        total = np.zeros((block.shape[0], words.shape[1]), dtype=np.uint16)
        for word in range(_WORDS):
            xor = np.bitwise_xor(block[:, word, None], words[word][None, :])
            total += np.bitwise_count(xor)
        q, rows = np.nonzero(total <= radius)
        if q.shape[0]:
            found_q.append((q + start).astype(np.int32))
            found_rows.append(rows.astype(np.int64))
            found_d.append(total[q, rows].astype(np.int16))
    if not found_q:
        return (np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.int16))
    return np.concatenate(found_q), np.concatenate(found_rows), np.concatenate(found_d)


class _Scratch:
    """Reusable per-search buffers, so a chunk allocates nothing but its hits."""

    def __init__(self, rows: int) -> None:
        self._xor = np.empty(rows, dtype=np.uint64)
        self._count = np.empty(rows, dtype=np.uint8)
        self._total = np.empty(rows, dtype=np.uint16)  # 256 does not fit in uint8

    def distances(self, block: np.ndarray, query: np.ndarray) -> np.ndarray:
        """Hamming distance of ``query`` (4 words) to each column of ``block``."""
        n = block.shape[1]
        xor, count, total = self._xor[:n], self._count[:n], self._total[:n]
        total[...] = 0
        for word in range(_WORDS):
            np.bitwise_xor(block[word], query[word], out=xor)
            np.bitwise_count(xor, out=count)
            np.add(total, count, out=total)
        return total
