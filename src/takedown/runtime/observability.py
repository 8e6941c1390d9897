"""What ``/metrics`` reads at scrape time and what ``/v1/health/ready`` checks.

Scrape-time figures come from a handful of aggregate queries over indexed columns (the
outbox by state, legal filings by state, DSA statements by state, the open cases'
clocks) and from this process's memory (the bank index); nothing here reads a table
row by row into Python.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import and_, func, select
from sqlalchemy.exc import SQLAlchemyError

from takedown.domain.cases import CaseState
from takedown.ids import utcnow
from takedown.runtime import Runtime
from takedown.services.index import snapshot as index_snapshot
from takedown.store import item_actions
from takedown.store.db import current_revision, head_revision, unit_of_work
from takedown.store.models import Case, LegalFiling, MasterKeyFingerprint, OutboxMessage

# Outbox states worth a gauge; acknowledged rows only grow, and counting them would
# read the whole table at every scrape.
OUTBOX_STATES = ("pending", "delivering", "dead_letter")
OPEN_CASE_STATES = [s.value for s in CaseState if s is not CaseState.DECIDED]
# The bank index is read by a poller every ``index_sync_interval_ms``; not read for this
# long (and at least this many poll intervals) means the poller has stopped.
STALE_INDEX_S = 60.0
STALE_INDEX_INTERVALS = 100


@dataclass(frozen=True)
class Figure:
    """One sample: a metric's name (without prefix), help, labels and value."""

    name: str
    help: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()


def _age(at: object, now: float) -> float:
    if at is None:
        return 0.0
    stamp = at.timestamp() if hasattr(at, "timestamp") else float(at)  # type: ignore[arg-type]
    return max(0.0, now - stamp)


def index_figures(rt: Runtime) -> Iterator[Figure]:
    """This process's bank index (the worker that answers the scrape)."""
    now = time.time()
    yield Figure(
        "index_entries",
        "PDQ hashes (images and video frames) in the bank index of the worker that answered.",
        rt.matcher.indexed,
    )
    last = rt.matcher.follower.last_read_at
    yield Figure(
        "index_last_read_age_seconds",
        "Seconds since that worker last read new bank entries from the database (-1: never yet).",
        now - last if last is not None else -1.0,
    )
    target = index_snapshot.snapshot_path(rt.settings.data_dir)
    yield Figure(
        "index_snapshot_hashes",
        "Hashes in the bank index snapshot on disk that workers start from (0: none).",
        index_snapshot.written_hashes(target),
    )
    try:
        written = (target / "snapshot.json").stat().st_mtime
        age = now - written
    except OSError:
        age = -1.0
    yield Figure(
        "index_snapshot_age_seconds",
        "Seconds since the bank index snapshot was written (-1: there is none).",
        age,
    )


def database_figures(rt: Runtime) -> Iterator[Figure]:
    """Outbox, case clocks, DSA statements and CyberTipline filings, from the database."""
    now_dt = utcnow()
    now = now_dt.timestamp()
    with unit_of_work(rt.sessions, write=False) as s:
        outbox = dict(
            s.execute(
                select(OutboxMessage.state, func.count())
                .where(OutboxMessage.state.in_(OUTBOX_STATES))
                .group_by(OutboxMessage.state)
            ).all()
        )
        oldest_pending = s.scalar(
            select(func.min(OutboxMessage.created_at)).where(OutboxMessage.state == "pending")
        )
        # A viral measure's actions not yet written from its fan-out are pending too.
        unwritten, oldest_unwritten = item_actions.unwritten(s)
        if unwritten:
            outbox["pending"] = outbox.get("pending", 0) + unwritten
            oldest_pending = min(filter(None, (oldest_pending, oldest_unwritten)))
        open_case = Case.decided_at.is_(None)
        decision = and_(open_case, Case.decision_due_at.is_not(None))
        takedown = and_(
            Case.takedown_due_at.is_not(None),
            Case.takedown_requested_at.is_not(None),
            Case.restricted_at.is_(None),
        )
        clocks = s.execute(
            select(
                func.count().filter(decision),
                func.count().filter(and_(decision, Case.decision_due_at < now_dt)),
                func.count().filter(takedown),
                func.count().filter(and_(takedown, Case.takedown_due_at < now_dt)),
            ).where(Case.state.in_(OPEN_CASE_STATES))  # indexed: decided cases skipped
        ).one()
        # Large cases waiting for the background priority round (a partial index).
        waiting, oldest_wait = s.execute(
            select(func.count(), func.min(Case.priority_stale_since)).where(
                Case.priority_stale_since.is_not(None)
            )
        ).one()
        filings = dict(
            s.execute(
                select(LegalFiling.state, func.count())
                .where(LegalFiling.body == "ncmec")
                .group_by(LegalFiling.state)
            ).all()
        )
    for state in OUTBOX_STATES:
        yield Figure(
            "outbox_messages",
            "Actions for the platform in the outbox, by delivery state (acknowledged "
            "ones are not counted).",
            outbox.get(state, 0),
            (("state", state),),
        )
    yield Figure(
        "outbox_oldest_pending_age_seconds",
        "Age of the oldest action not yet delivered (0: none waiting).",
        _age(oldest_pending, now),
    )
    for i, (clock, state) in enumerate(
        [
            ("decision", "running"),
            ("decision", "overdue"),
            ("take_it_down_48h", "running"),
            ("take_it_down_48h", "overdue"),
        ]
    ):
        yield Figure(
            "case_clocks",
            "Clocks of open cases: running (due, not met yet; overdue ones included) "
            "and overdue (past due, not met).",
            int(clocks[i] or 0),
            (("clock", clock), ("state", state)),
        )
    yield Figure(
        "case_priorities_waiting",
        "Large cases whose priority waits for the background round (copies joined them, "
        "or their copies' view counts or accounts changed).",
        int(waiting or 0),
    )
    yield Figure(
        "case_priority_oldest_wait_seconds",
        "How long the longest-waiting of them has waited (0: none).",
        _age(oldest_wait, now),
    )
    dsa = rt.dsa.summary(now_dt)
    for state, count in (
        ("pending", dsa.pending),
        ("submitted", dsa.submitted),
        ("failed", dsa.failed),
    ):
        yield Figure(
            "dsa_statements",
            "Statements of reasons for the EU DSA Transparency Database, by state.",
            count,
            (("state", state),),
        )
    yield Figure(
        "dsa_oldest_unsent_age_seconds",
        "Age of the oldest action whose statement of reasons is not submitted yet (0: none).",
        dsa.oldest_unsent_age_seconds or 0.0,
    )
    for state, count in sorted(filings.items()):
        yield Figure(
            "cybertipline_filings",
            "CyberTipline reports to NCMEC, by state.",
            count,
            (("state", str(state)),),
        )


# -- readiness ---------------------------------------------------------------------
@functools.cache
def _head() -> str | None:
    return head_revision()


def readiness(rt: Runtime) -> dict[str, str | None]:
    """Each check's problem as a sentence, or None when it is fine. The sentences name
    no path, address or secret: the endpoint answers without authentication."""
    checks: dict[str, str | None] = {"database": None, "master_key": None, "bank_index": None}
    known: set[str] | None = None
    try:
        revision = current_revision(rt.engine)
        if revision != _head():
            checks["database"] = (
                f"The database schema is at {revision or 'nothing'}; this version needs "
                f"{_head()}: run `takedown db upgrade`."
            )
        else:
            with unit_of_work(rt.sessions, write=False) as s:
                known = set(s.scalars(select(MasterKeyFingerprint.fingerprint)))
    except SQLAlchemyError as exc:
        checks["database"] = f"The database cannot be reached ({exc.__class__.__name__})."
    mine = set(rt.blobs.cipher.keyring.fingerprints)
    if known is None:
        checks["master_key"] = "Not checked: the database is not ready."
    elif known and not known & mine:
        checks["master_key"] = (
            "This process's master key is not one this database was used with "
            "(fingerprint mismatch): media and the audit chain cannot be read."
        )
    target = index_snapshot.snapshot_path(rt.settings.data_dir)
    meta = target / "snapshot.json"
    if meta.exists() and not index_snapshot.written_hashes(target):
        checks["bank_index"] = (
            "The bank index snapshot in the data directory is unreadable: run "
            "`takedown index snapshot` to write a new one."
        )
    interval_s = rt.settings.index_sync_interval_ms / 1000
    last = rt.matcher.follower.last_read_at
    if interval_s and last is not None:
        limit = max(STALE_INDEX_S, STALE_INDEX_INTERVALS * interval_s)
        if time.time() - last > limit:
            checks["bank_index"] = (
                f"New bank entries have not been read for more than {limit:.0f} s: this "
                "worker's index is stale."
            )
    return checks
