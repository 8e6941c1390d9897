"""Opinions on bank entries pulled from exchanges, queued for the exchanges that carry
them (the ``exchange_feedback`` outbox that ``services/exchanges`` sends): shared by a
reviewer's finding on an entry (``POST /v1/entries/{entry}/opinion``) and by case
decisions on items that matched such entries (``services/cases/decisions.py``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from takedown.domain.exchanges import NO_FEEDBACK
from takedown.services.audit.chain import record
from takedown.store.models import (
    BankEntry,
    BankEntryPayload,
    Exchange,
    ExchangeEntry,
    ExchangeFeedback,
)


def queue_opinion(
    s: Session,
    entry: BankEntry,
    *,
    confirmed: bool,
    actor: str,
    now: datetime,
    case: str | None = None,
    decision: str | None = None,
) -> int:
    """One feedback row per live upstream entry carrying ``entry`` (StopNCII Blocked /
    NotBlocked, NCMEC upvote / downvote, ThreatExchange HELPFUL / DISAGREE_WITH_TAGS),
    audited; returns how many (0: the entry came from no exchange, only from ones whose
    API takes no opinion (TCAP), or upstream removed it)."""
    rows = s.execute(
        select(ExchangeEntry, Exchange)
        .join(Exchange, Exchange.id == ExchangeEntry.exchange_id)
        .where(
            ExchangeEntry.entry_id == entry.id,
            ExchangeEntry.removed_at.is_(None),
            Exchange.type.notin_([t.value for t in NO_FEEDBACK]),
        )
        .order_by(ExchangeEntry.id)
    ).all()
    if not rows:
        return 0
    value = entry.value
    if entry.signal_type == "tmk":  # stored by digest: the whole value
        payload = s.get(BankEntryPayload, entry.id)
        value = payload.payload if payload else value
    for row, ex in rows:
        s.add(
            ExchangeFeedback(
                exchange_id=ex.id,
                upstream_id=row.upstream_id,
                signal_type=row.signal_type,
                value=value,
                positive=confirmed,
                state="pending",
                attempts=0,
                created_at=now,
                created_by=actor,
                next_attempt_at=now,
            )
        )
    details: dict[str, object] = {
        "confirmed": confirmed,
        "upstream": [f"{ex.name}:{row.upstream_id}" for row, ex in rows][:100],
    }
    if case is not None:
        details.update(case=case, decision=decision)
    record(s, actor, "exchange.feedback_queued", "bank_entry", entry.public_id, details)
    return len(rows)
