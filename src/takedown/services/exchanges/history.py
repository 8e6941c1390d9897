"""One exchange as an operator reads it (the console's exchange page): its policy --
its own threshold and action or its bank's, the negative banks checked before it, the
flood quarantine's limit and its entries held by it -- and the match history of its
entries that matched (matches, in the last hour, the last match, confirmed versus
rejected: ``banks/quarantine.entry_history``'s figures, the API's), most recent first.

Read-only; the entries are found from the matches (screenings, cases, quarantines) of
the exchange's entries, so a list of a million entries costs what matched, not a scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from takedown.domain.banks import MatchAction
from takedown.services.banks.quarantine import entry_history
from takedown.services.exchanges.service import ExchangeView, exchange_view, get_exchange
from takedown.store import repositories as repo
from takedown.store.db import unit_of_work
from takedown.store.models import (
    Bank,
    BankEntry,
    CaseEntry,
    EntryQuarantine,
    ExchangeEntry,
    Screening,
    ScreeningMatch,
)


@dataclass(frozen=True)
class EntryHistoryRow:
    entry: str  # the bank entry's public id
    upstream_ids: list[str]  # the exchange's ids carrying it (live first)
    signal_type: str
    value: str
    enabled: bool
    matches: int
    matches_last_hour: int
    last_match_at: datetime | None
    confirmed: int
    rejected: int
    quarantine: str | None  # the last flood quarantine's state


@dataclass(frozen=True)
class ExchangeDetail:
    exchange: ExchangeView
    bank_action: str  # the bank's action, which applies when the exchange has none
    bank_threshold: int  # the bank's PDQ threshold
    action: str  # what a match of its entries means now
    threshold: int  # the PDQ (and vPDQ frame) distance its entries are held to
    negative_banks: list[tuple[str, int]]  # enabled negative banks, checked first: entries
    flood_uploads: int  # distinct uploads within an hour that quarantine an entry
    quarantined: int  # its entries waiting for a specialist's flood decision
    entries_matched: int  # its entries with any history
    entries: list[EntryHistoryRow]  # the most recently matched first (at most ``limit``)


def exchange_detail(
    sessions: sessionmaker[Session], ref: str, *, flood_uploads: int, limit: int = 100
) -> ExchangeDetail:
    with unit_of_work(sessions, write=False) as s:
        ex = get_exchange(s, ref)
        bank = s.get_one(Bank, ex.bank_id)
        view = exchange_view(s, ex)
        rule = repo.bank_rule(bank)
        negative = [
            (name, int(n))
            for name, n in s.execute(
                select(Bank.name, func.count(BankEntry.id))
                .outerjoin(BankEntry, (BankEntry.bank_id == Bank.id) & BankEntry.enabled.is_(True))
                .where(Bank.enabled.is_(True), Bank.match_action == MatchAction.NEGATIVE.value)
                .group_by(Bank.name)
                .order_by(Bank.name)
            )
        ]
        carried = select(ExchangeEntry.entry_id).where(ExchangeEntry.exchange_id == ex.id)
        last: dict[int, datetime | None] = {
            e: at
            for e, at in s.execute(
                select(ScreeningMatch.entry_id, func.max(Screening.screened_at))
                .join(Screening, Screening.id == ScreeningMatch.screening_id)
                .where(ScreeningMatch.entry_id.in_(carried))
                .group_by(ScreeningMatch.entry_id)
            )
        }
        for model in (CaseEntry, EntryQuarantine):
            for e in s.scalars(select(model.entry_id).where(model.entry_id.in_(carried))):
                last.setdefault(e, None)
        quarantined = int(
            s.scalar(
                select(func.count())
                .select_from(EntryQuarantine)
                .where(EntryQuarantine.entry_id.in_(carried), EntryQuarantine.state == "pending")
            )
            or 0
        )
        shown = sorted(last, key=lambda e: (last[e] is None, _sort_key(last[e]), -e))[:limit]
        entries = {e.id: e for e in s.scalars(select(BankEntry).where(BankEntry.id.in_(shown)))}
        upstream: dict[int, list[str]] = {}
        for e, uid, removed in s.execute(
            select(ExchangeEntry.entry_id, ExchangeEntry.upstream_id, ExchangeEntry.removed_at)
            .where(ExchangeEntry.exchange_id == ex.id, ExchangeEntry.entry_id.in_(shown))
            .order_by(ExchangeEntry.removed_at.is_not(None), ExchangeEntry.id)
        ):
            upstream.setdefault(e, []).append(uid if removed is None else f"{uid} (removed)")
    rows = []
    for e in shown:
        h = entry_history(sessions, entries[e].public_id)
        rows.append(
            EntryHistoryRow(
                entry=h.entry,
                upstream_ids=upstream.get(e, []),
                signal_type=entries[e].signal_type,
                value=entries[e].value,
                enabled=h.enabled,
                matches=h.matches,
                matches_last_hour=h.matches_last_hour,
                last_match_at=h.last_match_at,
                confirmed=h.confirmed,
                rejected=h.rejected,
                quarantine=h.quarantines[-1].state if h.quarantines else None,
            )
        )
    bank_threshold = rule.pdq_threshold
    return ExchangeDetail(
        exchange=view,
        bank_action=bank.match_action,
        bank_threshold=bank_threshold,
        action=ex.action or bank.match_action,
        threshold=min(bank_threshold, ex.threshold) if ex.threshold is not None else bank_threshold,
        negative_banks=negative,
        flood_uploads=flood_uploads,
        quarantined=quarantined,
        entries_matched=len(last),
        entries=rows,
    )


def _sort_key(at: datetime | None) -> float:
    """Most recent first (None, an entry known only from a case or a flood, last)."""
    return -at.timestamp() if at is not None else 0.0
