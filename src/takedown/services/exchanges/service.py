"""Use cases for hash-list exchanges. ``sync`` applies each page pulled from an
exchange in one transaction with the checkpoint that follows it, so a sync killed at
any point resumes after the last whole page: no duplicate, no gap."""

from __future__ import annotations

import builtins
import json
import logging
import os
import queue
import stat
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from takedown.config import Settings
from takedown.domain.exchanges import (
    DEFAULT_INTERVAL_S,
    STALE_AFTER_S,
    Credentials,
    ExchangeType,
    Page,
    check_api_base_url,
    check_api_credentials_env,
    credentials_ref,
    merge_pages,
    our_signal_type,
    parse_credentials,
    parse_exchange_action,
    parse_exchange_type,
    validate_exchange_name,
    validate_exchange_threshold,
    validate_interval,
    validate_privacy_group,
)
from takedown.domain.hashlists import HashRecord
from takedown.errors import Conflict, ExchangeFailed, InvalidRequest, NotFound, TakedownError
from takedown.ids import utcnow
from takedown.integrations.exchange_feeds import Feed, open_feed
from takedown.integrations.hash_exchanges import FeedError
from takedown.memory import paused_gc
from takedown.services.audit.chain import record
from takedown.services.banks.feedback import queue_opinion
from takedown.services.banks.service import insert_entries
from takedown.services.exchanges.sharing import recognise_own, recognise_own_values
from takedown.services.outbound.mail import queue_mail
from takedown.signals import SignalType, signal_type
from takedown.store import repositories as repo
from takedown.store.db import bulk_insert, bulk_writer, refresh_statistics, unit_of_work
from takedown.store.models import (
    Bank,
    BankEntry,
    Base,
    Exchange,
    ExchangeEntry,
    ExchangeFeedback,
)

log = logging.getLogger(__name__)
_CHUNK = 1000  # values per IN (...) list
_ANALYZE_AFTER = 10_000  # rows a sync adds before PostgreSQL's statistics are refreshed
# What is fetched ahead, and applied together at most: pages weighing this much (their
# values' characters, and 100 an entry): about 40 of NCMEC's pages of a thousand PDQs
# and MD5s. One transaction's random inserts into the bank's unique index dirty most of
# its pages whatever their number, so fewer, larger transactions write less (measured
# at a million entries: 8 pages a transaction wrote 9 GB, 32 pages 4.7 GB). A page
# heavier than this alone (a thousand video TMKs) is fetched ahead alone.
_AHEAD_WEIGHT = 8_000_000
_EE = Base.metadata.tables["exchange_entries"]
_FEEDBACK_ATTEMPTS = 12  # tries before a feedback row is given up (state failed)
# (type, credentials, base URL, ThreatExchange privacy group) -> a feed
FeedFactory = Callable[[ExchangeType, Credentials, str | None, int | None], Feed]


@dataclass(frozen=True)
class ExchangeView:
    id: str
    name: str
    type: str
    bank: str
    base_url: str | None
    credentials: str  # where the secret is (file:/path or env:NAME), never the secret
    interval_seconds: int
    enabled: bool
    checkpoint: dict[str, Any]
    entries_added: int
    entries_disabled: int
    entries_rejected: int
    last_sync_at: datetime | None
    last_success_at: datetime | None
    next_sync_at: datetime | None
    last_error: str | None
    created_at: datetime
    created_by: str
    live_entries: int = 0  # upstream signals live now
    stale: bool = False  # no successful sync for 24 hours (the legal team is alerted)
    # Its own PDQ threshold and action for its entries (None: the bank's).
    threshold: int | None = None
    action: str | None = None
    privacy_group: int | None = None  # ThreatExchange's privacy group

    @classmethod
    def of(cls, ex: Exchange, bank: str, live: int = 0) -> ExchangeView:
        checkpoint = json.loads(ex.checkpoint) if ex.checkpoint else {}
        if "next" in checkpoint:  # a paging link or token: not for display
            checkpoint = {**checkpoint, "next": "(mid-sync)"}
        return cls(
            id=ex.public_id,
            name=ex.name,
            type=ex.type,
            bank=bank,
            base_url=ex.base_url,
            credentials=ex.credentials,
            interval_seconds=ex.interval_seconds,
            enabled=ex.enabled,
            checkpoint=checkpoint,
            entries_added=ex.entries_added,
            entries_disabled=ex.entries_disabled,
            entries_rejected=ex.entries_rejected,
            last_sync_at=ex.last_sync_at,
            last_success_at=ex.last_success_at,
            next_sync_at=ex.next_sync_at,
            last_error=ex.last_error,
            created_at=ex.created_at,
            created_by=ex.created_by,
            live_entries=live,
            stale=_is_stale(ex, utcnow()),
            threshold=ex.threshold,
            action=ex.action,
            privacy_group=ex.privacy_group,
        )


@dataclass
class SyncResult:
    exchange: str
    pages: int = 0
    added: int = 0  # bank entries new to the bank
    seen: int = 0  # upstream signals added or refreshed
    disabled: int = 0  # bank entries disabled because upstream removed them
    enabled_again: int = 0  # entries upstream brought back
    removed: int = 0  # upstream signals removed
    rejected: int = 0  # upstream signals of a type not taken here, or malformed
    complete: bool = False
    checkpoint: dict[str, Any] = field(default_factory=dict)


class ExchangeService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        feed_factory: FeedFactory = open_feed,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._sessions = sessions
        self._feed_factory = feed_factory
        self._environ = environ if environ is not None else os.environ

    # -- configuration -----------------------------------------------------------
    def add(
        self,
        name: str,
        *,
        type: str,
        bank: str,
        actor: str,
        credentials_file: str | None = None,
        credentials_env: str | None = None,
        base_url: str | None = None,
        interval_seconds: int = DEFAULT_INTERVAL_S,
        threshold: int | None = None,
        action: str | None = None,
        privacy_group: int | None = None,
    ) -> ExchangeView:
        """Add an exchange feeding ``bank``; its credentials are read and checked for
        their format now (not sent anywhere), and it syncs at the worker's next round.
        ``threshold`` and ``action``: its own for its entries at match time (the
        stricter of the bank's and this threshold; this action instead of the bank's)."""
        validate_exchange_name(name)
        validate_exchange_threshold(threshold)
        parsed_action = parse_exchange_action(action)
        kind = parse_exchange_type(type)
        privacy_group = validate_privacy_group(kind, privacy_group)
        ref = credentials_ref(file=credentials_file, env=credentials_env)
        self._credentials(kind, ref)
        if base_url is not None:
            base_url = _validate_url(base_url)
        validate_interval(interval_seconds)
        try:
            with unit_of_work(self._sessions) as s:
                target = repo.get_bank(s, bank)
                if s.scalars(select(Exchange.id).where(Exchange.name == name)).first():
                    raise _exists(name)
                ex = Exchange(
                    name=name,
                    type=kind.value,
                    bank_id=target.id,
                    base_url=base_url,
                    credentials=ref,
                    interval_seconds=interval_seconds,
                    enabled=True,
                    version=0,
                    entries_added=0,
                    entries_disabled=0,
                    entries_rejected=0,
                    next_sync_at=utcnow(),
                    created_by=actor,
                    threshold=threshold,
                    action=parsed_action.value if parsed_action else None,
                    privacy_group=privacy_group,
                )
                s.add(ex)
                s.flush()
                record(
                    s,
                    actor,
                    "exchange.added",
                    "exchange",
                    ex.public_id,
                    {
                        "name": name,
                        "type": kind.value,
                        "bank": target.name,
                        "base_url": base_url,
                        "credentials": ref,
                        "interval_seconds": interval_seconds,
                        "threshold": threshold,
                        "action": ex.action,
                        "privacy_group": privacy_group,
                    },
                )
                return ExchangeView.of(ex, target.name)
        except IntegrityError:
            raise _exists(name) from None

    def list(self) -> list[ExchangeView]:
        with unit_of_work(self._sessions, write=False) as s:
            live = dict(
                s.execute(
                    select(ExchangeEntry.exchange_id, func.count())
                    .where(ExchangeEntry.removed_at.is_(None))
                    .group_by(ExchangeEntry.exchange_id)
                ).all()
            )
            rows = s.execute(
                select(Exchange, Bank.name)
                .join(Bank, Bank.id == Exchange.bank_id)
                .order_by(Exchange.name)
            ).all()
            return [ExchangeView.of(ex, bank, live.get(ex.id, 0)) for ex, bank in rows]

    def get(self, ref: str) -> ExchangeView:
        with unit_of_work(self._sessions, write=False) as s:
            return exchange_view(s, get_exchange(s, ref))

    def set_policy(
        self,
        ref: str,
        *,
        actor: str,
        threshold: int | None,
        action: str | None,
    ) -> ExchangeView:
        """Change the exchange's own threshold and action (None: the bank's); audited.
        Other processes' matchers apply it within a second."""
        validate_exchange_threshold(threshold)
        parsed = parse_exchange_action(action)
        with unit_of_work(self._sessions) as s:
            ex = get_exchange(s, ref)
            before = {"threshold": ex.threshold, "action": ex.action}
            ex.threshold, ex.action = threshold, parsed.value if parsed else None
            record(
                s,
                actor,
                "exchange.policy_changed",
                "exchange",
                ex.public_id,
                {"before": before, "threshold": ex.threshold, "action": ex.action},
            )
        return self.get(ref)

    # -- syncing -----------------------------------------------------------------
    def sync(
        self,
        ref: str,
        *,
        actor: str,
        max_pages: int | None = None,
        now: float | None = None,
    ) -> SyncResult:
        """Pull the exchange's changes since its checkpoint, one transaction per page.
        A failure (refused credentials, the exchange down after the client's retries)
        is recorded on the exchange and raised as :class:`ExchangeFailed`; pages
        applied before it stay, with their checkpoint. ``now`` (seconds since the
        epoch): where a new time range ends, for tests and benchmarks."""
        with unit_of_work(self._sessions, write=False) as s:
            ex = get_exchange(s, ref)
            ex_id, name, version = ex.id, ex.name, ex.version
            kind = ExchangeType(ex.type)
            cred_ref, base_url, group = ex.credentials, ex.base_url, ex.privacy_group
            checkpoint = json.loads(ex.checkpoint) if ex.checkpoint else {}
        result = SyncResult(exchange=name, checkpoint=checkpoint)
        stats = _Statistics()
        try:
            creds = self._credentials(kind, cred_ref)
            feed = self._feed_factory(kind, creds, base_url, group)
            with bulk_writer(self._sessions) as connection:
                for batch in _prefetched(feed.pages(checkpoint, now)):
                    if max_pages is not None:
                        batch = batch[: max_pages - result.pages]
                    page = merge_pages(batch)
                    with paused_gc():  # a batch's new objects; its cycles collected after
                        version = self._apply(ex_id, version, kind, page, result, stats, connection)
                    result.pages += len(batch)
                    result.checkpoint = page.checkpoint
                    if page.done:
                        result.complete = True
                        break
                    if max_pages is not None and result.pages >= max_pages:
                        break
                else:
                    result.complete = True  # nothing (more) to pull
        except FeedError as exc:
            self._failed(ex_id, str(exc))
            raise ExchangeFailed(
                f"Sync of {name!r} failed: {exc}",
                code="exchange_credentials_refused" if exc.credentials else None,
                pages=result.pages,
            ) from None
        except TakedownError as exc:
            if exc.code in ("invalid_exchange_credentials", "exchange_credentials_unreadable"):
                self._failed(ex_id, exc.message)
            raise
        self._finished(ex_id, result.complete)
        log.info(
            "exchange %s synced: %s pages, %s added, %s disabled, %s rejected",
            name,
            result.pages,
            result.added,
            result.disabled,
            result.rejected,
        )
        return result

    def sync_due(self, *, actor: str = "worker", now: datetime | None = None) -> int:
        """Sync every enabled exchange whose time has come; returns how many were
        tried. A failure is recorded on its exchange and logged."""
        now = now or utcnow()
        with unit_of_work(self._sessions, write=False) as s:
            names = list(
                s.scalars(
                    select(Exchange.name)
                    .where(
                        Exchange.enabled.is_(True),
                        or_(Exchange.next_sync_at.is_(None), Exchange.next_sync_at <= now),
                    )
                    .order_by(Exchange.next_sync_at)
                )
            )
        for name in names:
            try:
                self.sync(name, actor=actor)
            except TakedownError as exc:
                log.warning("exchange %s: %s", name, exc.message)
        return len(names)

    def check_stale(
        self, alert_email: str | None, now: datetime | None = None
    ) -> builtins.list[str]:
        """Alert the legal team once about each enabled exchange that has not synced
        successfully for 24 hours: an audit event and, when an address is configured,
        a mail through the mail outbox. Returns the exchanges alerted about."""
        now = now or utcnow()
        alerted: builtins.list[str] = []
        with unit_of_work(self._sessions) as s:
            for ex in s.scalars(select(Exchange).where(Exchange.enabled.is_(True))):
                if not _is_stale(ex, now) or ex.stale_alerted_at is not None:
                    continue
                ex.stale_alerted_at = now
                since = ex.last_success_at or ex.created_at
                hours = round((now - since).total_seconds() / 3600, 1)
                record(
                    s,
                    "system",
                    "exchange.stale",
                    "exchange",
                    ex.public_id,
                    {"name": ex.name, "hours_since_sync": hours, "last_error": ex.last_error},
                )
                if alert_email:
                    queue_mail(
                        s,
                        alert_email,
                        f"Hash exchange {ex.name} has not synced for {hours:.0f} hours",
                        f"The {ex.type} exchange {ex.name} has not synced successfully since "
                        f"{since.isoformat(timespec='seconds')} ({hours} hours). Its bank "
                        "misses what upstream added and still holds what upstream withdrew. "
                        f"Last error: {ex.last_error or 'none'}.",
                        now,
                    )
                alerted.append(ex.name)
        return alerted

    # -- write-back --------------------------------------------------------------
    def give_opinion(self, entry_ref: str, *, confirmed: bool, actor: str) -> int:
        """A reviewer's finding on a match of a bank entry pulled from exchanges: a
        confirmed match (``confirmed``) or no violation. One feedback row per live
        upstream entry carrying it (StopNCII Blocked / NotBlocked, NCMEC upvote /
        downvote, ThreatExchange HELPFUL / DISAGREE_WITH_TAGS), sent by
        :meth:`send_due`; audited. Returns how many were queued."""
        now = utcnow()
        with unit_of_work(self._sessions) as s:
            entry = s.scalars(select(BankEntry).where(BankEntry.public_id == entry_ref)).first()
            if entry is None:
                raise NotFound(f"No entry {entry_ref[:60]!r}.", code="entry_not_found")
            queued = queue_opinion(s, entry, confirmed=confirmed, actor=actor, now=now)
            if not queued:
                raise InvalidRequest(
                    f"Entry {entry_ref} came from no exchange that takes opinions (or "
                    "upstream removed it): there is nobody to tell.",
                    code="entry_not_from_exchange",
                )
            return queued

    def send_due(self, now: datetime | None = None, limit: int = 100) -> int:
        """Send due feedback through the exchanges' clients; a failure is retried with
        backoff (5 s doubling, at most an hour apart) and given up after
        ``_FEEDBACK_ATTEMPTS`` tries (state ``failed``, with the error). Returns how many
        were sent."""
        now = now or utcnow()
        with unit_of_work(self._sessions, write=False) as s:
            due = s.execute(
                select(ExchangeFeedback, Exchange)
                .join(Exchange, Exchange.id == ExchangeFeedback.exchange_id)
                .where(ExchangeFeedback.state == "pending", ExchangeFeedback.next_attempt_at <= now)
                .order_by(ExchangeFeedback.id)
                .limit(limit)
            ).all()
            work = [
                (
                    fb.id,
                    fb.upstream_id,
                    fb.signal_type,
                    fb.value,
                    fb.positive,
                    ex.type,
                    ex.credentials,
                    ex.base_url,
                    ex.privacy_group,
                )
                for fb, ex in due
            ]
        sent = 0
        feeds: dict[tuple[str, str, str | None, int | None], Feed] = {}
        for fb_id, upstream_id, stype, value, positive, kind_name, ref, url, group in work:
            error: str | None = None
            try:
                kind = ExchangeType(kind_name)
                key = (kind_name, ref, url, group)
                if key not in feeds:
                    creds = self._credentials(kind, ref)
                    feeds[key] = self._feed_factory(kind, creds, url, group)
                feeds[key].send_feedback(upstream_id, stype, value, positive)
            except (FeedError, TakedownError) as exc:
                error = str(exc)[:2000]
            with unit_of_work(self._sessions) as s:
                fb = s.get_one(ExchangeFeedback, fb_id)
                if fb.state != "pending":
                    continue
                fb.attempts += 1
                if error is None:
                    fb.state, fb.sent_at, fb.last_error = "sent", utcnow(), None
                    sent += 1
                else:
                    fb.last_error = error
                    if fb.attempts >= _FEEDBACK_ATTEMPTS:
                        fb.state = "failed"
                    fb.next_attempt_at = now + timedelta(
                        seconds=min(3600, 5 * 2 ** (fb.attempts - 1))
                    )
        return sent

    def read_credentials(self, kind: ExchangeType, ref: str) -> Credentials:
        """An exchange's credentials from where ``ref`` says (for its sharer)."""
        return self._credentials(kind, ref)

    # -- internals ---------------------------------------------------------------
    def _credentials(self, kind: ExchangeType, ref: str) -> Credentials:
        where, _, what = ref.partition(":")
        if where == "env":
            text = self._environ.get(what)
            if text is None:
                raise _unreadable(f"the environment variable {what} is not set")
        else:
            text = _read_small_file(what)
        return parse_credentials(kind, text)

    def _apply(
        self,
        ex_id: int,
        version: int,
        kind: ExchangeType,
        page: Page,
        result: SyncResult,
        stats: _Statistics | None = None,
        connection: Connection | None = None,
    ) -> int:
        """One page and its checkpoint, in one transaction (on ``connection`` when
        given). Returns the new version."""
        with unit_of_work(self._sessions, bind=connection) as s:
            ex = s.scalars(select(Exchange).where(Exchange.id == ex_id).with_for_update()).one()
            if ex.version != version:
                raise Conflict(
                    f"Exchange {ex.name!r} is being synced by another process; this sync "
                    "stopped without applying its page.",
                    code="exchange_sync_running",
                )
            bank = s.get_one(Bank, ex.bank_id)
            actor = f"exchange:{ex.name}"
            now = utcnow()
            applied = _apply_page(s, ex, bank, kind, page, actor, now)
            if stats is not None:
                stats.grew(s, applied.added)
            ex.checkpoint = json.dumps(page.checkpoint, sort_keys=True)
            ex.version = version + 1
            ex.entries_added += applied.added
            ex.entries_disabled += applied.disabled
            ex.entries_rejected += applied.rejected
            ex.last_sync_at = now
            if applied.added or applied.disabled or applied.enabled_again or applied.rejected:
                details: dict[str, object] = {
                    "added": applied.added,
                    "seen": applied.seen,
                    "removed": applied.removed,
                    "disabled": applied.disabled,
                    "enabled_again": applied.enabled_again,
                    "rejected": applied.rejected,
                }
                if applied.disabled_ids:
                    details["disabled_entries"] = applied.disabled_ids[:1000]
                record(s, actor, "exchange.page_applied", "exchange", ex.public_id, details)
        result.added += applied.added
        result.seen += applied.seen
        result.removed += applied.removed
        result.disabled += applied.disabled
        result.enabled_again += applied.enabled_again
        result.rejected += applied.rejected
        return version + 1

    def _failed(self, ex_id: int, message: str) -> None:
        with unit_of_work(self._sessions) as s:
            ex = s.get_one(Exchange, ex_id)
            now = utcnow()
            ex.last_sync_at = now
            ex.last_error = message[:2000]
            # Try again sooner than the schedule, but not in a tight loop.
            ex.next_sync_at = now + timedelta(seconds=min(ex.interval_seconds, 300))

    def _finished(self, ex_id: int, complete: bool) -> None:
        with unit_of_work(self._sessions) as s:
            ex = s.get_one(Exchange, ex_id)
            now = utcnow()
            ex.last_sync_at = now
            ex.last_error = None
            if complete:
                ex.last_success_at = now
                ex.stale_alerted_at = None
                ex.next_sync_at = now + timedelta(seconds=ex.interval_seconds)


@dataclass
class _Statistics:
    """PostgreSQL's planner statistics of the tables a sync grows, refreshed whenever
    the sync has added as many rows as they counted (at least 10,000): a first sync of a
    large list into an empty bank would otherwise be planned from an empty table, and
    each page's existence questions would read the whole bank (see
    ``store.db.refresh_statistics``). A handful of ANALYZEs per million entries."""

    added: int = 0  # since the last refresh
    counted: int = 0  # added by this sync as of the last refresh

    def grew(self, s: Session, added: int) -> None:
        self.added += added
        if self.added < max(_ANALYZE_AFTER, self.counted):
            return
        connection = s.connection()
        for table in (Base.metadata.tables["bank_entries"], _EE):
            refresh_statistics(connection, table)
        self.counted += self.added
        self.added = 0


@dataclass
class _Applied:
    added: int = 0
    seen: int = 0
    removed: int = 0
    disabled: int = 0
    enabled_again: int = 0
    rejected: int = 0
    disabled_ids: list[str] = field(default_factory=list)


def _apply_page(
    s: Session,
    ex: Exchange,
    bank: Bank,
    kind: ExchangeType,
    page: Page,
    actor: str,
    now: datetime,
) -> _Applied:
    """Set-wise: the page's signals validated in Python, then per page one question for
    the bank entries that exist, one bulk insert of the missing ones, one question for
    the provenance rows that exist, one bulk insert and one batched update of them --
    no ORM object per entry."""
    out = _Applied()
    # 0. Our own shares, listed like anyone's: recognised, never pulled back in.
    own = recognise_own(s, ex.id, (e.upstream_id for e in page.entries), now)
    entries = [e for e in page.entries if e.upstream_id not in own] if own else page.entries
    # An entry the exchange says only we vouch for (ThreatExchange: every descriptor
    # is our app's) is ours too: recognised by its values, and gone as a foreign entry.
    mine = [e for e in entries if e.labels.get("own")]
    if mine:
        recognise_own_values(s, ex.id, [v for e in mine for _, v in e.signals], now)
        entries = [e for e in entries if not e.labels.get("own")]
        page = replace(page, removed=[*page.removed, *(e.upstream_id for e in mine)])
    # 1. The page's signals in our types; the rest rejected.
    wanted: dict[tuple[str, str], tuple[str, str]] = {}  # (upstream id, type) -> (type, value)
    labels: dict[str, str] = {}
    records: dict[tuple[str, str], HashRecord] = {}  # (type, stored value) -> its record
    texts: dict[tuple[tuple[str, object], ...], str] = {}  # a list's labels repeat
    plugins: dict[str, SignalType | None] = {}  # upstream type -> ours, or None
    source = kind.value
    for e in entries:
        shape = tuple(e.labels.items())  # the same labels in another order: the same text
        text = texts.get(shape)
        if text is None:
            text = texts[shape] = json.dumps(e.labels, sort_keys=True)
        labels[e.upstream_id] = text
        category = e.labels.get("classification")
        source_id = e.upstream_id[:200]
        for upstream_type, value in e.signals:
            if upstream_type in plugins:
                plugin = plugins[upstream_type]
            else:
                plugin = plugins[upstream_type] = _plugin(kind, upstream_type)
            if plugin is None or not isinstance(value, str):
                out.rejected += 1
                continue
            try:
                canonical = plugin.normalize(value)  # what HashRecord(...) validates
            except InvalidRequest:
                out.rejected += 1
                continue
            # As the bank stores it: TMK's long values by their digest.
            key = (plugin.name, plugin.stored_value(canonical))
            wanted[(e.upstream_id, plugin.name)] = key
            if key not in records:
                records[key] = HashRecord.stored(
                    plugin.name,
                    canonical,
                    source=source,
                    source_id=source_id,
                    category=str(category)[:100] if category else None,
                )
    out.seen = len(wanted)
    # 2. The bank's entries for them (asked under the entry-write lock, so nobody adds
    # one meanwhile), and the missing ones added with the bank's own rules (locked,
    # indexed, audited, retroactively scanned).
    repo.lock_entry_writes(s)
    entry_ids = _entry_ids(s, bank.id, set(records))
    missing = [records[key] for key in records if key not in entry_ids]
    if missing:
        newest_before = repo.newest_entry_id(s)
        added = insert_entries(s, bank, missing, actor, known_absent=True)
        out.added = added.added
        entry_ids.update(_new_entry_ids(s, bank.id, newest_before))
    # 3. Provenance rows: refreshed, added, or removed.
    upstream_ids = sorted({e.upstream_id for e in entries} | set(page.removed))
    existing: dict[tuple[str, str], tuple[int, int, bool]] = {}  # -> row, entry, removed
    for upstream_id, stype, row_id, entry_id, removed in _rows_in(
        s,
        "SELECT upstream_id, signal_type, id, entry_id, removed_at IS NOT NULL "
        "FROM exchange_entries WHERE exchange_id = {p} AND upstream_id {in}",
        (ex.id,),
        upstream_ids,
    ):
        existing[(upstream_id, stype)] = (row_id, entry_id, bool(removed))
    fresh: list[dict[str, object]] = []
    refreshed: list[dict[str, object]] = []
    live_now: set[int] = set()
    exchange_id = ex.id
    touched: set[int] = set()  # entries that lost a live row: disabled if none is left
    for key, tv in wanted.items():
        entry_id = entry_ids[tv][0]
        live_now.add(entry_id)
        known = existing.get(key)
        if known is None:
            fresh.append(
                {
                    "exchange_id": exchange_id,
                    "upstream_id": key[0],
                    "signal_type": key[1],
                    "entry_id": entry_id,
                    "labels": labels[key[0]],
                    "first_seen_at": now,
                    "last_seen_at": now,
                    "removed_at": None,
                }
            )
        else:
            row_id, before, was_removed = known
            if before != entry_id and not was_removed:
                touched.add(before)  # the upstream entry now carries another value
            refreshed.append({"row": row_id, "entry": entry_id, "text": labels[key[0]]})
    removed = set(page.removed)
    gone_rows: list[dict[str, object]] = []
    for key, (row_id, entry_id, was_removed) in existing.items():
        gone = key[0] in removed or (key[0] in labels and key not in wanted)
        if gone and not was_removed:
            gone_rows.append({"row": row_id})
            touched.add(entry_id)
            out.removed += 1
    if fresh:
        bulk_insert(s.connection(), _EE, fresh)
    if refreshed:
        s.execute(
            update(_EE)
            .where(_EE.c.id == bindparam("row"))
            .values(
                entry_id=bindparam("entry"),
                labels=bindparam("text"),
                last_seen_at=now,
                removed_at=None,
            ),
            refreshed,
        )
    if gone_rows:
        s.execute(
            update(_EE)
            .where(_EE.c.id == bindparam("row"))
            .values(removed_at=now, last_seen_at=now),
            gone_rows,
        )
    # 4. Entries upstream brought back, that this exchange had disabled: enabled again.
    revive = [
        i
        for (i, enabled, disabled_by) in entry_ids.values()
        if not enabled and disabled_by == actor and i in live_now
    ]
    if revive:
        for chunk in _chunks(revive):
            s.execute(
                update(BankEntry)
                .where(BankEntry.id.in_(chunk))
                .values(enabled=True, disabled_at=None, disabled_by=None, disabled_reason=None)
            )
        out.enabled_again = len(revive)
    # 5. Entries no live upstream entry carries any more: disabled, if an exchange put
    # them in the bank (a person's own entries stay as they are).
    candidates = sorted(touched - live_now)
    still_live: set[int] = set()
    for chunk in _chunks(candidates):
        still_live.update(
            s.scalars(
                select(ExchangeEntry.entry_id).where(
                    ExchangeEntry.entry_id.in_(chunk), ExchangeEntry.removed_at.is_(None)
                )
            )
        )
    dead = [i for i in candidates if i not in still_live]
    for chunk in _chunks(dead):
        rows = s.execute(
            select(BankEntry.id, BankEntry.public_id).where(
                BankEntry.id.in_(chunk),
                BankEntry.enabled.is_(True),
                BankEntry.added_by.like("exchange:%"),
            )
        ).all()
        if not rows:
            continue
        s.execute(
            update(BankEntry)
            .where(BankEntry.id.in_([r[0] for r in rows]))
            .values(
                enabled=False,
                disabled_at=now,
                disabled_by=actor,
                disabled_reason=f"removed upstream ({kind.value})",
            )
        )
        out.disabled += len(rows)
        out.disabled_ids.extend(r[1] for r in rows)
    return out


def _plugin(kind: ExchangeType, upstream_type: str) -> SignalType | None:
    """Our signal type's plug-in for an upstream type, or None (rejected)."""
    ours = our_signal_type(kind, upstream_type)
    if ours is None:
        return None
    try:
        return signal_type(ours)
    except InvalidRequest:  # a type whose plug-in is not installed here
        return None


def _entry_ids(
    s: Session, bank_id: int, signals: set[tuple[str, str]]
) -> dict[tuple[str, str], tuple[int, bool, str | None]]:
    """(type, value) -> (entry id, enabled, disabled_by) for the bank's entries: one
    statement per type and chunk, written for the driver (SQLAlchemy's expansion of an
    ``IN`` list costs more than the database's lookups)."""
    by_type: dict[str, list[str]] = {}
    for t, v in signals:
        by_type.setdefault(t, []).append(v)
    out: dict[tuple[str, str], tuple[int, bool, str | None]] = {}
    for t, values in by_type.items():
        rows = _rows_in(
            s,
            "SELECT value, id, enabled, disabled_by FROM bank_entries "
            "WHERE bank_id = {p} AND signal_type = {p} AND value {in}",
            (bank_id, t),
            sorted(values),
        )
        for v, i, enabled, by in rows:
            out[(t, v)] = (i, bool(enabled), by)
    return out


def _rows_in(
    s: Session, sql: str, params: tuple[object, ...], values: Sequence[str]
) -> builtins.list[tuple[Any, ...]]:
    """Rows of ``sql`` whose ``{in}`` is "is one of ``values``" (strings) and each
    ``{p}`` a parameter from ``params``: on PostgreSQL one ``= ANY(array)``, on SQLite
    ``IN`` lists of at most a thousand."""
    connection = s.connection()
    cursor = connection.connection.cursor()
    try:
        if connection.dialect.name == "postgresql":
            # The array is sent as one string of the values a line each, split by the
            # server: psycopg builds an array literal in Python, value by value, and
            # PostgreSQL parses it back (44,000 hashes: 0.18 s, 0.08 of it this
            # process's CPU; as one string, 0.02 s). A value with a line break in it
            # (none of our hash types has one) is sent as an array.
            joined = "\n".join(values)
            if joined and joined.count("\n") == len(values) - 1:
                any_of = "= ANY(string_to_array(%s, E'\\n'))"
                cursor.execute(sql.format(p="%s", **{"in": any_of}), (*params, joined))
            else:
                cursor.execute(sql.format(p="%s", **{"in": "= ANY(%s)"}), (*params, list(values)))
            return list(cursor.fetchall())
        found: builtins.list[tuple[Any, ...]] = []
        for chunk in _chunks(values):
            marks = ", ".join("?" * len(chunk))
            cursor.execute(sql.format(p="?", **{"in": f"IN ({marks})"}), (*params, *chunk))
            found.extend(cursor.fetchall())
        return found
    finally:
        cursor.close()


def _new_entry_ids(
    s: Session, bank_id: int, newest_before: int
) -> dict[tuple[str, str], tuple[int, bool, str | None]]:
    """The entries this transaction added to the bank: every one above the newest id
    read under the entry-write lock (held since, so nobody else added any, to any bank).
    Asked by id alone, a range of the primary key (with the bank's id too, SQLite would
    walk the bank's whole unique index instead)."""
    cursor = s.connection().connection.cursor()
    try:
        mark = "%s" if s.get_bind().dialect.name == "postgresql" else "?"
        cursor.execute(
            f"SELECT signal_type, value, id, bank_id FROM bank_entries WHERE id > {mark}",
            (newest_before,),
        )
        return {(t, v): (i, True, None) for t, v, i, b in cursor.fetchall() if b == bank_id}
    finally:
        cursor.close()


def _is_stale(ex: Exchange, now: datetime) -> bool:
    since = ex.last_success_at or ex.created_at
    return ex.enabled and (now - since).total_seconds() >= STALE_AFTER_S


def _weight(page: Page) -> int:
    """About how much memory a page holds, for :func:`_prefetched`'s budget."""
    return sum(100 + sum(len(v) for _, v in e.signals) for e in page.entries) + 100 * len(
        page.removed
    )


def _prefetched(pages: Iterator[Page], budget: int = _AHEAD_WEIGHT) -> Iterator[list[Page]]:
    """The feed's pages in batches: a thread fetches (and the client parses) pages
    weighing up to ``budget`` (at least one page) while the previous batch is applied,
    and each batch is every page fetched by then (at least one; at most ``budget``),
    applied in one transaction with its last page's checkpoint. Only whole pages, in
    order; the feed's error is raised after the pages fetched before it."""
    box: queue.Queue[tuple[Page | None, BaseException | None, int]] = queue.Queue()
    stop = threading.Event()
    room = threading.Condition()
    held = [0]  # the weight of the pages fetched and not yet taken

    def fetch() -> None:
        try:
            for page in pages:
                weight = _weight(page)
                with room:
                    while held[0] and held[0] + weight > budget and not stop.is_set():
                        room.wait(0.5)
                    if stop.is_set():
                        return
                    held[0] += weight
                box.put((page, None, weight))
            box.put((None, None, 0))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            box.put((None, exc, 0))

    def taken(weight: int) -> None:
        with room:
            held[0] -= weight
            room.notify_all()

    thread = threading.Thread(target=fetch, name="takedown-exchange-fetch", daemon=True)
    thread.start()
    try:
        ended: tuple[Page | None, BaseException | None, int] | None = None
        while ended is None:
            batch: list[Page] = []
            size = 0
            item = box.get()
            while True:
                page, error, weight = item
                if page is None:
                    ended = item
                    break
                batch.append(page)
                taken(weight)
                size += weight
                if size >= budget:
                    break
                try:
                    item = box.get_nowait()
                except queue.Empty:
                    break
            if batch:
                yield batch
        if ended[1] is not None:
            raise ended[1]
    finally:
        stop.set()
        with room:
            room.notify_all()


def _chunks(values: Sequence[Any]) -> list[Sequence[Any]]:
    return [values[i : i + _CHUNK] for i in range(0, len(values), _CHUNK)]


def exchange_view(s: Session, ex: Exchange) -> ExchangeView:
    """An exchange's view: its bank's name and its live upstream entries counted."""
    bank = s.get_one(Bank, ex.bank_id)
    live = s.scalar(
        select(func.count())
        .select_from(ExchangeEntry)
        .where(ExchangeEntry.exchange_id == ex.id, ExchangeEntry.removed_at.is_(None))
    )
    return ExchangeView.of(ex, bank.name, int(live or 0))


def get_exchange(s: Session, ref: str) -> Exchange:
    ex = s.scalars(
        select(Exchange).where((Exchange.name == ref) | (Exchange.public_id == ref))
    ).first()
    if ex is None:
        raise NotFound(f"No exchange named {ref[:100]!r}.", code="exchange_not_found")
    return ex


def _exists(name: str) -> Conflict:
    return Conflict(f"An exchange named {name!r} already exists.", code="exchange_exists")


def confine_api_request(
    settings: Settings,
    *,
    type: str,
    credentials_file: str | None,
    credentials_env: str | None,
    base_url: str | None,
) -> str | None:
    """What an API caller names must stay within what the operator allowed: the
    credentials file in TAKEDOWN_EXCHANGE_CREDENTIALS_DIR (a bare name or a path under
    it, symbolic links resolved; answered as the absolute path to store), a variable
    named TAKEDOWN_EXCHANGE_CREDENTIALS_…, and a base URL of the exchange's own or in
    TAKEDOWN_EXCHANGE_BASE_URLS. Otherwise one caller with banks:write could make the
    server send its own secrets to a host of the caller's choosing."""
    kind = parse_exchange_type(type)
    if base_url is not None:
        check_api_base_url(kind, _validate_url(base_url), settings.exchange_allowed_base_urls)
    if credentials_env is not None:
        check_api_credentials_env(credentials_env)
    if credentials_file is None or "\x00" in credentials_file:
        return credentials_file
    base = settings.exchange_credentials_directory.resolve()
    candidate = (base / credentials_file).resolve()  # an absolute path stays itself
    if candidate == base or not candidate.is_relative_to(base):
        raise InvalidRequest(
            f"Through the API and the console the credentials file must be in {base} (the setting "
            "TAKEDOWN_EXCHANGE_CREDENTIALS_DIR; the CLI on the server may name any file).",
            code="credentials_source_not_allowed",
        )
    return str(candidate)


def _read_small_file(path: str) -> str:
    """A credentials file: a regular file of at most 4 KiB (never a device or a pipe:
    the path comes from an operator or an API caller)."""
    try:
        with Path(path).open("rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > 4096:
                raise _unreadable(f"{path} is not a regular file of at most 4 KiB")
            data = fh.read(4097)
    except OSError as exc:
        raise _unreadable(
            f"the file {path} cannot be read ({exc.strerror or type(exc).__name__})"
        ) from None
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise _unreadable(f"{path} is not UTF-8 text") from None


def _unreadable(why: str) -> InvalidRequest:
    return InvalidRequest(
        f"The exchange's credentials cannot be read: {why}.",
        code="exchange_credentials_unreadable",
    )


def _validate_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not (url.startswith("https://") or url.startswith("http://")) or len(url) > 500:
        raise InvalidRequest(
            "The base URL must be an http(s) address of at most 500 characters.",
            code="invalid_exchange_url",
        )
    return url
