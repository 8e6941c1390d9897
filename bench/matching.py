"""Benchmark: exact PDQ radius search, our multi-index-hashing index against FAISS.

    .venv/bin/python bench/matching.py [--n 1000000] [--radius 31] [--batches 300]
                                       [--faiss-batches 50] [--recall-batches 20]
                                       [--skip-faiss] [--no-mmap] [--seed 0]

Data: ``n`` random 256-bit hashes, 1 % of which are clusters of near-duplicates (ten
members per centre, each at a uniform 0-40 bits from it), so real matches exist at and
around the radius. No real abuse material or real image hashes are used.

Queries: batches of 8, like the 8 dihedral variants of one image; each query is, with
even odds, a cluster member nudged by 0-20 bits (it matches) or a random hash (it does
not). Every index answers the same batches, one batch per call, on ONE thread
(``NUMBA_NUM_THREADS=1``, ``faiss.omp_set_num_threads(1)``).

Indexes:

* ``ours``: :class:`takedown.matching.MultiIndexHammingIndex`, radius r inclusive;
* ``ours_mmap``: the same index saved and re-opened with ``load(mmap=True)`` (pages in
  the OS page cache, 4 KiB pages instead of huge pages);
* ``faiss_multihash``: ``IndexBinaryMultiHash(256, 16, 16)`` with ``nflip = 1``, which is
  exact up to radius 31 by the same pigeonhole argument;
* ``faiss_flat``: ``IndexBinaryFlat(256)``, a linear scan.

FAISS's ``range_search`` keeps distances strictly below its radius, so it is asked for
r + 1. For each index: ``build_s``; ``bytes_per_hash`` (ours: the arrays it holds; FAISS:
its serialized size, a lower bound for the hash tables of the multi-hash index) and
``rss_bytes_per_hash`` (resident memory added by the build, rough); ``p50_ms`` /
``p99_ms`` per 8-query batch; ``recall`` and ``false_positives`` against
:class:`~takedown.matching.BruteForceHammingIndex` on the first ``--recall-batches``.
``ours`` also reports ``single_query_p50_ms`` and ``incremental``: 200,000 adds in batches
of 1,000 after the bulk load (add latency, with merges in the index's background thread,
then search latency with the extra shards and the delta). Prints JSON and writes
``bench/results/matching-<n>.json``.
"""

from __future__ import annotations

import os

# Before numba and faiss are imported: one thread everywhere, as the comparison requires.
os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import ctypes  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402

from takedown.matching import (  # noqa: E402
    BruteForceHammingIndex,
    HammingIndex,
    MultiIndexHammingIndex,
)

RESULTS = Path(__file__).parent / "results"
BATCH = 8
CLUSTER_SHARE = 0.01
CLUSTER_SIZE = 10
MAX_MEMBER_DISTANCE = 40
MAX_QUERY_NUDGE = 20

Pairs = set[tuple[int, int]]  # (query index within the batch, id)
Searcher = Callable[[np.ndarray], Pairs]


# --------------------------------------------------------------------------- data


def flip_bits(rows: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Copies of ``rows`` (uint8, (m, 32)) with exactly ``counts[i]`` distinct bits flipped."""
    out = rows.copy()
    step = 65_536
    for start in range(0, rows.shape[0], step):
        block = slice(start, start + step)
        order = rng.random((out[block].shape[0], 256), dtype=np.float32).argsort(axis=1)
        flip = order < counts[block, None]  # the first k of a random permutation of bits
        bits = np.unpackbits(out[block], axis=1) ^ flip.astype(np.uint8)
        out[block] = np.packbits(bits, axis=1)
    return out


def make_bank(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` hashes in random order, their ids, and the rows that are cluster members."""
    members = int(n * CLUSTER_SHARE) // CLUSTER_SIZE * CLUSTER_SIZE
    centres = rng.integers(0, 256, size=(members // CLUSTER_SIZE, 32), dtype=np.uint8)
    distances = rng.integers(0, MAX_MEMBER_DISTANCE + 1, size=members)
    clustered = flip_bits(np.repeat(centres, CLUSTER_SIZE, axis=0), distances, rng)
    hashes = np.concatenate(
        [rng.integers(0, 256, size=(n - members, 32), dtype=np.uint8), clustered]
    )
    order = rng.permutation(n)
    member_rows = np.flatnonzero(order >= n - members)
    ids = np.arange(1, n + 1, dtype=np.int64)  # bank entry ids, as the database issues them
    return ids, np.ascontiguousarray(hashes[order]), member_rows


def make_batches(
    hashes: np.ndarray, member_rows: np.ndarray, count: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Batches of 8: with even odds a cluster member nudged by 0-20 bits, or random."""
    batches = []
    for _ in range(count):
        batch = rng.integers(0, 256, size=(BATCH, 32), dtype=np.uint8)
        near = rng.random(BATCH) < 0.5
        anchors = rng.choice(member_rows, size=int(near.sum()))
        nudges = rng.integers(0, MAX_QUERY_NUDGE + 1, size=anchors.shape[0])
        batch[near] = flip_bits(hashes[anchors], nudges, rng)
        batches.append(batch)
    return batches


# --------------------------------------------------------------------------- measuring


def rss_bytes() -> int:
    """Resident memory, after handing freed heap memory back to the OS (glibc)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def timed_batches(search: Searcher, batches: list[np.ndarray]) -> tuple[float, float]:
    """p50 and p99 wall time per batch in ms, after two warm-up batches."""
    for batch in batches[:2]:
        search(batch)
    times = []
    for batch in batches:
        start = time.perf_counter()
        search(batch)
        times.append(time.perf_counter() - start)
    p50, p99 = np.percentile(np.array(times) * 1000, [50, 99])
    return round(float(p50), 4), round(float(p99), 4)


def recall(search: Searcher, batches: list[np.ndarray], truth: list[Pairs]) -> dict[str, Any]:
    expected = found = missed = extra = 0
    for batch, true_pairs in zip(batches, truth, strict=True):
        pairs = search(batch)
        expected += len(true_pairs)
        found += len(pairs & true_pairs)
        missed += len(true_pairs - pairs)
        extra += len(pairs - true_pairs)
    return {
        "recall": round(found / expected, 6) if expected else 1.0,
        "true_pairs": expected,
        "missed": missed,
        "false_positives": extra,
    }


def protocol_searcher(index: HammingIndex, radius: int) -> Searcher:
    def search(batch: np.ndarray) -> Pairs:
        result = index.search(batch, radius)
        return set(zip(result.query_index.tolist(), result.ids.tolist(), strict=True))

    return search


def faiss_searcher(index: Any, ids: np.ndarray, radius: int) -> Searcher:
    def search(batch: np.ndarray) -> Pairs:
        lims, _distances, positions = index.range_search(batch, radius + 1)  # strict '<'
        queries = np.repeat(np.arange(batch.shape[0]), np.diff(lims).astype(np.int64))
        return set(zip(queries.tolist(), ids[positions].tolist(), strict=True))

    return search


def measure(
    name: str,
    build: Callable[[], tuple[Any, Searcher, int]],
    batches: list[np.ndarray],
    recall_batches: list[np.ndarray],
    truth: list[Pairs],
    n: int,
) -> dict[str, Any]:
    """Build, then time and check one index; ``build`` returns (index, searcher, bytes)."""
    gc.collect()
    rss_before = rss_bytes()
    start = time.perf_counter()
    index, search, nbytes = build()
    build_s = time.perf_counter() - start
    rss_after = rss_bytes()
    p50, p99 = timed_batches(search, batches)
    result: dict[str, Any] = {
        "build_s": round(build_s, 2),
        "bytes_per_hash": round(nbytes / n, 2),
        "rss_bytes_per_hash": round((rss_after - rss_before) / n, 1),
        "p50_ms": p50,
        "p99_ms": p99,
        "batches_timed": len(batches),
    }
    result.update(recall(search, recall_batches, truth))
    print(f"{name}: {json.dumps(result)}", flush=True)
    del index, search
    gc.collect()
    return result


def measure_incremental(
    index: MultiIndexHammingIndex, batches: list[np.ndarray], radius: int, rng: np.random.Generator
) -> dict[str, Any]:
    """Adds trickling in after the bulk load: their latency, then search.

    Merges run in the index's background thread; ``settle_ms`` is how long the merges
    still due after the last add took, waited for before the searches are timed.
    """
    added, step = 200_000, 1_000
    first_id = 10**12
    times = []
    for start in range(0, added, step):
        new_ids = np.arange(first_id + start, first_id + start + step, dtype=np.int64)
        new_hashes = rng.integers(0, 256, size=(step, 32), dtype=np.uint8)
        began = time.perf_counter()
        index.add(new_ids, new_hashes)
        times.append(time.perf_counter() - began)
    began = time.perf_counter()
    index.maintain()
    settle = time.perf_counter() - began
    p50, p99 = timed_batches(protocol_searcher(index, radius), batches)
    return {
        "added": added,
        "add_batch": step,
        "add_p50_ms": round(float(np.median(times)) * 1000, 3),
        "add_max_ms": round(max(times) * 1000, 1),
        "settle_ms": round(settle * 1000, 1),
        "shards_after": list(index.shard_rows),
        "delta_after": index.delta_size,
        "p50_ms_after": p50,
        "p99_ms_after": p99,
    }


# --------------------------------------------------------------------------- indexes


def build_ours(ids: np.ndarray, hashes: np.ndarray, radius: int) -> Callable[[], Any]:
    def build() -> tuple[Any, Searcher, int]:
        index = MultiIndexHammingIndex()
        index.add(ids, hashes)
        return index, protocol_searcher(index, radius), index.nbytes

    return build


def build_ours_mmap(
    ids: np.ndarray, hashes: np.ndarray, radius: int, folder: Path
) -> Callable[[], Any]:
    """Times ``load`` only: the index is built and saved first, outside the timing."""
    source = MultiIndexHammingIndex()
    source.add(ids, hashes)
    source.save(folder / "bank")
    del source
    gc.collect()

    def build() -> tuple[Any, Searcher, int]:
        index = MultiIndexHammingIndex.load(folder / "bank", mmap=True)
        return index, protocol_searcher(index, radius), index.nbytes

    return build


def build_faiss(kind: str, ids: np.ndarray, hashes: np.ndarray, radius: int) -> Any:
    import faiss

    def build() -> tuple[Any, Searcher, int]:
        if kind == "multihash":
            index = faiss.IndexBinaryMultiHash(256, 16, 16)
            index.nflip = 1
        else:
            index = faiss.IndexBinaryFlat(256)
        index.add(hashes)
        size = int(faiss.serialize_index_binary(index).nbytes)
        return index, faiss_searcher(index, ids, radius), size

    return build


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--radius", type=int, default=31)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--faiss-batches", type=int, default=50)
    parser.add_argument("--recall-batches", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-faiss", action="store_true")
    parser.add_argument("--no-mmap", action="store_true")
    args = parser.parse_args()
    n, radius = args.n, args.radius
    rng = np.random.default_rng(args.seed)

    started = time.perf_counter()
    ids, hashes, member_rows = make_bank(n, rng)
    batches = make_batches(hashes, member_rows, args.batches, rng)
    recall_batches = batches[: args.recall_batches]
    print(f"data: {n} hashes in {time.perf_counter() - started:.1f} s", flush=True)

    # Compile (or load the numba cache) outside every timing.
    warm = MultiIndexHammingIndex()
    warm.add(np.arange(70_000), rng.integers(0, 256, size=(70_000, 32), dtype=np.uint8))
    warm.search(batches[0], radius)
    del warm

    oracle = BruteForceHammingIndex()
    oracle.add(ids, hashes)
    truth = [protocol_searcher(oracle, radius)(batch) for batch in recall_batches]
    del oracle
    gc.collect()

    indexes: dict[str, dict[str, Any]] = {}
    indexes["ours"] = measure(
        "ours", build_ours(ids, hashes, radius), batches, recall_batches, truth, n
    )
    ours = MultiIndexHammingIndex()
    ours.add(ids, hashes)
    single = [batch[:1] for batch in batches]
    indexes["ours"]["single_query_p50_ms"] = timed_batches(protocol_searcher(ours, radius), single)[
        0
    ]
    indexes["ours"]["shards"] = list(ours.shard_rows)
    indexes["ours"]["incremental"] = measure_incremental(ours, batches, radius, rng)
    del ours
    gc.collect()
    if not args.no_mmap:
        folder = Path(tempfile.mkdtemp(prefix="takedown-bench-"))
        try:
            indexes["ours_mmap"] = measure(
                "ours_mmap",
                build_ours_mmap(ids, hashes, radius, folder),
                batches,
                recall_batches,
                truth,
                n,
            )
        finally:
            shutil.rmtree(folder)
    if not args.skip_faiss:
        import faiss

        faiss.omp_set_num_threads(1)
        few = batches[: args.faiss_batches]
        for name, kind in (("faiss_multihash", "multihash"), ("faiss_flat", "flat")):
            build = build_faiss(kind, ids, hashes, radius)
            indexes[name] = measure(name, build, few, recall_batches, truth, n)

    report: dict[str, Any] = {
        "n": n,
        "radius": radius,
        "batch": BATCH,
        "threads": 1,
        "indexes": indexes,
    }
    ours_p50 = indexes["ours"]["p50_ms"]
    for name, key in (("faiss_multihash", "multihash"), ("faiss_flat", "flat")):
        if name in indexes:
            report[f"speedup_vs_faiss_{key}"] = round(indexes[name]["p50_ms"] / ours_p50, 1)
    report["environment"] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "faiss": None if args.skip_faiss else __import__("faiss").__version__,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"matching-{n}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
