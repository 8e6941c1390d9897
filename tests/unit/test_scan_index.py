"""The compiled scan index (a registry batch's own media) against the pure-Python oracle
of ``test_hamming_index.py``: the same pairs in the same order at every radius,
whichever half of the hash the differing bits fall in, over several adds."""

from __future__ import annotations

import random

import numpy as np
import pytest

from takedown.errors import InvalidRequest
from takedown.matching import SearchResult, hex_to_bytes_array
from takedown.matching.scan import ScanIndex
from tests.unit.test_hamming_index import flip_bits, load, oracle, random_hex, search


def _flip_in(hex_hash: str, low: int, high: int, k: int, rng: random.Random) -> str:
    """``k`` bits flipped among bits ``low..high-1`` (0 = the last hex digit's lowest)."""
    value = int(hex_hash, 16)
    for bit in rng.sample(range(low, high), k):
        value ^= 1 << bit
    return format(value, "064x")


@pytest.mark.parametrize("radius", [0, 10, 31, 32, 47, 64, 128, 256])
def test_same_pairs_as_the_oracle(radius: int) -> None:
    rng = random.Random(radius)
    stored = {i: random_hex(rng) for i in range(1, 301)}
    queries = [random_hex(rng) for _ in range(20)]
    for h in list(stored.values())[:40]:
        queries.append(flip_bits(h, rng.randrange(0, 70), rng))
    # Differences all in the first half, all in the second: the early exit after two
    # words must neither drop a pair nor keep one over the radius.
    for h in list(stored.values())[40:60]:
        queries.append(_flip_in(h, 128, 256, min(radius, 31), rng))
        queries.append(_flip_in(h, 0, 128, min(radius, 31), rng))
        queries.append(_flip_in(h, 128, 256, min(radius + 1, 128), rng))
    index = ScanIndex()
    load(index, stored)
    assert search(index, queries, radius) == oracle(stored, queries, radius)


def test_adds_grow_the_index_and_all_rows_are_searched() -> None:
    rng = random.Random(5)
    stored: dict[int, str] = {}
    index = ScanIndex()
    next_id = 1
    for size in (3, 1500, 700, 1):  # past the first capacity (1,024), twice
        part = {next_id + k: random_hex(rng) for k in range(size)}
        next_id += size
        load(index, part)
        stored.update(part)
    assert len(index) == len(stored) == 2204
    queries = [flip_bits(h, 5, rng) for h in list(stored.values())[::97]]
    assert search(index, queries, 31) == oracle(stored, queries, 31)


def test_empty_index_and_no_queries() -> None:
    index = ScanIndex()
    result = index.search(hex_to_bytes_array([random_hex(random.Random(1))]), 31)
    assert isinstance(result, SearchResult) and len(result) == 0
    load(index, {7: random_hex(random.Random(2))})
    assert len(index.search(np.empty((0, 32), dtype=np.uint8), 31)) == 0


def test_bad_arguments_are_refused() -> None:
    index = ScanIndex()
    with pytest.raises(ValueError):
        index.add(
            np.array([1, 2], dtype=np.int64), hex_to_bytes_array([random_hex(random.Random(3))])
        )
    with pytest.raises(InvalidRequest) as exc:
        index.search(hex_to_bytes_array([random_hex(random.Random(4))]), 257)
    assert exc.value.code == "invalid_radius"
