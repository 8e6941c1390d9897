"""When a worker reads new bank rows (services/index/follower.py): a poller thread picks up
other processes' adds with no query at all; a query never waits for such a read, but
always sees the adds of its own process."""

from __future__ import annotations

import threading
import time

from takedown.config import Settings
from takedown.domain.hashlists import HashRecord
from takedown.runtime import open_runtime
from takedown.services.index.follower import Poller

FIRST, SECOND = "1" * 64, "2" * 64


def _wait(condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.02)


def test_a_poller_reads_another_processes_adds_without_a_query(settings: Settings):
    settings = settings.model_copy(update={"index_sync_interval_ms": 1000})
    other, worker = open_runtime(settings, migrate=False), open_runtime(settings, migrate=False)
    poller = Poller(worker.matcher.follower, 0.05).start()
    try:
        other.banks.create_bank("b", actor="t", match_action="block")
        other.banks.add_hashes("b", [HashRecord("pdq", FIRST)], actor="t")
        _wait(lambda: worker.matcher.indexed == 1, "the poller reads the new row")
        assert worker.screening.screen_hashes(actor="t", pdq=FIRST).verdict == "block"
    finally:
        poller.stop()
        other.close()
        worker.close()


def test_a_query_does_not_wait_for_a_read_under_way(settings: Settings):
    settings = settings.model_copy(update={"index_sync_interval_ms": 1})
    other, worker = open_runtime(settings, migrate=False), open_runtime(settings, migrate=False)
    try:
        other.banks.create_bank("b", actor="t", match_action="block")
        worker.matcher.sync(force=True)
        other.banks.add_hashes("b", [HashRecord("pdq", FIRST)], actor="t")
        time.sleep(0.01)  # the interval has passed: a read is due
        follower = worker.matcher.follower
        with follower._lock:  # a poller is in the middle of a (long) read
            verdict = worker.screening.screen_hashes(actor="t", pdq=FIRST).verdict
        assert verdict == "allow"  # answered from the index as it was, without waiting
        assert worker.screening.screen_hashes(actor="t", pdq=FIRST).verdict == "block"
    finally:
        other.close()
        worker.close()


def test_own_adds_are_seen_by_the_next_query_even_during_a_read(settings: Settings):
    settings = settings.model_copy(update={"index_sync_interval_ms": 1000})
    rt = open_runtime(settings, migrate=False)
    try:
        rt.banks.create_bank("b", actor="t", match_action="block")
        rt.matcher.sync(force=True)
        follower = rt.matcher.follower
        answers: list[str] = []
        follower._lock.acquire()  # a poller's read began before the add below
        try:
            rt.banks.add_hashes("b", [HashRecord("pdq", SECOND)], actor="t")
            query = threading.Thread(
                target=lambda: answers.append(
                    rt.screening.screen_hashes(actor="t", pdq=SECOND).verdict
                )
            )
            query.start()
            time.sleep(0.2)
            assert answers == []  # waits: its own process's add must be read first
        finally:
            follower._lock.release()
        query.join(timeout=120)
        assert answers == ["block"]
    finally:
        rt.close()
