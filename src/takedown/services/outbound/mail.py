"""Delivering the ``mail_outbox``: claim, send, record, retry with backoff.

Why an outbox: a reporter's notice is written in the same transaction as the status
change it describes (``CaseService``), so a notice exists exactly when the change does.
Sending happens here, later and elsewhere, so a slow or dead SMTP server can never
delay or fail a report.

How a message moves (each step its own short transaction; no transaction is open while
talking SMTP):

1. **claim** - pick one due row (``sent_at IS NULL``, ``next_attempt_at <= now``,
   ``attempts < max_attempts``), count the attempt and push ``next_attempt_at`` out by a
   lease (``claim_timeout``), then commit. On PostgreSQL the pick is ``SELECT ... FOR
   UPDATE SKIP LOCKED``, so concurrent workers take different rows without waiting; on
   SQLite the claim runs under the database write lock (``BEGIN IMMEDIATE``), which
   serializes claims. Either way, once committed, no other worker sees the row as due.
2. **send** - one SMTP conversation, with timeouts.
3. **record** - ``sent_at`` on success; on failure ``last_error`` and a new
   ``next_attempt_at`` after exponential backoff with jitter.

Delivery is at least once: a worker that dies between the server's acceptance and
step 3 leaves the row to be claimed again once the lease has run out. The stable
Message-ID (per row) lets mail clients fold that rare duplicate.

Retry policy (defaults): 30 s x 2^(attempt-1), capped at 6 h, each delay shortened by
up to 25 % at random so that rows that failed together do not retry together. The 17th
attempt falls 33-44.5 h after the first (depending on the jitter) and is the last: the
row then stays in the table, unsent, with ``last_error`` saying why, for an operator to
see. A recipient the server refuses with a 5xx reply is given up at once.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from takedown.ids import utcnow
from takedown.integrations.mail import MailDeliveryError
from takedown.store.db import unit_of_work
from takedown.store.models import MailMessage

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 17
DEFAULT_BASE_DELAY = timedelta(seconds=30)
DEFAULT_MAX_DELAY = timedelta(hours=6)
# Longer than any one SMTP conversation can take with 10 s socket timeouts, so a lease
# never runs out under a worker that is still sending.
DEFAULT_CLAIM_TIMEOUT = timedelta(minutes=15)
LAST_ERROR_MAX_CHARS = 1000


def queue_mail(s: Session, to: str, subject: str, body: str, now: datetime) -> None:
    """Put one message in the mail outbox, in the caller's transaction: it is sent (and
    retried) by the dispatcher below only if that transaction commits."""
    s.add(
        MailMessage(to_address=to, subject=subject, body=body, created_at=now, next_attempt_at=now)
    )


class MailSender(Protocol):
    """What the dispatcher needs from a sender (``SmtpSender`` in production)."""

    def send(self, to: str, subject: str, body: str, *, message_key: str | None = None) -> None:
        """Deliver or raise (preferably :class:`MailDeliveryError`)."""
        ...


@dataclass(frozen=True)
class _Claim:
    id: int
    to_address: str
    subject: str
    body: str
    attempts: int  # including the attempt this claim is for; also the claim's fence
    created_at: datetime


class MailDispatcher:
    """Sends due outbox rows. Safe to run in several threads and processes at once."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        sender: MailSender,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        base_delay: timedelta = DEFAULT_BASE_DELAY,
        max_delay: timedelta = DEFAULT_MAX_DELAY,
        jitter: float = 0.25,
        claim_timeout: timedelta = DEFAULT_CLAIM_TIMEOUT,
        rng: random.Random | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 <= jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        self._sessions = sessions
        self._sender = sender
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.jitter = jitter
        self.claim_timeout = claim_timeout
        self._rng = rng or random.Random()

    # -- public ----------------------------------------------------------------------
    def deliver_due(self, now: datetime | None = None, limit: int = 100) -> int:
        """Try every due message, at most ``limit``; returns how many were sent.

        ``now`` fixes the clock for the whole round (tests; replaying a schedule);
        by default each step reads the real clock. A failure that means the server is
        unreachable ends the round early: the other rows would only wait on the same
        timeout, and they stay due for the next round.
        """
        fixed = _as_utc(now) if now is not None else None

        def clock() -> datetime:
            return fixed if fixed is not None else utcnow()

        sent = 0
        for _ in range(limit):
            claim = self._claim(clock())
            if claim is None:
                break
            try:
                self._sender.send(
                    claim.to_address,
                    claim.subject,
                    claim.body,
                    message_key=f"{claim.id}.{claim.created_at:%Y%m%d%H%M%S%f}",
                )
            except MailDeliveryError as exc:
                self._record_failure(claim, exc, clock())
                if exc.server_unavailable:
                    break
                continue
            except Exception as exc:
                # A bug, not an SMTP answer: record it on the row (so it is retried
                # later and visible), then let the caller see the traceback.
                self._record_failure(claim, exc, clock())
                raise
            self._record_sent(claim, clock())
            sent += 1
        return sent

    def retry_delay(self, attempts: int) -> timedelta:
        """Wait after the ``attempts``-th failed attempt: base x 2^(attempts-1), capped,
        then shortened by up to ``jitter`` at random (never lengthened, so the cap
        holds)."""
        exponent = min(max(attempts - 1, 0), 32)  # 2^32 x base is far past any cap
        delay = min(self.base_delay * (2**exponent), self.max_delay)
        return delay * (1 - self._rng.uniform(0, self.jitter))

    # -- steps -----------------------------------------------------------------------
    def _claim(self, now: datetime) -> _Claim | None:
        with unit_of_work(self._sessions, write=True) as s:
            row = s.execute(
                select(
                    MailMessage.id,
                    MailMessage.to_address,
                    MailMessage.subject,
                    MailMessage.body,
                    MailMessage.attempts,
                    MailMessage.created_at,
                )
                .where(
                    MailMessage.sent_at.is_(None),
                    MailMessage.next_attempt_at <= now,
                    MailMessage.attempts < self.max_attempts,
                )
                .order_by(MailMessage.next_attempt_at, MailMessage.id)
                .limit(1)
                # PostgreSQL: FOR UPDATE SKIP LOCKED. SQLite ignores it (BEGIN IMMEDIATE
                # already holds the only write lock).
                .with_for_update(skip_locked=True)
            ).one_or_none()
            if row is None:
                return None
            attempts = row.attempts + 1
            s.execute(
                update(MailMessage)
                .where(MailMessage.id == row.id)
                .values(attempts=attempts, next_attempt_at=now + self.claim_timeout)
            )
        return _Claim(row.id, row.to_address, row.subject, row.body, attempts, row.created_at)

    def _record_sent(self, claim: _Claim, now: datetime) -> None:
        # Not fenced on ``attempts``: the server has the message, so it must never be
        # sent again, even if the lease ran out and another worker holds the row now.
        with unit_of_work(self._sessions, write=True) as s:
            s.execute(
                update(MailMessage)
                .where(MailMessage.id == claim.id, MailMessage.sent_at.is_(None))
                .values(sent_at=now)
            )
        log.info("mail %s sent (attempt %d)", claim.id, claim.attempts)

    def _record_failure(self, claim: _Claim, exc: BaseException, now: datetime) -> None:
        permanent = isinstance(exc, MailDeliveryError) and exc.permanent
        error = str(exc) or exc.__class__.__name__
        if permanent:
            attempts = max(claim.attempts, self.max_attempts)
            error = f"permanent failure, not retried: {error}"
            next_at = now
        elif claim.attempts >= self.max_attempts:
            attempts = claim.attempts
            error = f"gave up after {attempts} attempts: {error}"
            next_at = now
        else:
            attempts = claim.attempts
            next_at = now + self.retry_delay(claim.attempts)
        with unit_of_work(self._sessions, write=True) as s:
            # Fenced on ``attempts``: if the lease ran out and another worker claimed
            # the row meanwhile, that worker's outcome is the one to keep.
            result = s.execute(
                update(MailMessage)
                .where(
                    MailMessage.id == claim.id,
                    MailMessage.sent_at.is_(None),
                    MailMessage.attempts == claim.attempts,
                )
                .values(
                    attempts=attempts,
                    last_error=_truncate(error),
                    next_attempt_at=next_at,
                )
                .execution_options(synchronize_session=False)
            )
        # Logs name rows by id, never by address (server replies may echo it).
        shown = _truncate(error.replace(claim.to_address, "<recipient>"), 300)
        if getattr(result, "rowcount", 1) == 0:
            log.warning("mail %s: claim lost before its failure was recorded", claim.id)
        elif attempts >= self.max_attempts:
            log.warning("mail %s not sent; giving up: %s", claim.id, shown)
        else:
            log.info(
                "mail %s attempt %d failed; next try at %s: %s",
                claim.id,
                attempts,
                next_at.isoformat(timespec="seconds"),
                shown,
            )


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime; pass an aware UTC time")
    return value.astimezone(UTC)


def _truncate(text: str, limit: int = LAST_ERROR_MAX_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
