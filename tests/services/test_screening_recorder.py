"""Group commit of matched screenings (services/screening/recorder.py), on both databases:
screenings queued while a transaction waits commit together, each caller gets its own
id back only once its row is committed, and one bad record fails only its caller."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from takedown.domain.hashlists import HashRecord
from takedown.runtime import Runtime
from takedown.services.screening.recorder import ScreeningRecord, ScreeningRecorder
from takedown.store.models import BankEntry, Screening, ScreeningMatch

BANKED = "f" * 64


def _record(rt: Runtime, content_ref: str = "upload") -> ScreeningRecord:
    rt.banks.create_bank("rec", actor="t", match_action="block")
    rt.banks.add_hashes("rec", [HashRecord("pdq", BANKED)], actor="t")
    result = rt.screening.screen_hashes(
        actor="t", pdq=BANKED, content_ref=content_ref, record=False
    )
    assert result.pending is not None and result.screening_id is None
    return result.pending


def _count(rt: Runtime, model: type) -> int:
    with rt.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


@contextmanager
def _write_lock_held(rt: Runtime) -> Iterator[None]:
    """Another connection holds what a screening insert needs, until the block ends."""
    conn = rt.engine.connect().execution_options(takedown_write=True)
    try:
        conn.begin()  # BEGIN IMMEDIATE on SQLite: the database's one write lock
        if rt.engine.dialect.name == "postgresql":
            conn.execute(text("LOCK TABLE screenings IN EXCLUSIVE MODE"))
        yield
    finally:
        conn.rollback()
        conn.close()


def _wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + 120
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.01)


def test_screenings_queued_behind_a_commit_share_the_next_one(rt: Runtime):
    record = _record(rt)
    recorder = ScreeningRecorder(rt.sessions)
    try:
        with ThreadPoolExecutor(20) as pool:
            with _write_lock_held(rt):
                futures = [
                    pool.submit(recorder.record, dataclasses.replace(record, content_ref=f"u{i}"))
                    for i in range(20)
                ]
                _wait_until(lambda: recorder.waiting == 20, "20 screenings wait")
                assert _count(rt, Screening) == 0  # nothing answered before its commit
                assert not any(f.done() for f in futures)
            ids = [f.result(timeout=120) for f in futures]
    finally:
        recorder.close()
    assert len(set(ids)) == 20
    # The writer took what had arrived and waited for the lock; the rest queued behind
    # it and went in the next transaction.
    assert recorder.batches <= 2
    with rt.sessions() as s:
        rows = dict(s.execute(select(Screening.public_id, Screening.content_ref)).all())
    assert rows == {public_id: f"u{i}" for i, public_id in enumerate(ids)}
    assert _count(rt, ScreeningMatch) == 20


def test_each_screening_of_a_batch_keeps_its_own_matches(rt: Runtime):
    """The rows of one transaction get their ids in the order of the batch: a screening's
    matches are its own, never its neighbour's."""
    rt.banks.create_bank("own", actor="t", match_action="block")
    values = [f"{i:x}" * 64 for i in range(1, 7)]  # six banked hashes, far apart
    rt.banks.add_hashes("own", [HashRecord("pdq", v) for v in values], actor="t")
    records = []
    for i in range(12):
        value = values[i % len(values)]
        result = rt.screening.screen_hashes(actor="t", pdq=value, content_ref=f"r{i}", record=False)
        assert result.pending is not None
        records.append(result.pending)
    recorder = ScreeningRecorder(rt.sessions)
    try:
        with ThreadPoolExecutor(12) as pool:
            with _write_lock_held(rt):
                futures = [pool.submit(recorder.record, r) for r in records]
                _wait_until(lambda: recorder.waiting == 12, "12 screenings wait")
            ids = [f.result(timeout=120) for f in futures]
    finally:
        recorder.close()
    assert recorder.batches <= 2
    with rt.sessions() as s:
        found = s.execute(
            select(Screening.public_id, Screening.content_ref, BankEntry.value)
            .join(ScreeningMatch, ScreeningMatch.screening_id == Screening.id)
            .join(BankEntry, BankEntry.id == ScreeningMatch.entry_id)
        ).all()
    assert sorted(found) == sorted(
        (public_id, f"r{i}", values[i % len(values)]) for i, public_id in enumerate(ids)
    )


def test_a_bad_record_fails_alone(rt: Runtime):
    record = _record(rt)
    match = record.matches[0]
    ghost = dataclasses.replace(
        match, entry=dataclasses.replace(match.entry, id=10**9)
    )  # no such entry
    bad = dataclasses.replace(record, matches=[ghost], content_ref="bad")
    recorder = ScreeningRecorder(rt.sessions)
    outcomes: dict[str, object] = {}
    try:
        with ThreadPoolExecutor(3) as pool, _write_lock_held(rt):
            futures = {
                ref: pool.submit(recorder.record, r)
                for ref, r in [
                    ("a", dataclasses.replace(record, content_ref="a")),
                    ("bad", bad),
                    ("b", dataclasses.replace(record, content_ref="b")),
                ]
            }
            _wait_until(lambda: recorder.waiting == 3, "3 screenings wait")
        for ref, future in futures.items():
            try:
                outcomes[ref] = future.result(timeout=120)
            except IntegrityError as exc:
                outcomes[ref] = exc
    finally:
        recorder.close()
    assert isinstance(outcomes["bad"], IntegrityError)
    assert isinstance(outcomes["a"], str) and isinstance(outcomes["b"], str)
    with rt.sessions() as s:
        refs = set(s.scalars(select(Screening.content_ref)))
    assert refs == {"a", "b"}  # nothing of the bad one, not even its screening row


def test_async_callers_wait_on_the_loop(rt: Runtime):
    record = _record(rt)
    recorder = ScreeningRecorder(rt.sessions)
    loop_threads: set[int] = set()

    async def main() -> list[str]:
        loop_threads.add(threading.get_ident())
        return await asyncio.gather(
            *(
                recorder.record_async(dataclasses.replace(record, content_ref=f"a{i}"))
                for i in range(8)
            )
        )

    try:
        ids = asyncio.run(main())
    finally:
        recorder.close()
    assert len(set(ids)) == 8
    with rt.sessions() as s:
        stored = set(s.scalars(select(Screening.public_id)))
    assert stored == set(ids)


def test_close_writes_what_is_queued_then_refuses(rt: Runtime):
    record = _record(rt)
    recorder = ScreeningRecorder(rt.sessions)
    with ThreadPoolExecutor(5) as pool:
        with _write_lock_held(rt):
            futures = [pool.submit(recorder.record, record) for _ in range(4)]
            _wait_until(lambda: recorder.waiting == 4, "4 screenings wait")
            closing = pool.submit(recorder.close)  # waits for the lock like the writer
        closing.result(timeout=120)
        assert all(isinstance(f.result(timeout=120), str) for f in futures)
    assert _count(rt, Screening) == 4
    with pytest.raises(RuntimeError, match="closed"):
        recorder.record(record)


def test_the_service_answers_with_the_committed_screening(rt: Runtime):
    _record(rt)
    result = rt.screening.screen_hashes(actor="t", pdq=BANKED)
    assert result.verdict == "block" and result.pending is None
    with rt.sessions() as s:
        assert (
            s.scalar(select(Screening.verdict).where(Screening.public_id == result.screening_id))
            == "block"
        )
