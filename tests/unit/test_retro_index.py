"""The scan index of retroactive matching (matching/retro.py) against brute force: the
same pairs at every supported radius, each pair once, and the shared rule
(match_signals) for exact types and PDQ variants."""

from __future__ import annotations

import numpy as np
import pytest

from takedown.matching.retro import (
    MAX_RADIUS,
    EntryIndex,
    ScanIndex,
    brute_force,
    match_signals,
    scan,
    scan_threads,
    thresholds_for,
)


def _near(rng: np.random.Generator, hashes: np.ndarray, bits: np.ndarray) -> np.ndarray:
    unpacked = np.unpackbits(hashes, axis=1)
    for k, n in enumerate(bits):
        unpacked[k, rng.choice(256, size=int(n), replace=False)] ^= 1
    return np.packbits(unpacked, axis=1)


@pytest.mark.parametrize("radius", [0, 8, 15, 16, 31, 32, 40, MAX_RADIUS])
def test_the_scan_finds_exactly_what_brute_force_finds(radius: int) -> None:
    rng = np.random.default_rng(radius)
    entries = rng.integers(0, 256, size=(3_000, 32), dtype=np.uint8)
    ids = np.arange(10, 3_010, dtype=np.int64)
    copies = _near(rng, entries[:400], rng.integers(0, radius + 6, size=400))
    queries = np.concatenate([copies, rng.integers(0, 256, size=(600, 32), dtype=np.uint8)])
    index = EntryIndex.build(ids, entries, radius)
    q, e, d = scan(index, queries)
    found = list(zip(q.tolist(), e.tolist(), strict=True))
    assert len(found) == len(set(found))  # each pair once
    assert set(found) == brute_force(ids, entries, queries, radius)
    assert d.max(initial=0) <= radius


def test_thresholds_follow_the_pigeonhole_principle() -> None:
    for radius in range(MAX_RADIUS + 1):
        t = thresholds_for(radius)
        assert int((t + 1).sum()) == radius + 1 and t.max() - t.min() <= 1
    with pytest.raises(ValueError):
        thresholds_for(MAX_RADIUS + 1)


def test_the_shared_rule_matches_exact_types_and_any_pdq_variant() -> None:
    rng = np.random.default_rng(1)
    pdq = rng.bytes(32).hex()
    index = ScanIndex.build(
        [(1, "E1", "pdq", pdq), (2, "E2", "md5", "ab" * 16), (3, "E3", "sha256", "cd" * 32)], 31
    )
    owners = [7, 7, 8, 9, 9]
    types = ["pdq", "pdq", "md5", "sha256", "pdq"]
    values = [rng.bytes(32).hex(), pdq, "ab" * 16, "cd" * 32, rng.bytes(32).hex()]
    assert match_signals(index, owners, types, values) == {(1, 7): 0, (2, 8): 0, (3, 9): 0}
    assert len(index) == 3 and index.names[2] == "E2"


def test_threads_change_nothing_but_the_time() -> None:
    """The database worker splits a chunk's scan over threads: the same pairs, numbered
    as one call numbers them, whatever the split."""
    rng = np.random.default_rng(3)
    entries = rng.integers(0, 256, size=(2_000, 32), dtype=np.uint8)
    ids = np.arange(1, 2_001, dtype=np.int64)
    copies = _near(rng, entries[:300], rng.integers(0, 36, size=300))
    queries = np.concatenate([rng.integers(0, 256, size=(40_000, 32), dtype=np.uint8), copies])
    index = EntryIndex.build(ids, entries, 31)
    q, e, d = scan(index, queries)
    one = sorted(zip(q.tolist(), e.tolist(), d.tolist(), strict=True))
    for threads in (2, 3, 4):
        tq, te, td = scan_threads(index, queries, threads)
        assert sorted(zip(tq.tolist(), te.tolist(), td.tolist(), strict=True)) == one
    assert len(one) >= 250  # the copies within the radius were there to find
    hexes = [h.tobytes().hex() for h in queries]
    owners = [k // 8 for k in range(len(hexes))]  # 8 variants an owner, as stored
    scan_index = ScanIndex.build(
        [(int(i), f"E{i}", "pdq", h.tobytes().hex()) for i, h in zip(ids, entries, strict=True)], 31
    )
    types = ["pdq"] * len(hexes)
    assert match_signals(scan_index, owners, types, hexes, threads=4) == match_signals(
        scan_index, owners, types, hexes
    )
