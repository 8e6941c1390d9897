"""Bank index snapshots: a worker started from a snapshot plus the rows added after it
answers exactly as one that replays the database; unusable snapshots are ignored."""

from __future__ import annotations

import json
import logging
import random

import pytest

from takedown.config import Settings
from takedown.domain.hashlists import HashRecord
from takedown.matching import MultiIndexHammingIndex
from takedown.runtime import Runtime, open_runtime
from takedown.services import index_snapshot
from takedown.services.matcher import QuerySignals


def _hashes(rng: random.Random, n: int) -> list[str]:
    return [f"{rng.getrandbits(256):064x}" for _ in range(n)]


def _near(h: str, k: int, rng: random.Random) -> str:
    value = int(h, 16)
    for bit in rng.sample(range(256), k):
        value ^= 1 << bit
    return f"{value:064x}"


def _answers(rt: Runtime, queries: list[str]) -> list[list[tuple[str, int]]]:
    out = []
    for q in queries:
        found = rt.matcher.candidates(QuerySignals(pdq_variants=[("original", q)]))
        out.append(sorted((str(i), d) for i, (d, _) in found.items()))
    return out


def _fresh(settings: Settings) -> Runtime:
    rt = open_runtime(settings, migrate=False)
    rt.warm_up()
    return rt


def test_snapshot_plus_later_rows_answers_like_a_replay(rt: Runtime, settings: Settings):
    rng = random.Random(5)
    rt.banks.create_bank("b", actor="t")
    before, after = _hashes(rng, 3000), _hashes(rng, 500)
    rt.banks.add_hashes("b", [HashRecord("pdq", h) for h in before], actor="t")
    target = index_snapshot.snapshot_path(settings.data_dir)
    assert index_snapshot.write(rt.matcher.follower, target) == 3000
    rt.banks.add_hashes("b", [HashRecord("pdq", h) for h in after], actor="t")
    queries = [_near(h, rng.randint(0, 40), rng) for h in before[:40] + after[:40]]
    queries += _hashes(rng, 20)

    started = _fresh(settings)
    try:
        assert isinstance(started.matcher.follower.snapshot_state()[0], MultiIndexHammingIndex)
        assert started.matcher.indexed == 3500
        from_snapshot = _answers(started, queries)
    finally:
        started.close()
    (target / "snapshot.json").unlink()  # no snapshot: the database is replayed
    replayed = _fresh(settings)
    try:
        assert _answers(replayed, queries) == from_snapshot
        assert sum(1 for a in from_snapshot if a) >= 60  # real matches were compared
    finally:
        replayed.close()


@pytest.mark.parametrize("damage", ["version", "corrupt", "other_database"])
def test_unusable_snapshot_is_ignored_with_a_warning(
    rt: Runtime, settings: Settings, damage: str, caplog: pytest.LogCaptureFixture
):
    rng = random.Random(6)
    rt.banks.create_bank("b", actor="t")
    banked = _hashes(rng, 200)
    rt.banks.add_hashes("b", [HashRecord("pdq", h) for h in banked], actor="t")
    target = index_snapshot.snapshot_path(settings.data_dir)
    index_snapshot.write(rt.matcher.follower, target)
    meta = json.loads((target / "snapshot.json").read_text())
    if damage == "version":
        meta["version"] = 99
    elif damage == "other_database":
        meta["cursors"][0] += 10_000
    else:
        (target / "mih" / "manifest.json").write_text("{not json")
    (target / "snapshot.json").write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="takedown.services.index_snapshot"):
        started = _fresh(settings)
    try:
        assert "not used" in caplog.text
        assert started.matcher.indexed == 200  # replayed from the database
        assert _answers(started, banked[:5]) == _answers(rt, banked[:5])
        assert all(_answers(started, banked[:5]))
    finally:
        started.close()
