"""Flood quarantine: a bank entry that suddenly matches many distinct uploads (default
100 in an hour: screenings, and registered items whose file matched it) is most likely
a benign picture on a list by mistake. ``sweep`` (run by ``takedown worker``) disables
it at once with an audit event and an alert mail; it then waits for a child-safety
specialist, whose decision restores it or leaves it disabled (its file's shares to
exchanges then cancelled or taken back). A restored entry is not quarantined again for
the flood it was restored in."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session, sessionmaker

from takedown.domain.access import Principal
from takedown.domain.cases import UserRole
from takedown.errors import Conflict, Forbidden, NotFound
from takedown.ids import utcnow
from takedown.services.audit.chain import record
from takedown.services.banks.sharing import withdraw_shares
from takedown.services.outbound.mail import queue_mail
from takedown.store.db import unit_of_work
from takedown.store.models import (
    Bank,
    BankEntry,
    CaseEntry,
    EntryQuarantine,
    Exchange,
    ExchangeEntry,
    Screening,
    ScreeningMatch,
)

QUARANTINE_ACTOR = "flood-quarantine"
WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class QuarantineView:
    id: str
    entry: str
    bank: str
    signal_type: str
    value: str
    source: str
    source_id: str | None
    uploads: int
    started_at: datetime
    state: str
    decided_by: str | None
    decided_at: datetime | None


class QuarantineService:
    def __init__(
        self, sessions: sessionmaker[Session], *, uploads: int = 100, alert_to: str | None = None
    ) -> None:
        self._sessions = sessions
        self.uploads = uploads
        self._alert_to = alert_to

    def sweep(self, now: datetime | None = None) -> list[QuarantineView]:
        """Quarantine every enabled entry that matched ``uploads`` or more distinct
        uploads in the last hour. One transaction."""
        now = now or utcnow()
        since = now - WINDOW
        out: list[QuarantineView] = []
        with unit_of_work(self._sessions) as s:
            # Distinct uploads: a screening named by its content_ref (a registered item
            # is ``item:<id>``, registered again: the same upload), else each one.
            upload = func.count(distinct(func.coalesce(Screening.content_ref, Screening.public_id)))
            floods = s.execute(
                select(ScreeningMatch.entry_id, upload)
                .join(Screening, Screening.id == ScreeningMatch.screening_id)
                .where(Screening.screened_at >= since)
                .group_by(ScreeningMatch.entry_id)
                .having(upload >= self.uploads)
            ).all()
            for entry_id, uploads in floods:
                entry = s.get_one(BankEntry, entry_id)
                if not entry.enabled or _spared(s, entry_id, since):
                    continue
                entry.enabled = False
                entry.disabled_at = now
                entry.disabled_by = QUARANTINE_ACTOR
                entry.disabled_reason = (
                    f"flood quarantine: matched {uploads} distinct uploads within an hour; "
                    "waiting for a child-safety specialist"
                )
                q = EntryQuarantine(
                    entry_id=entry_id, started_at=now, uploads=int(uploads), state="pending"
                )
                s.add(q)
                s.flush()
                bank = s.get_one(Bank, entry.bank_id)
                record(
                    s,
                    QUARANTINE_ACTOR,
                    "entry.quarantined",
                    "bank_entry",
                    entry.public_id,
                    {"quarantine": q.public_id, "uploads": int(uploads), "bank": bank.name},
                )
                if self._alert_to:
                    queue_mail(
                        s,
                        self._alert_to,
                        f"Flood quarantine: an entry of bank {bank.name} matched {uploads} uploads",
                        f"Entry {entry.public_id} ({entry.signal_type}, from {entry.source}"
                        f"{' ' + entry.source_id if entry.source_id else ''}) matched {uploads} "
                        "distinct uploads within an hour and no longer blocks. A child-safety "
                        f"specialist restores or disables it: quarantine {q.public_id}.",
                        now,
                    )
                out.append(_view(q, entry, bank))
        return out

    def list(self, state: str | None = "pending") -> list[QuarantineView]:
        with unit_of_work(self._sessions, write=False) as s:
            stmt = (
                select(EntryQuarantine, BankEntry, Bank)
                .join(BankEntry, BankEntry.id == EntryQuarantine.entry_id)
                .join(Bank, Bank.id == BankEntry.bank_id)
                .order_by(EntryQuarantine.id.desc())
            )
            if state:
                stmt = stmt.where(EntryQuarantine.state == state)
            return [_view(q, e, b) for q, e, b in s.execute(stmt.limit(1000))]

    def decide(self, ref: str, *, restore: bool, principal: Principal) -> QuarantineView:
        """A child-safety specialist's (or an admin's) decision: ``restore`` enables the
        entry again; otherwise it stays disabled, now by that person."""
        if principal.role not in (UserRole.CHILD_SAFETY_SPECIALIST, UserRole.ADMIN):
            raise Forbidden(
                "Only a child-safety specialist (or an admin) decides a quarantined entry.",
                code="forbidden",
            )
        now = utcnow()
        with unit_of_work(self._sessions) as s:
            q = s.scalars(
                select(EntryQuarantine).where(EntryQuarantine.public_id == ref).with_for_update()
            ).first()
            if q is None:
                raise NotFound(f"No quarantine {ref[:60]!r}.", code="quarantine_not_found")
            if q.state != "pending":
                raise Conflict(
                    f"Quarantine {ref} was decided already ({q.state}).",
                    code="quarantine_decided",
                )
            entry = s.get_one(BankEntry, q.entry_id)
            q.state = "restored" if restore else "disabled"
            q.decided_by = principal.actor
            q.decided_at = now
            if restore:
                entry.enabled = True
                entry.disabled_at = entry.disabled_by = entry.disabled_reason = None
            else:
                entry.disabled_by = principal.actor
                entry.disabled_reason = "flood quarantine: confirmed false positive"
                # A file of ours shared to an exchange: cancelled, or taken back.
                withdraw_shares(s, entry.bank_id, {(entry.signal_type, entry.value)},
                                actor=principal.actor, now=now,
                                why=entry.disabled_reason)  # fmt: skip
            record(
                s,
                principal.actor,
                "entry.quarantine_decided",
                "bank_entry",
                entry.public_id,
                {"quarantine": q.public_id, "decision": q.state},
            )
            return _view(q, entry, s.get_one(Bank, entry.bank_id))


def _spared(s: Session, entry_id: int, since: datetime) -> bool:
    """A specialist restored this entry during the current flood: leave it be."""
    return (
        s.scalars(
            select(EntryQuarantine.id).where(
                EntryQuarantine.entry_id == entry_id,
                EntryQuarantine.state == "restored",
                EntryQuarantine.decided_at >= since,
            )
        ).first()
        is not None
    )


def _view(q: EntryQuarantine, e: BankEntry, b: Bank) -> QuarantineView:
    return QuarantineView(
        id=q.public_id,
        entry=e.public_id,
        bank=b.name,
        signal_type=e.signal_type,
        value=e.value,
        source=e.source,
        source_id=e.source_id,
        uploads=q.uploads,
        started_at=q.started_at,
        state=q.state,
        decided_by=q.decided_by,
        decided_at=q.decided_at,
    )


@dataclass(frozen=True)
class EntryMatchHistory:
    """How an entry has matched: uploads screened against it (all time and in the last
    hour), the last one; ``confirmed`` and ``rejected`` count the specialists' decisions
    on its floods (restored: the matches were confirmed as the listed material;
    disabled: rejected as a false positive) and the cases its matches opened or joined,
    by their effective decision (violation; no violation)."""

    entry: str
    bank: str
    enabled: bool
    matches: int
    matches_last_hour: int
    last_match_at: datetime | None
    confirmed: int
    rejected: int
    quarantines: list[QuarantineView]
    # Where the entry came from when exchanges carry it: each upstream entry, live first.
    upstream: list[UpstreamEntry] = field(default_factory=list)


@dataclass(frozen=True)
class UpstreamEntry:
    """One exchange's entry carrying a bank entry: its provenance."""

    exchange: str
    exchange_type: str
    upstream_id: str  # the exchange's id (NCMEC: member-entry; StopNCII: the hash)
    signal_type: str
    labels: dict[str, object]  # as the exchange labels it (classification, tags, ...)
    first_seen_at: datetime
    last_seen_at: datetime
    removed_at: datetime | None  # withdrawn or deleted upstream


def entry_history(
    sessions: sessionmaker[Session], entry_ref: str, now: datetime | None = None
) -> EntryMatchHistory:
    now = now or utcnow()
    with unit_of_work(sessions, write=False) as s:
        entry = s.scalars(select(BankEntry).where(BankEntry.public_id == entry_ref)).first()
        if entry is None:
            raise NotFound(f"No entry {entry_ref[:60]!r}.", code="entry_not_found")
        bank = s.get_one(Bank, entry.bank_id)
        base = (
            select(func.count(distinct(ScreeningMatch.screening_id)))
            .select_from(ScreeningMatch)
            .join(Screening, Screening.id == ScreeningMatch.screening_id)
            .where(ScreeningMatch.entry_id == entry.id)
        )
        total = int(s.scalar(base) or 0)
        recent = int(s.scalar(base.where(Screening.screened_at >= now - WINDOW)) or 0)
        last = s.scalar(
            select(func.max(Screening.screened_at))
            .join(ScreeningMatch, ScreeningMatch.screening_id == Screening.id)
            .where(ScreeningMatch.entry_id == entry.id)
        )
        quarantines = [
            _view(q, entry, bank)
            for q in s.scalars(
                select(EntryQuarantine)
                .where(EntryQuarantine.entry_id == entry.id)
                .order_by(EntryQuarantine.id)
            )
        ]
        if last is not None and last.tzinfo is None:
            last = last.replace(tzinfo=now.tzinfo)
        decided = {  # the effective decisions of the cases its matches opened or joined
            str(opinion): int(n)
            for opinion, n in s.execute(
                select(CaseEntry.opinion, func.count())
                .where(CaseEntry.entry_id == entry.id, CaseEntry.opinion.is_not(None))
                .group_by(CaseEntry.opinion)
            )
        }
        upstream = [
            UpstreamEntry(
                exchange=ex.name,
                exchange_type=ex.type,
                upstream_id=row.upstream_id,
                signal_type=row.signal_type,
                labels=json.loads(row.labels or "{}"),
                first_seen_at=row.first_seen_at,
                last_seen_at=row.last_seen_at,
                removed_at=row.removed_at,
            )
            for row, ex in s.execute(
                select(ExchangeEntry, Exchange)
                .join(Exchange, Exchange.id == ExchangeEntry.exchange_id)
                .where(ExchangeEntry.entry_id == entry.id)
                .order_by(ExchangeEntry.removed_at.is_not(None), ExchangeEntry.id)
                .limit(100)
            )
        ]
        return EntryMatchHistory(
            upstream=upstream,
            entry=entry.public_id,
            bank=bank.name,
            enabled=entry.enabled,
            matches=total,
            matches_last_hour=recent,
            last_match_at=last,
            confirmed=sum(q.state == "restored" for q in quarantines) + decided.get("confirmed", 0),
            rejected=sum(q.state == "disabled" for q in quarantines) + decided.get("rejected", 0),
            quarantines=quarantines,
        )
