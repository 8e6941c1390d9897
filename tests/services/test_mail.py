"""Outbox delivery against a real SMTP server (aiosmtpd on 127.0.0.1), on both databases.

Time is never waited for: each test passes ``now`` to ``deliver_due`` to step past a
backoff. Only the worker tests wait, and only for something to happen (with a generous
deadline), never for a duration.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any, cast

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from takedown.domain.reports import ReportInput
from takedown.ids import utcnow
from takedown.integrations.mail import MailDeliveryError, MailDisabled, SmtpSender
from takedown.runtime import Runtime
from takedown.runtime.workers import MailWorker, start_mail_worker
from takedown.services.outbound.mail import (
    DEFAULT_MAX_ATTEMPTS,
    MailDispatcher,
)
from takedown.store.db import make_engine, make_session_factory, unit_of_work
from takedown.store.models import MailMessage

REFUSED = "nobody@refused.example.test"


# -- a real local SMTP server ----------------------------------------------------------
class Inbox:
    """aiosmtpd handler that keeps every message it accepts (and refuses ``REFUSED``)."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self._lock = threading.Lock()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address == REFUSED:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = cast(EmailMessage, message_from_bytes(envelope.content, policy=default_policy))
        with self._lock:
            self.messages.append((list(envelope.rcpt_tos), msg))
        return "250 Message accepted for delivery"

    def subjects(self) -> list[str]:
        with self._lock:
            return [str(m["Subject"]) for _, m in self.messages]


@dataclasses.dataclass
class SmtpServer:
    inbox: Inbox
    port: int
    controller: Controller | None = None

    def start(self) -> None:
        # aiosmtpd gives its thread 5 s to start by default: too little on a loaded machine.
        self.controller = Controller(
            self.inbox, hostname="127.0.0.1", port=self.port, ready_timeout=120
        )
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def sender(self, **kw: Any) -> SmtpSender:
        # This server is a thread of the busy test process: a reply it gives late must
        # not time out (the tests count attempts and messages exactly).
        kw.setdefault("timeout", 60)
        return SmtpSender("127.0.0.1", self.port, mail_from="takedown@example.test", **kw)


def _reserve_port() -> socket.socket:
    """A socket bound to a free port but not listening: connecting to it is refused, and
    no other process can take the port while we hold it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    sock = _reserve_port()
    port = sock.getsockname()[1]
    sock.close()
    server = SmtpServer(Inbox(), port)
    server.start()
    yield server
    server.stop()


# -- helpers ---------------------------------------------------------------------------
def add_mail(rt: Runtime, n: int = 1, *, to: str = "reporter@example.test") -> list[int]:
    now = utcnow()
    with unit_of_work(rt.sessions) as s:
        rows = [
            MailMessage(
                to_address=to,
                subject=f"Your report CASE{i}: received",
                body=f"We have received your report CASE{i}.\n\nLine two.",
                created_at=now,
                next_attempt_at=now,
            )
            for i in range(n)
        ]
        s.add_all(rows)
        s.flush()
        return [r.id for r in rows]


def rows(rt: Runtime) -> dict[int, MailMessage]:
    with unit_of_work(rt.sessions, write=False) as s:
        return {m.id: m for m in s.scalars(select(MailMessage))}


def dispatcher(rt: Runtime, sender: Any, **kw: Any) -> MailDispatcher:
    return MailDispatcher(rt.sessions, sender, **kw)


# -- delivery --------------------------------------------------------------------------
def test_delivers_row_and_marks_it_sent(rt: Runtime, smtp: SmtpServer):
    (mid,) = add_mail(rt)
    d = dispatcher(rt, smtp.sender())

    assert d.deliver_due() == 1

    assert len(smtp.inbox.messages) == 1
    rcpt, msg = smtp.inbox.messages[0]
    assert rcpt == ["reporter@example.test"]
    assert msg["To"] == "reporter@example.test"
    assert msg["From"] == "takedown@example.test"
    assert msg["Subject"] == "Your report CASE0: received"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Message-ID"].startswith(f"<takedown.{mid}.")
    body = msg.get_content().replace("\r\n", "\n").rstrip("\n")  # SMTP sends CRLF
    assert body == "We have received your report CASE0.\n\nLine two."
    row = rows(rt)[mid]
    assert row.sent_at is not None
    assert row.attempts == 1
    assert row.last_error is None

    # Sent rows are never picked again, whatever the time.
    assert d.deliver_due(now=utcnow() + timedelta(days=30)) == 0
    assert len(smtp.inbox.messages) == 1


def test_rows_not_yet_due_wait(rt: Runtime, smtp: SmtpServer):
    (mid,) = add_mail(rt)
    created = rows(rt)[mid].next_attempt_at
    d = dispatcher(rt, smtp.sender())
    assert d.deliver_due(now=created - timedelta(seconds=1)) == 0
    assert smtp.inbox.messages == []
    assert rows(rt)[mid].attempts == 0


def test_server_down_then_up_retries_after_backoff(rt: Runtime):
    closed = _reserve_port()
    port = closed.getsockname()[1]
    server = SmtpServer(Inbox(), port)
    d = dispatcher(rt, server.sender())
    (mid,) = add_mail(rt)
    t0 = utcnow()

    assert d.deliver_due(now=t0) == 0
    row = rows(rt)[mid]
    assert row.sent_at is None
    assert row.attempts == 1
    assert row.last_error is not None and "Cannot connect" in row.last_error
    assert row.next_attempt_at > t0

    closed.close()
    server.start()
    try:
        # Server is back, but the backoff has not passed: nothing is tried.
        assert d.deliver_due(now=row.next_attempt_at - timedelta(microseconds=1)) == 0
        assert server.inbox.messages == []
        # Once it has, the row goes out.
        assert d.deliver_due(now=row.next_attempt_at) == 1
    finally:
        server.stop()
    assert server.inbox.subjects() == ["Your report CASE0: received"]
    row = rows(rt)[mid]
    assert row.sent_at is not None
    assert row.attempts == 2


def test_unreachable_server_ends_the_round_early(rt: Runtime):
    """One connection failure stops the round: the other rows are not attempted (they
    would only wait on the same dead server) and stay due."""
    closed = _reserve_port()
    sender = SmtpSender("127.0.0.1", closed.getsockname()[1], mail_from="t@example.test")
    ids = add_mail(rt, 3)
    try:
        assert dispatcher(rt, sender).deliver_due() == 0
    finally:
        closed.close()
    attempts = sorted(rows(rt)[i].attempts for i in ids)
    assert attempts == [0, 0, 1]


def test_gives_up_after_max_attempts_and_keeps_the_row(rt: Runtime):
    closed = _reserve_port()
    sender = SmtpSender("127.0.0.1", closed.getsockname()[1], mail_from="t@example.test")
    d = dispatcher(rt, sender, max_attempts=3)
    (mid,) = add_mail(rt)
    now = utcnow()
    try:
        for _ in range(3):
            now = rows(rt)[mid].next_attempt_at
            d.deliver_due(now=now)
        # Far in the future: still never tried again.
        assert d.deliver_due(now=now + timedelta(days=365)) == 0
    finally:
        closed.close()
    row = rows(rt)[mid]
    assert row.attempts == 3
    assert row.sent_at is None
    assert row.last_error is not None and row.last_error.startswith("gave up after 3 attempts")


def test_refused_recipient_is_given_up_at_once(
    rt: Runtime, smtp: SmtpServer, caplog: pytest.LogCaptureFixture
):
    (bad,) = add_mail(rt, to=REFUSED)
    (good,) = add_mail(rt)
    d = dispatcher(rt, smtp.sender())

    with caplog.at_level(logging.INFO, logger="takedown.services.outbound.mail"):
        assert d.deliver_due() == 1  # the refusal does not stop the round
    assert "giving up" in caplog.text
    assert REFUSED not in caplog.text  # logs never name the reporter

    assert [r for r, _ in smtp.inbox.messages] == [["reporter@example.test"]]
    row = rows(rt)[bad]
    assert row.sent_at is None
    assert row.attempts == DEFAULT_MAX_ATTEMPTS
    assert row.last_error is not None
    assert row.last_error.startswith("permanent failure") and "550" in row.last_error
    assert rows(rt)[good].sent_at is not None
    assert d.deliver_due(now=utcnow() + timedelta(days=30)) == 0


def test_long_errors_are_truncated(rt: Runtime):
    class Failing:
        def send(self, to: str, subject: str, body: str, *, message_key: str | None = None):
            raise MailDeliveryError("x" * 50_000)

    (mid,) = add_mail(rt)
    dispatcher(rt, Failing()).deliver_due()
    row = rows(rt)[mid]
    assert row.last_error is not None and len(row.last_error) <= 1000
    assert row.attempts == 1


def test_unexpected_sender_error_is_recorded_then_raised(rt: Runtime):
    class Broken:
        def send(self, to: str, subject: str, body: str, *, message_key: str | None = None):
            raise KeyError("bug")

    (mid,) = add_mail(rt)
    t0 = utcnow()
    with pytest.raises(KeyError):
        dispatcher(rt, Broken()).deliver_due(now=t0)
    row = rows(rt)[mid]
    assert row.attempts == 1 and row.sent_at is None
    assert row.last_error == "'bug'"
    assert row.next_attempt_at > t0


# -- never twice -----------------------------------------------------------------------
def test_two_dispatchers_never_send_a_row_twice(rt: Runtime, smtp: SmtpServer):
    """Two dispatchers, each with its own engine (as two processes would have), race
    over the same outbox; every row reaches the server exactly once."""
    n = 30
    add_mail(rt, n)
    other_engine = make_engine(rt.settings.resolved_database_url)
    try:
        dispatchers = [
            MailDispatcher(rt.sessions, smtp.sender()),
            MailDispatcher(make_session_factory(other_engine), smtp.sender()),
        ]
        barrier = threading.Barrier(2)
        sent: list[int] = []
        errors: list[BaseException] = []

        def run(d: MailDispatcher) -> None:
            try:
                barrier.wait()
                sent.append(d.deliver_due())
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(d,)) for d in dispatchers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        other_engine.dispose()

    assert errors == []
    assert sum(sent) == n
    subjects = smtp.inbox.subjects()
    assert len(subjects) == n
    assert sorted(subjects) == sorted({f"Your report CASE{i}: received" for i in range(n)})
    assert all(r.sent_at is not None and r.attempts == 1 for r in rows(rt).values())


def test_a_claimed_row_is_invisible_to_other_dispatchers(rt: Runtime, smtp: SmtpServer):
    """While one dispatcher is in the middle of sending a row (claim committed, SMTP
    not yet answered), another finds nothing to do; no DB lock is held meanwhile."""
    (mid,) = add_mail(rt)
    real = smtp.sender()
    in_send = threading.Event()
    release = threading.Event()

    class Slow:
        def send(self, to: str, subject: str, body: str, *, message_key: str | None = None):
            in_send.set()
            assert release.wait(60)
            real.send(to, subject, body, message_key=message_key)

    result: list[int] = []
    first = threading.Thread(target=lambda: result.append(dispatcher(rt, Slow()).deliver_due()))
    first.start()
    try:
        assert in_send.wait(60)
        # The second dispatcher is not blocked (no transaction is open) and sees nothing.
        assert dispatcher(rt, smtp.sender()).deliver_due() == 0
        # And the outbox stays writable for intake meanwhile.
        (later,) = add_mail(rt)
    finally:
        release.set()
        first.join(60)
    assert result == [2]  # the first dispatcher went on to the row added meanwhile
    assert smtp.inbox.subjects() == ["Your report CASE0: received"] * 2
    assert rows(rt)[mid].sent_at is not None and rows(rt)[later].sent_at is not None


def test_an_expired_claim_is_taken_over(rt: Runtime, smtp: SmtpServer):
    """A worker that died mid-send leaves its claim; once the lease runs out the row is
    delivered by another worker (at-least-once delivery)."""

    class Dies:
        def send(self, to: str, subject: str, body: str, *, message_key: str | None = None):
            raise SystemExit  # stands in for a killed process: nothing is recorded

    (mid,) = add_mail(rt)
    t0 = utcnow()
    lease = timedelta(minutes=15)
    with pytest.raises(SystemExit):
        dispatcher(rt, Dies(), claim_timeout=lease).deliver_due(now=t0)
    assert rows(rt)[mid].attempts == 1
    d = dispatcher(rt, smtp.sender(), claim_timeout=lease)
    assert d.deliver_due(now=t0 + lease - timedelta(seconds=1)) == 0
    assert d.deliver_due(now=t0 + lease) == 1
    row = rows(rt)[mid]
    assert row.sent_at is not None and row.attempts == 2


# -- disabled ----------------------------------------------------------------------------
def test_mail_disabled_builds_nothing_and_leaves_rows_pending(rt: Runtime):
    assert rt.settings.smtp_host is None
    (mid,) = add_mail(rt)
    with pytest.raises(MailDisabled):
        SmtpSender.from_settings(rt.settings)
    assert start_mail_worker(rt) is None
    row = rows(rt)[mid]
    assert row.sent_at is None and row.attempts == 0 and row.last_error is None


# -- worker ------------------------------------------------------------------------------
def _wait_for(cond: Callable[[], bool], deadline_s: float = 120.0) -> None:
    end = time.monotonic() + deadline_s
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.01)


def test_start_mail_worker_delivers_from_settings(rt: Runtime, smtp: SmtpServer):
    settings = rt.settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp.port,
            "mail_from": "notices@example.test",
            "mail_poll_seconds": 0.05,
        }
    )
    worker = start_mail_worker(dataclasses.replace(rt, settings=settings))
    assert worker is not None
    try:
        assert worker.running
        (mid,) = add_mail(rt)
        _wait_for(lambda: rows(rt)[mid].sent_at is not None)
    finally:
        worker.stop()
    assert not worker.running
    _, msg = smtp.inbox.messages[0]
    assert msg["From"] == "notices@example.test"


def test_worker_survives_exceptions():
    class Flaky:
        calls = 0

        def deliver_due(self, now: datetime | None = None, limit: int = 100) -> int:
            self.calls += 1
            if self.calls <= 2:
                raise RuntimeError("database restarting")
            return 0

    flaky = Flaky()
    worker = MailWorker(flaky, interval_s=0.01)
    worker.start()
    try:
        _wait_for(lambda: flaky.calls >= 4)
        assert worker.running
    finally:
        worker.stop()
    assert not worker.running


# -- retry policy ------------------------------------------------------------------------
def test_backoff_doubles_caps_and_gives_up_after_about_two_days(rt: Runtime):
    d = dispatcher(rt, smtp_sender_never_used(), jitter=0)
    delays = [d.retry_delay(n) for n in range(1, DEFAULT_MAX_ATTEMPTS)]
    assert delays[:3] == [timedelta(seconds=30), timedelta(seconds=60), timedelta(seconds=120)]
    assert max(delays) == timedelta(hours=6)
    # The last attempt happens after the sum of the waits before it.
    assert timedelta(hours=40) <= sum(delays, timedelta()) <= timedelta(hours=48)

    jittered = dispatcher(rt, smtp_sender_never_used())
    for n in (1, 5, 20):
        base = d.retry_delay(n)
        for _ in range(50):
            assert base * 0.75 <= jittered.retry_delay(n) <= base


def smtp_sender_never_used() -> SmtpSender:
    return SmtpSender("127.0.0.1", 9, mail_from="t@example.test")


# -- end to end: a real report's notice --------------------------------------------------
def test_report_notice_reaches_the_reporter_without_the_status_token(rt: Runtime, smtp: SmtpServer):
    receipt = rt.cases.submit_report(
        ReportInput(
            category="csam",
            reporter_role="user",
            explanation="Stand-in test report; no real material involved.",
            urls=["https://example.test/v/1"],
            reporter_email="reporter@example.test",
            good_faith=True,
        ),
        channel="web",
    )
    assert dispatcher(rt, smtp.sender()).deliver_due() >= 1
    rcpts = [r for r, _ in smtp.inbox.messages]
    assert rcpts and all(r == ["reporter@example.test"] for r in rcpts)
    for _, msg in smtp.inbox.messages:
        assert receipt.case_number in msg["Subject"]
        assert receipt.status_token not in msg.as_string()


def test_a_late_failure_does_not_overwrite_the_new_owner(rt: Runtime):
    """A worker whose lease ran out while it was stuck does not record its failure over
    the row that another worker has claimed since (the claim is fenced on attempts)."""
    (mid,) = add_mail(rt)
    t0 = utcnow()
    lease = timedelta(minutes=15)
    stuck, release = threading.Event(), threading.Event()

    class StuckThenFails:
        def send(self, to: str, subject: str, body: str, *, message_key: str | None = None):
            stuck.set()
            assert release.wait(60)
            raise MailDeliveryError("timed out")

    class Holds:
        def send(self, to: str, subject: str, body: str, *, message_key: str | None = None):
            release.set()  # the first worker fails while this one holds the claim
            first.join(60)

    first = threading.Thread(
        target=dispatcher(rt, StuckThenFails(), claim_timeout=lease).deliver_due, args=(t0,)
    )
    first.start()
    assert stuck.wait(60)
    assert dispatcher(rt, Holds(), claim_timeout=lease).deliver_due(now=t0 + lease) == 1
    row = rows(rt)[mid]
    assert row.attempts == 2
    assert row.sent_at is not None
    assert row.last_error is None
