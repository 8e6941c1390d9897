"""Sharing the platform's own confirmed hashes out to exchanges: which exchanges take
them and which of our signal types each takes, a share's life (proposed → approved or
refused by the legal team → sent or failed), what a legal decision must say, and how an
approved share's sending is retried. Pure rules.

A share is never made without a person's decision: a bank shares nothing unless it is
set to (``bank_share_targets``), and each file it would share waits for the legal
role's approval.
"""

from __future__ import annotations

from enum import StrEnum

from takedown.domain.exchanges import SIGNAL_NAMES, ExchangeType
from takedown.errors import Conflict, InvalidRequest


class ShareState(StrEnum):
    PENDING = "pending"  # waiting for the legal team
    APPROVED = "approved"  # in the outbox: sent (and retried) by the worker
    REFUSED = "refused"  # the legal team said no, with a reason; nothing sent
    SENT = "sent"  # the exchange took it and answered its upstream id
    FAILED = "failed"  # the exchange refused it (a 4xx), or every retry failed
    # The file was found not violating after all (its decision overturned on appeal,
    # or its entry disabled as a false positive):
    CANCELLED = "cancelled"  # nothing had been sent: it never will be
    WITHDRAWING = "withdrawing"  # sent: in the outbox to be taken back from the exchange
    WITHDRAWN = "withdrawn"  # the exchange deleted it
    WITHDRAW_FAILED = "withdraw_failed"  # the exchange cannot, or every retry failed


# Exchanges that take submissions, and the signal types of ours each takes (in their
# own names, ``SIGNAL_NAMES``). NCMEC's TMK+PDQF goes through a separate file upload
# endpoint and is not shared here. Each has its sharer in ``integrations/hash_sharing.py``.
SHARE_SIGNALS: dict[ExchangeType, tuple[str, ...]] = {
    ExchangeType.NCMEC: ("md5", "pdq", "photodna"),
    ExchangeType.THREATEXCHANGE: ("md5", "pdq"),  # one descriptor each
}

# NCMEC's classifications of an entry (A: prepubescent, B: pubescent; 1: sex act, 2:
# lascivious exhibition); optional, chosen by the legal team when it approves.
CLASSIFICATIONS = frozenset({"A1", "A2", "B1", "B2"})

MAX_ATTEMPTS = 12  # tries before an approved share is given up (failed)
MAX_REASON = 5000


def accepts_shares(kind: ExchangeType, name: str) -> None:
    """Refuse an exchange that takes no submissions from us."""
    if kind not in SHARE_SIGNALS:
        takes = ", ".join(sorted(k.value for k in SHARE_SIGNALS))
        raise InvalidRequest(
            f"Exchange {name!r} ({kind.value}) takes no hashes from us; sharing is "
            f"available to: {takes}.",
            code="exchange_cannot_share",
        )


def shareable(kind: ExchangeType, signals: dict[str, str]) -> dict[str, str]:
    """The signals (our type → value) this exchange takes, in a stable order."""
    wanted = SHARE_SIGNALS.get(kind, ())
    return {t: signals[t] for t in wanted if signals.get(t)}


def upstream_name(kind: ExchangeType, ours: str) -> str:
    """The exchange's name for one of our signal types (NCMEC: ``photodna`` → ``pdna``)."""
    for upstream, mine in SIGNAL_NAMES.get(kind, {}).items():
        if mine == ours:
            return upstream
    raise ValueError(f"{kind.value} has no name for {ours}")


def check_pending(state: str, share_id: str) -> None:
    """Only a share waiting for the legal team can be approved or refused."""
    if state != ShareState.PENDING:
        raise Conflict(
            f"Share {share_id} was already decided (it is {state}).",
            code="share_already_decided",
        )


def refusal_reason(reason: str | None) -> str:
    text = (reason or "").strip()
    if not text:
        raise InvalidRequest(
            "Say why the share is refused (reason): it stays in the audit log.",
            code="reason_required",
        )
    return text[:MAX_REASON]  # (the API and the console take at most this many)


def parse_classification(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    text = value.strip().upper()
    if text not in CLASSIFICATIONS:
        raise InvalidRequest(
            f"A classification is one of {', '.join(sorted(CLASSIFICATIONS))}; got {value[:20]!r}.",
            code="invalid_classification",
        )
    return text


def retry_after_s(attempts: int) -> int:
    """How long after its ``attempts``-th failed try a share is tried again: 5 s,
    doubling, at most an hour."""
    return int(min(3600, 5 * 2 ** max(0, attempts - 1)))
