"""Keeps an in-memory PDQ index in step with the bank entries in the database and
turns query signals into matches.

Why this shape (and not HMA's): HMA rebuilds its whole index on any bank change and
reloads it every 30 s. Here the index only ever *grows* by the entries it has not seen:
entry rows have an increasing integer id, and before answering, a matcher reads the rows
above its cursor (one indexed range query that usually returns nothing). Writers take a
lock while inserting entries (see ``store.repositories.lock_entry_writes``), so ids
become visible in commit order and no row can slip behind the cursor.

Disabling an entry or a bank, or changing a threshold, needs no index change at all:
index hits are only *candidates*, and every candidate is checked against its current
row and bank before it is reported. So a disable is effective on the very next query,
in every worker process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from takedown.domain.banks import MatchAction
from takedown.domain.screening import BankRule, pdq_candidate_counts
from takedown.matching import BruteForceHammingIndex, HammingIndex, hex_to_bytes_array
from takedown.store.models import Bank, BankEntry

_SYNC_BATCH = 100_000


@dataclass(frozen=True)
class QuerySignals:
    """What is known about one piece of media being screened."""

    pdq_variants: Sequence[tuple[str, str]] = ()  # (variant name, hex); first = original
    pdq_quality: int | None = None
    md5: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Match:
    entry: BankEntry
    bank: BankRule
    bank_public_id: str
    signal_type: str
    distance: int
    variant: str | None  # which dihedral variant of the query matched (PDQ only)


class Matcher:
    def __init__(self, index: HammingIndex | None = None, sync_interval_s: float = 0.0) -> None:
        self._index: HammingIndex = index or BruteForceHammingIndex()
        self._cursor = 0
        self._lock = threading.Lock()
        self._sync_interval_s = sync_interval_s
        self._last_sync = 0.0

    @property
    def indexed(self) -> int:
        return len(self._index)

    def sync(self, session: Session, *, force: bool = False) -> int:
        """Load PDQ entries added since the last sync; returns how many were added."""
        now = time.monotonic()
        if not force and self._sync_interval_s and now - self._last_sync < self._sync_interval_s:
            return 0
        with self._lock:
            added = 0
            while True:
                # All signal types are read (not just PDQ) so the cursor can pass every
                # row in one statement: one snapshot, nothing skipped between two reads.
                rows = session.execute(
                    text(
                        "SELECT id, signal_type, value FROM bank_entries "
                        "WHERE id > :cursor ORDER BY id LIMIT :n"
                    ),
                    {"cursor": self._cursor, "n": _SYNC_BATCH},
                ).all()
                if not rows:
                    break
                pdq = [(r[0], r[2]) for r in rows if r[1] == "pdq"]
                if pdq:
                    ids = np.fromiter((i for i, _ in pdq), dtype=np.int64, count=len(pdq))
                    self._index.add(ids, hex_to_bytes_array([v for _, v in pdq]))
                    added += len(pdq)
                self._cursor = int(rows[-1][0])
                if len(rows) < _SYNC_BATCH:
                    break
            self._last_sync = now
            return added

    def find(self, session: Session, query: QuerySignals) -> list[Match]:
        """Every enabled entry in an enabled bank that the query matches, best first."""
        self.sync(session)
        rules = _load_rules(session)
        if not rules:
            return []
        best: dict[int, tuple[int, str | None]] = {}
        if query.pdq_variants:
            radius = max(r.pdq_threshold for r, _ in rules.values())
            result = self._index.search(
                hex_to_bytes_array([h for _, h in query.pdq_variants]), radius
            )
            names = [n for n, _ in query.pdq_variants]
            for qi, entry_id, dist in zip(
                result.query_index.tolist(),
                result.ids.tolist(),
                result.distances.tolist(),
                strict=True,
            ):
                if entry_id not in best or dist < best[entry_id][0]:
                    best[entry_id] = (dist, names[qi])
        matches: list[Match] = []
        if best:
            entries = session.scalars(
                select(BankEntry).where(BankEntry.id.in_(best), BankEntry.enabled.is_(True))
            ).all()
            for entry in entries:
                if entry.bank_id not in rules:
                    continue
                rule, bank_public_id = rules[entry.bank_id]
                dist, variant = best[entry.id]
                if pdq_candidate_counts(rule, dist, query.pdq_quality, entry.quality):
                    matches.append(Match(entry, rule, bank_public_id, "pdq", dist, variant))
        matches.extend(_exact_matches(session, query, rules))
        matches.sort(key=lambda m: (_ACTION_RANK[m.bank.match_action], m.distance, m.entry.id))
        return matches


_ACTION_RANK = {MatchAction.BLOCK: 0, MatchAction.REVIEW: 1, MatchAction.RECORD: 2}


def _load_rules(session: Session) -> dict[int, tuple[BankRule, str]]:
    banks = session.scalars(select(Bank).where(Bank.enabled.is_(True))).all()
    return {
        b.id: (
            BankRule(
                b.id, b.name, MatchAction(b.match_action), b.pdq_threshold, b.pdq_quality_floor
            ),
            b.public_id,
        )
        for b in banks
    }


def _exact_matches(
    session: Session, query: QuerySignals, rules: dict[int, tuple[BankRule, str]]
) -> list[Match]:
    wanted = [(t, v) for t, v in (("md5", query.md5), ("sha256", query.sha256)) if v]
    if not wanted:
        return []
    found: list[Match] = []
    for signal_type, value in wanted:
        entries = session.scalars(
            select(BankEntry).where(
                BankEntry.signal_type == signal_type,
                BankEntry.value == value,
                BankEntry.enabled.is_(True),
            )
        ).all()
        for entry in entries:
            if entry.bank_id in rules:
                rule, bank_public_id = rules[entry.bank_id]
                found.append(Match(entry, rule, bank_public_id, signal_type, 0, None))
    return found
