"""The audit log is hash-chained and append-only: tampering with the database directly
(edits, deletions, insertions, swaps, a cut-off tail) is found by `takedown audit
verify`, on SQLite and PostgreSQL; concurrent writers still make one chain."""

from __future__ import annotations

import json
import multiprocessing
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from takedown.cli import app
from takedown.domain.audit_chain import (
    GENESIS,
    EventFields,
    canonical_event,
    derive_key,
    mac,
)
from takedown.runtime import Runtime
from takedown.services.audit.chain import AuditChain, append_pending, attach, record, record_many
from takedown.store.db import unit_of_work
from takedown.store.models import AuditCheckpoint, AuditEvent

runner = CliRunner()


def _write(rt: Runtime, n: int, *, actor: str = "tester") -> None:
    with unit_of_work(rt.sessions) as s:
        for i in range(n):
            record(s, actor, "thing.changed", "thing", f"t{i}", {"n": i, "note": "ü ✓"})


@contextmanager
def tampering(rt: Runtime) -> Iterator[object]:
    """A connection with the append-only triggers out of the way: what someone with
    the database owner's rights could do."""
    pg = rt.engine.dialect.name == "postgresql"
    with rt.engine.begin() as conn:
        if pg:
            for t in ("audit_events", "audit_checkpoints"):
                conn.execute(text(f"ALTER TABLE {t} DISABLE TRIGGER USER"))
        else:
            names = conn.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            ).scalars()
            for name in list(names):
                conn.execute(text(f"DROP TRIGGER {name}"))
        yield conn
        if pg:
            for t in ("audit_events", "audit_checkpoints"):
                conn.execute(text(f"ALTER TABLE {t} ENABLE TRIGGER USER"))


def _problems(rt: Runtime) -> list[str]:
    return [p.message for p in rt.audit.verify().problems]


def test_events_are_chained_and_verify(rt: Runtime):
    _write(rt, 3)
    with unit_of_work(rt.sessions) as s:
        record_many(s, "tester", "item.restricted", "item", [f"i{i}" for i in range(500)], {})
    with rt.sessions() as s:
        rows = s.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        assert [r.id for r in rows] == list(range(1, 504))
        assert rows[0].prev_hash == GENESIS
        assert all(b.prev_hash == a.event_hash for a, b in zip(rows, rows[1:], strict=False))
        # The first commit checkpointed the head (none existed).
        cps = s.scalars(select(AuditCheckpoint)).all()
        assert [(c.id, c.event_id) for c in cps] == [(1, 3)]
    report = rt.audit.verify()
    assert report.ok and report.events_checked == 503 and report.head_id == 503


def test_canonical_form_is_the_documented_json(rt: Runtime):
    e = EventFields(
        7, datetime(2026, 1, 2, 3, 4, 5, 6, UTC), "a", "b.c", "d", "e\u00e9", '{"x": 1}'
    )
    expected = json.dumps(
        [
            "takedown-audit-v1",
            7,
            "2026-01-02T03:04:05.000006Z",
            "a",
            "b.c",
            "d",
            "e\u00e9",
            '{"x": 1}',
            GENESIS,
        ],
        separators=(",", ":"),
    )
    assert canonical_event(e, GENESIS) == expected
    _write(rt, 1)
    with rt.sessions() as s:
        row = s.scalars(select(AuditEvent)).one()
    fields = EventFields(
        row.id, row.at, row.actor, row.action, row.object_type, row.object_id, row.details
    )
    key = rt.audit._chain.keys[0]
    assert mac(key, canonical_event(fields, GENESIS)) == row.event_hash


def test_rollback_writes_nothing_and_takes_no_position(rt: Runtime):
    with pytest.raises(RuntimeError), unit_of_work(rt.sessions) as s:
        record(s, "tester", "thing.changed", "thing", "x", {})
        raise RuntimeError("the use case failed")
    _write(rt, 1)
    with rt.sessions() as s:
        assert s.scalars(select(AuditEvent.id)).all() == [1]
    assert rt.audit.verify().ok


def test_the_database_refuses_update_and_delete(rt: Runtime):
    _write(rt, 2)
    for sql in (
        "UPDATE audit_events SET details = '{}' WHERE id = 1",
        "DELETE FROM audit_events WHERE id = 2",
        "DELETE FROM audit_checkpoints",
    ):
        with pytest.raises(DBAPIError, match="append-only"), rt.engine.begin() as conn:
            conn.execute(text(sql))
    assert rt.audit.verify().ok


TAMPERING = {
    "edit": ["UPDATE audit_events SET details = '{\"n\": 99}' WHERE id = 4"],
    "delete": ["DELETE FROM audit_events WHERE id = 4"],
    "swap": [
        "UPDATE audit_events SET object_id = 'tmp' WHERE id = 4",
        "UPDATE audit_events SET object_id = 't3' WHERE id = 5",
        "UPDATE audit_events SET object_id = 't4' WHERE id = 4",
    ],
    "swap_whole_rows": [
        "UPDATE audit_events SET id = -4 WHERE id = 4",
        "UPDATE audit_events SET id = 4 WHERE id = 5",
        "UPDATE audit_events SET id = 5 WHERE id = -4",
    ],
    "null_chain": ["UPDATE audit_events SET prev_hash = NULL, event_hash = NULL WHERE id = 4"],
    "delete_first": ["DELETE FROM audit_events WHERE id = 1"],
}


@pytest.mark.parametrize("how", sorted(TAMPERING))
def test_direct_tampering_is_found_and_names_the_event(rt: Runtime, how: str):
    _write(rt, 8)
    assert rt.audit.verify().ok
    with tampering(rt) as conn:
        for sql in TAMPERING[how]:
            conn.execute(text(sql))  # type: ignore[attr-defined]
    report = rt.audit.verify()
    assert not report.ok
    expected_first = {"delete": 5, "delete_first": 2}.get(how, 4)
    assert report.first_bad_event == expected_first, report.problems
    assert f"Event {expected_first} " in report.problems[0].message


def test_forged_tail_event_without_the_key_is_found(rt: Runtime):
    """Someone who knows the format but not the key appends an event."""
    _write(rt, 3)
    with rt.sessions() as s:
        head = s.scalars(select(AuditEvent).where(AuditEvent.id == 3)).one()
    at = datetime.now(UTC)
    fields = EventFields(4, at, "admin", "user.created", "user", "u1", "{}")
    forged = mac(derive_key(b"\x00" * 32), canonical_event(fields, head.event_hash or ""))
    with tampering(rt) as conn:
        conn.execute(  # type: ignore[attr-defined]
            AuditEvent.__table__.insert().values(
                id=4,
                at=at,
                actor="admin",
                action="user.created",
                object_type="user",
                object_id="u1",
                details="{}",
                prev_hash=head.event_hash,
                event_hash=forged,
            )
        )
    report = rt.audit.verify()
    assert report.first_bad_event == 4 and "altered" in report.problems[0].message


def test_deleting_the_tail_after_a_checkpoint_is_found(rt: Runtime):
    _write(rt, 5)
    rt.audit.checkpoint("tester")  # covers event 5 (as the automatic one does)
    _write(rt, 2)
    with tampering(rt) as conn:
        conn.execute(text("DELETE FROM audit_events WHERE id >= 4"))  # type: ignore[attr-defined]
    problems = _problems(rt)
    assert problems and "Event 5 is missing but checkpoint 1" in problems[0]
    assert "newest events (after 3) were deleted" in problems[0]


def test_checkpoints_are_macd_and_chained(rt: Runtime):
    _write(rt, 2)
    rt.audit.checkpoint("tester")
    rt.audit.checkpoint("tester")
    with tampering(rt) as conn:
        conn.execute(text("DELETE FROM audit_checkpoints WHERE id = 2"))  # type: ignore[attr-defined]
    problems = _problems(rt)
    assert any("Checkpoint 2 is missing" in p for p in problems)
    with tampering(rt) as conn:
        conn.execute(text("UPDATE audit_checkpoints SET event_id = 1 WHERE id = 3"))  # type: ignore[attr-defined]
    assert any("Checkpoint 3 does not verify" in p for p in _problems(rt))


def test_rewriting_the_whole_chain_is_found_by_an_anchor(rt: Runtime):
    """Even with the key, a rewritten history disagrees with a checkpoint kept outside."""
    _write(rt, 4)
    cp = rt.audit.checkpoint("tester")
    assert rt.audit.verify([(cp.event_id, cp.event_hash)]).ok
    report = rt.audit.verify([(cp.event_id, "f" * 64)])
    assert report.first_bad_event == 4 and "anchor" in report.problems[0].message
    assert "newest events" in rt.audit.verify([(9, "f" * 64)]).problems[0].message


def test_periodic_checkpoints(rt: Runtime):
    chain = rt.audit._chain
    attach(
        rt.sessions,
        AuditChain(chain.keys, checkpoint_every_events=100, checkpoint_every=timedelta(days=1)),
    )
    for _ in range(5):
        with unit_of_work(rt.sessions) as s:
            record_many(s, "tester", "x", "item", [str(i) for i in range(60)], {})
    with rt.sessions() as s:
        covered = s.scalars(select(AuditCheckpoint.event_id).order_by(AuditCheckpoint.id)).all()
    assert covered == [60, 180, 300]
    assert rt.audit.verify().ok


def test_a_rotated_master_key_still_verifies_old_events(rt: Runtime):
    _write(rt, 3)
    old = rt.audit._chain.keys
    new_chain = AuditChain((derive_key(b"\x01" * 32), *old))
    attach(rt.sessions, new_chain)
    rt.audit._chain = new_chain
    _write(rt, 3)
    assert rt.audit.verify().ok and rt.audit.verify().events_checked == 6
    rt.audit._chain = AuditChain((derive_key(b"\x01" * 32),))  # the old key was removed
    assert rt.audit.verify().first_bad_event == 1


def test_events_visible_inside_their_transaction_after_append_pending(rt: Runtime):
    with unit_of_work(rt.sessions) as s:
        record(s, "tester", "x", "thing", "a", {})
        append_pending(s)
        assert s.scalar(select(func.count()).select_from(AuditEvent)) == 1
    assert rt.audit.verify().ok


def test_concurrent_writers_make_one_chain(rt: Runtime):
    """Eight writers, each committing small and bulk appends at once (separate
    connections and transactions, as separate processes would be)."""
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            for i in range(15):
                with unit_of_work(rt.sessions) as s:
                    record(s, f"w{w}", "x", "thing", f"{w}-{i}", {})
                    if i % 5 == 0:
                        record_many(
                            s, f"w{w}", "y", "item", [f"{w}-{i}-{k}" for k in range(50)], {}
                        )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    report = rt.audit.verify()
    assert report.ok, report.problems
    assert report.events_checked == 8 * (15 + 3 * 50)


def _process_writer(url: str, data_dir: str, w: int) -> None:
    """Runs in its own process, with its own runtime, engine and connections."""
    from takedown.config import Settings
    from takedown.runtime import open_runtime

    rt = open_runtime(Settings(database_url=url, data_dir=data_dir), migrate=False)
    try:
        for i in range(10):
            with unit_of_work(rt.sessions) as s:
                record_many(s, f"p{w}", "y", "item", [f"{w}-{i}-{k}" for k in range(20)], {})
    finally:
        rt.close()


def test_writer_processes_make_one_chain(rt: Runtime):
    ctx = multiprocessing.get_context("spawn")
    url, data_dir = rt.settings.resolved_database_url, str(rt.settings.data_dir)
    procs = [ctx.Process(target=_process_writer, args=(url, data_dir, w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    report = rt.audit.verify()
    assert report.ok, report.problems
    assert report.events_checked == 3 * 10 * 20


def test_events_from_before_the_chain_are_counted_not_failed(rt: Runtime):
    with tampering(rt) as conn:  # an event as migration 0005 left it
        conn.execute(  # type: ignore[attr-defined]
            AuditEvent.__table__.insert().values(
                id=1,
                at=datetime.now(UTC),
                actor="old",
                action="x",
                object_type="t",
                object_id="1",
                details="{}",
            )
        )
    _write(rt, 2)
    report = rt.audit.verify()
    assert report.ok and report.events_before_chain == 1 and report.events_checked == 2


@pytest.fixture
def cli_env(database_url: str, tmp_path, monkeypatch):
    monkeypatch.setenv("TAKEDOWN_DATABASE_URL", database_url)
    monkeypatch.setenv("TAKEDOWN_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def test_cli_verify_and_checkpoint(cli_env, rt: Runtime):
    r = runner.invoke(app, ["audit", "checkpoint"])
    assert r.exit_code == 0, r.output
    if True:
        _write(rt, 6)
        cp = json.loads(runner.invoke(app, ["audit", "checkpoint"]).stdout)
        assert cp["event_id"] == 6 and cp["anchor"] == f"6:{cp['event_hash']}"
        r = runner.invoke(app, ["audit", "verify", "--anchor", cp["anchor"]])
        assert r.exit_code == 0 and "audit log intact: 6 chained events" in r.stdout
        with tampering(rt) as conn:
            conn.execute(text("UPDATE audit_events SET actor = 'someone else' WHERE id = 3"))  # type: ignore[attr-defined]
        r = runner.invoke(app, ["audit", "verify"])
        assert r.exit_code == 1
        assert "NOT intact" in r.output and "Event 3 was altered" in r.output
        r = runner.invoke(app, ["audit", "verify", "--anchor", "x:y"])
        assert r.exit_code == 2
