"""The PDQ Hamming index against a pure-Python oracle (int.bit_count over hex ints).

Every check goes through the :class:`HammingIndex` protocol and the ``make_index``
fixture, so a future multi-index-hashing index can be added to the fixture and must
pass the same tests unchanged. ``chunk_rows=7`` makes tiny indexes span many search
chunks, so chunk boundaries are exercised too.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

import numpy as np
import pytest

from takedown.errors import InvalidHash, InvalidRequest
from takedown.matching import (
    PDQ_BITS,
    BruteForceHammingIndex,
    HammingIndex,
    SearchResult,
    bytes_to_hex,
    hex_to_bytes_array,
    stored_hex_to_bytes_array,
)

Triple = tuple[int, int, int]  # (query_index, distance, id)


@pytest.fixture(
    params=[
        pytest.param({}, id="default-chunks"),
        pytest.param({"chunk_rows": 7}, id="tiny-chunks"),
    ]
)
def make_index(request: pytest.FixtureRequest) -> Callable[[], HammingIndex]:
    return lambda: BruteForceHammingIndex(**request.param)


# --------------------------------------------------------------------------- helpers


def random_hex(rng: random.Random) -> str:
    return format(rng.getrandbits(PDQ_BITS), "064x")


def flip_bits(hex_hash: str, k: int, rng: random.Random) -> str:
    """The hash with exactly ``k`` distinct bits flipped, so its distance is exactly k."""
    value = int(hex_hash, 16)
    for bit in rng.sample(range(PDQ_BITS), k):
        value ^= 1 << bit
    return format(value, "064x")


def oracle(stored: dict[int, str], queries: list[str], radius: int) -> list[Triple]:
    found = []
    for q, query in enumerate(queries):
        query_value = int(query, 16)
        for id_, hex_hash in stored.items():
            distance = (query_value ^ int(hex_hash, 16)).bit_count()
            if distance <= radius:
                found.append((q, distance, id_))
    return sorted(found)


def triples(result: SearchResult) -> list[Triple]:
    return list(
        zip(
            result.query_index.tolist(),
            result.distances.tolist(),
            result.ids.tolist(),
            strict=True,
        )
    )


def load(index: HammingIndex, stored: dict[int, str]) -> None:
    ids = np.fromiter(stored.keys(), dtype=np.int64, count=len(stored))
    index.add(ids, hex_to_bytes_array(list(stored.values())))


def search(index: HammingIndex, queries: list[str], radius: int) -> list[Triple]:
    return triples(index.search(hex_to_bytes_array(queries), radius))


# --------------------------------------------------------------------------- conversions


def test_hex_round_trip_and_normalization() -> None:
    rng = random.Random(1)
    hashes = [random_hex(rng) for _ in range(5)]
    array = hex_to_bytes_array([h.upper() for h in hashes])
    assert array.dtype == np.uint8 and array.shape == (5, 32)
    assert array[0].tobytes() == bytes.fromhex(hashes[0])  # big-endian bytes of the hex
    assert bytes_to_hex(array) == hashes
    assert bytes_to_hex(array[2]) == [hashes[2]]


def test_hex_conversion_of_nothing() -> None:
    assert hex_to_bytes_array([]).shape == (0, 32)
    assert bytes_to_hex(np.empty((0, 32), dtype=np.uint8)) == []


@pytest.mark.parametrize("bad", ["abc", "g" * 64, "0" * 63, "0" * 65, ""])
def test_hex_conversion_rejects_non_pdq(bad: str) -> None:
    with pytest.raises(InvalidHash) as caught:
        hex_to_bytes_array(["0" * 64, bad])
    assert caught.value.code == "invalid_hash"


def test_stored_hashes_convert_in_one_pass_to_the_same_array() -> None:
    rng = random.Random(2)
    hashes = [random_hex(rng) for _ in range(1000)]
    assert np.array_equal(stored_hex_to_bytes_array(hashes), hex_to_bytes_array(hashes))
    assert stored_hex_to_bytes_array([]).shape == (0, 32)


@pytest.mark.parametrize(
    "bad",
    [
        "g" * 64,  # not hex
        "0" * 62 + " 0",  # fromhex would skip the space: same length, one byte short
        "0" * 63,  # short, made up by the next one being long
        "0" * 66,
    ],
)
def test_a_malformed_stored_hash_is_still_named(bad: str) -> None:
    values = ["0" * 64, bad]
    if len(bad) == 63:
        values.append("0" * 65)
    with pytest.raises(InvalidHash) as caught:
        stored_hex_to_bytes_array(values)
    assert caught.value.code == "invalid_hash"


# --------------------------------------------------------------------------- search vs oracle


RADII = [0, 10, 31, 40]


@pytest.mark.parametrize("radius", RADII)
def test_random_hashes_match_oracle(make_index: Callable[[], HammingIndex], radius: int) -> None:
    rng = random.Random(radius)
    stored = {rng.randrange(-(2**62), 2**62): random_hex(rng) for _ in range(300)}
    # Queries: random ones (nothing near) plus stored hashes nudged by a few bits.
    values = list(stored.values())
    queries = [random_hex(rng) for _ in range(4)]
    queries += [flip_bits(values[i], rng.randrange(0, 45), rng) for i in range(4)]
    index = make_index()
    load(index, stored)
    assert search(index, queries, radius) == oracle(stored, queries, radius)


@pytest.mark.parametrize("radius", RADII)
def test_near_duplicate_clusters_match_oracle(
    make_index: Callable[[], HammingIndex], radius: int
) -> None:
    """Members at every distance 0..40 from each centre: the radius edge is exact."""
    rng = random.Random(100 + radius)
    centres = [random_hex(rng) for _ in range(8)]
    stored: dict[int, str] = {}
    for c, centre in enumerate(centres):
        for k in range(41):
            stored[c * 1000 + k] = flip_bits(centre, k, rng)
    index = make_index()
    load(index, stored)
    # One batch of 8 queries, like the 8 dihedral variants of one image.
    found = search(index, centres, radius)
    assert found == oracle(stored, centres, radius)
    for c in range(len(centres)):
        own = [(d, i) for q, d, i in found if q == c and i // 1000 == c]
        assert own == [(k, c * 1000 + k) for k in range(min(radius, 40) + 1)]


def test_results_are_sorted_by_query_distance_id(make_index: Callable[[], HammingIndex]) -> None:
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
    index = BruteForceHammingIndex()
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


def test_single_query_row_is_accepted(make_index: Callable[[], HammingIndex]) -> None:
    index = make_index()
    index.add(np.array([1]), hex_to_bytes_array(["0" * 64]))
    assert triples(index.search(hex_to_bytes_array(["0" * 64])[0], 0)) == [(0, 0, 1)]


def test_duplicate_queries_each_get_their_rows(make_index: Callable[[], HammingIndex]) -> None:
    index = make_index()
    index.add(np.array([1]), hex_to_bytes_array(["0" * 64]))
    assert search(index, ["0" * 64, "0" * 64], 0) == [(0, 0, 1), (1, 0, 1)]


# --------------------------------------------------------------------------- radius bounds


def test_radius_bounds_are_inclusive(make_index: Callable[[], HammingIndex]) -> None:
    zero, ones = "0" * 64, "f" * 64
    index = make_index()
    load(index, {1: zero, 2: ones})
    assert search(index, [zero], 0) == [(0, 0, 1)]
    assert search(index, [zero], 255) == [(0, 0, 1)]
    assert search(index, [zero], 256) == [(0, 0, 1), (0, 256, 2)]
    numpy_radius = np.int64(256)  # e.g. read from a numpy config array
    result = index.search(hex_to_bytes_array([zero]), numpy_radius)  # type: ignore[arg-type]
    assert triples(result) == [(0, 0, 1), (0, 256, 2)]


@pytest.mark.parametrize("radius", [-1, 257, 1000, 3.0, "31", True, None])
def test_bad_radius_is_refused(make_index: Callable[[], HammingIndex], radius: object) -> None:
    index = make_index()
    load(index, {1: "0" * 64})
    with pytest.raises(InvalidRequest) as caught:
        index.search(hex_to_bytes_array(["0" * 64]), radius)  # type: ignore[arg-type]
    assert caught.value.code == "invalid_radius"


# --------------------------------------------------------------------------- empty / shapes


def test_empty_index(make_index: Callable[[], HammingIndex]) -> None:
    index = make_index()
    assert len(index) == 0
    result = index.search(hex_to_bytes_array(["0" * 64]), 256)
    assert len(result) == 0 and result.ids.dtype == np.int64
    index.remove(np.array([1, 2, 3]))  # unknown ids: nothing to do
    index.add(np.empty(0, dtype=np.int64), np.empty((0, 32), dtype=np.uint8))
    assert len(index) == 0


def test_empty_query_batch(make_index: Callable[[], HammingIndex]) -> None:
    index = make_index()
    load(index, {1: "0" * 64})
    assert len(index.search(np.empty((0, 32), dtype=np.uint8), 31)) == 0


@pytest.mark.parametrize(
    ("ids", "hashes"),
    [
        (np.array([1]), np.zeros((1, 32), dtype=np.int64)),  # wrong dtype
        (np.array([1]), np.zeros((1, 16), dtype=np.uint8)),  # wrong width
        (np.array([1, 2]), np.zeros((1, 32), dtype=np.uint8)),  # length mismatch
        (np.array([1.0]), np.zeros((1, 32), dtype=np.uint8)),  # float ids
    ],
)
def test_malformed_arrays_are_programming_errors(ids: np.ndarray, hashes: np.ndarray) -> None:
    with pytest.raises(ValueError):
        BruteForceHammingIndex().add(ids, hashes)


def test_implements_the_protocol() -> None:
    assert isinstance(BruteForceHammingIndex(), HammingIndex)


# --------------------------------------------------------------------------- mutation


def test_add_remove_readd_replace(make_index: Callable[[], HammingIndex]) -> None:
    rng = random.Random(3)
    a, b = random_hex(rng), random_hex(rng)
    index = make_index()
    load(index, {1: a, 2: b})
    assert len(index) == 2

    index.remove(np.array([1]))
    assert len(index) == 1
    assert search(index, [a], 0) == []

    index.remove(np.array([1, 1, 99]))  # already gone, repeated, unknown: all harmless
    assert len(index) == 1

    index.add(np.array([1]), hex_to_bytes_array([a]))  # re-add
    assert len(index) == 2
    assert search(index, [a], 0) == [(0, 0, 1)]

    index.add(np.array([1]), hex_to_bytes_array([b]))  # replace: id 1 now holds b
    assert len(index) == 2
    assert search(index, [a], 0) == []
    assert search(index, [b], 0) == [(0, 0, 1), (0, 0, 2)]


def test_repeated_id_in_one_batch_keeps_the_last_hash(
    make_index: Callable[[], HammingIndex],
) -> None:
    first, last = "0" * 64, "f" * 64
    index = make_index()
    index.add(np.array([5, 6, 5]), hex_to_bytes_array([first, first, last]))
    assert len(index) == 2
    assert search(index, [last], 0) == [(0, 0, 5)]
    assert search(index, [first], 0) == [(0, 0, 6)]


def test_compaction_keeps_results_identical() -> None:
    rng = random.Random(11)
    stored = {id_: random_hex(rng) for id_ in range(200)}
    queries = [flip_bits(stored[i], 20, rng) for i in range(0, 200, 25)]
    index = BruteForceHammingIndex(chunk_rows=16)
    load(index, stored)
    for id_ in range(0, 200, 10):  # 10 % removed: below the automatic threshold
        index.remove(np.array([id_]))
        del stored[id_]
    assert index.tombstones == 20
    before = search(index, queries, 40)
    assert before == oracle(stored, queries, 40)

    index.compact()
    assert index.tombstones == 0 and len(index) == len(stored)
    assert search(index, queries, 40) == before
    index.add(np.array([0]), hex_to_bytes_array([queries[0]]))  # ids still map correctly
    stored[0] = queries[0]
    index.remove(np.array([25]))
    del stored[25]
    assert search(index, queries, 40) == oracle(stored, queries, 40)


def test_compaction_is_automatic_past_a_quarter_of_tombstones() -> None:
    rng = random.Random(12)
    stored = {id_: random_hex(rng) for id_ in range(100)}
    index = BruteForceHammingIndex()
    load(index, stored)
    index.remove(np.arange(25))
    assert index.tombstones == 25  # exactly a quarter: not yet
    index.remove(np.array([25]))
    assert index.tombstones == 0 and len(index) == 74
    for id_ in range(26):
        del stored[id_]
    queries = list(stored.values())[:8]
    assert search(index, queries, 31) == oracle(stored, queries, 31)


def test_growth_is_amortized() -> None:
    """Adding one hash at a time reallocates O(log n) times, not once per add."""
    index = BruteForceHammingIndex()
    hashes = hex_to_bytes_array(["0" * 64])
    capacities = set()
    for id_ in range(5000):
        index.add(np.array([id_]), hashes)
        capacities.add(index.capacity)
    assert len(index) == 5000
    assert len(capacities) <= 4  # 1024 -> 2048 -> 4096 -> 8192


@pytest.mark.parametrize(
    ("seed", "reuse"),
    [(1, 0.7), (2, 0.7), (3, 0.15), (4, 0.15)],
    ids=["churn-1", "churn-2", "growth-1", "growth-2"],
)
def test_interleaved_operations_match_a_dict_model(seed: int, reuse: float) -> None:
    """Random adds (single and bulk, new and replacing), removes and searches.

    ``reuse`` is the chance an operation names an id already stored: high reuse means
    many replacements, tombstones and compactions; low reuse means growth and many
    single adds, which push the id map through its dict-to-array merges (including bulk
    adds that replace ids still in the dict).
    """
    rng = random.Random(seed)
    centres = [random_hex(rng) for _ in range(6)]
    model: dict[int, str] = {}
    index = BruteForceHammingIndex(chunk_rows=rng.randrange(5, 300))

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

    for _step in range(2000):
        op = rng.random()
        if op < 0.6:
            ids = some_ids(300)
            hashes = [near_hash() for _ in ids]
            index.add(np.array(ids, dtype=np.int64), hex_to_bytes_array(hashes))
            model.update(zip(ids, hashes, strict=True))
        elif op < 0.93:
            ids = some_ids(100)
            index.remove(np.array(ids, dtype=np.int64))
            for id_ in ids:
                model.pop(id_, None)
        else:
            queries = [near_hash() for _ in range(rng.randrange(1, 9))]
            radius = rng.choice([0, 10, 31, 40])
            assert search(index, queries, radius) == oracle(model, queries, radius)
        assert len(index) == len(model)

    queries = centres + [near_hash()]
    assert search(index, queries, 45) == oracle(model, queries, 45)


def test_searches_during_writes_see_consistent_snapshots() -> None:
    """A writer churns ids 1000+ while readers search; ids 0..99 never change."""
    assert_snapshots_consistent(BruteForceHammingIndex(chunk_rows=64))


def assert_snapshots_consistent(index: HammingIndex) -> tuple[list[str], list[Triple]]:
    """Shared with the MIH tests: readers of ids 0..99 never see a writer's churn."""
    rng = random.Random(21)
    stable = {id_: random_hex(rng) for id_ in range(100)}
    load(index, stable)
    queries = list(stable.values())[:8]
    expected = oracle(stable, queries, 0)
    stop = threading.Event()

    def writer() -> None:
        writer_rng = random.Random(22)
        while not stop.is_set():
            ids = np.array([1000 + writer_rng.randrange(500) for _ in range(20)])
            index.add(ids, hex_to_bytes_array([random_hex(writer_rng) for _ in range(20)]))
            index.remove(ids[:15])

    def reader() -> None:
        for _ in range(200):
            found = search(index, queries, 0)
            assert [t for t in found if t[2] < 1000] == expected

    race(writer, reader, readers=3, stop=stop)
    return queries, expected


def race(
    writer: Callable[[], None], reader: Callable[[], None], *, readers: int, stop: threading.Event
) -> None:
    """Run ``writer`` until ``readers`` threads of ``reader`` are done (it watches
    ``stop``); what any reader raised fails the test here."""
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            reader()
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=guarded) for _ in range(readers)]
    writing = threading.Thread(target=writer)
    writing.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    writing.join()
    assert errors == []


@pytest.mark.parametrize("rows", [1, 37, 2_000])
def test_many_queries_over_a_small_index_find_what_each_query_alone_finds(rows: int) -> None:
    """A small index searched with many queries at once (a batch's own rows) compares
    several queries a step: the same pairs and distances as one query at a time."""
    rng = random.Random(rows)
    centres = [random_hex(rng) for _ in range(5)]
    stored = [flip_bits(rng.choice(centres), rng.randrange(0, 40), rng) for _ in range(rows)]
    index = BruteForceHammingIndex()
    index.add(np.arange(rows, dtype=np.int64) * 3 - 50, hex_to_bytes_array(stored))
    index.remove(np.array([-50], dtype=np.int64))  # a tombstone among the rows
    queries = [flip_bits(rng.choice(centres), rng.randrange(0, 40), rng) for _ in range(300)]
    together = index.search(hex_to_bytes_array(queries), 31)
    alone = set()
    for q, h in enumerate(queries):
        one = index.search(hex_to_bytes_array([h]), 31)
        alone |= {(q, i, d) for i, d in zip(one.ids.tolist(), one.distances.tolist(), strict=True)}
    got = set(
        zip(
            together.query_index.tolist(),
            together.ids.tolist(),
            together.distances.tolist(),
            strict=True,
        )
    )
    assert got == alone and (rows == 1 or got)
