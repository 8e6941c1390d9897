"""Sending one plain-text mail over SMTP.

Why the standard library is enough: Takedown sends a handful of short plain-text
notices to reporters ("we received your report", "a decision was made"). That needs one
connection, optional STARTTLS and login, and one ``MAIL FROM``/``RCPT TO``/``DATA``
exchange - exactly what :mod:`smtplib` and :class:`email.message.EmailMessage` do, with
no dependency to audit or keep up to date. Queueing, retries and backoff are not the
sender's job: they live in :mod:`takedown.services.outbound.mail`, on top of the ``mail_outbox``
table, so a slow or dead SMTP server never blocks intake.

Every socket operation has a timeout (10 s by default) so a black-holed server costs
one bounded wait, never a hung worker.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING

from takedown.ids import utcnow

if TYPE_CHECKING:
    from takedown.config import Settings

DEFAULT_TIMEOUT_S = 10.0


class MailDisabled(RuntimeError):
    """Raised when a sender is asked for but no SMTP host is configured."""


class MailDeliveryError(Exception):
    """The SMTP server could not be reached or did not accept the message.

    ``permanent`` is true when the server refused the recipient with a 5xx reply:
    retrying the same address will not help, so the dispatcher stops trying at once.
    ``server_unavailable`` is true when no SMTP conversation could be had at all
    (connection refused, timeout, TLS or login failure): other messages would fail the
    same way, so the dispatcher stops its batch rather than wait on each of them.
    """

    def __init__(
        self, message: str, *, permanent: bool = False, server_unavailable: bool = False
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.server_unavailable = server_unavailable


class SmtpSender:
    """Sends each message over its own short SMTP connection.

    One connection per message keeps the sender stateless and thread-safe; reporter mail
    is low-volume, so reusing connections would buy nothing worth the error handling.
    """

    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        mail_from: str,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.host = host
        self.port = port
        self.mail_from = mail_from
        self.username = username
        self.password = password
        self.starttls = starttls
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings: Settings, *, timeout: float = DEFAULT_TIMEOUT_S) -> SmtpSender:
        """Build from ``TAKEDOWN_SMTP_*``; raises :class:`MailDisabled` without a host."""
        if not settings.smtp_host:
            raise MailDisabled("Mail is disabled: TAKEDOWN_SMTP_HOST is not set.")
        return cls(
            settings.smtp_host,
            settings.smtp_port,
            mail_from=settings.mail_from,
            username=settings.smtp_username,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
            timeout=timeout,
        )

    def build_message(
        self, to: str, subject: str, body: str, *, message_key: str | None = None
    ) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.mail_from
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = format_datetime(utcnow())
        # A stable Message-ID per outbox row (``message_key``) lets mail clients fold the
        # rare duplicate: a crash after the server accepted the message but before it
        # was recorded as sent.
        domain = _domain(self.mail_from)
        msg["Message-ID"] = (
            f"<takedown.{message_key}@{domain}>" if message_key else make_msgid(domain=domain)
        )
        # RFC 3834: an automatic notice; asks vacation responders not to answer it.
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(body)
        return msg

    def send(self, to: str, subject: str, body: str, *, message_key: str | None = None) -> None:
        """Deliver one message to the SMTP server or raise :class:`MailDeliveryError`.

        Returns once the server has accepted the message for delivery (its answer to
        ``DATA``); what happens after that is the mail system's business.
        """
        try:
            msg = self.build_message(to, subject, body, message_key=message_key)
        except (ValueError, TypeError) as exc:  # e.g. a line break inside an address
            raise MailDeliveryError(f"Message could not be built: {exc}", permanent=True) from exc

        try:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        except (OSError, smtplib.SMTPException) as exc:
            raise MailDeliveryError(
                f"Cannot connect to SMTP server {self.host}:{self.port}: {_describe(exc)}",
                server_unavailable=True,
            ) from exc
        try:
            try:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username:
                    smtp.login(self.username, self.password or "")
            except (OSError, smtplib.SMTPException) as exc:
                raise MailDeliveryError(
                    f"SMTP session setup failed: {_describe(exc)}", server_unavailable=True
                ) from exc
            try:
                smtp.send_message(msg)
            except smtplib.SMTPRecipientsRefused as exc:
                codes = [code for code, _ in exc.recipients.values()]
                answers = "; ".join(
                    _describe(smtplib.SMTPResponseException(code, reply))
                    for code, reply in exc.recipients.values()
                )
                raise MailDeliveryError(
                    f"Recipient refused: {answers}",
                    permanent=bool(codes) and all(500 <= c < 600 for c in codes),
                ) from exc
            except (OSError, smtplib.SMTPException) as exc:
                raise MailDeliveryError(f"SMTP delivery failed: {_describe(exc)}") from exc
        finally:
            # The message is accepted once DATA is answered; a failing QUIT must not
            # turn an accepted message into a "failure" that would be sent again.
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()


def _domain(address: str) -> str:
    return address.rpartition("@")[2].strip("<> ") or "localhost"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        err = exc.smtp_error
        text = err.decode("utf-8", "replace") if isinstance(err, bytes) else str(err)
        return f"{exc.smtp_code} {text}"
    return f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__
