"""Background compaction of the multi-index-hashing index, against brute-force oracles.

Merges and rebuilds run in a thread of the index, outside the write lock; these tests
pause that thread between building a merged shard and swapping it in (the index's
``_before_swap`` seam) to write meanwhile, and check that searches stay exact before,
during and after the swap, that rows removed mid-merge stay dead, that writers stall
rather than let shards pile up, and that saving and mapped indexes work with it.
"""

from __future__ import annotations

import gc
import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from takedown.matching import MultiIndexHammingIndex, hex_to_bytes_array, mih
from tests.unit.test_hamming_index import load, oracle, race, random_hex, search


def nothing_due(index: MultiIndexHammingIndex) -> bool:
    return mih._due_job(index._current().shards) is None


def pause_before_swap(index: MultiIndexHammingIndex) -> tuple[threading.Event, threading.Event]:
    """Make the next merge wait before its swap: (built, release) events."""
    built, release = threading.Event(), threading.Event()

    def pause() -> None:
        built.set()
        assert release.wait(120)

    index._before_swap = pause
    return built, release


def is_mapped(array: np.ndarray) -> bool:
    base: object = array
    while isinstance(base, np.ndarray):
        if isinstance(base, np.memmap):
            return True
        base = base.base
    return False


def test_merges_run_in_the_background_and_keep_few_shards() -> None:
    rng = random.Random(8)
    index = MultiIndexHammingIndex(delta_rows=16, strategy="probe")
    model: dict[int, str] = {}
    for id_ in range(600):  # one at a time: 37 flushes of the delta
        model[id_] = random_hex(rng)
        index.add(np.array([id_]), hex_to_bytes_array([model[id_]]))
    assert index._compactor is not None and index._compactor.thread.is_alive()
    index.maintain()  # waits for the compactor's round
    assert nothing_due(index)
    shards = index.shard_rows
    assert len(shards) <= 8 and sum(shards) + index.delta_size == 600
    assert all(a > mih.MERGE_RATIO * b for a, b in zip(shards, shards[1:], strict=False))
    queries = [model[i] for i in range(0, 600, 75)]
    assert search(index, queries, 31) == oracle(model, queries, 31)
    index.close()


def test_rows_killed_during_a_merge_stay_dead_after_the_swap() -> None:
    rng = random.Random(40)
    index = MultiIndexHammingIndex(delta_rows=64, strategy="probe")
    built, release = pause_before_swap(index)
    model = {id_: random_hex(rng) for id_ in range(200)}
    load(index, {i: model[i] for i in range(100)})  # one shard: nothing to merge
    load(index, {i: model[i] for i in range(100, 200)})  # two equal shards: merged
    assert built.wait(120)

    # The merged shard is built and waiting; searches still read the two inputs, and
    # writers are not held up: remove one row of each input, replace one of each.
    assert index.shard_rows == (100, 100)
    gone = {id_: model.pop(id_) for id_ in (3, 150)}
    index.remove(np.array(list(gone)))
    replaced = {id_: model[id_] for id_ in (7, 170)}
    for id_ in replaced:
        model[id_] = random_hex(rng)
        index.add(np.array([id_]), hex_to_bytes_array([model[id_]]))
    queries = list(gone.values()) + list(replaced.values()) + [model[i] for i in (7, 8, 170)]
    expected = oracle(model, queries, 31)
    assert search(index, queries, 31) == expected

    release.set()
    assert index.maintain() == 0  # waited for the compactor; nothing else was due
    assert index.shard_rows == (200,) and index.delta_size == 2
    assert index.tombstones == 4 and len(index) == 198  # 3, 150, the old 7 and 170
    assert search(index, queries, 31) == expected
    assert search(index, list(gone.values()), 0) == []
    index.close()


def test_searches_stay_exact_while_merges_swap_in() -> None:
    """Readers of a fixed set of rows, while a writer's bulk batches keep merges going."""
    rng = random.Random(41)
    stable = {id_: random_hex(rng) for id_ in range(300)}
    index = MultiIndexHammingIndex(delta_rows=32, strategy="probe")
    load(index, stable)
    queries = [random_hex(rng) for _ in range(4)] + list(stable.values())[:4]
    expected = oracle(stable, queries, 47)
    stop = threading.Event()

    def writer() -> None:
        writer_rng = np.random.default_rng(42)
        next_id = 10_000
        while not stop.is_set():
            size = int(writer_rng.integers(32, 200))
            ids = np.arange(next_id, next_id + size)
            index.add(ids, writer_rng.integers(0, 256, size=(size, 32), dtype=np.uint8))
            index.remove(ids[::2])
            next_id += size

    def reader() -> None:
        for _ in range(150):
            found = [t for t in search(index, queries, 47) if t[2] < 10_000]
            assert found == expected

    race(writer, reader, readers=2, stop=stop)
    index.maintain()
    assert nothing_due(index)
    assert [t for t in search(index, queries, 47) if t[2] < 10_000] == expected
    index.close()


def test_writers_run_merges_themselves_when_shards_pile_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mih, "STALL_SHARDS", 4)
    rng = random.Random(43)
    index = MultiIndexHammingIndex(delta_rows=8, strategy="probe")
    built, release = pause_before_swap(index)
    batches = [{b * 100 + i: random_hex(rng) for i in range(10)} for b in range(12)]
    returned: list[int] = []

    def writer() -> None:
        for b, batch in enumerate(batches):
            load(index, batch)  # each batch fills the delta: one shard each
            returned.append(b)

    thread = threading.Thread(target=writer)
    thread.start()
    assert built.wait(120)
    deadline = time.monotonic() + 120
    while len(index.shard_rows) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    # The fifth shard made five: its writer waits for the (paused) compactor.
    assert len(index.shard_rows) == 5 and returned == [0, 1, 2, 3] and thread.is_alive()
    release.set()
    thread.join(120)
    assert returned == list(range(12))
    index.maintain()
    assert nothing_due(index) and len(index.shard_rows) <= 3
    model = {k: v for batch in batches for k, v in batch.items()}
    queries = list(model.values())[::15]
    assert search(index, queries, 31) == oracle(model, queries, 31)
    index.close()


def test_close_stops_the_compactor_and_later_writes_merge_inline() -> None:
    rng = random.Random(44)
    index = MultiIndexHammingIndex(delta_rows=8, strategy="probe")
    for b in range(2):
        load(index, {b * 100 + i: random_hex(rng) for i in range(10)})
    assert index._compactor is not None
    thread = index._compactor.thread
    index.close()
    index.close()  # idempotent
    assert not thread.is_alive() and index._compactor is None
    for b in range(2, 6):
        load(index, {b * 100 + i: random_hex(rng) for i in range(10)})
        assert nothing_due(index)  # merged before add returned
    assert index._compactor is None and len(index) == 60


def test_an_index_dropped_without_close_ends_its_compactor() -> None:
    rng = random.Random(45)
    index = MultiIndexHammingIndex(delta_rows=8)
    for b in range(2):
        load(index, {b * 100 + i: random_hex(rng) for i in range(10)})
    assert index._compactor is not None
    thread = index._compactor.thread
    index.maintain()
    del index
    gc.collect()
    thread.join(60)
    assert not thread.is_alive()  # the thread held the index weakly: freed, thread ended


@pytest.mark.parametrize("background", [True, False])
def test_a_mapped_index_merges_into_memory_and_leaves_its_files(
    tmp_path: Path, background: bool
) -> None:
    rng = random.Random(46)
    model = {id_: random_hex(rng) for id_ in range(100)}
    index = MultiIndexHammingIndex(delta_rows=64, strategy="probe")
    load(index, model)
    index.save(tmp_path / "bank")
    queries = [model[i] for i in (1, 50, 99)] + [random_hex(rng)]
    saved_answer = oracle(model, queries, 31)

    loaded = MultiIndexHammingIndex.load(
        tmp_path / "bank", mmap=True, delta_rows=64, strategy="probe", background=background
    )
    assert is_mapped(loaded._current().shards[0].words)
    extra = {id_: random_hex(rng) for id_ in range(100, 200)}
    load(loaded, extra)  # a second shard of 100: merged with the mapped one
    loaded.remove(np.array([1]))
    loaded.maintain()
    model.update(extra)
    del model[1]
    # One shard: 200 rows with 1 dead, or 199 if the merge started after the remove.
    assert len(loaded.shard_rows) == 1 and loaded.shard_rows[0] - loaded.tombstones == 199
    merged = loaded._current().shards[0]
    assert not is_mapped(merged.words) and not is_mapped(merged.entries)
    assert search(loaded, queries, 31) == oracle(model, queries, 31)
    loaded.close()
    again = MultiIndexHammingIndex.load(tmp_path / "bank", mmap=True, strategy="probe")
    assert search(again, queries, 31) == saved_answer


def test_saving_during_writes_and_merges_writes_a_consistent_state(tmp_path: Path) -> None:
    """Each save holds exactly the rows of some moment: ids 0..k-1, with their hashes."""
    rng = np.random.default_rng(47)
    total = 4000
    hashes = rng.integers(0, 256, size=(total, 32), dtype=np.uint8)
    index = MultiIndexHammingIndex(delta_rows=50, strategy="probe")

    def writer() -> None:
        for start in range(0, total, 7):
            stop = min(start + 7, total)
            index.add(np.arange(start, stop), hashes[start:stop])

    thread = threading.Thread(target=writer)
    thread.start()
    saves = 0
    while thread.is_alive() or saves == 0:
        index.save(tmp_path / f"save-{saves}")
        saves += 1
    thread.join()
    index.save(tmp_path / f"save-{saves}")
    counts = []
    for k in range(saves + 1):
        loaded = MultiIndexHammingIndex.load(tmp_path / f"save-{k}", mmap=True)
        count = len(loaded)
        found = loaded.search(hashes, 0)
        hits = sorted(zip(found.query_index.tolist(), found.ids.tolist(), strict=True))
        assert hits == [(i, i) for i in range(count)]
        counts.append(count)
    assert counts[-1] == total and counts == sorted(counts)
    index.close()


def test_a_loaded_index_with_merges_due_starts_compacting_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(47)
    monkeypatch.setattr(mih, "_due_job", lambda shards: None)  # save an unmerged layout
    index = MultiIndexHammingIndex(delta_rows=8, strategy="probe")
    model: dict[int, str] = {}
    for b in range(6):
        batch = {b * 100 + i: random_hex(rng) for i in range(10)}
        load(index, batch)
        model.update(batch)
    index.save(tmp_path / "bank")
    shards_saved = len(index.shard_rows)
    monkeypatch.undo()
    assert shards_saved > 1 and not nothing_due(index)

    loaded = MultiIndexHammingIndex.load(tmp_path / "bank", delta_rows=8, strategy="probe")
    assert loaded._compactor is not None  # no write needed to start it
    loaded.maintain()
    assert nothing_due(loaded) and len(loaded.shard_rows) < shards_saved
    queries = list(model.values())[::7] + [random_hex(rng)]
    assert search(loaded, queries, 31) == oracle(model, queries, 31)
    loaded.close()
    index.close()

    inline = MultiIndexHammingIndex.load(tmp_path / "bank", delta_rows=8, background=False)
    assert inline._compactor is None and not nothing_due(inline)  # the first write merges
