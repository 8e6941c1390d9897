"""Exact PDQ radius search at platform scale: multi-index hashing with a pigeonring filter.

:class:`MultiIndexHammingIndex` implements the :class:`~takedown.matching.hamming.HammingIndex`
protocol with exactly the results of :class:`~takedown.matching.hamming.BruteForceHammingIndex`
(same pairs, same order), but reads a few thousand table entries per query instead of every
stored hash.

How a search finds everything (multi-index hashing, Norouzi et al.)
------------------------------------------------------------------
Each stored hash is cut into ``T = 13`` disjoint chunks of ``b`` bits (``b`` grows with the
shard, 19 at 10M rows) and every chunk has a table: hashes bucketed by that chunk's value.
Why 13 and not the textbook 16 x 16 bits: each table costs 4 bytes per hash, and 16 tables
plus the hash and the id come to 104 bytes, over the 96-byte budget; 13 wider chunks fit
(see below) and, with fewer but smaller buckets, probe about as fast.
If two hashes differ in at most ``r`` bits, they differ in at most ``r`` bits over the chunks,
so for any per-chunk thresholds ``t_j`` with ``sum(t_j + 1) = r + 1`` some chunk ``j`` must
differ in at most ``t_j`` bits (otherwise the chunks alone differ in ``r + 1`` or more).
Probing table ``j`` with every value within ``t_j`` flips of the query's chunk therefore finds
every match: the search is exact for any radius. The thresholds are balanced (r = 31 gives
six tables probed with up to 2 flips and seven with 1; r = 0 probes one table exactly), and
when probing would cost more than a linear scan (from r ~ 30 on shards of 100K rows, r ~ 50
at 10M) the shard is simply scanned. Both paths are compiled, and the planner never changes
results, only speed.

Why it is fast: the pigeonring filter
-------------------------------------
Most probed entries are not matches, and checking one means a random 32-byte read from a
320 MB array: ~100 ns of DRAM latency. The pigeonring principle (Qin et al., VLDB 2018) is
pigeonhole applied to a *ring* of chunks: with ``e_j = d_j - (t_j + 1)`` summing to < 0, some
start ``i`` has every cyclic window sum < 0 (the cycle lemma), so a match is reachable from a
table ``i`` where ``d_i <= t_i`` *and* ``d_i + d_{i+1} <= t_i + t_{i+1} + 1``. Each table
entry stores, beside the row number, 8 bits of the *next* chunk, so most candidates are
rejected while scanning the bucket, with no random read. At 10M rows and r = 31 this cuts
the random reads five-fold (24K entries scanned, 4.6K hashes read per query). The rest is
memory-level parallelism: bucket bounds, bucket contents and candidate hashes are each
prefetched several steps ahead (a software pipeline), which measured 2-3x faster than
waiting for one DRAM read at a time. A match can pass in several tables; it is reported
only from the first table in which it passes (recomputed from the hash, not remembered),
so there is no per-search set of seen rows.

Layout (per immutable *shard*, at most 2**24 rows)
-------------------------------------------------
* ``words``   (n, 4) uint64 -- the hashes, one 32-byte row per hash: a candidate is one read.
* ``ids``     (n,) int64, sorted -- rows are in id order, so id lookups are ``searchsorted``
  and need no separate id map.
* ``entries`` (T, n) uint32 -- per table, row numbers grouped by bucket (CSR): low 24 bits
  row, high 8 bits the filter. 24-bit rows are why shards hold at most 2**24 rows.
* ``offsets`` (T, 2**b + 1) uint32 -- bucket boundaries; ``b`` is the widest that keeps
  them within 3.5 bytes per hash (15-30 rows per bucket).
* ``alive``   bit per row -- tombstones, replaced copy-on-write so searches never see a
  half-applied removal.

Memory per hash: 32 (hash) + 8 (id) + 13 x 4 (entries) + offsets (<= 3.5) + 1/8 (tombstone
bit) = 92-95.6 bytes, whatever the ids look like. Measured with :attr:`nbytes`:

===========  ==========================  ==============================================
hashes       resident (bulk-loaded)      layout
===========  ==========================  ==============================================
1M           96 MB (95.6 B/hash)         one shard, b = 16
10M          949 MB (94.9 B/hash)        one shard, b = 19
100M         9.4 GB (93.8 B/hash)        six shards of 16.7M rows, b = 19 (computed)
===========  ==========================  ==============================================

Plus the delta: 41 bytes per row and ~100 per id-map entry, at most 65,536 rows by
default (~9 MB). A build needs about the shard's size again in temporaries, and with
``load(mmap=True)`` the resident share is whatever the page cache holds, shared.

Incremental updates, and the merge policy
-----------------------------------------
* Adds go to a small unsorted *delta* (default 65,536 rows) that is searched by a compiled
  linear scan, so an add is visible to the very next search without any rebuild.
* When the delta fills, the adding thread freezes it into a small shard (~15 ms at the
  default size) and returns. Merging is left to a *compactor*, a daemon thread of the
  index started at the first merge due: while a shard holds no more than twice as many
  live rows as the next newer one, the two are merged (tiered, as in an LSM tree), so each
  hash is rewritten O(log n) times in total and there are O(log n) shards. A bulk ``add``
  of at least a delta's worth builds its own shards before taking the write lock.
* A merge reads its input shards and builds the merged one *outside* the write lock (~0.5 s
  per million rows), so writers and searches go on meanwhile; then, under the lock,
  it swaps the result in for the inputs. Rows removed or replaced in the inputs while it
  ran are tombstoned in the merged shard at the swap, so they stay dead. Searches read the
  inputs until the swap and the merged shard after it: exact at every moment.
* Why a thread of the index rather than a maintenance call left to the serving process:
  every index needs its merges (the bank index, the registry's, a CLI import, a
  benchmark), and one that nobody maintains would quietly pile up shards and slow down.
  The thread sleeps on an event between rounds and holds the index weakly (an index
  dropped without :meth:`MultiIndexHammingIndex.close` ends it);
  :meth:`MultiIndexHammingIndex.maintain` runs what is due in the caller's thread (after
  the compactor's round), for tests and tools that want a settled layout.
  ``background=False`` runs merges in the writing thread before ``add`` returns (still
  outside the write lock).
* Backpressure: a writer that finds more than ``STALL_SHARDS`` shards (the compactor has
  fallen behind, e.g. a bulk load outpacing it) runs the due merges itself. Each extra
  shard costs ~0.3-0.4 ms per 8-query batch at r = 31 (measured: 10M bulk-loaded, then
  200K added 1,000 at a time: 1.75 ms instead of 1.33 ms);
  :meth:`MultiIndexHammingIndex.compact` folds them back into one, synchronously.
* Removing, or replacing, an id clears its tombstone bit. A shard whose rows are more than a
  quarter dead is rebuilt by the compactor the same way as a merge.

Persistence
-----------
:meth:`MultiIndexHammingIndex.save` writes a directory of ``.npy`` files plus a JSON manifest
(into a sibling temporary directory, renamed into place). :meth:`MultiIndexHammingIndex.load`
with ``mmap=True`` maps the large arrays copy-on-write, so several worker processes serving
the same bank share one copy of the pages; the tombstone bits and the small delta are read
into memory. A merge or rebuild of a mapped shard reads it and writes a new shard in the
process's own memory (the files are never written). Mapped files use 4 KiB pages rather
than the transparent huge pages numpy requests for large in-memory arrays, so random reads
pay more TLB misses (measured in ``bench/matching.py``).

Thread safety: one writer at a time (mutations hold an ``RLock``, for microseconds unless
they freeze the delta); one merge at a time (a separate lock, held across its build, and
the write lock only to pick its inputs and to swap). Searches read an immutable snapshot,
taken under a third short lock, and run in parallel with each other, with a writer and
with a merge (the kernels release the GIL). :meth:`MultiIndexHammingIndex.save` writes the
snapshot of one moment, taken under the write lock, while writes and merges go on.

Why compiled code (numba): the hot loops walk buckets, test a filter byte and follow
data-dependent row numbers. In numpy each bucket would be a separate array operation of ~20
elements -- microseconds of interpreter and allocation overhead per bucket, thousands of
buckets per query -- and the two-pass, prefetching verification cannot be expressed at all.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import math
import os
import shutil
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from takedown.matching.hamming import (
    PDQ_BITS,
    PDQ_BYTES,
    SearchResult,
    _check_ids,
    _check_radius,
    _last_occurrences,
    _to_words,
)

TABLES = 13
ROW_BITS = 24  # at most, in a table entry; the other 8+ bits hold the filter
MAX_SHARD_ROWS = 1 << ROW_BITS
MIN_CHUNK_BITS = 8
MAX_CHUNK_BITS = PDQ_BITS // TABLES  # 19: 13 chunks of 19 bits cover 247 of the 256 bits
DEFAULT_DELTA_ROWS = 65_536
# Merge the newest shard into the previous one while the previous holds at most this many
# times its live rows: the classic tiered policy, O(log n) shards and rewrites per hash.
MERGE_RATIO = 2
# Rebuild a shard once more than this share of its rows are tombstones (dead rows still
# cost table space and verification reads); waiting for a fixed share amortizes the rebuild.
COMPACT_DEAD_SHARE = 0.25
# Backpressure: a writer that finds more shards than this (the background compactor has
# fallen far behind, e.g. during a bulk load) runs the due merges itself before returning.
# Tiering keeps ~log2(n / delta_rows) + 6 shards at 100M rows, far below this.
STALL_SHARDS = 32
# Software-pipeline distances (in probes / candidates) of the prefetches; measured best.
_OFFSETS_AHEAD = 8
_BUCKETS_AHEAD = 8
_VERIFY_AHEAD = 20
# Probing more flips than this per chunk is never cheaper than scanning the shard.
MAX_FLIPS = 6

_STRATEGIES = ("auto", "probe", "scan")

FORMAT = "takedown-mih"
FORMAT_VERSION = 1

_WORDS = 4

log = logging.getLogger(__name__)

# Planner cost model, in nanoseconds, fitted to measurements on the development machine
# (1e5-1e7 rows, radii 16-56). Only the choice between probing and scanning depends on
# it, never the results; near the crossover the two cost about the same anyway.
_PROBE_NS = 18.0  # one bucket lookup (offsets, then the first entries: two cache misses)
_ENTRY_NS = 1.5  # one entry scanned and filtered
_VERIFY_CACHED_NS = 6.0  # one 32-byte read and popcount when the hashes fit in cache...
_VERIFY_DRAM_NS = 20.0  # ...and from DRAM, prefetched, once they are 256 MB or more
_SCAN_ROW_NS = 0.5  # one row streamed by the linear scan
_SCAN_PAIR_NS = 0.3  # one (row, query) comparison in the linear scan


# --------------------------------------------------------------------------- compiled


def _popcount_intrinsic(typingctx, value):
    """``llvm.ctpop.i64``: one POPCNT instruction (numba has no popcount of its own)."""
    width = int(getattr(value, "bitwidth", 0))
    if not 0 < width <= 64:
        return None

    def codegen(context, builder, signature, args):
        word = ir.IntType(64)
        arg = args[0] if width == 64 else builder.zext(args[0], word)
        ctpop = builder.module.declare_intrinsic("llvm.ctpop", [word])
        return builder.call(ctpop, [arg])

    return types.int64(value), codegen


# Typed as Any: numba's stubs describe the typing function's signature, not the call's.
_popcount: Any = intrinsic(_popcount_intrinsic)


def _prefetch_intrinsic(typingctx, array, row, column):
    """``llvm.prefetch`` of ``array[row, column]``: start a DRAM read needed a bit later."""

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        array_value = context.make_array(array_type)(context, builder, args[0])
        indices = [context.cast(builder, args[k], signature.args[k], types.intp) for k in (1, 2)]
        pointer = cgutils.get_item_pointer(
            context, builder, array_type, array_value, indices, wraparound=False
        )
        byte_pointer = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        function_type = ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32])
        prefetch = cgutils.get_or_insert_function(
            builder.module, function_type, "llvm.prefetch.p0i8"
        )
        # read access, maximal temporal locality, data cache
        flags = [ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)]
        builder.call(prefetch, [builder.bitcast(pointer, byte_pointer), *flags])
        return context.get_dummy_value()

    return types.void(array, row, column), codegen


_prefetch: Any = intrinsic(_prefetch_intrinsic)


@njit(cache=True, nogil=True)
def _field(words, row, start, width):
    """Bits ``start .. start+width`` (< 64 wide) of row ``row``; bit p is in word p // 64."""
    word = start >> 6
    shift = start & 63
    value = words[row, word] >> np.uint64(shift)
    if shift + width > 64:
        value |= words[row, word + 1] << np.uint64(64 - shift)
    return np.int64(value & ((np.uint64(1) << np.uint64(width)) - np.uint64(1)))


@njit(cache=True, nogil=True)
def _distance(words, row, queries, query):
    return (
        _popcount(words[row, 0] ^ queries[query, 0])
        + _popcount(words[row, 1] ^ queries[query, 1])
        + _popcount(words[row, 2] ^ queries[query, 2])
        + _popcount(words[row, 3] ^ queries[query, 3])
    )


@njit(cache=True, nogil=True)
def _is_alive(alive, row):
    return ((alive[row >> 3] >> (row & 7)) & 1) == 1


@njit(cache=True, nogil=True)
def _grown(array, needed):
    """``array`` copied into one at least twice as large and holding ``needed`` items."""
    bigger = np.empty(max(needed, 2 * array.shape[0]), array.dtype)
    bigger[: array.shape[0]] = array
    return bigger


@njit(cache=True, nogil=True)
def _build_tables(words, bits, row_bits, filter_bits, offsets, entries):
    """Counting sort of the rows by each chunk: CSR offsets and (row | filter << row_bits).

    ``offsets`` (zeroed) and ``entries`` are allocated by numpy, which asks the kernel for
    transparent huge pages on large arrays (numba's allocator does not): with 4 KiB pages
    every random probe of a 500 MB table also missed the TLB, doubling search latency.

    Scattering 10M rows straight into 2**19 buckets misses the cache on nearly every
    write, so each table is sorted in two stable passes instead: first by the chunk's top
    8 bits into 256 partitions (256 sequential write streams), then each partition -- a
    few hundred KB -- into its buckets. Rows stay ascending inside a bucket.
    """
    tables, rows = entries.shape
    buckets = 1 << bits
    low_bits = max(bits - 8, 0)
    partitions = buckets >> low_bits
    keys = np.empty(rows, np.int64)
    staged_keys = np.empty(rows, np.int64)
    staged_entries = np.empty(rows, np.uint32)
    cursor = np.empty(buckets, np.int64)
    for table in range(tables):
        start = table * bits
        filter_start = ((table + 1) % tables) * bits
        for row in range(rows):
            keys[row] = _field(words, row, start, bits)
            offsets[table, keys[row] + 1] += 1
        for value in range(buckets):
            offsets[table, value + 1] += offsets[table, value]
        for partition in range(partitions):
            cursor[partition] = offsets[table, partition << low_bits]
        for row in range(rows):
            partition = keys[row] >> low_bits
            slot = cursor[partition]
            cursor[partition] = slot + 1
            staged_keys[slot] = keys[row]
            tag = _field(words, row, filter_start, filter_bits) << row_bits
            staged_entries[slot] = np.uint32(row | tag)
        for value in range(buckets):
            cursor[value] = offsets[table, value]
        for slot in range(rows):
            value = staged_keys[slot]
            entries[table, cursor[value]] = staged_entries[slot]
            cursor[value] += 1


@njit(cache=True, nogil=True)
def _first_table(
    words, row, table, query_chunks, query_filters, thresholds, limits, bits, filter_bits
):
    """Whether ``table`` is the first table in which this row passes probe and filter.

    Every table that passes would report the row; only the first one does, so each match
    is reported once without remembering which rows were seen.
    """
    tables = thresholds.shape[0]
    for earlier in range(table):
        flips = thresholds[earlier]
        if flips < 0:
            continue
        chunk_distance = _popcount(_field(words, row, earlier * bits, bits) ^ query_chunks[earlier])
        if chunk_distance > flips:
            continue
        filter_start = ((earlier + 1) % tables) * bits
        filter_distance = _popcount(
            _field(words, row, filter_start, filter_bits) ^ query_filters[earlier]
        )
        if chunk_distance + filter_distance <= limits[earlier]:
            return False
    return True


@njit(cache=True, nogil=True)
def _list_probes(
    query_chunks, limits, masks, weights, counts, probe_table, probe_value, probe_budget
):
    """Every bucket to visit for one query, with the filter budget of its entries."""
    probes = 0
    for table in range(query_chunks.shape[0]):
        for mask in range(counts[table]):
            probe_table[probes] = table
            probe_value[probes] = query_chunks[table] ^ masks[mask]
            probe_budget[probes] = limits[table] - weights[mask]
            probes += 1
    return probes


@njit(cache=True, nogil=True)
def _gather(
    entries,
    offsets,
    probes,
    probe_table,
    probe_value,
    probe_budget,
    bounds,
    query_filters,
    row_bits,
    candidates,
):
    """Pass 1: the entries of every probed bucket whose filter bits pass, as row | table.

    A software pipeline: bucket bounds are prefetched ``_OFFSETS_AHEAD`` probes ahead and
    bucket contents ``_BUCKETS_AHEAD`` probes ahead, so ~10 random DRAM reads overlap
    instead of the loop waiting for each bucket in turn.
    """
    row_mask = np.uint32((1 << row_bits) - 1)
    shift = np.uint32(row_bits)
    count = 0
    for step in range(probes + _OFFSETS_AHEAD + _BUCKETS_AHEAD):
        if step < probes:
            _prefetch(offsets, probe_table[step], probe_value[step])
        located = step - _OFFSETS_AHEAD
        if 0 <= located < probes:
            table = probe_table[located]
            low = np.int64(offsets[table, probe_value[located]])
            high = np.int64(offsets[table, probe_value[located] + 1])
            bounds[located, 0] = low
            bounds[located, 1] = high
            if high > low:
                _prefetch(entries, table, low)
                _prefetch(entries, table, high - 1)
        probe = located - _BUCKETS_AHEAD
        if 0 <= probe < probes:
            table = probe_table[probe]
            low, high = bounds[probe, 0], bounds[probe, 1]
            if count + high - low > candidates.shape[0]:
                candidates = _grown(candidates, count + high - low)
            budget = probe_budget[probe]
            query_filter = np.uint32(query_filters[table])
            tag = np.uint32(table << row_bits)
            for slot in range(low, high):
                entry = entries[table, slot]
                candidates[count] = (entry & row_mask) | tag
                count += _popcount((entry >> shift) ^ query_filter) <= budget
    return candidates, count


@njit(cache=True, nogil=True)
def _mih_search(
    words,
    entries,
    offsets,
    alive,
    queries,
    radius,
    bits,
    row_bits,
    filter_bits,
    thresholds,
    limits,
    masks,
    weights,
    counts,
):
    """All live (query, row, distance) within ``radius``: probe + filter, then verify.

    Pass 1 (:func:`_gather`) keeps the bucket entries whose filter byte fits the pigeonring
    window; pass 2 reads the surviving rows, prefetched ``_VERIFY_AHEAD`` candidates ahead.
    """
    tables = entries.shape[0]
    row_mask = np.uint32((1 << row_bits) - 1)
    total_probes = 0
    for table in range(tables):
        total_probes += counts[table]
    probe_table = np.empty(total_probes, np.int64)
    probe_value = np.empty(total_probes, np.int64)
    probe_budget = np.empty(total_probes, np.int64)
    bounds = np.empty((total_probes, 2), np.int64)
    query_chunks = np.empty(tables, np.int64)
    query_filters = np.empty(tables, np.int64)
    candidates = np.empty(4096, np.uint32)
    found = 0
    out_query = np.empty(256, np.int32)
    out_row = np.empty(256, np.int64)
    out_distance = np.empty(256, np.int16)
    for query in range(queries.shape[0]):
        for table in range(tables):
            query_chunks[table] = _field(queries, query, table * bits, bits)
            filter_start = ((table + 1) % tables) * bits
            query_filters[table] = _field(queries, query, filter_start, filter_bits)
        probes = _list_probes(
            query_chunks, limits, masks, weights, counts, probe_table, probe_value, probe_budget
        )
        candidates, count = _gather(
            entries,
            offsets,
            probes,
            probe_table,
            probe_value,
            probe_budget,
            bounds,
            query_filters,
            row_bits,
            candidates,
        )
        for slot in range(count):
            if slot + _VERIFY_AHEAD < count:
                _prefetch(words, candidates[slot + _VERIFY_AHEAD] & row_mask, 0)
            candidate = candidates[slot]
            row = np.int64(candidate & row_mask)
            distance = _distance(words, row, queries, query)
            if distance > radius or not _is_alive(alive, row):
                continue
            source = np.int64(candidate >> np.uint32(row_bits))
            if not _first_table(
                words,
                row,
                source,
                query_chunks,
                query_filters,
                thresholds,
                limits,
                bits,
                filter_bits,
            ):
                continue
            if found == out_query.shape[0]:
                out_query = _grown(out_query, found + 1)
                out_row = _grown(out_row, found + 1)
                out_distance = _grown(out_distance, found + 1)
            out_query[found] = query
            out_row[found] = row
            out_distance[found] = distance
            found += 1
    return out_query[:found], out_row[:found], out_distance[:found]


@njit(cache=True, nogil=True)
def _scan_search(words, size, alive, queries, radius):
    """All live (query, row, distance) within ``radius`` among the first ``size`` rows.

    The delta segment, and shards at radii where probing would cost more than this. Each
    row is read once for all queries; the queries are held word-major so the per-query
    loop is a straight run of XOR/POPCNT (~0.4 ns per row and query).
    """
    query_count = queries.shape[0]
    by_word = np.empty((_WORDS, query_count), np.uint64)
    for query in range(query_count):
        for word in range(_WORDS):
            by_word[word, query] = queries[query, word]
    distances = np.empty(query_count, np.int64)
    found = 0
    out_query = np.empty(256, np.int32)
    out_row = np.empty(256, np.int64)
    out_distance = np.empty(256, np.int16)
    for row in range(size):
        w0, w1, w2, w3 = words[row, 0], words[row, 1], words[row, 2], words[row, 3]
        nearest = PDQ_BITS + 1
        for query in range(query_count):
            distance = (
                _popcount(w0 ^ by_word[0, query])
                + _popcount(w1 ^ by_word[1, query])
                + _popcount(w2 ^ by_word[2, query])
                + _popcount(w3 ^ by_word[3, query])
            )
            distances[query] = distance
            nearest = min(nearest, distance)
        if nearest > radius or not _is_alive(alive, row):
            continue
        for query in range(query_count):
            if distances[query] > radius:
                continue
            if found == out_query.shape[0]:
                out_query = _grown(out_query, found + 1)
                out_row = _grown(out_row, found + 1)
                out_distance = _grown(out_distance, found + 1)
            out_query[found] = query
            out_row[found] = row
            out_distance[found] = distances[query]
            found += 1
    return out_query[:found], out_row[:found], out_distance[:found]


# --------------------------------------------------------------------------- planning


def chunk_bits(rows: int) -> int:
    """The widest chunks whose bucket offsets cost at most 3.5 bytes per row.

    Offsets take ``T * 4 * 2**b`` bytes, so ``2**b <= 3.5 * rows / (4 * T)``: about 15-30
    rows per bucket, within 8..19 bits (19 from about 7.8M rows on).
    """
    budget = rows * 7 // (8 * TABLES)
    return min(MAX_CHUNK_BITS, max(MIN_CHUNK_BITS, budget.bit_length() - 1))


@dataclass(frozen=True, eq=False)
class _Plan:
    """Arguments of :func:`_mih_search` for one (shard shape, radius)."""

    thresholds: np.ndarray  # int64 (T,): flips probed per table, -1 = table not probed
    limits: np.ndarray  # int64 (T,): t_j + t_{j+1} + 1, the pigeonring window bound
    masks: np.ndarray  # int64 (M,): every flip mask up to the largest threshold, by weight
    weights: np.ndarray  # int64 (M,): popcount of each mask
    mask_counts: np.ndarray  # int64 (T,): masks with weight <= thresholds[j]


def balanced_thresholds(radius: int, tables: int = TABLES) -> list[int]:
    """Per-table flip thresholds with ``sum(t + 1) == radius + 1``, as equal as possible.

    Equal thresholds minimize the probes (their number grows fast with t); the tables
    that get one more flip are spread around the ring so the filter windows stay tight.
    """
    base, extra = divmod(radius + 1, tables)
    thresholds = [base - 1] * tables
    for k in range(extra):
        thresholds[k * tables // extra] += 1
    return thresholds


@functools.lru_cache(maxsize=64)
def _flip_masks(bits: int, flips: int) -> tuple[np.ndarray, np.ndarray]:
    """Every ``bits``-bit mask with at most ``flips`` bits set, sorted by popcount."""
    masks = [0]
    weights = [0]
    for weight in range(1, flips + 1):
        for positions in itertools.combinations(range(bits), weight):
            masks.append(sum(1 << p for p in positions))
            weights.append(weight)
    return np.array(masks, dtype=np.int64), np.array(weights, dtype=np.int64)


def row_bits_for(rows: int) -> int:
    """Bits of a table entry that hold the row number."""
    return max(1, (rows - 1).bit_length())


def filter_bits_for(rows: int, bits: int) -> int:
    """Bits of a table entry left for the filter: 8 at 10M rows, 12 at 1M, up to a chunk."""
    return min(32 - row_bits_for(rows), bits)


def _filter_pass_share(budget: int, width: int) -> float:
    """Share of random entries whose ``width`` filter bits are within ``budget`` of a query."""
    if budget < 0:
        return 0.0
    return sum(math.comb(width, k) for k in range(min(budget, width) + 1)) / 2**width


def _probe_cost_ns(rows: int, bits: int, thresholds: list[int], queries: int) -> float:
    per_bucket = rows / (1 << bits)
    width = filter_bits_for(rows, bits)
    in_dram = min(1.0, rows * _WORDS * 8 / 2**28)
    verify_ns = _VERIFY_CACHED_NS + (_VERIFY_DRAM_NS - _VERIFY_CACHED_NS) * in_dram
    total = 0.0
    for table, flips in enumerate(thresholds):
        limit = flips + thresholds[(table + 1) % len(thresholds)] + 1
        for weight in range(flips + 1):
            probes = math.comb(bits, weight)
            verify = _filter_pass_share(limit - weight, width) * verify_ns
            total += probes * (_PROBE_NS + per_bucket * (_ENTRY_NS + verify))
    return total * queries


@functools.lru_cache(maxsize=512)
def _plan(bits: int, rows: int, radius: int, queries: int, strategy: str) -> _Plan | None:
    """How to search a shard: the probe plan, or None when a linear scan is cheaper.

    ``strategy`` "probe" probes whenever at most ``MAX_FLIPS`` flips per chunk suffice and
    "scan" always scans; both exist so tests and benchmarks can pin a path.
    """
    thresholds = balanced_thresholds(radius)
    most = max(thresholds)
    if strategy == "scan" or most > MAX_FLIPS or most >= bits:
        return None
    scan_ns = rows * (_SCAN_ROW_NS + queries * _SCAN_PAIR_NS)
    if strategy == "auto" and _probe_cost_ns(rows, bits, thresholds, queries) >= scan_ns:
        return None
    masks, weights = _flip_masks(bits, most)
    counts = [int(np.searchsorted(weights, t, side="right")) if t >= 0 else 0 for t in thresholds]
    limits = [t + thresholds[(j + 1) % TABLES] + 1 for j, t in enumerate(thresholds)]
    return _Plan(
        thresholds=np.array(thresholds, dtype=np.int64),
        limits=np.array(limits, dtype=np.int64),
        masks=masks,
        weights=weights,
        mask_counts=np.array(counts, dtype=np.int64),
    )


# --------------------------------------------------------------------------- segments


def _all_alive(rows: int) -> np.ndarray:
    return np.full((rows + 7) // 8, 0xFF, dtype=np.uint8)


def _alive_mask(alive: np.ndarray, rows: int) -> np.ndarray:
    """Packed tombstone bits -> bool per row."""
    return np.unpackbits(alive, count=rows, bitorder="little").astype(bool)


def _cleared(alive: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """A copy of ``alive`` with ``rows`` marked dead (the original is left to snapshots)."""
    result = alive.copy()
    bits = np.left_shift(1, rows & 7).astype(np.uint8)
    np.bitwise_and.at(result, rows >> 3, ~bits)
    return result


def _rows_alive(alive: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return ((alive[rows >> 3] >> (rows & 7).astype(np.uint8)) & 1).astype(bool)


@dataclass(frozen=True, eq=False)
class _Shard:
    """An immutable, id-sorted block of rows with its 13 tables; see the module docstring."""

    ids: np.ndarray  # int64 (n,), ascending
    words: np.ndarray  # uint64 (n, 4)
    entries: np.ndarray  # uint32 (T, n)
    offsets: np.ndarray  # uint32 (T, 2**bits + 1)
    alive: np.ndarray  # uint8 (ceil(n / 8),), bit set = live
    bits: int
    dead: int

    @property
    def rows(self) -> int:
        return int(self.ids.shape[0])

    @property
    def live(self) -> int:
        return self.rows - self.dead

    @property
    def nbytes(self) -> int:
        arrays = (self.ids, self.words, self.entries, self.offsets, self.alive)
        return sum(int(a.nbytes) for a in arrays)

    def live_rows(self) -> np.ndarray:
        return np.flatnonzero(_alive_mask(self.alive, self.rows))

    def find_live(self, ids: np.ndarray) -> np.ndarray:
        """Rows holding a live copy of any of ``ids`` (ids are unique among live rows)."""
        if self.rows == 0 or ids.shape[0] == 0:
            return np.empty(0, dtype=np.int64)
        slots = np.minimum(np.searchsorted(self.ids, ids), self.rows - 1)
        rows = slots[self.ids[slots] == ids].astype(np.int64)
        return rows[_rows_alive(self.alive, rows)]

    def without(self, rows: np.ndarray) -> _Shard:
        return replace(self, alive=_cleared(self.alive, rows), dead=self.dead + rows.shape[0])

    def search(self, queries: np.ndarray, radius: int, strategy: str) -> tuple[np.ndarray, ...]:
        plan = _plan(self.bits, self.rows, radius, queries.shape[0], strategy)
        if plan is None:
            found = _scan_search(self.words, self.rows, self.alive, queries, radius)
        else:
            found = _mih_search(
                self.words,
                self.entries,
                self.offsets,
                self.alive,
                queries,
                radius,
                self.bits,
                row_bits_for(self.rows),
                filter_bits_for(self.rows, self.bits),
                plan.thresholds,
                plan.limits,
                plan.masks,
                plan.weights,
                plan.mask_counts,
            )
        query_index, rows, distances = found
        return query_index, self.ids[rows], distances


def _build_shard(ids: np.ndarray, words: np.ndarray) -> _Shard:
    """Sort rows by id and build the tables (compiled; ~0.3 s per million rows)."""
    if not _ascending(ids):
        order = np.argsort(ids, kind="stable")
        ids, words = ids[order], words[order]
    sorted_ids = np.ascontiguousarray(ids, dtype=np.int64)
    sorted_words = np.ascontiguousarray(words, dtype=np.uint64)
    rows = sorted_ids.shape[0]
    bits = chunk_bits(rows)
    offsets = np.zeros((TABLES, (1 << bits) + 1), dtype=np.uint32)
    entries = np.empty((TABLES, rows), dtype=np.uint32)
    row_bits, filter_bits = row_bits_for(rows), filter_bits_for(rows, bits)
    _build_tables(sorted_words, bits, row_bits, filter_bits, offsets, entries)
    return _Shard(sorted_ids, sorted_words, entries, offsets, _all_alive(rows), bits, 0)


def _ascending(ids: np.ndarray) -> bool:
    """Strictly increasing, as database ids usually arrive: no sort or dedupe needed."""
    return bool(np.all(ids[1:] > ids[:-1]))


def _build_shards(ids: np.ndarray, words: np.ndarray) -> list[_Shard]:
    """Shards of at most 2**24 rows, as equal in size as possible."""
    total = ids.shape[0]
    if total == 0:
        return []
    parts = -(-total // MAX_SHARD_ROWS)
    bounds = np.linspace(0, total, parts + 1).astype(np.int64)
    order = np.argsort(ids, kind="stable") if parts > 1 else np.arange(total)
    return [
        _build_shard(ids[order[a:b]], words[order[a:b]])
        for a, b in itertools.pairwise(bounds.tolist())
    ]


class _Delta:
    """The append-only, unsorted segment that makes adds visible at once.

    Owned by the writer. Rows are written once, beyond the size any snapshot has seen;
    tombstones are cleared in a copy of the bit array, so snapshots stay consistent.
    """

    def __init__(self, capacity: int = 1024) -> None:
        self.words = np.empty((capacity, _WORDS), dtype=np.uint64)
        self.ids = np.empty(capacity, dtype=np.int64)
        self.alive = np.zeros((capacity + 7) // 8, dtype=np.uint8)
        self.size = 0
        self.dead = 0
        self.rows_by_id: dict[int, int] = {}

    @property
    def nbytes(self) -> int:
        # ~100 bytes per dict entry (key, value and table slot) besides the arrays.
        arrays = self.words.nbytes + self.ids.nbytes + self.alive.nbytes
        return int(arrays) + 100 * len(self.rows_by_id)

    def append(self, ids: np.ndarray, words: np.ndarray) -> None:
        start, stop = self.size, self.size + ids.shape[0]
        self._reserve(stop)
        self.words[start:stop] = words
        self.ids[start:stop] = ids
        rows = np.arange(start, stop, dtype=np.int64)
        np.bitwise_or.at(self.alive, rows >> 3, np.left_shift(1, rows & 7).astype(np.uint8))
        self.rows_by_id.update(zip(ids.tolist(), rows.tolist(), strict=True))
        self.size = stop

    def kill(self, ids: np.ndarray) -> int:
        """Tombstone the live rows of ``ids``; returns how many there were."""
        if not self.rows_by_id:
            return 0
        candidates = ids
        if ids.shape[0] > len(self.rows_by_id):  # a bulk batch: look the delta's ids up in it
            known = np.fromiter(self.rows_by_id, dtype=np.int64, count=len(self.rows_by_id))
            candidates = known[np.isin(known, ids)]
        found = [self.rows_by_id.pop(i) for i in candidates.tolist() if i in self.rows_by_id]
        if found:
            self.alive = _cleared(self.alive, np.array(found, dtype=np.int64))
            self.dead += len(found)
        return len(found)

    def live(self) -> tuple[np.ndarray, np.ndarray]:
        rows = np.flatnonzero(_alive_mask(self.alive, self.size))
        return self.ids[rows], self.words[rows]

    def _reserve(self, rows: int) -> None:
        """Grow into new arrays by doubling (a snapshot keeps the old ones)."""
        capacity = self.ids.shape[0]
        if rows <= capacity:
            return
        while capacity < rows:
            capacity *= 2
        words = np.empty((capacity, _WORDS), dtype=np.uint64)
        ids = np.empty(capacity, dtype=np.int64)
        alive = np.zeros((capacity + 7) // 8, dtype=np.uint8)
        words[: self.size] = self.words[: self.size]
        ids[: self.size] = self.ids[: self.size]
        alive[: self.alive.shape[0]] = self.alive
        self.words, self.ids, self.alive = words, ids, alive


@dataclass(frozen=True, eq=False)
class _Snapshot:
    """Everything a search reads; never modified once published."""

    shards: tuple[_Shard, ...]
    delta_words: np.ndarray
    delta_ids: np.ndarray
    delta_alive: np.ndarray
    delta_size: int


def _due_job(shards: Sequence[_Shard]) -> tuple[int, int] | None:
    """The shards ``[start, stop)`` to rebuild as one next, or None when none are due.

    Tiered merging first, newest pair first (the smallest, cheapest work, as an LSM tree
    flushes): two neighbours merge when the older holds at most ``MERGE_RATIO`` times the
    live rows of the newer. Then any shard more than ``COMPACT_DEAD_SHARE`` dead is
    rebuilt alone (dropped when nothing in it is alive).
    """
    for k in range(len(shards) - 2, -1, -1):
        previous, last = shards[k], shards[k + 1]
        if previous.live <= MERGE_RATIO * last.live and previous.live + last.live <= MAX_SHARD_ROWS:
            return k, k + 2
    for k, shard in enumerate(shards):
        if shard.dead > COMPACT_DEAD_SHARE * shard.rows:
            return k, k + 1
    return None


def _killed_since(before: _Shard, after: _Shard) -> np.ndarray:
    """Rows live in ``before`` and dead in ``after``, a later copy of the same shard."""
    newly_dead = before.alive & ~after.alive
    return np.flatnonzero(np.unpackbits(newly_dead, count=before.rows, bitorder="little"))


class _Compactor:
    """The daemon thread that runs an index's due merges and rebuilds.

    It holds the index only weakly, between rounds too, so an index dropped without
    :meth:`MultiIndexHammingIndex.close` is freed and its thread ends.
    """

    def __init__(self, index: MultiIndexHammingIndex) -> None:
        self.wake = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=_compact_while_alive,
            args=(weakref.ref(index), self.wake, self.stop),
            name="takedown-mih-compactor",
            daemon=True,
        )
        weakref.finalize(index, _finish, self.wake, self.stop)
        self.thread.start()

    def close(self) -> None:
        _finish(self.wake, self.stop)
        if self.thread is not threading.current_thread():
            self.thread.join()


def _finish(wake: threading.Event, stop: threading.Event) -> None:
    stop.set()
    wake.set()


def _compact_while_alive(
    ref: weakref.ref[MultiIndexHammingIndex], wake: threading.Event, stop: threading.Event
) -> None:
    while True:
        wake.wait()
        wake.clear()
        index = ref()
        if index is None or stop.is_set():
            return
        try:
            index._maintain(stop)
        except Exception:  # a failed round must not end compaction for the process
            log.exception("index compaction failed; it is retried after the next write")
        del index


# --------------------------------------------------------------------------- index


class MultiIndexHammingIndex:
    """Exact PDQ radius search by multi-index hashing; see the module docstring.

    ``delta_rows`` is how many added rows are kept in the brute-force delta before they
    become a shard: larger means fewer merges but a slower delta scan (~0.2 ms per 8-query
    batch at the default 65,536). ``strategy`` pins how shards are searched -- "auto"
    (by the cost model), "probe" or "scan" -- for tests and benchmarks; results are the
    same whichever is used. ``background`` runs merges and rebuilds in a daemon thread
    of the index (started at the first one due); with False the thread that wrote runs
    them before returning, for a shard layout that depends only on the writes made.
    """

    def __init__(
        self,
        *,
        delta_rows: int = DEFAULT_DELTA_ROWS,
        strategy: str = "auto",
        background: bool = True,
    ) -> None:
        if delta_rows < 1:
            raise ValueError("delta_rows must be positive")
        if strategy not in _STRATEGIES:
            raise ValueError(f"strategy must be one of {_STRATEGIES}; got {strategy!r}")
        self._delta_rows = delta_rows
        self._strategy = strategy
        self._background = background
        # Lock order: compaction, then write, then snapshot. The compaction lock is held
        # by whoever runs merges (one at a time); the write lock by every mutation and by
        # the short moments a merge reads its inputs and swaps its result in.
        self._compaction_lock = threading.Lock()
        self._write_lock = threading.RLock()
        self._snapshot_lock = threading.Lock()
        self._compactor: _Compactor | None = None
        # Called by a merge between building its shard and swapping it in (tests pause
        # there to remove rows mid-merge).
        self._before_swap: Callable[[], None] | None = None
        self._shards: list[_Shard] = []
        self._delta = _Delta()
        self._live = 0
        self._snapshot = self._make_snapshot()

    # ----------------------------------------------------------------- introspection

    def __len__(self) -> int:
        return self._live

    @property
    def tombstones(self) -> int:
        """Dead rows still stored (removed or replaced), in shards and the delta."""
        with self._write_lock:
            return sum(s.dead for s in self._shards) + self._delta.dead

    @property
    def shard_rows(self) -> tuple[int, ...]:
        """Rows (live or dead) of each shard, oldest first."""
        return tuple(s.rows for s in self._current().shards)

    @property
    def delta_size(self) -> int:
        """Rows (live or dead) waiting in the brute-force delta."""
        return self._current().delta_size

    @property
    def nbytes(self) -> int:
        """Bytes held by the index's arrays (mapped files included), for memory budgets."""
        with self._write_lock:
            return sum(s.nbytes for s in self._shards) + self._delta.nbytes

    # ----------------------------------------------------------------- mutation

    def add(self, ids: np.ndarray, hashes: np.ndarray) -> None:
        words = _to_words(hashes, "hashes")
        id_array = _check_ids(ids, expected=words.shape[0])
        count = id_array.shape[0]
        if count == 0:
            return
        if not _ascending(id_array):
            keep = _last_occurrences(id_array)
            id_array, words = id_array[keep], words[keep]
            count = id_array.shape[0]
        if count >= self._delta_rows:
            # A bulk batch becomes shards of its own, built before taking the lock so that
            # other writers and merges go on meanwhile. It takes effect (replacing older
            # copies of its ids) when it is appended, so the build needs no reconciling.
            built = _build_shards(id_array, words)
            with self._write_lock:
                self._kill(id_array)
                self._shards.extend(built)
                self._live += count
                self._publish()
                background = self._schedule()
        else:
            with self._write_lock:
                self._kill(id_array)
                if self._delta.size + count >= self._delta_rows:
                    # Freeze the full delta into one small shard (at most twice the delta,
                    # ~15 ms at the default size); merging it is left to the compactor.
                    delta_ids, delta_words = self._delta.live()
                    self._delta = _Delta()
                    self._shards.extend(
                        _build_shards(
                            np.concatenate([delta_ids, id_array]),
                            np.concatenate([delta_words, words]),
                        )
                    )
                else:
                    self._delta.append(id_array, words)
                self._live += count
                self._publish()
                background = self._schedule()
        if not background:
            self.maintain()

    def remove(self, ids: np.ndarray) -> None:
        id_array = _check_ids(ids)
        if id_array.shape[0] == 0:
            return
        with self._write_lock:
            self._kill(np.unique(id_array))
            self._publish()
            background = self._schedule()
        if not background:
            self.maintain()

    def compact(self) -> None:
        """Rebuild everything, delta included, into as few shards as possible, no tombstones.

        Synchronous, under the write lock (other writers wait), after any merge running.
        """
        with self._compaction_lock, self._write_lock:
            ids, words = self._gather(self._shards)
            delta_ids, delta_words = self._delta.live()
            self._shards = _build_shards(
                np.concatenate([ids, delta_ids]), np.concatenate([words, delta_words])
            )
            self._delta = _Delta()
            self._publish()

    def maintain(self) -> int:
        """Run every merge and rebuild that is due, in this thread; returns how many ran.

        Waits for the background compactor's current round first, so on return nothing
        is due (unless other threads keep writing). Writes and searches go on meanwhile.
        """
        return self._maintain(None)

    def close(self) -> None:
        """Stop the background compactor, after the merge it is running; later writes run
        their merges themselves. Searching and writing stay possible. Idempotent."""
        with self._write_lock:
            self._background = False
            compactor, self._compactor = self._compactor, None
        if compactor is not None:
            compactor.close()

    def _maintain(self, stop: threading.Event | None) -> int:
        """Merges and rebuilds, each built outside the write lock and swapped in under it.

        While a shard is being built, writers may only append shards or tombstone rows of
        the shards being merged (tombstoning replaces a shard by a copy that shares its
        ``ids`` array); the swap carries those tombstones over, so a row removed or
        replaced mid-merge stays dead. Searches use the inputs until the swap.
        """
        done = 0
        with self._compaction_lock:
            while stop is None or not stop.is_set():
                with self._write_lock:
                    job = _due_job(self._shards)
                    if job is None:
                        break
                    start, stop_at = job
                    inputs = self._shards[start:stop_at]
                built = _build_shards(*self._gather(inputs))
                if self._before_swap is not None:
                    self._before_swap()
                with self._write_lock:
                    self._swap(start, inputs, built)
                done += 1
        return done

    def _swap(self, start: int, inputs: list[_Shard], built: list[_Shard]) -> None:
        """Replace ``inputs`` (now at ``start``) by ``built``, their rows killed since."""
        current = self._shards[start : start + len(inputs)]
        if len(current) != len(inputs) or any(
            now.ids is not then.ids for now, then in zip(current, inputs, strict=False)
        ):
            raise RuntimeError("the shards of a merge moved while it ran")  # a bug
        killed = [
            now.ids[_killed_since(then, now)]
            for now, then in zip(current, inputs, strict=True)
            if now.dead != then.dead
        ]
        if killed:
            ids = np.concatenate(killed)
            built = [
                shard.without(rows) if (rows := shard.find_live(ids)).shape[0] else shard
                for shard in built
            ]
        self._shards[start : start + len(inputs)] = built
        self._publish()

    def _schedule(self) -> bool:
        """Under the write lock, after a write: wake the compactor if anything is due.

        False when the writing thread must run the merges itself: compaction is not in
        the background, or the shards have piled up past ``STALL_SHARDS``.
        """
        if _due_job(self._shards) is None:
            return True
        if not self._background or len(self._shards) > STALL_SHARDS:
            return False
        self._wake_compactor()
        return True

    def _wake_compactor(self) -> None:
        if self._compactor is None:
            self._compactor = _Compactor(self)
        self._compactor.wake.set()

    def _kill(self, ids: np.ndarray) -> None:
        """Tombstone every live copy of ``ids`` (at most one each)."""
        killed = self._delta.kill(ids)
        for k, shard in enumerate(self._shards):
            rows = shard.find_live(ids)
            if rows.shape[0]:
                self._shards[k] = shard.without(rows)
                killed += rows.shape[0]
        self._live -= killed

    @staticmethod
    def _gather(shards: list[_Shard]) -> tuple[np.ndarray, np.ndarray]:
        """The live (ids, words) of ``shards``."""
        ids = [np.empty(0, dtype=np.int64)]
        words = [np.empty((0, _WORDS), dtype=np.uint64)]
        for shard in shards:
            rows = shard.live_rows()
            ids.append(shard.ids[rows])
            words.append(shard.words[rows])
        return np.concatenate(ids), np.concatenate(words)

    def _make_snapshot(self) -> _Snapshot:
        delta = self._delta
        return _Snapshot(tuple(self._shards), delta.words, delta.ids, delta.alive, delta.size)

    def _publish(self) -> None:
        snapshot = self._make_snapshot()
        with self._snapshot_lock:
            self._snapshot = snapshot

    def _current(self) -> _Snapshot:
        with self._snapshot_lock:
            return self._snapshot

    # ----------------------------------------------------------------- search

    def search(self, queries: np.ndarray, radius: int) -> SearchResult:
        radius = _check_radius(radius)
        query_words = _to_words(np.atleast_2d(queries), "queries")
        snapshot = self._current()
        if query_words.shape[0] == 0:
            return SearchResult.empty()
        parts = [shard.search(query_words, radius, self._strategy) for shard in snapshot.shards]
        if snapshot.delta_size:
            query_index, rows, distances = _scan_search(
                snapshot.delta_words,
                snapshot.delta_size,
                snapshot.delta_alive,
                query_words,
                radius,
            )
            parts.append((query_index, snapshot.delta_ids[rows], distances))
        parts = [part for part in parts if part[0].shape[0]]
        if not parts:
            return SearchResult.empty()
        query_index = np.concatenate([p[0] for p in parts])
        found_ids = np.concatenate([p[1] for p in parts])
        distances = np.concatenate([p[2] for p in parts])
        order = np.lexsort((found_ids, distances, query_index))
        return SearchResult(query_index[order], found_ids[order], distances[order])

    # ----------------------------------------------------------------- persistence

    def save(self, path: str | os.PathLike[str]) -> int:
        """Write the index to directory ``path`` (replaced if it exists); returns the live
        rows written: those of one moment, while writes and merges may go on."""
        target = Path(path)
        with self._write_lock:
            snapshot = self._make_snapshot()
            live = self._live
            delta_ids, delta_words = self._delta.live()
        staging = target.with_name(f"{target.name}.tmp-{os.getpid()}-{threading.get_ident()}")
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        manifest: dict[str, object] = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "tables": TABLES,
            "live": live,
            "shards": [],
        }
        shard_notes: list[dict[str, int]] = []
        for k, shard in enumerate(snapshot.shards):
            for name in _SHARD_ARRAYS:
                np.save(staging / f"shard-{k:04d}-{name}.npy", getattr(shard, name))
            shard_notes.append(
                {
                    "rows": shard.rows,
                    "bits": shard.bits,
                    "row_bits": row_bits_for(shard.rows),
                    "filter_bits": filter_bits_for(shard.rows, shard.bits),
                    "dead": shard.dead,
                }
            )
        manifest["shards"] = shard_notes
        np.save(staging / "delta-ids.npy", delta_ids)
        np.save(staging / "delta-words.npy", delta_words)
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
        return live

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        mmap: bool = True,
        delta_rows: int = DEFAULT_DELTA_ROWS,
        strategy: str = "auto",
        background: bool = True,
    ) -> MultiIndexHammingIndex:
        """Open an index written by :meth:`save`; ``mmap`` maps the large arrays.

        The mapping is copy-on-write and never written, so processes share the pages.
        Merges and rebuilds read mapped shards and write new, in-memory ones; if some are
        due in the saved layout, the background compactor starts on them at once (with
        ``background=False``, the first write runs them).
        """
        source = Path(path)
        manifest = json.loads((source / "manifest.json").read_text())
        if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
            raise ValueError(f"{source} is not a version-{FORMAT_VERSION} {FORMAT} index")
        if manifest.get("tables") != TABLES:
            raise ValueError(f"{source} has {manifest.get('tables')} tables, not {TABLES}")
        index = cls(delta_rows=delta_rows, strategy=strategy, background=background)
        for k, note in enumerate(manifest["shards"]):
            arrays = {
                name: _load_array(source / f"shard-{k:04d}-{name}.npy", mmap and name != "alive")
                for name in _SHARD_ARRAYS
            }
            shard = _Shard(bits=int(note["bits"]), dead=int(note["dead"]), **arrays)
            _check_shard(shard, note, source)
            index._shards.append(shard)
        delta_ids = np.load(source / "delta-ids.npy")
        delta_words = np.load(source / "delta-words.npy")
        if delta_ids.dtype != np.int64 or delta_words.shape != (delta_ids.shape[0], _WORDS):
            raise ValueError(f"{source}: the delta is {delta_ids.dtype} {delta_words.shape}")
        if delta_ids.shape[0]:
            index._delta.append(delta_ids, delta_words)
        index._live = sum(s.live for s in index._shards) + delta_ids.shape[0]
        if index._live != manifest.get("live"):
            raise ValueError(f"{source}: manifest says {manifest.get('live')} live rows")
        index._publish()
        if background and _due_job(index._shards) is not None:
            with index._write_lock:
                index._wake_compactor()
        return index


def compile_kernels() -> None:
    """Compile every kernel now, or load it from numba's cache (``__pycache__`` beside
    this file): ~0.5 s when cached, ~10 s on a fresh install or after this file changed.

    Why: numba compiles a kernel on its first call, and in a serving worker that is the
    first shard built or searched -- typically when a large import arrives, so on a fresh
    install every worker compiled at once and the import became searchable after 10 s
    instead of 2 (measured). A worker calls this before it serves (``Runtime.warm_up``).
    The calls below take the same paths, with the same argument types, as real use:
    a bulk add builds a shard, a small add goes to the delta, and a search probes the
    shard and scans the delta; a second index scans its shard.
    """
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 256, size=(300, PDQ_BYTES), dtype=np.uint8)
    ids = np.arange(1, 301, dtype=np.int64)
    for strategy in ("probe", "scan"):
        index = MultiIndexHammingIndex(delta_rows=256, strategy=strategy, background=False)
        index.add(ids[:256], hashes[:256])
        index.add(ids[256:], hashes[256:])
        index.search(hashes[:8], 31)


_SHARD_ARRAYS = ("ids", "words", "entries", "offsets", "alive")


def _load_array(path: Path, mmap: bool) -> np.ndarray:
    """A plain ndarray, mapped copy-on-write when ``mmap`` (same compiled type as in memory)."""
    return np.asarray(np.load(path, mmap_mode="c" if mmap else None))


def _check_shard(shard: _Shard, note: dict[str, int], source: Path) -> None:
    """Refuse files that do not fit together rather than crash inside compiled code.

    Shapes, dtypes, the entry layout and the bucket offsets are checked (cheap, and the
    offsets bound every read); the entries themselves are trusted, as reading them all
    would defeat mapping them lazily.
    """
    rows = int(note["rows"])
    expected = {
        "ids": ((rows,), np.int64),
        "words": ((rows, _WORDS), np.uint64),
        "entries": ((TABLES, rows), np.uint32),
        "offsets": ((TABLES, (1 << shard.bits) + 1), np.uint32),
        "alive": (((rows + 7) // 8,), np.uint8),
    }
    for name, (shape, dtype) in expected.items():
        array = getattr(shard, name)
        if array.shape != shape or array.dtype != dtype or not array.flags.c_contiguous:
            raise ValueError(f"{source}: {name} of a shard is {array.dtype} {array.shape}")
    if not MIN_CHUNK_BITS <= shard.bits <= MAX_CHUNK_BITS or rows > MAX_SHARD_ROWS:
        raise ValueError(f"{source}: a shard has {shard.bits}-bit chunks and {rows} rows")
    layout = (note.get("row_bits"), note.get("filter_bits"))
    if layout != (row_bits_for(rows), filter_bits_for(rows, shard.bits)):
        raise ValueError(f"{source}: a shard's table entries are laid out as {layout}")
    offsets = shard.offsets
    if np.any(offsets[:, 0] != 0) or np.any(offsets[:, -1] != rows):
        raise ValueError(f"{source}: a shard's bucket offsets do not span its rows")
    if np.any(offsets[:, 1:] < offsets[:, :-1]):
        raise ValueError(f"{source}: a shard's bucket offsets are not ascending")
