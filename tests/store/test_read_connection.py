"""store.db.read_connection: the upload path's bare read, on both databases. It must see
committed rows at once and hand its connection back to the pool exactly as it found it
(on PostgreSQL it reads without a transaction of its own)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from takedown.runtime import Runtime
from takedown.store.db import read_connection, unit_of_work
from takedown.store.models import Bank


def test_reads_what_is_committed_and_leaves_the_pool_transactional(rt: Runtime):
    rt.banks.create_bank("seen", actor="t", match_action="block")
    with read_connection(rt.sessions) as connection:
        dbapi = connection.connection.dbapi_connection
        assert connection.scalar(select(func.count()).select_from(Bank)) == 1
    if rt.engine.dialect.name == "postgresql":
        assert dbapi is not None and dbapi.autocommit is False  # reset on return
    # Every pooled connection -- the one just used among them -- still rolls back a
    # failed unit of work: nothing of it is left.
    for _ in range(3):
        with pytest.raises(RuntimeError), unit_of_work(rt.sessions) as s:
            s.execute(text("UPDATE banks SET description = 'half-done'"))
            raise RuntimeError("the use case failed")
    with read_connection(rt.sessions) as connection:
        assert connection.scalar(select(Bank.description)) == ""
