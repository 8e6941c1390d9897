"""The background threads a serving process (or ``takedown worker``) starts, and how
each is built from the runtime: reporter mail, webhook deliveries, bank-index snapshots,
large cases' priorities.

The work itself lives in the services that own it (``services/outbound``,
``services/index``); this module only gives each a thread (:class:`PeriodicWorker`) and
reads the settings that say whether and how often it runs; and retroactive scans
(``services/registry/retroscan``).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from takedown.integrations.jetstream import JetStreamPublisher
from takedown.integrations.mail import SmtpSender
from takedown.integrations.webhooks import WebhookClient
from takedown.periodic import PeriodicWorker
from takedown.services.index.follower import IndexFollower
from takedown.services.index.snapshot import (
    load,
    snapshot_path,
    write_generation,
    writer_lock,
    written_hashes,
)
from takedown.services.outbound.delivery import DeliveryDispatcher, DeliveryPolicy
from takedown.services.outbound.mail import MailDispatcher
from takedown.services.outbound.sinks import JetStreamSink
from takedown.services.registry.retroscan import RetroscanService

if TYPE_CHECKING:
    from takedown.runtime import Runtime

log = logging.getLogger(__name__)


class _Deliverer(Protocol):
    def deliver_due(self, now: datetime | None = None, limit: int = 100) -> int: ...


class MailWorker(PeriodicWorker):
    """A background thread that calls ``deliver_due`` every ``interval_s`` seconds; when
    a round fills its whole batch it goes again at once, to drain a backlog
    (periodic.py: errors are logged and the next round tries again)."""

    def __init__(
        self,
        dispatcher: _Deliverer,
        *,
        interval_s: float = 5.0,
        batch: int = 20,
        name: str = "takedown-mail",
    ) -> None:
        super().__init__(interval_s, name=name)
        self._dispatcher = dispatcher
        self.batch = batch

    def round(self) -> bool:
        return self._dispatcher.deliver_due(limit=self.batch) >= self.batch


def start_mail_worker(rt: Runtime) -> MailWorker | None:
    """Start delivering reporter mail for this process, or return None when mail is off.

    With ``TAKEDOWN_SMTP_HOST`` unset nothing is built and outbox rows simply wait, so
    turning mail on later sends what accumulated.
    Call ``stop()`` on the returned worker at shutdown.
    """
    if not rt.settings.smtp_host:
        log.info("mail disabled (TAKEDOWN_SMTP_HOST unset); notices stay in the outbox")
        return None
    dispatcher = MailDispatcher(rt.sessions, SmtpSender.from_settings(rt.settings))
    worker = MailWorker(dispatcher, interval_s=rt.settings.mail_poll_seconds)
    worker.start()
    log.info(
        "mail worker started: %s:%s every %s s",
        rt.settings.smtp_host,
        rt.settings.smtp_port,
        rt.settings.mail_poll_seconds,
    )
    return worker


class DeliveryWorker(PeriodicWorker):
    """A daemon thread that delivers due actions every few seconds, at once again while
    a round fills its batch (periodic.py: one bad round never stops delivery)."""

    def __init__(
        self, dispatcher: DeliveryDispatcher, *, interval_s: float = 2.0, batch: int | None = None
    ) -> None:
        super().__init__(interval_s, name="takedown-delivery")
        self._dispatcher = dispatcher
        # A round: several claims, each claimed while the one before is being sent.
        self._batch = batch or max(200, 5 * dispatcher.claim_max)

    def round(self) -> bool:
        return self._dispatcher.deliver_due(limit=self._batch) >= self._batch

    def stop(self, timeout: float | None = None) -> None:
        super().stop(timeout)
        if not self.running:  # its last round is over: the dispatcher's threads end too
            self._dispatcher.close()


def delivery_dispatcher(rt: Runtime) -> DeliveryDispatcher | None:
    """The dispatcher the settings ask for: JetStream when ``TAKEDOWN_ACTIONS_NATS_URL``
    is set, else webhooks when ``TAKEDOWN_WEBHOOK_URL`` is; None when neither is."""
    settings = rt.settings
    policy = DeliveryPolicy(give_up_after=timedelta(hours=settings.webhook_give_up_hours))
    if settings.actions_nats_url:
        subject = settings.actions_nats_subject
        publisher = JetStreamPublisher(
            settings.actions_nats_url,
            settings.actions_nats_stream,
            [f"{subject}.>"],
            timeout_s=settings.webhook_timeout_s,
        )
        secret = settings.webhook_secret_value() if settings.webhook_url else None
        sink = JetStreamSink(
            publisher, subject, partitions=settings.actions_nats_partitions, secret=secret
        )
        return DeliveryDispatcher(rt.sessions, sink, policy, batch_max=settings.webhook_batch_max)
    if not settings.webhook_url:
        return None
    client = WebhookClient(
        settings.webhook_url,
        settings.webhook_secret_value(),
        timeout_s=settings.webhook_timeout_s,
    )
    return DeliveryDispatcher(rt.sessions, client, policy, batch_max=settings.webhook_batch_max)


def start_delivery_worker(rt: Runtime) -> DeliveryWorker | None:
    """Start delivery in this process when a webhook URL or a JetStream URL is set."""
    dispatcher = delivery_dispatcher(rt)
    if dispatcher is None:
        return None
    worker = DeliveryWorker(dispatcher, interval_s=rt.settings.delivery_poll_seconds)
    worker.start()
    return worker


class ExchangeWorker(PeriodicWorker):
    """A thread that syncs every hash exchange whose time has come (each from its
    stored checkpoint; services/exchanges), checking every ``interval_s`` seconds,
    quarantines bank entries that match a flood of uploads (services/banks/quarantine),
    and sends due feedback and approved shares of our own hashes."""

    def __init__(self, rt: Runtime, *, interval_s: float) -> None:
        super().__init__(interval_s, name="takedown-exchanges")
        self._rt = rt

    def round(self) -> bool:
        self._rt.quarantine.sweep()  # entries matching a flood of uploads stop blocking
        self._rt.exchanges.sync_due(actor="worker")
        self._rt.exchanges.check_stale(self._rt.settings.legal_alert_email)
        busy = self._rt.exchanges.send_due() >= 100  # feedback to the exchanges
        busy = self._rt.shares.send_due() >= 100 or busy  # approved shares of our own
        return self._rt.shares.withdraw_due() >= 100 or busy  # and those taken back


def start_exchange_worker(rt: Runtime) -> ExchangeWorker:
    """Start syncing hash exchanges on their schedules in this process."""
    worker = ExchangeWorker(rt, interval_s=rt.settings.exchange_poll_seconds)
    worker.start()
    return worker


class SnapshotWorker(PeriodicWorker):
    """A serving process's thread that writes a new snapshot once the index has grown by
    ``every_rows`` hashes beyond the one on disk, checking every ``check_s`` seconds.

    Several workers on one machine coordinate through the writer lock: one writes, the
    others skip (and, re-reading the snapshot's size, find nothing left to do). Errors
    are logged and the next round tries again (periodic.py).
    """

    def __init__(
        self, follower: IndexFollower, target: Path, *, every_rows: int, check_s: float
    ) -> None:
        if every_rows < 1 or check_s <= 0:
            raise ValueError("every_rows and check_s must be positive")
        # The first round waits too: not while the process is starting up.
        super().__init__(check_s, name="takedown-index-snapshot", wait_first=True)
        self._follower = follower
        self._target = target
        self.every_rows = every_rows
        self.written = 0  # snapshots written by this worker (for tests and logs)
        self.switched = 0  # snapshots this worker moved onto

    stop_timeout_s = 60.0  # a snapshot being written is let finish

    @property
    def check_s(self) -> float:
        return self.interval_s

    def round(self) -> bool:
        self.check()
        return False

    def check(self) -> int | None:
        """One round: write a snapshot if it is due and no other process is writing one,
        then move this process onto the newest snapshot; returns the hashes written,
        or None.

        Skipped while the follower is reading a large import: writing (and merging)
        or moving onto a snapshot then competes for the cores with the reads that make
        the import searchable (measured: every worker answering for a 1M import after 8
        to 12 s instead of 2 in some runs), and the next snapshot would be stale at once."""
        # Rows other processes added (a no-op within the interval, or when a read is
        # under way already).
        self._follower.sync(wait=False)
        if self._follower.catching_up:
            return None
        hashes = self._write_if_due()
        self._switch_if_newer()
        return hashes

    def _write_if_due(self) -> int | None:
        if len(self._follower) - written_hashes(self._target) < self.every_rows:
            return None
        with writer_lock(self._target, wait=False) as mine:
            if not mine:
                return None
            # Another process may have written one while we looked.
            if len(self._follower) - written_hashes(self._target) < self.every_rows:
                return None
            started = time.monotonic()
            hashes = write_generation(self._follower, self._target)
        self.written += 1
        log.info(
            "index snapshot of %d hashes written to %s in %.1f s",
            hashes,
            self._target,
            time.monotonic() - started,
        )
        return hashes

    def _switch_if_newer(self) -> None:
        """Serve from the newest snapshot, mapped, instead of the index this process
        built by reading the database: its pages are shared with every other worker on
        the machine and the private copy is freed (a million hashes: ~95 MB a worker).
        Only a snapshot that is nearly as fresh as this index (``every_rows``) is taken,
        so the switch reads few rows; it never leaves a gap (``IndexFollower.adopt``)."""
        generation = self._target.resolve()
        if str(generation) == self._follower.snapshot_generation:
            return
        if written_hashes(generation) < len(self._follower) - self.every_rows:
            return
        if load(self._follower, generation):
            self.switched += 1
            log.info("serving the bank index from snapshot %s", generation)


def start_snapshot_worker(rt: Runtime) -> SnapshotWorker | None:
    """Keep the bank index snapshot fresh from this process, unless
    ``TAKEDOWN_INDEX_SNAPSHOT_ROWS`` is 0. Call ``stop()`` at shutdown."""
    every_rows = rt.settings.index_snapshot_rows
    if not every_rows:
        return None
    worker = SnapshotWorker(
        rt.matcher.follower,
        snapshot_path(rt.settings.data_dir),
        every_rows=every_rows,
        check_s=rt.settings.index_snapshot_check_seconds,
    )
    worker.start()
    return worker


class RetroscanWorker(PeriodicWorker):
    """Runs queued retroactive scans (services/registry/retroscan.py), one job at a
    time, each to its end; a job left by a killed worker is resumed from its checkpoint
    once its lease has run out."""

    stop_timeout_s = 60.0

    def __init__(self, service: RetroscanService, *, interval_s: float = 5.0) -> None:
        super().__init__(interval_s, name="takedown-retroscan")
        self._service = service

    def round(self) -> bool:
        return self._service.run_pending(limit=1) > 0


def start_retroscan_worker(rt: Runtime) -> RetroscanWorker:
    """Start running retroactive scans in this process. Call ``stop()`` at shutdown."""
    worker = RetroscanWorker(rt.retroscan, interval_s=rt.settings.retroscan_poll_seconds)
    worker.start()
    return worker


class PriorityWorker(PeriodicWorker):
    """Recomputes the priorities of large cases that copies joined or whose copies'
    views or accounts changed (``CaseIntake.refresh_stale_priorities``;
    ``TAKEDOWN_PRIORITY_INLINE_COPIES``)."""

    def __init__(self, rt: Runtime, *, interval_s: float) -> None:
        super().__init__(interval_s, name="takedown-priority", wait_first=True)
        self._rt = rt

    def round(self) -> bool:
        limit = 50
        return self._rt.cases.refresh_stale_priorities(limit=limit) >= limit


def start_priority_worker(rt: Runtime) -> PriorityWorker:
    """Start recomputing waiting priorities in this process. Call ``stop()`` at
    shutdown. Several processes may run one: a case two of them take in the same round
    is recomputed twice, to the same result."""
    worker = PriorityWorker(rt, interval_s=rt.settings.priority_refresh_seconds)
    worker.start()
    return worker
