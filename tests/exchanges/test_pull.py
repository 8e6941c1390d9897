"""Pulling hash lists from exchanges, against local servers that speak NCMEC's and
StopNCII's protocols as python-threatexchange's clients send and parse them: paging,
checkpoints, deletions (a hash shared by two upstream entries survives one's deletion),
withdrawals (read from ``hashStatus``), 429 and 5xx retried by the client, refused
credentials (a clear error, nothing applied). Both database backends."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from takedown.errors import Conflict, ExchangeFailed, InvalidRequest, NotFound
from takedown.runtime import Runtime
from takedown.store.models import BankEntry, Exchange, ExchangeEntry
from tests.exchanges.ncmec_hash_server import PASSWORD, USER, NcmecHashServer
from tests.exchanges.stopncii_server import (
    FEEDBACK_KEY,
    FETCH_KEY,
    SUBSCRIPTION_KEY,
    StopNciiServer,
)


def md5(n: int) -> str:
    return hashlib.md5(f"stand-in {n}".encode()).hexdigest()


def pdq(n: int) -> str:
    return hashlib.sha256(f"stand-in pdq {n}".encode()).hexdigest()


@pytest.fixture
def ncmec() -> Iterator[NcmecHashServer]:
    server = NcmecHashServer(page_size=3).start()
    yield server
    server.stop()


@pytest.fixture
def stopncii() -> Iterator[StopNciiServer]:
    server = StopNciiServer().start()
    yield server
    server.stop()


def creds_file(tmp_path: Path, text: str, name: str = "creds") -> str:
    path = tmp_path / name
    path.write_text(text + "\n")
    path.chmod(0o600)
    return str(path)


def add_ncmec(rt: Runtime, tmp_path: Path, url: str, name: str = "ncmec-ngo") -> None:
    if name == "ncmec-ngo":
        rt.banks.create_bank("ncmec", actor="t", source="ncmec")
    rt.exchanges.add(
        name,
        type="ncmec",
        bank="ncmec",
        actor="t",
        base_url=url,
        credentials_file=creds_file(tmp_path, f"{USER}:{PASSWORD}"),
    )


def entries(rt: Runtime) -> dict[str, bool]:
    with rt.sessions() as s:
        return {v: e for v, e in s.execute(select(BankEntry.value, BankEntry.enabled))}


def live_rows(rt: Runtime) -> int:
    with rt.sessions() as s:
        return int(
            s.scalar(
                select(func.count())
                .select_from(ExchangeEntry)
                .where(ExchangeEntry.removed_at.is_(None))
            )
            or 0
        )


def sync(rt: Runtime, name: str, **kw: object):
    """A sync as if a little later each time: changes written at the checkpoint are in
    its range (a real sync's range ends 5 s before now)."""
    return rt.exchanges.sync(name, actor="t", now=time.time() + next(_LATER), **kw)  # type: ignore[arg-type]


_LATER = itertools.count(10, 10)


def checkpoint(rt: Runtime, name: str) -> dict[str, object]:
    return rt.exchanges.get(name).checkpoint


def test_ncmec_pages_checkpoint_and_incremental(rt, tmp_path, ncmec):
    base = int(time.time()) - 3600
    for i in range(7):  # 7 entries, 3 a page: 3 pages; sha1 is not taken here
        ncmec.add(1, f"e{i}", {"md5": md5(i), "pdq": pdq(i), "sha1": "a" * 40}, base + i)
    add_ncmec(rt, tmp_path, ncmec.url)
    result = sync(rt, "ncmec-ngo")
    assert (result.pages, result.added, result.seen, result.rejected) == (3, 14, 14, 7)
    assert result.complete
    values = entries(rt)
    assert len(values) == 14 and all(values.values())
    # Provenance on every entry: exchange, upstream id, labels, first and last seen.
    with rt.sessions() as s:
        row = s.scalars(select(ExchangeEntry).where(ExchangeEntry.upstream_id == "1-e3")).first()
        assert row is not None and json.loads(row.labels)["classification"] == "A1"
        assert row.first_seen_at == row.last_seen_at
        entry = s.get_one(BankEntry, row.entry_id)
        assert (entry.source, entry.source_id, entry.added_by) == (
            "ncmec",
            "1-e3",
            "exchange:ncmec-ngo",
        )
    # The UTC dates the client sent (not local time) and the relative next links.
    gets = [p for m, p in ncmec.requests if "/v2/entries" in p]
    assert "from=1970-01-01T00%3A00%3A00Z" in gets[0] and "start=4" in gets[1]
    cp = checkpoint(rt, "ncmec-ngo")
    assert set(cp) == {"from"} and int(time.time()) <= int(cp["from"])
    view = rt.exchanges.get("ncmec-ngo")
    assert view.entries_added == 14 and view.entries_rejected == 7 and view.live_entries == 14
    assert view.last_success_at is not None and view.next_sync_at > view.last_success_at
    # Incremental: only what changed since the checkpoint is asked for and applied.
    ncmec.add(2, "n1", {"md5": md5(100)}, int(cp["from"]))
    before = len(ncmec.requests)
    result = sync(rt, "ncmec-ngo")
    assert (result.pages, result.added) == (1, 1)
    assert len(ncmec.requests) - before == 1 and len(entries(rt)) == 15


def test_ncmec_deletions_and_shared_hashes(rt, tmp_path, ncmec):
    base = int(time.time()) - 3600
    shared = md5(7)
    ncmec.add(1, "a", {"md5": shared, "pdq": pdq(1)}, base)
    ncmec.add(2, "b", {"md5": shared}, base + 1)  # another member, the same file
    ncmec.add(1, "c", {"md5": md5(3)}, base + 2)
    add_ncmec(rt, tmp_path, ncmec.url)
    # A person's own entry with the hash of an upstream one: never disabled by a sync.
    from takedown.domain.hashlists import HashRecord

    rt.banks.add_hashes("ncmec", [HashRecord("md5", md5(3))], actor="reviewer")
    sync(rt, "ncmec-ngo")
    cp = int(checkpoint(rt, "ncmec-ngo")["from"])
    # Member 1 deletes entry a (NCMEC sends no hash with a deletion) and entry c.
    ncmec.delete(1, "a", cp)
    ncmec.delete(1, "c", cp)
    result = sync(rt, "ncmec-ngo")
    values = entries(rt)
    assert values[shared] is True  # member 2's entry b still carries it
    assert values[pdq(1)] is False  # only entry a carried it: disabled in the same sync
    assert values[md5(3)] is True  # the reviewer's own entry
    assert result.disabled == 1 and result.removed == 3
    # Member 2 deletes b: now nobody carries the shared hash.
    cp = int(checkpoint(rt, "ncmec-ngo")["from"])
    ncmec.delete(2, "b", cp)
    assert sync(rt, "ncmec-ngo").disabled == 1
    assert entries(rt)[shared] is False
    with rt.sessions() as s:
        entry = s.scalars(select(BankEntry).where(BankEntry.value == shared)).one()
        assert entry.disabled_by == "exchange:ncmec-ngo"
    # Upstream brings it back: the entry this exchange disabled is enabled again.
    cp = int(checkpoint(rt, "ncmec-ngo")["from"])
    ncmec.add(2, "b", {"md5": shared}, cp)
    assert sync(rt, "ncmec-ngo").enabled_again == 1
    assert entries(rt)[shared] is True and live_rows(rt) == 1


def test_ncmec_retries_failures_and_bad_credentials(rt, tmp_path, ncmec):
    base = int(time.time()) - 3600
    for i in range(4):
        ncmec.add(1, f"e{i}", {"md5": md5(i)}, base + i)
    rt.banks.create_bank("ncmec", actor="t", source="ncmec")
    # Refused credentials: a clear error naming the status, never the secret; nothing
    # applied, the checkpoint untouched.
    rt.exchanges.add(
        "wrong",
        type="ncmec",
        bank="ncmec",
        actor="t",
        base_url=ncmec.url,
        credentials_file=creds_file(tmp_path, f"{USER}:not-the-password", "bad"),
    )
    with pytest.raises(ExchangeFailed) as failed:
        rt.exchanges.sync("wrong", actor="t")
    assert failed.value.code == "exchange_credentials_refused" and failed.value.status == 409
    assert "401" in failed.value.message and "not-the-password" not in failed.value.message
    view = rt.exchanges.get("wrong")
    assert view.checkpoint == {} and view.live_entries == 0 and entries(rt) == {}
    assert view.last_error and "not-the-password" not in view.last_error
    # 429 and 503 are retried by the client's own session: the sync goes through.
    add_ncmec(rt, tmp_path, ncmec.url, name="right")
    ncmec.fail_next(429)
    ncmec.fail_next(503)
    assert sync(rt, "right").added == 4
    # A 5xx that outlasts the retries mid-sync: the pages before it stay, with their
    # checkpoint, and the next sync resumes after them.
    cp = int(checkpoint(rt, "right")["from"])
    for i in range(10, 17):
        ncmec.add(1, f"e{i}", {"md5": md5(i)}, cp)
    with pytest.raises(ExchangeFailed) as failed:
        _sync_with_failure(rt, ncmec)
    assert failed.value.code == "exchange_sync_failed" and "500" in failed.value.message
    partial = rt.exchanges.get("right")
    assert "next" in partial.checkpoint and partial.last_error
    assert len(entries(rt)) == 4 + 3
    result = sync(rt, "right")
    assert result.added == 4 and len(entries(rt)) == 11
    assert rt.exchanges.get("right").last_error is None


def _sync_with_failure(rt: Runtime, ncmec: NcmecHashServer) -> None:
    """Sync one page, then make every try at the next page fail with a 500."""
    sync(rt, "right", max_pages=1)
    ncmec.fail_next(500, 10)
    try:
        sync(rt, "right")
    finally:
        ncmec._fail.clear()


def test_stopncii_withdrawals_paging_and_feedback_key(rt, tmp_path, stopncii):
    base = int(time.time()) - 3600
    for i in range(5):
        stopncii.put("ImagePDQ", pdq(i), "Active", base + i)
    stopncii.put("VideoMD5", md5(1), "Received", base + 5)
    stopncii.put("Text", "some words", "Active", base + 6)  # not a type taken here
    stopncii.put("ImagePDQ", pdq(9), "Withdrawn", base + 7)  # never live here
    from tests.signals.test_stored_only import standin_tmk

    tmk = base64.b64encode(standin_tmk(1)).decode()  # ~176,000 characters, kept whole
    stopncii.put("VideoTMK", tmk, "Active", base + 3)
    rt.banks.create_bank("ncii", actor="t", source="stopncii")
    rt.exchanges.add(
        "stopncii",
        type="stopncii",
        bank="ncii",
        actor="t",
        base_url=stopncii.url,
        credentials_file=creds_file(
            tmp_path, f"{FETCH_KEY},{SUBSCRIPTION_KEY},{FEEDBACK_KEY}", "stopncii"
        ),
    )
    stopncii.max_page = 3
    result = sync(rt, "stopncii")
    assert (result.pages, result.added, result.rejected) == (3, 7, 1)
    assert pdq(9) not in entries(rt)
    assert hashlib.sha256(tmk.encode()).hexdigest() in entries(rt)  # stored by digest
    cp = checkpoint(rt, "stopncii")
    assert cp == {"start": base + 8}
    # The victim withdraws: hashStatus says so (the library's delta would miss it).
    stopncii.put("ImagePDQ", pdq(2), "Withdrawn", base + 20)
    stopncii.put("VideoMD5", md5(1), "Deleted", base + 21)
    stopncii.put("ImagePDQ", pdq(7), "Active", base + 22)
    result = sync(rt, "stopncii")
    assert (result.added, result.disabled) == (1, 2)
    values = entries(rt)
    assert values[pdq(2)] is False and values[md5(1)] is False and values[pdq(7)] is True
    got = [p for m, p in stopncii.requests if "FetchHashes" in p]
    assert f"startTimestamp={base + 8}" in got[-1]


def test_add_refuses_mistakes(rt, tmp_path, monkeypatch):
    rt.banks.create_bank("b", actor="t")
    good = creds_file(tmp_path, f"{USER}:{PASSWORD}")

    def add(**kw):
        args = {"type": "ncmec", "bank": "b", "actor": "t", "credentials_file": good}
        args.update(kw)
        name = args.pop("name", "x")
        return rt.exchanges.add(name, **args)

    cases = [
        ({"name": "Bad Name"}, "invalid_exchange_name"),
        ({"type": "fax"}, "invalid_exchange_type"),
        ({"type": "threatexchange"}, "invalid_exchange_privacy_group"),
        ({"privacy_group": 7}, "invalid_exchange_privacy_group"),
        ({"credentials_file": "relative/path"}, "invalid_credentials_source"),
        ({"credentials_file": None}, "invalid_credentials_source"),
        ({"credentials_file": str(tmp_path / "missing")}, "exchange_credentials_unreadable"),
        ({"credentials_file": "/dev/zero"}, "exchange_credentials_unreadable"),
        ({"credentials_file": str(tmp_path)}, "exchange_credentials_unreadable"),
        (
            {"credentials_file": creds_file(tmp_path, "no-colon", "c2")},
            "invalid_exchange_credentials",
        ),
        ({"base_url": "ftp://x"}, "invalid_exchange_url"),
        ({"interval_seconds": 5}, "invalid_exchange_interval"),
    ]
    for kw, code in cases:
        with pytest.raises(InvalidRequest) as refused:
            add(**kw)
        assert refused.value.code == code, kw
        assert "no-colon" not in refused.value.message
    with pytest.raises(NotFound) as missing:
        add(bank="nope")
    assert missing.value.code == "bank_not_found"
    # From the environment: only the variable's name is stored.
    monkeypatch.setenv("NCMEC_CREDS", f"{USER}:{PASSWORD}")
    view = add(name="env", credentials_file=None, credentials_env="NCMEC_CREDS")
    assert view.credentials == "env:NCMEC_CREDS"
    with pytest.raises(Conflict) as exists:
        add(name="env", credentials_file=None, credentials_env="NCMEC_CREDS")
    assert exists.value.code == "exchange_exists"
    with pytest.raises(NotFound) as unknown:
        rt.exchanges.sync("nope", actor="t")
    assert unknown.value.code == "exchange_not_found"
    monkeypatch.delenv("NCMEC_CREDS")
    with pytest.raises(InvalidRequest) as unset:
        rt.exchanges.sync("env", actor="t")
    assert unset.value.code == "exchange_credentials_unreadable"
    assert rt.exchanges.get("env").last_error


def test_two_syncs_never_apply_the_same_page(rt, tmp_path, ncmec):
    """A page is applied only on the version it was pulled from."""
    from takedown.domain.exchanges import ExchangeType, Page
    from takedown.services.exchanges.service import SyncResult

    add_ncmec(rt, tmp_path, ncmec.url)
    with rt.sessions() as s:
        ex_id = s.scalars(select(Exchange.id)).one()
    page = Page([], [], {"from": 5}, True)
    rt.exchanges._apply(ex_id, 0, ExchangeType.NCMEC, page, SyncResult("ncmec-ngo"))
    with pytest.raises(Conflict) as running:
        rt.exchanges._apply(ex_id, 0, ExchangeType.NCMEC, page, SyncResult("ncmec-ngo"))
    assert running.value.code == "exchange_sync_running"


def test_an_exchange_not_synced_for_24_hours_alerts_legal_once(rt, tmp_path, ncmec):
    from datetime import timedelta

    from takedown.ids import utcnow
    from takedown.store.models import AuditEvent, MailMessage

    add_ncmec(rt, tmp_path, ncmec.url)
    assert rt.exchanges.check_stale("legal@example.org") == []
    later = utcnow() + timedelta(hours=25)
    assert rt.exchanges.check_stale("legal@example.org", now=later) == ["ncmec-ngo"]
    assert rt.exchanges.check_stale("legal@example.org", now=later) == []  # once
    with rt.sessions() as s:
        mail = s.scalars(select(MailMessage)).one()
        assert "ncmec-ngo" in mail.subject and mail.to_address == "legal@example.org"
        assert "exchange.stale" in set(s.scalars(select(AuditEvent.action)))
    # A successful sync ends the stretch: the next one alerts again.
    ncmec.add(1, "e1", {"md5": md5(1)}, int(time.time()) - 60)
    sync(rt, "ncmec-ngo")
    assert rt.exchanges.get("ncmec-ngo").stale is False
    far = utcnow() + timedelta(hours=50)
    assert rt.exchanges.check_stale(None, now=far) == ["ncmec-ngo"]
