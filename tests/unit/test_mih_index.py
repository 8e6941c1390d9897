"""The multi-index-hashing PDQ index against brute-force oracles.

The same behavioural checks as ``test_hamming_index.py`` (whose helpers and pure-Python
oracle are reused), plus what only this index has: the probe/scan planner, shards and the
delta, tiered merges, tombstones, compaction, save/load and its exactness at every radius.
``strategy="probe"`` pins the multi-index path even on the small shards a unit test can
afford, where the cost model would rightly pick a linear scan; tiny ``delta_rows`` make
merges happen within a few adds.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from takedown.errors import InvalidRequest
from takedown.matching import (
    BruteForceHammingIndex,
    HammingIndex,
    MultiIndexHammingIndex,
    SearchResult,
    hex_to_bytes_array,
)
from takedown.matching.hamming import _to_words
from takedown.matching.mih import (
    MAX_SHARD_ROWS,
    TABLES,
    _field,
    _plan,
    balanced_thresholds,
    chunk_bits,
    filter_bits_for,
    row_bits_for,
)
from tests.unit.test_hamming_index import (
    assert_snapshots_consistent,
    flip_bits,
    load,
    oracle,
    random_hex,
    search,
    triples,
)

RADII = [0, 10, 31, 32, 40, 47, 48, 64, 128]
Factory = Callable[[], MultiIndexHammingIndex]


@pytest.fixture(
    params=[
        pytest.param({"strategy": "probe"}, id="probe"),
        pytest.param({"strategy": "probe", "delta_rows": 64}, id="probe-small-delta"),
        pytest.param({}, id="auto"),
    ]
)
def make_index(request: pytest.FixtureRequest) -> Factory:
    return lambda: MultiIndexHammingIndex(**request.param)


def flip_rows(rows: np.ndarray, distances: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Copies of ``rows`` (uint8, (n, 32)) with exactly ``distances[i]`` bits flipped."""
    bits = np.unpackbits(rows, axis=1)
    for i, k in enumerate(distances.tolist()):
        positions = rng.choice(256, size=k, replace=False)
        bits[i, positions] ^= 1
    return np.packbits(bits, axis=1)


def same(a: SearchResult, b: SearchResult) -> None:
    assert triples(a) == triples(b)


# --------------------------------------------------------------------------- planning


def test_field_extracts_bits_across_word_boundaries() -> None:
    rng = random.Random(5)
    hexes = [random_hex(rng) for _ in range(4)]
    words = _to_words(hex_to_bytes_array(hexes), "hashes")
    for row, hex_hash in enumerate(hexes):
        # bit p of the index layout: word p // 64 (word 0 = first 16 hex digits), LSB first
        value = int(hex_hash, 16)
        words_int = [(value >> (64 * (3 - w))) & (2**64 - 1) for w in range(4)]
        flat = sum(w << (64 * i) for i, w in enumerate(words_int))
        for start, width in [(0, 8), (60, 12), (57, 19), (228, 19), (248, 8), (120, 16)]:
            expected = (flat >> start) & ((1 << width) - 1)
            assert _field(words, row, start, width) == expected


@pytest.mark.parametrize("radius", range(0, 100))
def test_thresholds_satisfy_the_pigeonhole(radius: int) -> None:
    thresholds = balanced_thresholds(radius)
    assert len(thresholds) == TABLES
    assert sum(t + 1 for t in thresholds) == radius + 1
    assert max(thresholds) - min(thresholds) <= 1


def test_chunk_width_and_plan_choices() -> None:
    assert chunk_bits(100) == 8
    assert chunk_bits(1_000_000) == 16
    assert chunk_bits(10_000_000) == 19
    assert chunk_bits(MAX_SHARD_ROWS) == 19
    # A table entry is 32 bits: the row number, then as many filter bits as are left.
    assert (row_bits_for(10_000_000), filter_bits_for(10_000_000, 19)) == (24, 8)
    assert (row_bits_for(MAX_SHARD_ROWS), filter_bits_for(MAX_SHARD_ROWS, 19)) == (24, 8)
    assert (row_bits_for(1_000_000), filter_bits_for(1_000_000, 16)) == (20, 12)
    assert (row_bits_for(1), filter_bits_for(1, 8)) == (1, 8)
    # Radius 31 at scale is probed; radius 128 can only be scanned.
    assert _plan(19, 10_000_000, 31, 8, "auto") is not None
    assert _plan(19, 10_000_000, 128, 8, "auto") is None
    assert _plan(19, 10_000_000, 31, 8, "scan") is None
    plan = _plan(16, 1_000_000, 31, 8, "auto")
    assert plan is not None
    assert plan.mask_counts.tolist().count(1 + 16 + 120) == 6  # six tables with 2 flips
    assert plan.mask_counts.tolist().count(1 + 16) == 7  # seven with 1


def test_constructor_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        MultiIndexHammingIndex(delta_rows=0)
    with pytest.raises(ValueError):
        MultiIndexHammingIndex(strategy="fast")


def test_implements_the_protocol() -> None:
    assert isinstance(MultiIndexHammingIndex(), HammingIndex)


# --------------------------------------------------------------------------- vs oracle


@pytest.mark.parametrize("radius", RADII)
def test_random_hashes_match_oracle(make_index: Factory, radius: int) -> None:
    rng = random.Random(radius)
    stored = {rng.randrange(-(2**62), 2**62): random_hex(rng) for _ in range(300)}
    values = list(stored.values())
    queries = [random_hex(rng) for _ in range(4)]
    queries += [flip_bits(values[i], rng.randrange(0, 45), rng) for i in range(4)]
    index = make_index()
    load(index, stored)
    assert search(index, queries, radius) == oracle(stored, queries, radius)


@pytest.mark.parametrize("radius", RADII)
def test_near_duplicate_clusters_match_oracle(make_index: Factory, radius: int) -> None:
    """Members at every distance 0..40 from each centre: the radius edge is exact."""
    rng = random.Random(100 + radius)
    centres = [random_hex(rng) for _ in range(8)]
    stored: dict[int, str] = {}
    for c, centre in enumerate(centres):
        for k in range(41):
            stored[c * 1000 + k] = flip_bits(centre, k, rng)
    index = make_index()
    load(index, stored)
    found = search(index, centres, radius)  # one batch of 8, like the dihedral variants
    assert found == oracle(stored, centres, radius)
    for c in range(len(centres)):
        own = [(d, i) for q, d, i in found if q == c and i // 1000 == c]
        assert own == [(k, c * 1000 + k) for k in range(min(radius, 40) + 1)]


@pytest.mark.parametrize("strategy", ["probe", "auto"])
def test_wide_chunks_match_brute_force_at_every_radius(strategy: str) -> None:
    """A shard big enough for 12-bit chunks (some straddle 64-bit words), clustered."""
    rng = np.random.default_rng(7)
    centres = rng.integers(0, 256, size=(400, 32), dtype=np.uint8)
    members = flip_rows(np.repeat(centres, 10, axis=0), rng.integers(0, 41, 4000), rng)
    hashes = np.concatenate([rng.integers(0, 256, size=(66_000, 32), dtype=np.uint8), members])
    ids = rng.permutation(hashes.shape[0]).astype(np.int64) * 3 - 10**6
    index = MultiIndexHammingIndex(strategy=strategy)
    index.add(ids, hashes)
    assert index.shard_rows == (70_000,) and chunk_bits(70_000) == 12
    oracle_index = BruteForceHammingIndex()
    oracle_index.add(ids, hashes)
    picks = rng.integers(0, 400, 8)
    queries = flip_rows(centres[picks], rng.integers(0, 20, 8), rng)
    queries[6:] = rng.integers(0, 256, size=(2, 32), dtype=np.uint8)  # and two far away
    for radius in [0, 5, 16, 31, 32, 40, 47, 48, 64]:
        same(index.search(queries, radius), oracle_index.search(queries, radius))


def test_results_are_sorted_by_query_distance_id(make_index: Factory) -> None:
    rng = random.Random(7)
    centre = random_hex(rng)
    stored = {id_: flip_bits(centre, 3 if id_ % 2 else 1, rng) for id_ in (9, 4, 7, 2, 5)}
    stored[1] = centre
    index = make_index()
    load(index, stored)
    found = search(index, [centre, flip_bits(centre, 2, rng)], 40)
    assert found == sorted(found)
    assert [(d, i) for q, d, i in found if q == 0] == [
        (0, 1),
        (1, 2),
        (1, 4),
        (3, 5),
        (3, 7),
        (3, 9),
    ]


def test_result_arrays_have_stated_dtypes_and_are_read_only() -> None:
    index = MultiIndexHammingIndex()
    index.add(np.array([42]), hex_to_bytes_array(["f" * 64]))
    result = index.search(hex_to_bytes_array(["f" * 64]), 0)
    assert (result.query_index.dtype, result.ids.dtype, result.distances.dtype) == (
        np.int32,
        np.int64,
        np.int16,
    )
    assert len(result) == 1
    with pytest.raises(ValueError):
        result.ids[0] = 1


def test_single_and_duplicate_queries(make_index: Factory) -> None:
    index = make_index()
    index.add(np.array([1]), hex_to_bytes_array(["0" * 64]))
    assert triples(index.search(hex_to_bytes_array(["0" * 64])[0], 0)) == [(0, 0, 1)]
    assert search(index, ["0" * 64, "0" * 64], 0) == [(0, 0, 1), (1, 0, 1)]


def test_radius_bounds_are_inclusive(make_index: Factory) -> None:
    zero, ones = "0" * 64, "f" * 64
    index = make_index()
    load(index, {1: zero, 2: ones})
    assert search(index, [zero], 0) == [(0, 0, 1)]
    assert search(index, [zero], 255) == [(0, 0, 1)]
    assert search(index, [zero], 256) == [(0, 0, 1), (0, 256, 2)]
    result = index.search(hex_to_bytes_array([zero]), np.int64(256))  # type: ignore[arg-type]
    assert triples(result) == [(0, 0, 1), (0, 256, 2)]


@pytest.mark.parametrize("radius", [-1, 257, 1000, 3.0, "31", True, None])
def test_bad_radius_is_refused(radius: object) -> None:
    index = MultiIndexHammingIndex()
    load(index, {1: "0" * 64})
    with pytest.raises(InvalidRequest) as caught:
        index.search(hex_to_bytes_array(["0" * 64]), radius)  # type: ignore[arg-type]
    assert caught.value.code == "invalid_radius"


def test_empty_index_and_empty_batches(make_index: Factory) -> None:
    index = make_index()
    assert len(index) == 0
    result = index.search(hex_to_bytes_array(["0" * 64]), 256)
    assert len(result) == 0 and result.ids.dtype == np.int64
    index.remove(np.array([1, 2, 3]))  # unknown ids: nothing to do
    index.add(np.empty(0, dtype=np.int64), np.empty((0, 32), dtype=np.uint8))
    assert len(index) == 0
    load(index, {1: "0" * 64})
    assert len(index.search(np.empty((0, 32), dtype=np.uint8), 31)) == 0


@pytest.mark.parametrize(
    ("ids", "hashes"),
    [
        (np.array([1]), np.zeros((1, 32), dtype=np.int64)),
        (np.array([1]), np.zeros((1, 16), dtype=np.uint8)),
        (np.array([1, 2]), np.zeros((1, 32), dtype=np.uint8)),
        (np.array([1.0]), np.zeros((1, 32), dtype=np.uint8)),
    ],
)
def test_malformed_arrays_are_programming_errors(ids: np.ndarray, hashes: np.ndarray) -> None:
    with pytest.raises(ValueError):
        MultiIndexHammingIndex().add(ids, hashes)


# --------------------------------------------------------------------------- mutation


def test_add_remove_readd_replace(make_index: Factory) -> None:
    rng = random.Random(3)
    a, b = random_hex(rng), random_hex(rng)
    index = make_index()
    load(index, {1: a, 2: b})
    assert len(index) == 2
    index.remove(np.array([1]))
    assert len(index) == 1 and search(index, [a], 0) == []
    index.remove(np.array([1, 1, 99]))  # already gone, repeated, unknown: all harmless
    assert len(index) == 1
    index.add(np.array([1]), hex_to_bytes_array([a]))  # re-add
    assert len(index) == 2 and search(index, [a], 0) == [(0, 0, 1)]
    index.add(np.array([1]), hex_to_bytes_array([b]))  # replace: id 1 now holds b
    assert len(index) == 2
    assert search(index, [a], 0) == []
    assert search(index, [b], 0) == [(0, 0, 1), (0, 0, 2)]


def test_replace_and_remove_reach_rows_in_shards_and_delta() -> None:
    """Ids in a shard, in the delta, and moved between them all stay single and current."""
    rng = random.Random(4)
    index = MultiIndexHammingIndex(delta_rows=50, strategy="probe")
    model = {id_: random_hex(rng) for id_ in range(120)}
    load(index, model)  # one batch larger than the delta: straight into a shard
    assert index.shard_rows == (120,) and index.delta_size == 0
    for id_ in (5, 6, 7):  # replaced: shard row tombstoned, new row in the delta
        model[id_] = random_hex(rng)
        index.add(np.array([id_]), hex_to_bytes_array([model[id_]]))
    assert index.delta_size == 3 and index.tombstones == 3
    index.add(np.array([5]), hex_to_bytes_array([model[5]]))  # replaced within the delta
    index.remove(np.array([6, 10]))  # one in the delta, one in the shard
    del model[6], model[10]
    assert len(index) == len(model) == 118
    queries = [model[i] for i in (5, 7, 11)] + [random_hex(rng)]
    assert search(index, queries, 40) == oracle(model, queries, 40)


def test_repeated_id_in_one_batch_keeps_the_last_hash(make_index: Factory) -> None:
    first, last = "0" * 64, "f" * 64
    index = make_index()
    index.add(np.array([5, 6, 5]), hex_to_bytes_array([first, first, last]))
    assert len(index) == 2
    assert search(index, [last], 0) == [(0, 0, 5)]
    assert search(index, [first], 0) == [(0, 0, 6)]


def test_delta_becomes_shards_and_tiered_merges_keep_few_shards() -> None:
    rng = random.Random(8)
    # Merges run in the writing thread: the layout after each add depends on the adds only.
    index = MultiIndexHammingIndex(delta_rows=16, strategy="probe", background=False)
    model: dict[int, str] = {}
    shard_counts = []
    for id_ in range(600):  # one at a time, as a bank sync trickles them in
        model[id_] = random_hex(rng)
        index.add(np.array([id_]), hex_to_bytes_array([model[id_]]))
        shard_counts.append(len(index.shard_rows))
        if id_ == 15:
            assert index.shard_rows == (16,) and index.delta_size == 0  # the delta flushed
        if id_ == 20:
            assert index.delta_size == 5  # visible before any merge...
            assert search(index, [model[20]], 0) == [(0, 0, 20)]  # ...and searchable
    assert sum(index.shard_rows) + index.delta_size == 600
    assert max(shard_counts) <= 8  # O(log n): 600 / 16 = 37 flushes
    shards = index.shard_rows
    assert all(a > b for a, b in zip(shards, shards[1:], strict=False))  # tiers shrink
    queries = [model[i] for i in range(0, 600, 75)]
    assert search(index, queries, 31) == oracle(model, queries, 31)


def test_tombstones_and_automatic_shard_rebuild() -> None:
    rng = random.Random(12)
    model = {id_: random_hex(rng) for id_ in range(100)}
    index = MultiIndexHammingIndex(delta_rows=50, strategy="probe", background=False)
    load(index, model)
    index.remove(np.arange(25))
    assert index.tombstones == 25 and index.shard_rows == (100,)  # a quarter: kept
    index.remove(np.array([25]))
    assert index.tombstones == 0 and index.shard_rows == (74,)  # past it: rebuilt
    for id_ in range(26):
        del model[id_]
    queries = list(model.values())[:8]
    assert search(index, queries, 31) == oracle(model, queries, 31)
    index.remove(np.arange(100))
    assert len(index) == 0 and index.shard_rows == ()


def test_compaction_folds_everything_into_one_shard() -> None:
    rng = random.Random(11)
    model = {id_: random_hex(rng) for id_ in range(200)}
    index = MultiIndexHammingIndex(delta_rows=30, strategy="probe")
    for id_, value in model.items():
        index.add(np.array([id_]), hex_to_bytes_array([value]))
    for id_ in range(0, 200, 10):
        index.remove(np.array([id_]))
        del model[id_]
    queries = [flip_bits(model[i], 20, rng) for i in range(1, 200, 25)]
    before = search(index, queries, 40)
    assert before == oracle(model, queries, 40)
    index.compact()
    assert index.shard_rows == (180,) and index.delta_size == 0 and index.tombstones == 0
    assert search(index, queries, 40) == before
    index.add(np.array([0]), hex_to_bytes_array([queries[0]]))
    model[0] = queries[0]
    index.remove(np.array([21]))
    del model[21]
    assert search(index, queries, 40) == oracle(model, queries, 40)


def test_memory_accounting() -> None:
    rng = np.random.default_rng(3)
    index = MultiIndexHammingIndex()
    index.add(np.arange(70_000), rng.integers(0, 256, size=(70_000, 32), dtype=np.uint8))
    per_hash = index.nbytes / len(index)
    assert 92 <= per_hash <= 96  # 32 hash + 8 id + 13 x 4 entries + offsets + 1/8 bit
    index.add(np.array([-1]), rng.integers(0, 256, size=(1, 32), dtype=np.uint8))
    assert index.nbytes > 70_000 * 92  # the delta is counted too


# --------------------------------------------------------------------------- persistence


@pytest.mark.parametrize("mmap", [True, False])
def test_save_and_load_round_trip(tmp_path: Path, mmap: bool) -> None:
    rng = random.Random(31)
    model = {id_: random_hex(rng) for id_ in range(300)}
    index = MultiIndexHammingIndex(delta_rows=100, strategy="probe")
    load(index, model)  # a shard
    extra = {id_: random_hex(rng) for id_ in range(300, 340)}
    load(index, extra)  # and the delta
    model.update(extra)
    index.remove(np.array([3, 310]))  # a tombstone in each
    del model[3], model[310]
    queries = [flip_bits(model[i], 12, rng) for i in (1, 2, 305, 320)] + [random_hex(rng)]
    expected = oracle(model, queries, 31)
    assert search(index, queries, 31) == expected

    index.save(tmp_path / "bank")
    index.save(tmp_path / "bank")  # overwriting is fine
    manifest = json.loads((tmp_path / "bank" / "manifest.json").read_text())
    assert manifest["live"] == len(model) and len(manifest["shards"]) == 1
    loaded = MultiIndexHammingIndex.load(tmp_path / "bank", mmap=mmap, strategy="probe")
    assert len(loaded) == len(model) and loaded.tombstones == 1  # the shard's tombstone
    assert loaded.shard_rows == (300,) and loaded.delta_size == 39
    assert search(loaded, queries, 31) == expected

    # The loaded index is fully mutable; the files are not touched.
    loaded.add(np.array([1]), hex_to_bytes_array([queries[4]]))
    loaded.remove(np.array([2]))
    model[1] = queries[4]
    del model[2]
    assert search(loaded, queries, 31) == oracle(model, queries, 31)
    loaded.compact()
    assert search(loaded, queries, 31) == oracle(model, queries, 31)
    again = MultiIndexHammingIndex.load(tmp_path / "bank", mmap=mmap, strategy="probe")
    assert search(again, queries, 31) == expected


def test_load_refuses_mismatched_files(tmp_path: Path) -> None:
    index = MultiIndexHammingIndex()
    load(index, {i: "0" * 63 + str(i % 10) for i in range(10)})
    index.save(tmp_path / "bank")
    manifest_path = tmp_path / "bank" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["version"] = 99
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="version"):
        MultiIndexHammingIndex.load(tmp_path / "bank")
    index.compact()  # -> one shard of 10 rows
    index.save(tmp_path / "bank")
    good = json.loads(manifest_path.read_text())
    assert good["shards"][0]["rows"] == 10

    def load_with(shard_note: dict[str, int]) -> None:
        manifest_path.write_text(
            json.dumps({**good, "shards": [{**good["shards"][0], **shard_note}]})
        )
        MultiIndexHammingIndex.load(tmp_path / "bank")

    with pytest.raises(ValueError, match="ids of a shard"):
        load_with({"rows": 11})
    with pytest.raises(ValueError, match="laid out"):
        load_with({"filter_bits": 9})
    offsets_path = tmp_path / "bank" / "shard-0000-offsets.npy"
    offsets = np.load(offsets_path)
    offsets[3, 100] = 11  # past the 10 rows: the next bucket would end before it starts
    np.save(offsets_path, offsets)
    with pytest.raises(ValueError, match="offsets"):
        load_with({})


# --------------------------------------------------------------------------- randomized


@pytest.mark.parametrize(
    ("seed", "reuse"),
    [(1, 0.7), (2, 0.15)],
    ids=["churn", "growth"],
)
def test_interleaved_operations_match_a_dict_model(seed: int, reuse: float) -> None:
    """Random adds (single and bulk, new and replacing), removes and searches.

    A small delta makes flushes, tiered merges, tombstones and shard rebuilds all happen.
    """
    rng = random.Random(seed)
    centres = [random_hex(rng) for _ in range(6)]
    model: dict[int, str] = {}
    index = MultiIndexHammingIndex(delta_rows=rng.randrange(8, 64), strategy="probe")

    def near_hash() -> str:
        return flip_bits(rng.choice(centres), rng.randrange(0, 50), rng)

    def some_ids(max_count: int) -> list[int]:
        count = 1 if rng.random() < 0.8 else rng.randrange(2, max_count)
        known = list(model)
        return [
            rng.choice(known)
            if known and rng.random() < reuse
            else rng.randrange(-(10**12), 10**12)
            for _ in range(count)
        ]

    for _step in range(1200):
        op = rng.random()
        if op < 0.6:
            ids = some_ids(150)
            hashes = [near_hash() for _ in ids]
            index.add(np.array(ids, dtype=np.int64), hex_to_bytes_array(hashes))
            model.update(zip(ids, hashes, strict=True))
        elif op < 0.93:
            ids = some_ids(60)
            index.remove(np.array(ids, dtype=np.int64))
            for id_ in ids:
                model.pop(id_, None)
        else:
            queries = [near_hash() for _ in range(rng.randrange(1, 9))]
            radius = rng.choice([0, 10, 31, 40, 47])
            assert search(index, queries, radius) == oracle(model, queries, radius)
        assert len(index) == len(model)

    queries = centres + [near_hash()]
    assert search(index, queries, 45) == oracle(model, queries, 45)
    index.compact()
    assert search(index, queries, 45) == oracle(model, queries, 45)


def test_searches_during_writes_see_consistent_snapshots() -> None:
    """A writer churns ids 1000+ (flushing and merging) while readers search ids 0..99."""
    index = MultiIndexHammingIndex(delta_rows=32, strategy="probe")
    queries, expected = assert_snapshots_consistent(index)
    assert len(index) >= 100
    assert [t for t in search(index, queries, 0) if t[2] < 1000] == expected


def test_compile_kernels_compiles_every_kernel_before_first_use():
    """A fresh process that only calls ``compile_kernels`` has every kernel that Python
    calls compiled (or loaded from numba's cache; the helpers they call are compiled into
    them): none is left to compile on a worker's first large import or search."""
    script = (
        "import takedown.matching.mih as mih\n"
        "kernels = [mih._build_tables, mih._mih_search, mih._scan_search]\n"
        "assert not any(k.signatures for k in kernels)\n"
        "mih.compile_kernels()\n"
        "print([k.__name__ for k in kernels if not k.signatures])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
