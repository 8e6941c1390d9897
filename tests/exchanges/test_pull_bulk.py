"""The set-wise write path of a sync and its child-process fetching, against the local
NCMEC-protocol server through python-threatexchange's client: an upstream entry whose
hash changes releases its old one (disabled unless another live entry carries it); a
long pull continued by a child process gives the same bank as one fetched in-process,
and a failure there is the same clean failure, resumed from the last applied page.
Both database backends."""

from __future__ import annotations

import hashlib
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from takedown.errors import ExchangeFailed
from takedown.integrations import feed_process
from takedown.integrations.hash_exchanges import NcmecFeed
from takedown.runtime import Runtime
from takedown.store.models import Bank, BankEntry, ExchangeEntry
from tests.exchanges.ncmec_hash_server import PASSWORD, USER, NcmecHashServer


def md5(n: int) -> str:
    return hashlib.md5(f"stand-in {n}".encode()).hexdigest()


@pytest.fixture
def ncmec() -> Iterator[NcmecHashServer]:
    server = NcmecHashServer(page_size=3).start()
    yield server
    server.stop()


def add_ncmec(rt: Runtime, tmp_path: Path, url: str) -> None:
    rt.banks.create_bank("ncmec", actor="t", source="ncmec")
    creds = tmp_path / "creds"
    creds.write_text(f"{USER}:{PASSWORD}\n")
    creds.chmod(0o600)
    rt.exchanges.add(
        "ncmec-ngo",
        type="ncmec",
        bank="ncmec",
        actor="t",
        base_url=url,
        credentials_file=str(creds),
    )


_LATER = itertools.count(10, 10)


def sync(rt: Runtime, **kw: object):
    """A sync as if a little later each time (a real range ends 5 s before now)."""
    return rt.exchanges.sync("ncmec-ngo", actor="t", now=time.time() + next(_LATER), **kw)  # type: ignore[arg-type]


def entries(rt: Runtime) -> dict[str, bool]:
    with rt.sessions() as s:
        return {v: e for v, e in s.execute(select(BankEntry.value, BankEntry.enabled))}


def provenance(rt: Runtime) -> dict[str, tuple[str, bool]]:
    """Upstream id -> (the value its row points at, live)."""
    with rt.sessions() as s:
        rows = s.execute(
            select(ExchangeEntry.upstream_id, BankEntry.value, ExchangeEntry.removed_at).join(
                BankEntry, BankEntry.id == ExchangeEntry.entry_id
            )
        )
        return {u: (v, removed is None) for u, v, removed in rows}


def cp_from(rt: Runtime) -> int:
    return int(rt.exchanges.get("ncmec-ngo").checkpoint["from"])


def test_an_upstream_entry_whose_hash_changes_releases_the_old_one(rt, tmp_path, ncmec):
    base = int(time.time()) - 3600
    ncmec.add(1, "a", {"md5": md5(1)}, base)
    ncmec.add(1, "b", {"md5": md5(2)}, base + 1)
    ncmec.add(2, "c", {"md5": md5(2)}, base + 2)  # another member, b's file
    add_ncmec(rt, tmp_path, ncmec.url)
    sync(rt)
    cp = cp_from(rt)
    # a and b now carry other values (an upstream correction).
    ncmec.add(1, "a", {"md5": md5(10)}, cp)
    ncmec.add(1, "b", {"md5": md5(11)}, cp)
    result = sync(rt)
    values = entries(rt)
    assert values[md5(1)] is False  # nobody carries it any more: disabled in this sync
    assert values[md5(2)] is True  # c still carries it
    assert values[md5(10)] is True and values[md5(11)] is True
    assert (result.added, result.disabled) == (2, 1)
    rows = provenance(rt)
    assert rows == {
        "1-a": (md5(10), True),
        "1-b": (md5(11), True),
        "2-c": (md5(2), True),
    }
    # And back: a carries md5(1) again, the entry this exchange disabled comes back.
    cp = cp_from(rt)
    ncmec.add(1, "a", {"md5": md5(1)}, cp)
    result = sync(rt)
    assert result.enabled_again == 1 and result.disabled == 1
    values = entries(rt)
    assert values[md5(1)] is True and values[md5(10)] is False


@pytest.fixture
def offloaded(monkeypatch) -> list[dict[str, object]]:
    """Long pulls start after 5 entries still to come; each child started is recorded
    (the real child process runs)."""
    monkeypatch.setattr(NcmecFeed, "offload_after", 5)
    started: list[dict[str, object]] = []
    real = feed_process.child_pages

    def spy(kind, creds, base_url, checkpoint, now):  # type: ignore[no-untyped-def]
        started.append(dict(checkpoint))
        return real(kind, creds, base_url, checkpoint, now)

    monkeypatch.setattr(feed_process, "child_pages", spy)
    return started


def test_a_long_pull_continued_by_a_child_process(rt, tmp_path, ncmec, offloaded):
    base = int(time.time()) - 3600
    for i in range(20):  # 20 entries, 3 a page: 7 pages, the last 6 from the child
        ncmec.add(1 + i % 2, f"e{i}", {"md5": md5(i)}, base + i)
    ncmec.add(2, "e3", {"md5": md5(3)}, base + 30)  # e3 is member 2's
    ncmec.delete(2, "e3", base + 31)  # deleted again later in the range
    add_ncmec(rt, tmp_path, ncmec.url)
    result = sync(rt)
    assert len(offloaded) == 1 and offloaded[0]["next"]  # continued from page 1's link
    assert result.complete and result.pages == 8 and result.added == 20
    values = entries(rt)
    assert len(values) == 20
    assert values[md5(3)] is False and sum(values.values()) == 19
    assert set(rt.exchanges.get("ncmec-ngo").checkpoint) == {"from"}
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(ExchangeEntry)) == 20
    # The next, short, sync stays in this process.
    ncmec.add(2, "n", {"md5": md5(99)}, cp_from(rt))
    assert sync(rt).added == 1 and len(offloaded) == 1


def test_a_failure_in_the_child_fails_the_sync_and_it_resumes(rt, tmp_path, ncmec, offloaded):
    base = int(time.time()) - 3600
    for i in range(15):  # 5 pages
        ncmec.add(1, f"e{i}", {"md5": md5(i)}, base + i)
    add_ncmec(rt, tmp_path, ncmec.url)
    ncmec.hold_page = 7  # the third page, asked for by the child
    failed: list[BaseException] = []

    def run() -> None:
        try:
            sync(rt)
        except BaseException as exc:  # noqa: BLE001 - looked at below
            failed.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    assert ncmec.held.wait(120)
    ncmec.fail_next(401)  # the fourth page's request is refused
    ncmec.hold_page = None
    ncmec.release.set()
    worker.join(180)
    assert not worker.is_alive() and len(offloaded) == 1
    assert isinstance(failed[0], ExchangeFailed)
    assert failed[0].code == "exchange_credentials_refused"
    view = rt.exchanges.get("ncmec-ngo")
    assert view.last_error and PASSWORD not in view.last_error
    applied = len(entries(rt))
    assert applied == 9 and view.checkpoint["next"]  # pages 1-3 and their checkpoint
    # Resumed from the checkpoint: the rest, nothing twice.
    result = sync(rt)
    assert result.complete and result.added == 6 and len(entries(rt)) == 15
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(ExchangeEntry)) == 15


# `takedown exchange sync` with long pulls starting after 5 entries still to come.
_CLI_OFFLOADING = (
    "import sys\n"
    "from takedown.integrations.hash_exchanges import NcmecFeed\n"
    "NcmecFeed.offload_after = 5\n"
    "from takedown.cli.main import app\n"
    "sys.argv = ['takedown', *sys.argv[1:]]\n"
    "app()\n"
)


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        if f"\nPPid:\t{pid}\n" in text:
            found.append(int(status.parent.name))
    return found


def _ended(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in state  # reparented and not reaped here: ended all the same


def test_kill_9_of_a_sync_whose_pull_is_in_a_child(rt, database_url, tmp_path, ncmec):
    base = int(time.time()) - 3600
    for i in range(30):  # 10 pages of 3: the first here, the rest from the child
        ncmec.add(1, f"e{i}", {"md5": md5(i)}, base + i)
    ncmec.delete(1, "e0", base + 40)  # the last page deletes the first entry
    add_ncmec(rt, tmp_path, ncmec.url)
    env = {
        **os.environ,
        "TAKEDOWN_DATABASE_URL": database_url,
        "TAKEDOWN_DATA_DIR": str(tmp_path / "data"),
    }
    ncmec.hold_page = 13  # the fifth page, asked for by the child
    proc = subprocess.Popen(
        [sys.executable, "-c", _CLI_OFFLOADING, "exchange", "sync", "ncmec-ngo"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert ncmec.held.wait(120), proc.stderr.read() if proc.stderr else ""
        children = _children(proc.pid)
        assert len(children) == 1  # the child process fetching the pages
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(60)
    ncmec.hold_page = None
    ncmec.release.set()
    # The child's answer has nowhere to go: it ends instead of pulling on.
    deadline = time.monotonic() + 120
    while not _ended(children[0]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _ended(children[0])
    asked = [p for _, p in ncmec.requests if "/v2/entries" in p]
    assert not any("start=16" in p for p in asked)
    with rt.sessions() as s:
        applied = s.scalar(select(func.count()).select_from(BankEntry)) or 0
    assert applied in (0, 3, 6, 9, 12)  # whole pages only
    # Resumed (in this process, from the stored checkpoint): no duplicate, no gap.
    result = sync(rt)
    assert result.complete and result.added == 30 - applied and result.disabled == 1
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(BankEntry)) == 30
        assert s.scalar(select(func.count()).select_from(ExchangeEntry)) == 30
    values = entries(rt)
    assert values[md5(0)] is False and sum(values.values()) == 29


def _last_analyzed(rt: Runtime) -> dict[str, object] | None:
    """PostgreSQL: when each table the sync grows was last ANALYZEd by hand."""
    from sqlalchemy import text

    with rt.sessions() as s:
        if s.get_bind().dialect.name != "postgresql":
            return None  # SQLite's planner keeps no such statistics
        return dict(
            s.execute(
                text(
                    "SELECT relname, last_analyze FROM pg_stat_user_tables "
                    "WHERE relname IN ('bank_entries', 'exchange_entries')"
                )
            ).all()
        )


def test_a_sync_refreshes_postgresqls_statistics_as_the_bank_grows(
    rt, tmp_path, ncmec, monkeypatch
):
    """Planned from an empty bank, each page's existence question would read the whole
    bank: the sync ANALYZEs the tables it grows (here from 5 rows on, then doubling)."""
    from takedown.services.exchanges import service

    monkeypatch.setattr(service, "_ANALYZE_AFTER", 5)
    base = int(time.time()) - 3600
    for i in range(20):
        ncmec.add(1, f"e{i}", {"md5": md5(i)}, base + i)
    add_ncmec(rt, tmp_path, ncmec.url)
    before = _last_analyzed(rt)
    result = sync(rt)
    assert result.complete and result.added == 20 and len(entries(rt)) == 20
    after = _last_analyzed(rt)
    if before is None or after is None:
        return
    for table in ("bank_entries", "exchange_entries"):
        # The statistics collector reports a moment later: wait for it.
        deadline = time.monotonic() + 300  # a loaded machine
        while after[table] is None or (before[table] and after[table] <= before[table]):
            assert time.monotonic() < deadline, (table, before, after)
            time.sleep(0.2)
            after = _last_analyzed(rt) or {}


def test_values_asked_in_one_string_and_one_with_a_line_break(rt: Runtime):
    # _rows_in sends PostgreSQL the values as one string split by the server; a value
    # with a line break in it cannot be, and is asked as an array instead.
    from datetime import UTC, datetime

    from takedown.services.exchanges.service import _rows_in
    from takedown.store.db import bulk_insert, unit_of_work
    from takedown.store.models import Base

    rt.banks.create_bank("b", actor="t")
    table = Base.metadata.tables["bank_entries"]
    values = ["a\nb", "c", "d", "e,f"]
    with unit_of_work(rt.sessions) as s:
        bank_id = s.scalar(select(Bank.id))
        rows = [
            {
                "public_id": f"P{i:025d}",
                "bank_id": bank_id,
                "signal_type": "md5",
                "value": v,
                "source": "own",
                "added_by": "t",
                "added_at": datetime.now(UTC),
                "enabled": True,
            }
            for i, v in enumerate(values)
        ]
        bulk_insert(s.connection(), table, rows)
    sql = "SELECT value FROM bank_entries WHERE bank_id = {p} AND value {in}"
    with unit_of_work(rt.sessions, write=False) as s:
        for asked in (["c", "e,f", "x"], ["a\nb", "d", "x"], ["a"], [""], []):
            found = sorted(v for (v,) in _rows_in(s, sql, (bank_id,), asked))
            assert found == sorted(v for v in asked if v in values)
