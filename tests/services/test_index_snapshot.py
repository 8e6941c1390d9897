"""Bank index snapshots: a worker started from a snapshot plus the rows added after it
answers exactly as one that replays the database; unusable snapshots are ignored;
serving processes write new ones as the index grows, one process at a time, and a
worker starting meanwhile always finds one."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from takedown.config import Settings
from takedown.domain.hashlists import HashRecord
from takedown.matching import MultiIndexHammingIndex, mih
from takedown.runtime import Runtime, open_runtime, workers
from takedown.services.index import follower as follower_module
from takedown.services.index import snapshot as index_snapshot
from takedown.services.screening.matcher import QuerySignals
from tests.conftest import start_server


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
    with caplog.at_level(logging.WARNING, logger="takedown.services.index.snapshot"):
        started = _fresh(settings)
    try:
        assert "not used" in caplog.text
        assert started.matcher.indexed == 200  # replayed from the database
        assert _answers(started, banked[:5]) == _answers(rt, banked[:5])
        assert all(_answers(started, banked[:5]))
    finally:
        started.close()


# -- written by serving processes -----------------------------------------------------
def _generations(target: Path) -> set[str]:
    return {p.name for p in target.parent.glob(f"{target.name}.g*")}


def _add(rt: Runtime, hashes: list[str]) -> None:
    rt.banks.add_hashes("b", [HashRecord("pdq", h) for h in hashes], actor="t")


def test_worker_writes_once_grown_and_skips_while_another_writer_holds_the_lock(
    rt: Runtime, settings: Settings
):
    rng = random.Random(7)
    rt.banks.create_bank("b", actor="t")
    _add(rt, _hashes(rng, 300))
    target = index_snapshot.snapshot_path(settings.data_dir)
    worker = workers.SnapshotWorker(rt.matcher.follower, target, every_rows=200, check_s=0.05)
    assert worker.check() == 300  # no snapshot yet: 300 beyond nothing
    assert target.is_symlink() and index_snapshot.written_hashes(target) == 300
    assert worker.check() is None  # nothing new
    _add(rt, _hashes(rng, 150))
    assert worker.check() is None  # 150 < 200
    _add(rt, _hashes(rng, 100))
    with index_snapshot.writer_lock(target, wait=False) as mine:  # as another process
        assert mine
        assert worker.check() is None  # due, but someone else is writing: skipped
        assert index_snapshot.written_hashes(target) == 300
    assert worker.check() == 550
    first, second = sorted(_generations(target))
    assert (target.parent / os.readlink(target)).name == second

    worker.start()  # the thread: the same rounds every check_s
    try:
        _add(rt, _hashes(rng, 250))
        deadline = time.monotonic() + 300
        while index_snapshot.written_hashes(target) != 800 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()
    assert index_snapshot.written_hashes(target) == 800 and worker.written == 3
    assert second in _generations(target) and first not in _generations(target)
    assert len(_generations(target)) == 2  # the current one and the previous one


def _rewrite_twice_when(
    rt: Runtime, target: Path, rng: random.Random, reader_waits: threading.Event
) -> tuple[threading.Thread, threading.Event, list[BaseException]]:
    """A writer thread that, once the reader stops at ``reader_waits``, writes two new
    generations (so the one the reader picked is no longer current nor previous), then
    sets the returned event."""
    written = threading.Event()
    errors: list[BaseException] = []

    def rewrite() -> None:
        try:
            assert reader_waits.wait(60)
            for _ in range(2):
                _add(rt, _hashes(rng, 50))
                index_snapshot.write(rt.matcher.follower, target)
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            written.set()

    thread = threading.Thread(target=rewrite)
    thread.start()
    return thread, written, errors


def test_a_generation_being_loaded_is_kept_while_snapshots_are_rewritten(
    rt: Runtime, settings: Settings, monkeypatch: pytest.MonkeyPatch
):
    """A worker in the middle of loading a generation (its arrays not all opened yet)
    while two newer ones are written: it is not deleted under the worker, which loads
    it whole; the next writer deletes it once nobody reads it."""
    rng = random.Random(8)
    rt.banks.create_bank("b", actor="t")
    _add(rt, _hashes(rng, 500))
    target = index_snapshot.snapshot_path(settings.data_dir)
    index_snapshot.write(rt.matcher.follower, target)
    first = target.resolve()
    loading = threading.Event()
    original = MultiIndexHammingIndex.load
    held = threading.Event()

    def load_after_rewrites(path: Path, *, mmap: bool = True) -> MultiIndexHammingIndex:
        if not held.is_set():
            held.set()
            loading.set()  # the reader has the generation and is about to open its files
            assert written.wait(60)
        return original(path, mmap=mmap)

    monkeypatch.setattr(MultiIndexHammingIndex, "load", staticmethod(load_after_rewrites))
    thread, written, errors = _rewrite_twice_when(rt, target, rng, loading)
    reader = open_runtime(settings, migrate=False)
    try:
        assert index_snapshot.load(reader.matcher.follower, target)
        thread.join()
        assert errors == []
        assert reader.matcher.follower.snapshot_generation == str(first)  # not a replay
        assert reader.matcher.indexed == 600  # and caught up with the rows after it
        assert first.name in _generations(target)  # kept while it was being read
        assert index_snapshot.written_hashes(target) == 600
        index_snapshot.write(rt.matcher.follower, target)
        assert first.name not in _generations(target)  # and deleted after
        assert len(_generations(target)) == 2
    finally:
        thread.join()
        reader.close()


def test_workers_starting_while_snapshots_are_rewritten_always_find_one(
    rt: Runtime, settings: Settings, monkeypatch: pytest.MonkeyPatch
):
    """A worker resolves the link, and before it opens anything the generation it found
    is replaced twice and deleted: it follows the link again and loads the newest one
    (never a replay of the database)."""
    rng = random.Random(8)
    rt.banks.create_bank("b", actor="t")
    _add(rt, _hashes(rng, 500))
    target = index_snapshot.snapshot_path(settings.data_dir)
    index_snapshot.write(rt.matcher.follower, target)
    first = target.resolve()
    resolved = threading.Event()
    original = index_snapshot._reading
    calls: list[Path] = []

    def reading_after_rewrites(generation: Path):  # type: ignore[no-untyped-def]
        calls.append(generation)
        if len(calls) == 1:
            resolved.set()  # the link is resolved, nothing opened yet
            assert written.wait(60)
        return original(generation)

    monkeypatch.setattr(index_snapshot, "_reading", reading_after_rewrites)
    thread, written, errors = _rewrite_twice_when(rt, target, rng, resolved)
    reader = open_runtime(settings, migrate=False)
    try:
        assert index_snapshot.load(reader.matcher.follower, target)
        thread.join()
        assert errors == []
        assert not first.exists()  # the generation it first found was deleted
        newest = target.resolve()
        assert calls == [first, newest]
        assert reader.matcher.follower.snapshot_generation == str(newest)  # not a replay
        assert reader.matcher.indexed == 600
    finally:
        thread.join()
        reader.close()


def test_a_snapshot_directory_from_before_generations_is_replaced(rt: Runtime, settings: Settings):
    rng = random.Random(9)
    rt.banks.create_bank("b", actor="t")
    _add(rt, _hashes(rng, 100))
    target = index_snapshot.snapshot_path(settings.data_dir)
    index_snapshot.write(rt.matcher.follower, target)
    generation = target.resolve()
    target.unlink()
    generation.rename(target)
    assert target.is_dir() and not target.is_symlink()  # the layout of the last release
    started = _fresh(settings)
    try:
        assert started.matcher.indexed == 100
    finally:
        started.close()
    index_snapshot.write(rt.matcher.follower, target)  # the old directory becomes previous
    assert target.is_symlink() and len(_generations(target)) == 2
    index_snapshot.write(rt.matcher.follower, target)  # and then goes
    assert len(_generations(target)) == 2 and index_snapshot.written_hashes(target) == 100


def test_serving_processes_keep_the_snapshot_fresh_one_writer_at_a_time(
    sqlite_template: Path, tmp_path: Path
):
    """`takedown serve --workers 2`: two real processes, each with a snapshot worker."""
    database = tmp_path / "takedown.sqlite3"
    shutil.copy(sqlite_template, database)
    settings = Settings(database_url=f"sqlite:///{database}", data_dir=tmp_path / "data")
    target = index_snapshot.snapshot_path(settings.data_dir)
    rng = random.Random(10)
    rt = open_runtime(settings, migrate=False)
    rt.banks.create_bank("b", actor="t")
    _add(rt, _hashes(rng, 3000))
    env = {
        "TAKEDOWN_DATABASE_URL": settings.resolved_database_url,
        "TAKEDOWN_DATA_DIR": str(settings.data_dir),
        "TAKEDOWN_INDEX_SNAPSHOT_ROWS": "1000",
        "TAKEDOWN_INDEX_SNAPSHOT_CHECK_SECONDS": "0.2",
    }
    server, _ = start_server(env, workers=2)

    def wait_for(hashes: int) -> None:
        deadline = time.monotonic() + 300
        while index_snapshot.written_hashes(target) != hashes:
            assert server.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.0)  # five more rounds of both workers

    try:
        wait_for(3000)  # both workers replayed 3000 rows: due in both, one writes
        (first,) = _generations(target)
        with index_snapshot.writer_lock(target, wait=True):  # as a third writer
            _add(rt, _hashes(rng, 1500))
            time.sleep(1.5)  # due in both workers, but the lock is held
            assert index_snapshot.written_hashes(target) == 3000
            assert _generations(target) == {first}
        wait_for(4500)
        assert len(_generations(target)) == 2 and first in _generations(target)
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=60)
        rt.close()
    assert "Traceback" not in stderr, stderr
    started = _fresh(settings)
    try:
        assert started.matcher.indexed == 4500
    finally:
        started.close()


def test_a_serving_worker_moves_onto_a_fresh_snapshot_without_a_gap(settings: Settings):
    """A worker that replayed the database (its index private to it) moves onto the
    snapshot another process wrote: the mapped index, caught up with the rows added
    after it, and no search meanwhile misses anything the worker already had."""
    rng = random.Random(11)
    writer, worker = open_runtime(settings, migrate=False), open_runtime(settings, migrate=False)
    target = index_snapshot.snapshot_path(settings.data_dir)
    try:
        writer.banks.create_bank("b", actor="t")
        before, after = _hashes(rng, 3000), _hashes(rng, 600)
        writer.banks.add_hashes("b", [HashRecord("pdq", h) for h in before], actor="t")
        index_snapshot.write(writer.matcher.follower, target)  # as another process
        writer.banks.add_hashes("b", [HashRecord("pdq", h) for h in after], actor="t")
        worker.matcher.sync(force=True)  # replayed: 3600 hashes in its own memory
        private = worker.matcher.follower.snapshot_state()[0]
        queries = before[:30] + after[:30]
        expected = _answers(worker, queries)
        assert all(len(found) == 1 for found in expected)

        misses: list[int] = []
        stop = threading.Event()

        def search_meanwhile() -> None:
            while not stop.is_set():
                misses.extend(i for i, a in enumerate(_answers(worker, queries)) if not a)

        searcher = threading.Thread(target=search_meanwhile)
        searcher.start()
        keeper = workers.SnapshotWorker(
            worker.matcher.follower, target, every_rows=1000, check_s=60
        )
        try:
            assert keeper.check() is None  # 600 new hashes: no new snapshot is due
        finally:
            stop.set()
            searcher.join()
        assert keeper.switched == 1 and misses == []
        mapped, cursors = worker.matcher.follower.snapshot_state()
        assert mapped is not private and worker.matcher.indexed == 3600
        assert worker.matcher.follower.snapshot_generation == str(target.resolve())
        assert _answers(worker, queries) == expected
        keeper.check()
        assert keeper.switched == 1  # already on the newest one
    finally:
        writer.close()
        worker.close()


def test_snapshots_are_written_with_nothing_left_to_merge(
    rt: Runtime, settings: Settings, monkeypatch: pytest.MonkeyPatch
):
    """A worker that loaded a snapshot with merges due would copy mapped shards into its
    own memory; the writer merges first."""
    rt.banks.create_bank("b", actor="t")
    rt.banks.add_hashes(
        "b", [HashRecord("pdq", h) for h in _hashes(random.Random(9), 10)], actor="t"
    )
    index = rt.matcher.follower.snapshot_state()[0]
    assert isinstance(index, MultiIndexHammingIndex)
    monkeypatch.setattr(mih, "_due_job", lambda shards: None)  # let shards pile up
    words = np.random.default_rng(9).integers(
        0, 256, (2 * mih.DEFAULT_DELTA_ROWS + 10, 32), np.uint8
    )
    for half in np.array_split(np.arange(words.shape[0]), 2):
        index.add(half + 10**12, words[half])
    monkeypatch.undo()
    assert mih._due_job(index._current().shards) is not None

    target = index_snapshot.snapshot_path(settings.data_dir)
    index_snapshot.write(rt.matcher.follower, target)
    saved = MultiIndexHammingIndex.load(target / index_snapshot._INDEX, background=False)
    assert len(saved) == words.shape[0] + 10
    assert mih._due_job(saved._current().shards) is None


def test_no_snapshot_is_written_while_a_large_import_is_being_read(
    rt: Runtime, settings: Settings, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(follower_module, "_SYNC_BATCH", 100)
    follower = rt.matcher.follower
    rt.banks.create_bank("b", actor="t")
    target = index_snapshot.snapshot_path(settings.data_dir)
    worker = workers.SnapshotWorker(follower, target, every_rows=50, check_s=0.05)
    _add(rt, _hashes(random.Random(10), 250))
    follower.sync(force=True)  # 250 hashes in batches of 100: an import being read
    assert follower.catching_up
    assert worker.check() is None and index_snapshot.written_hashes(target) == 0
    with follower._lock:  # a read under way (as a poller's)
        assert follower.catching_up and worker.check() is None
    follower.sync(force=True)  # nothing more to read: caught up
    assert not follower.catching_up
    assert worker.check() == 250
