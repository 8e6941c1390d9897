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
