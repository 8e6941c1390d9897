"""Matching through the services against brute force, on both databases."""

from __future__ import annotations

import random

import pytest

from takedown.domain.hashlists import HashRecord
from takedown.runtime import Runtime, open_runtime


def _flip(h: str, k: int, rng: random.Random) -> str:
    v = int(h, 16)
    for bit in rng.sample(range(256), k):
        v ^= 1 << bit
    return f"{v:064x}"


def _corpus(rng: random.Random) -> list[str]:
    """Random hashes plus clusters of near-duplicates at distances 0..40 so that real
    matches exist at every distance around the threshold."""
    hashes = [f"{rng.getrandbits(256):064x}" for _ in range(1500)]
    for _ in range(30):
        centre = f"{rng.getrandbits(256):064x}"
        hashes.append(centre)
        hashes += [_flip(centre, rng.randint(0, 40), rng) for _ in range(10)]
    return list(dict.fromkeys(hashes))


def _brute(query: str, banked: dict[str, int], threshold: int) -> set[tuple[str, int]]:
    q = int(query, 16)
    out = set()
    for h in banked:
        d = (q ^ int(h, 16)).bit_count()
        if d <= threshold:
            out.add((h, d))
    return out


@pytest.mark.parametrize("threshold", [0, 16, 31, 40])
def test_pdq_matches_equal_brute_force(rt: Runtime, threshold: int):
    rng = random.Random(threshold)
    hashes = _corpus(rng)
    rt.banks.create_bank("b", actor="t", match_action="block", pdq_threshold=threshold)
    rt.banks.add_hashes("b", [HashRecord("pdq", h) for h in hashes], actor="t")
    banked = dict.fromkeys(hashes, 1)
    queries = [_flip(rng.choice(hashes), rng.randint(0, 45), rng) for _ in range(40)]
    queries += [f"{rng.getrandbits(256):064x}" for _ in range(5)]
    for q in queries:
        got = {(m.value, m.distance) for m in rt.screening.screen_hashes(actor="t", pdq=q).matches}
        assert got == _brute(q, banked, threshold)


def test_disabled_entries_never_match_and_multiple_variants_take_the_best(rt: Runtime):
    rng = random.Random(7)
    hashes = _corpus(rng)[:300]
    rt.banks.create_bank("b", actor="t", match_action="block")
    rt.banks.add_hashes("b", [HashRecord("pdq", h) for h in hashes], actor="t")
    entries, _ = rt.banks.list_entries("b", limit=1000)
    disabled = {e.value for e in entries[::3]}
    for e in entries[::3]:
        rt.banks.set_entry_enabled(e.id, False, actor="t", reason="false positive")
    live = {h: 1 for h in hashes if h not in disabled}
    for h in hashes[:60]:
        q1, q2 = _flip(h, 25, rng), _flip(h, 5, rng)
        result = rt.screening.screen_hashes(actor="t", pdq=q1, pdq_variants=[q2])
        got = {m.value: m.distance for m in result.matches}
        want = {v: d for v, d in _brute(q1, live, 31) | _brute(q2, live, 31)}
        best = {}
        for v, d in _brute(q1, live, 31) | _brute(q2, live, 31):
            best[v] = min(d, best.get(v, 999))
        assert got == best and set(want) == set(best)


def test_entries_added_by_another_process_are_seen_without_rebuild(settings):
    """Two runtimes on one database stand for two worker processes (polling before
    every query here; by default a worker polls every 250 ms)."""
    settings = settings.model_copy(update={"index_sync_interval_ms": 0})
    worker_a = open_runtime(settings, migrate=False)
    worker_b = open_runtime(settings, migrate=False)
    try:
        worker_a.banks.create_bank("b", actor="t", match_action="block")
        first = "1" * 64
        worker_a.banks.add_hashes("b", [HashRecord("pdq", first)], actor="t")
        assert worker_b.screening.screen_hashes(actor="t", pdq=first).verdict == "block"
        indexed_before = worker_b.matcher.indexed
        second = "2" * 64
        worker_a.banks.add_hashes("b", [HashRecord("pdq", second)], actor="t")
        assert worker_b.screening.screen_hashes(actor="t", pdq=second).verdict == "block"
        assert worker_b.matcher.indexed == indexed_before + 1  # incremental, not rebuilt
        [entry], _ = worker_a.banks.list_entries("b", limit=1)
        worker_a.banks.set_entry_enabled(entry.id, False, actor="t", reason="fp")
        assert worker_b.screening.screen_hashes(actor="t", pdq=first).verdict == "allow"
    finally:
        worker_a.close()
        worker_b.close()


def test_import_is_all_or_nothing_and_reports_progress(rt: Runtime):
    from takedown.errors import InvalidRequest

    rt.banks.create_bank("b", actor="t")
    lines = [f"{i:064x}" for i in range(1, 12_001)] + ["not-a-hash"]
    with pytest.raises(InvalidRequest) as err:
        rt.banks.import_list("b", lines, "text", actor="t", default_type="pdq")
    assert err.value.code == "import_rejected"
    assert err.value.details["rejected"][0]["line"] == 12_001
    assert rt.banks.get_bank("b").entries == 0
    calls: list[tuple[int, int]] = []
    result = rt.banks.import_list(
        "b",
        lines,
        "text",
        actor="t",
        default_type="pdq",
        skip_invalid=True,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert result.added == 12_000 and len(result.rejected) == 1
    assert calls[-1] == (12_000, 12_000) and len(calls) >= 3
    again = rt.banks.import_list("b", lines[:100], "text", actor="t", default_type="pdq")
    assert (again.added, again.already_present) == (0, 100)


def test_entry_pages_refuse_silly_limits(rt: Runtime):
    from takedown.errors import InvalidRequest

    rt.banks.create_bank("b", actor="t")
    with pytest.raises(InvalidRequest) as err:
        rt.banks.list_entries("b", limit=5000)
    assert err.value.code == "invalid_limit"
