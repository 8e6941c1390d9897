"""store.db.bulk_writer: the connection an exchange's sync holds for its transactions,
on both databases. Each unit of work on it commits (or rolls back) as one on the pool's
connections does, and the connection goes back to the pool with SQLite's settings as
it found them (its page cache is raised while it is held)."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
from sqlalchemy import select, text

from takedown.runtime import Runtime
from takedown.store.db import BULK_CACHE_KIB, bulk_writer, unit_of_work
from takedown.store.models import Bank


def _pragma(connection, name: str) -> int:
    cursor = connection.connection.cursor()
    try:
        return int(cursor.execute(f"PRAGMA {name}").fetchone()[0])
    finally:
        cursor.close()


def test_units_of_work_on_it_commit_and_roll_back(rt: Runtime):
    rt.banks.create_bank("held", actor="t", match_action="block")
    with bulk_writer(rt.sessions) as connection:
        with unit_of_work(rt.sessions, bind=connection) as s:
            s.execute(text("UPDATE banks SET description = 'first'"))
        with pytest.raises(RuntimeError), unit_of_work(rt.sessions, bind=connection) as s:
            s.execute(text("UPDATE banks SET description = 'half-done'"))
            raise RuntimeError("the use case failed")
        # Committed for everyone else while the connection is still held.
        with unit_of_work(rt.sessions, write=False) as s:
            assert s.scalar(select(Bank.description)) == "first"
        with unit_of_work(rt.sessions, bind=connection) as s:
            s.execute(text("UPDATE banks SET description = 'second'"))
    with unit_of_work(rt.sessions, write=False) as s:
        assert s.scalar(select(Bank.description)) == "second"


def test_sqlite_settings_raised_while_held_and_restored(rt: Runtime):
    if rt.engine.dialect.name != "sqlite":
        pytest.skip("the page cache is SQLite's setting")
    with rt.engine.connect() as pooled:
        before = (_pragma(pooled, "cache_size"), _pragma(pooled, "wal_autocheckpoint"))
    with bulk_writer(rt.sessions) as connection:
        assert _pragma(connection, "cache_size") == -BULK_CACHE_KIB
        assert _pragma(connection, "wal_autocheckpoint") == before[1]  # SQLite's own
        held = connection.connection.dbapi_connection
    # Back in the pool, as it was: found among every idle connection checked out again.
    with ExitStack() as stack:
        idle = rt.engine.pool.checkedin()  # type: ignore[attr-defined]
        out = [stack.enter_context(rt.engine.connect()) for _ in range(idle)]
        again = [c for c in out if c.connection.dbapi_connection is held]
        assert len(again) == 1
        assert (_pragma(again[0], "cache_size"), _pragma(again[0], "wal_autocheckpoint")) == before
