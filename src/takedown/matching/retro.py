"""Retroactive matching's index: a few new bank entries, many stored hashes streamed past.

The serving index (``mih.py``) is built for the opposite shape -- millions of bank
entries, a handful of queries each request -- and costs ~50 us a query against 100,000
entries at radius 31 (measured). Here the entries are few and the queries are every
media hash a platform ever stored, so the index is cut finer: 16 tables of 16-bit
chunks. By the pigeonhole principle a hash within ``radius`` of an entry is within
``thresholds[t]`` of it in at least one chunk ``t`` (the thresholds sum, plus one each,
to more than ``radius``), so each query probes 16 small neighbourhoods (17 keys each at
radius 31) and checks the few entries found there in full. A pair is reported once: at
the first table whose chunk is near enough.

This is the one place of the rule "which stored PDQ hashes are within the radius of
which new entries": the database worker (``services/registry/retroscan.py``), the
benchmark and the Spark job (``integrations/spark.py``) all call :func:`scan`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from numba import njit

from takedown.matching.hamming import PDQ_BYTES, stored_hex_to_bytes_array
from takedown.matching.mih import _popcount

TABLES = 16  # 16-bit chunks: 65,536 buckets a table
_KEYS = 1 << 16
MAX_RADIUS = 47  # thresholds up to 2 a chunk: at most 137 keys probed a table
# A bank may set a PDQ threshold up to 128 bits (domain/banks.MAX_PDQ_THRESHOLD). Past
# MAX_RADIUS the chunk tables would probe thousands of keys a table: such a (rare, wide)
# radius is scanned by comparing every hash with every entry instead (_brute).
PDQ_BITS = PDQ_BYTES * 8


def thresholds_for(radius: int) -> np.ndarray:
    """Per-table chunk thresholds, as low as the pigeonhole principle allows: their
    sum plus ``TABLES`` exceeds ``radius``."""
    if not 0 <= radius <= MAX_RADIUS:
        raise ValueError(f"retroactive matching supports radii 0..{MAX_RADIUS}, not {radius}")
    base, extra = divmod(radius + 1, TABLES)  # sum(t + 1) must reach radius + 1
    out = np.full(TABLES, base - 1, dtype=np.int64)
    out[:extra] += 1
    return out  # -1 for a table means "never probed" (radius < 15)


def _masks() -> tuple[np.ndarray, np.ndarray]:
    """Every 16-bit mask of at most 2 bits, ordered by bit count, and how many have at
    most 0, 1, 2 bits."""
    out = [0]
    for k in (1, 2):
        for bits in combinations(range(16), k):
            out.append(sum(1 << b for b in bits))
    counts = np.array([1, 17, 137], dtype=np.int64)
    return np.array(out, dtype=np.int64), counts


_MASKS, _MASK_COUNTS = _masks()


@njit(cache=True, nogil=True)
def _chunk(words, row, t):
    """16-bit chunk ``t`` of row ``row`` (the same bits as a little-endian uint16 view)."""
    return np.int64((words[row, t >> 2] >> np.uint64((t & 3) * 16)) & np.uint64(0xFFFF))


@njit(cache=True, nogil=True)
def _search(qwords, twords, tids, offsets, masks, nmasks, thresholds, radius, out):
    """Pairs (query row, entry id, distance) into ``out`` (rows of 3 int64); returns how
    many were found, or -1 if ``out`` is too small (the caller grows it and asks again).

    Table by table, the queries are sorted by their chunk (a counting sort) and each
    probe pattern walks the buckets in order: queries and entries are then read almost
    sequentially, where probing query by query waited on a cache miss per bucket and
    per candidate (measured: 50 us a query against 100,000 entries, ~1 here)."""
    found = 0
    cap = out.shape[0]
    m = qwords.shape[0]
    counts = np.zeros(_KEYS + 1, dtype=np.int64)
    order = np.empty(m, dtype=np.int64)
    sorted_words = np.empty((m, 4), dtype=np.uint64)
    for t in range(16):
        thr = thresholds[t]
        if thr < 0:
            continue
        counts[:] = 0
        for q in range(m):
            counts[_chunk(qwords, q, t) + 1] += 1
        for b in range(_KEYS):
            counts[b + 1] += counts[b]
        fill = counts[:_KEYS].copy()
        for q in range(m):
            key = _chunk(qwords, q, t)
            order[fill[key]] = q
            fill[key] += 1
        for i in range(m):
            for w in range(4):
                sorted_words[i, w] = qwords[order[i], w]
        for mi in range(nmasks[thr]):
            mask = masks[mi]
            for b in range(_KEYS):
                q0 = counts[b]
                q1 = counts[b + 1]
                if q0 == q1:
                    continue
                p = b ^ mask
                e0 = offsets[t, p]
                e1 = offsets[t, p + 1]
                for e in range(e0, e1):
                    for i in range(q0, q1):
                        d = (
                            _popcount(twords[t, e, 0] ^ sorted_words[i, 0])
                            + _popcount(twords[t, e, 1] ^ sorted_words[i, 1])
                            + _popcount(twords[t, e, 2] ^ sorted_words[i, 2])
                            + _popcount(twords[t, e, 3] ^ sorted_words[i, 3])
                        )
                        if d > radius:
                            continue
                        # Reported at the first near-enough table only.
                        seen = False
                        for u in range(t):
                            tu = thresholds[u]
                            if tu < 0:
                                continue
                            near = _chunk(twords[t], e, u) ^ _chunk(sorted_words, i, u)
                            if _popcount(near) <= tu:
                                seen = True
                                break
                        if seen:
                            continue
                        if found >= cap:
                            return -1
                        out[found, 0] = order[i]
                        out[found, 1] = tids[t, e]
                        out[found, 2] = d
                        found += 1
    return found


@njit(cache=True, nogil=True)
def _brute(qwords, words, ids, radius, out):
    """Every (query row, entry id, distance) within ``radius``, each query against each
    entry: the scan for radii past :data:`MAX_RADIUS`. Same contract as :func:`_search`."""
    found = 0
    cap = out.shape[0]
    for q in range(qwords.shape[0]):
        for e in range(words.shape[0]):
            d = (
                _popcount(words[e, 0] ^ qwords[q, 0])
                + _popcount(words[e, 1] ^ qwords[q, 1])
                + _popcount(words[e, 2] ^ qwords[q, 2])
                + _popcount(words[e, 3] ^ qwords[q, 3])
            )
            if d > radius:
                continue
            if found >= cap:
                return -1
            out[found, 0] = q
            out[found, 1] = ids[e]
            out[found, 2] = d
            found += 1
    return found


@dataclass(frozen=True)
class EntryIndex:
    """The new entries' PDQ hashes, indexed for :func:`scan` (picklable: a Spark job
    broadcasts it)."""

    ids: np.ndarray  # int64, the entries' ids
    words: np.ndarray  # (16, n, 4) uint64: table by table, the hashes in bucket order
    table_ids: np.ndarray  # (16, n) int64: their ids, in the same order
    offsets: np.ndarray  # (16, 65537) int64: where each bucket starts
    radius: int

    @classmethod
    def build(cls, ids: np.ndarray, hashes: np.ndarray, radius: int) -> EntryIndex:
        """``hashes``: (n, 32) uint8 PDQ hashes; ``ids``: one int64 each."""
        hashes = np.ascontiguousarray(hashes, dtype=np.uint8).reshape(-1, PDQ_BYTES)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if ids.shape[0] != hashes.shape[0]:
            raise ValueError("one id per hash")
        if not 0 <= radius <= PDQ_BITS:
            raise ValueError(f"a PDQ radius is 0..{PDQ_BITS} bits, not {radius}")
        keys = hashes.view(np.uint16).reshape(-1, TABLES)
        words = hashes.view(np.uint64).reshape(-1, PDQ_BYTES // 8)
        n = hashes.shape[0]
        offsets = np.zeros((TABLES, _KEYS + 1), dtype=np.int64)
        twords = np.empty((TABLES, n, PDQ_BYTES // 8), dtype=np.uint64)
        tids = np.empty((TABLES, n), dtype=np.int64)
        for t in range(TABLES):
            column = keys[:, t]
            order = np.argsort(column, kind="stable")
            twords[t] = words[order]
            tids[t] = ids[order]
            offsets[t, 1:] = np.cumsum(np.bincount(column, minlength=_KEYS))
        return cls(ids, twords, tids, offsets, radius)

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def scan(index: EntryIndex, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (row of ``hashes``, entry id, distance) with distance ≤ the index's radius.

    ``hashes``: (m, 32) uint8 stored PDQ hashes (one chunk of the stream). Releases the
    GIL while it runs, so threads scan chunks side by side."""
    hashes = np.ascontiguousarray(hashes, dtype=np.uint8).reshape(-1, PDQ_BYTES)
    empty = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int16))
    if hashes.shape[0] == 0 or len(index) == 0:
        return empty
    qwords = hashes.view(np.uint64).reshape(-1, PDQ_BYTES // 8)
    out = np.empty((max(1024, hashes.shape[0] // 8), 3), dtype=np.int64)
    if index.radius > MAX_RADIUS:
        words = index.words[0]  # table 0 holds every entry (in its bucket order)
        while (found := _brute(qwords, words, index.table_ids[0], index.radius, out)) < 0:
            out = np.empty((out.shape[0] * 4, 3), dtype=np.int64)
        pairs = out[:found]
        return pairs[:, 0].copy(), pairs[:, 1].copy(), pairs[:, 2].astype(np.int16)
    thresholds = thresholds_for(index.radius)
    while True:
        found = _search(
            qwords,
            index.words,
            index.table_ids,
            index.offsets,
            _MASKS,
            _MASK_COUNTS,
            thresholds,
            index.radius,
            out,
        )
        if found >= 0:
            break
        out = np.empty((out.shape[0] * 4, 3), dtype=np.int64)
    pairs = out[:found]
    return pairs[:, 0].copy(), pairs[:, 1].copy(), pairs[:, 2].astype(np.int16)


def brute_force(
    ids: np.ndarray, hashes: np.ndarray, queries: np.ndarray, radius: int
) -> set[tuple[int, int]]:
    """The reference answer, (query row, entry id) pairs, for checking recall on a
    sample: every query compared with every entry."""
    words = np.ascontiguousarray(hashes, dtype=np.uint8).view(np.uint64).reshape(-1, 4)
    qwords = np.ascontiguousarray(queries, dtype=np.uint8).view(np.uint64).reshape(-1, 4)
    out: set[tuple[int, int]] = set()
    for q in range(qwords.shape[0]):
        d = np.bitwise_count(words ^ qwords[q]).sum(axis=1)
        for row in np.nonzero(d <= radius)[0]:
            out.add((q, int(ids[row])))
    return out


@dataclass(frozen=True)
class ScanIndex:
    """A bank's entries as one retroactive scan needs them: PDQ in an :class:`EntryIndex`
    (within the bank's threshold), exact types (MD5, SHA-256) as dictionaries. Plain
    numpy and dicts, so a Spark job broadcasts it to its executors as it is."""

    pdq: EntryIndex | None
    exact: dict[str, dict[str, tuple[int, ...]]]  # type -> value -> entry ids
    names: dict[int, str]  # entry id -> its public id (what leaves the process)
    pdq_floor: int = 0  # the bank's PDQ quality floor: a stored PDQ below it is not matched

    @classmethod
    def build(
        cls,
        rows: Iterable[tuple[int, str, str, str]],
        radius: int,
        pdq_floor: int = 0,
    ) -> ScanIndex:
        """``rows``: (entry id, public id, signal type, normalised value)."""
        pdq_ids: list[int] = []
        pdq_values: list[str] = []
        exact: dict[str, dict[str, list[int]]] = {}
        names: dict[int, str] = {}
        for entry_id, public_id, stype, value in rows:
            names[entry_id] = public_id
            if stype == "pdq":
                pdq_ids.append(entry_id)
                pdq_values.append(value)
            elif stype in EXACT_TYPES:
                exact.setdefault(stype, {}).setdefault(value, []).append(entry_id)
        pdq = (
            EntryIndex.build(
                np.array(pdq_ids, dtype=np.int64), stored_hex_to_bytes_array(pdq_values), radius
            )
            if pdq_ids
            else None
        )
        frozen = {t: {v: tuple(ids) for v, ids in values.items()} for t, values in exact.items()}
        return cls(pdq, frozen, names, pdq_floor)

    def __len__(self) -> int:
        return (len(self.pdq) if self.pdq else 0) + sum(
            len(ids) for values in self.exact.values() for ids in values.values()
        )


EXACT_TYPES = ("md5", "sha256")


def match_signals(
    index: ScanIndex,
    owners: Sequence[int],
    types: Sequence[str],
    values: Sequence[str],
    qualities: Sequence[int | None] | None = None,
    threads: int = 1,
) -> dict[tuple[int, int], int]:
    """The rule of retroactive matching, the same on every engine: stored signals
    (``owners[i]`` has a ``types[i]`` signal ``values[i]``; a PDQ's 8 dihedral variants
    are 8 rows) against a bank's entries. Returns (entry id, owner) -> the smallest
    distance (0 for exact types). PDQ within the index's radius, when its quality
    (``qualities[i]``, when known) reaches the bank's floor, as at upload; MD5 and
    SHA-256 equal. ``threads``: the PDQ scan split over that many threads (it releases
    the GIL); the answer does not depend on it."""
    found: dict[tuple[int, int], int] = {}
    for stype, table in index.exact.items():  # only the exact types the bank holds
        for i, (t, value) in enumerate(zip(types, values, strict=True)):
            if t == stype:
                for entry_id in table.get(value, ()):
                    found[(entry_id, owners[i])] = 0
    if index.pdq is None:
        return found
    floor = index.pdq_floor
    if qualities is None:
        rows = [i for i, t in enumerate(types) if t == "pdq"]
    else:
        rows = [
            i
            for i, (t, q) in enumerate(zip(types, qualities, strict=True))
            if t == "pdq" and (q is None or q >= floor)
        ]
    if not rows:
        return found
    hashes = stored_hex_to_bytes_array([values[i] for i in rows])
    query, entry_ids, distances = scan_threads(index.pdq, hashes, threads)
    if len(query) == 0:
        return found
    owner_of = np.asarray(owners, dtype=np.int64)[np.asarray(rows, dtype=np.int64)[query]]
    for e, o, d in zip(entry_ids.tolist(), owner_of.tolist(), distances.tolist(), strict=True):
        key = (e, o)
        if key not in found or d < found[key]:
            found[key] = d
    return found


def scan_threads(
    index: EntryIndex, hashes: np.ndarray, threads: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`scan` of ``hashes`` cut into ``threads`` parts scanned side by side (the
    kernel releases the GIL), rows numbered as in one call."""
    parts = max(1, min(threads, hashes.shape[0] // 10_000))
    if parts == 1:
        return scan(index, hashes)
    bounds = np.linspace(0, hashes.shape[0], parts + 1).astype(np.int64)
    with ThreadPoolExecutor(parts) as pool:
        results = list(
            pool.map(
                lambda k: scan(index, hashes[bounds[k] : bounds[k + 1]]),
                range(parts),
            )
        )
    return (
        np.concatenate([q + bounds[k] for k, (q, _, _) in enumerate(results)]),
        np.concatenate([e for _, e, _ in results]),
        np.concatenate([d for _, _, d in results]),
    )
