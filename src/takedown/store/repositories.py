"""Queries the services share, so that each lives in one place."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sqlalchemy import (
    case,
    func,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from takedown.domain.banks import MatchAction
from takedown.domain.screening import BankRule, SignalSetting
from takedown.errors import NotFound
from takedown.ids import utcnow
from takedown.store.models import (
    Bank,
    BankEntry,
    Case,
    Item,
    RetroscanJob,
)

# Arbitrary constants naming the PostgreSQL advisory locks that serialize inserts into
# the tables that in-memory indexes follow.
ENTRY_INSERTS = 0x7A6B_0001
MEDIA_INSERTS = 0x7A6B_0002
REPORTED_HASH_INSERTS = 0x7A6B_0003  # case_locations of kind 'pdq'
# session.info flag: this transaction added bank entries (the matcher of the same
# process reads them right after commit, whatever its sync interval).
ENTRIES_ADDED = "takedown.bank_entries_added"
# Serializes appends to the audit hash chain (services/audit/chain.py).
AUDIT_APPENDS = 0x7A6B_0004
# Serializes the first recording of a database's master key (runtime/setup.py).
MASTER_KEYS = 0x7A6B_0005


def lock_inserts(session: Session, lock: int) -> None:
    """Serialize transactions that insert into a followed table, until commit.

    Index followers read new rows by increasing id. On PostgreSQL two concurrent
    transactions could commit ids out of order and a follower could move its cursor
    past a row not yet visible; holding this lock while inserting makes commit order
    equal id order. SQLite already serializes writers (BEGIN IMMEDIATE).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock})


def lock_entry_writes(session: Session) -> None:
    lock_inserts(session, ENTRY_INSERTS)


def get_bank(session: Session, ref: str, *, for_update: bool = False) -> Bank:
    """A bank by name or by public id."""
    stmt = select(Bank).where((Bank.name == ref) | (Bank.public_id == ref))
    if for_update:
        stmt = stmt.with_for_update()
    bank = session.scalars(stmt).first()
    if bank is None:
        raise NotFound(f"No bank named {ref[:120]!r}.", code="bank_not_found")
    return bank


def get_entry(session: Session, public_id: str) -> BankEntry:
    entry = session.scalars(select(BankEntry).where(BankEntry.public_id == public_id)).first()
    if entry is None:
        raise NotFound(f"No bank entry with id {public_id[:60]!r}.", code="entry_not_found")
    return entry


def entry_counts(session: Session) -> dict[int, tuple[int, int]]:
    """bank id -> (entries, enabled entries)."""
    rows = session.execute(
        select(
            BankEntry.bank_id,
            func.count(),
            func.count().filter(BankEntry.enabled.is_(True)),
        ).group_by(BankEntry.bank_id)
    ).all()
    return {r[0]: (r[1], r[2]) for r in rows}


def existing_values(
    session: Session, bank_id: int, signal_type: str, values: list[str]
) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(values), 500):
        chunk = values[start : start + 500]
        found.update(
            session.scalars(
                select(BankEntry.value).where(
                    BankEntry.bank_id == bank_id,
                    BankEntry.signal_type == signal_type,
                    BankEntry.value.in_(chunk),
                )
            )
        )
    return found


def get_case(session: Session, case_id: str, *, for_update: bool = False) -> Case:
    """A case by its public id (the case number), or ``case_not_found``."""
    stmt = select(Case).where(Case.public_id == case_id)
    if for_update:
        stmt = stmt.with_for_update()
    case = session.scalars(stmt).first()
    if case is None:
        raise NotFound(f"No case {case_id[:40]!r}.", code="case_not_found")
    return case


class FrameRow(Protocol):
    """What a video frame row is made of (``media.video_decode.FrameFeature`` has it)."""

    @property
    def frame_number(self) -> int: ...
    @property
    def timestamp(self) -> float: ...
    @property
    def quality(self) -> int: ...
    @property
    def pdq(self) -> str: ...
    @property
    def end(self) -> float | None: ...
    @property
    def windows(self) -> tuple[tuple[float, str], ...]: ...
    @property
    def unboxed(self) -> str | None: ...


def bank_frame_rows(features: Sequence[FrameRow]) -> list[dict[str, object]]:
    """:func:`frame_rows` of a banked video, followed by one row per frame and crop
    window (``crop_permille`` set), in the same order."""
    rows = [{**row, "crop_permille": None} for row in frame_rows(features)]
    for f, row in zip(features, list(rows), strict=True):
        for cut, pdq in f.windows:
            rows.append({**row, "pdq": pdq, "crop_permille": round(cut * 1000)})
        if f.unboxed is not None:  # the picture inside black bars: window 0
            rows.append({**row, "pdq": f.unboxed, "crop_permille": 0})
    return rows


def frame_rows(features: Sequence[FrameRow]) -> list[dict[str, object]]:
    """Column values of frame rows (without their owner) for a bulk insert."""
    return [
        {
            "frame_number": f.frame_number,
            "timestamp_ms": round(f.timestamp * 1000),
            "quality": f.quality,
            "pdq": f.pdq,
            "end_ms": None if f.end is None else round(f.end * 1000),
        }
        for f in features
    ]


def bank_rule(bank: Bank) -> BankRule:
    """The bank's matching rule from its row and its settings rows."""
    return BankRule(
        bank.id,
        bank.name,
        MatchAction(bank.match_action),
        {
            row.signal_type: SignalSetting(row.threshold, row.quality_floor, row.match_percent)
            for row in bank.signal_settings
        },
    )


def public_when_found(session: Session, item_ids: Sequence[int]) -> dict[int, bool | None]:
    """Whether each item is public on the platform now, as it said (None: it did not
    say): kept on the case's row when the item joins a case, before restrict-first
    hides it, for the CyberTipline's ``publiclyAvailable``."""
    out: dict[int, bool | None] = {}
    ids = list(item_ids)
    for start in range(0, len(ids), 1000):
        for item_id, visibility in session.execute(
            select(Item.id, Item.platform_visibility).where(Item.id.in_(ids[start : start + 1000]))
        ).all():
            out[item_id] = None if visibility is None else visibility == "public"
    return out


def queue_retroscan(session: Session, bank_id: int, after_entry_id: int, actor: str) -> None:
    """Queue the retroactive scan of the bank entries with ids above ``after_entry_id``
    (the ones this transaction added): the one place every path that adds entries
    passes through (banks/service.py ``_insert_records`` and the vpdq entry of a video).

    Called with the entry-insert lock held, so the bank's newest id is this
    transaction's. A job of the same bank still waiting is extended rather than a second
    one queued; one already started is left alone (a new job follows it)."""
    # Only the rows above ``after_entry_id`` (this transaction's) are looked at: asked
    # with ``bank_id = ?`` in the WHERE clause, SQLite walks the bank's whole unique
    # index for the maximum, at every page of an exchange's sync (quadratic in the bank).
    through = session.scalar(
        select(func.max(case((BankEntry.bank_id == bank_id, BankEntry.id)))).where(
            BankEntry.id > after_entry_id
        )
    )
    if through is None or through <= after_entry_id:
        return
    waiting = session.scalars(
        select(RetroscanJob).where(
            RetroscanJob.bank_id == bank_id,
            RetroscanJob.kind == "new_entries",
            RetroscanJob.state == "queued",
        )
    ).first()
    if waiting is not None:
        extended = session.execute(
            update(RetroscanJob)
            .where(RetroscanJob.id == waiting.id, RetroscanJob.state == "queued")
            .values(
                through_entry_id=through,
                after_entry_id=min(waiting.after_entry_id, after_entry_id),
            )
            .execution_options(synchronize_session=False)
        )
        if extended.rowcount:  # type: ignore[attr-defined]
            return
    session.add(
        RetroscanJob(
            bank_id=bank_id,
            kind="new_entries",
            after_entry_id=after_entry_id,
            through_entry_id=through,
            state="queued",
            checkpoint_media_id=0,
            media_scanned=0,
            matches=0,
            cases=0,
            requested_by=actor,
            created_at=utcnow(),
        )
    )


def newest_entry_id(session: Session) -> int:
    """The newest bank entry id of any bank (read under the entry-insert lock: what this
    transaction adds comes after it)."""
    return int(session.scalar(select(func.max(BankEntry.id))) or 0)
