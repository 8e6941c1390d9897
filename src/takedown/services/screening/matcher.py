"""Turns query signals into bank matches.

PDQ candidates come from an in-memory index that follows the ``bank_entries`` table
(see ``services/index/follower.py``: new entries are picked up on the next query, no rebuild).
Disabling an entry or a bank, or changing a threshold, needs no index change at all:
index hits are only *candidates*, and every candidate is checked against its current
row and bank before it is reported. So a disable is effective on the very next query,
in every worker process.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, event, func, select
from sqlalchemy.orm import Session, sessionmaker

from takedown.domain.banks import MatchAction
from takedown.domain.screening import BankRule, pdq_candidate_counts
from takedown.domain.video import VideoMatch, VideoRule
from takedown.matching import HammingIndex
from takedown.media.video_decode import FrameFeature
from takedown.services.index.follower import IndexFollower
from takedown.services.screening import video as video_matching
from takedown.store import repositories as repo
from takedown.store.db import read_connection, unit_of_work
from takedown.store.models import Bank, BankEntry, Base

_SYNC_BATCH = 100_000
Candidates = dict[int, tuple[int, str | None]]  # entry id -> (distance, variant)


@dataclass(frozen=True)
class QuerySignals:
    """What is known about one piece of media being screened."""

    pdq_variants: Sequence[tuple[str, str]] = ()  # (variant name, hex); first = original
    pdq_quality: int | None = None
    md5: str | None = None
    sha256: str | None = None
    video_frames: Sequence[FrameFeature] = ()  # a video's kept frame features


@dataclass(frozen=True)
class MatchedEntry:
    """What a match needs of its bank entry: a plain value, read without the ORM on the
    upload path (see :data:`_CANDIDATE_ROWS`)."""

    id: int
    public_id: str
    bank_id: int
    value: str
    quality: int | None
    source: str
    source_id: str | None
    category: str | None
    note: str | None
    added_by: str
    added_at: datetime

    @classmethod
    def of(cls, e: BankEntry) -> MatchedEntry:
        return cls(*(getattr(e, f.name) for f in fields(cls)))


@dataclass(frozen=True)
class Match:
    entry: MatchedEntry
    bank: BankRule
    bank_public_id: str
    signal_type: str
    distance: int
    variant: str | None  # which dihedral variant of the query matched (PDQ only)
    video: VideoMatch | None = None  # how a video matched (signal type "vpdq")


class Matcher:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        index: HammingIndex | None = None,
        sync_interval_s: float = 0.0,
    ) -> None:
        self._sessions = sessions
        self._follower = IndexFollower(
            sessions,
            _ENTRY_ROWS,
            index,
            sync_interval_s,
            more_rows=[(video_matching.BANK_FRAME_ROWS, video_matching.FRAME_ID_BASE)],
        )
        # Entries committed by this process are searchable on the next query, whatever
        # the sync interval (which only delays what other processes add).
        event.listen(sessions, "after_commit", self._after_commit)
        self._radius_value: int | None = None
        self._radius_at = float("-inf")

    @property
    def indexed(self) -> int:
        return len(self._follower)

    def sync(self, *, force: bool = False) -> int:
        """Load PDQ entries added since the last sync; returns how many were added."""
        return self._follower.sync(force=force)

    @property
    def follower(self) -> IndexFollower:
        """The follower of bank entries (for snapshots: services/index/snapshot.py)."""
        return self._follower

    def invalidate(self) -> None:
        """Banks or entries changed in this process: re-read the radius and the new
        entries on the next query (other processes see it within their sync interval
        and within a second for the radius)."""
        self._radius_at = float("-inf")
        self._follower.mark_stale()

    def _after_commit(self, session: Session) -> None:
        if session.info.pop(repo.ENTRIES_ADDED, False):
            self._follower.mark_stale()

    def _radius(self) -> int | None:
        """The largest threshold of the enabled banks, re-read at most once a second.

        Only the radius is cached, never a decision: every candidate is checked against
        its bank's current row. The one effect of the cache: a threshold *raised* in
        another process applies there within a second."""
        now = time.monotonic()
        if self._radius_value is None or now - self._radius_at > RADIUS_TTL_S:
            with unit_of_work(self._sessions, write=False) as session:
                self._radius_value = session.scalar(
                    select(func.max(Bank.pdq_threshold)).where(Bank.enabled.is_(True))
                )
            self._radius_at = now
        return self._radius_value

    def find(self, session: Session, query: QuerySignals) -> list[Match]:
        """Every enabled entry in an enabled bank that the query matches, best first.

        The common case — nothing matches — costs the follower's check for new rows and
        the in-memory search; banks are read only when there are candidates."""
        return self.resolve(session, query, self.candidates(query))

    def candidates(self, query: QuerySignals) -> Candidates:
        """PDQ index hits for the query, entry id -> (distance, variant): memory only
        (the follower reads new rows at most every ``sync_interval_s``, the radius is
        re-read once a second). Empty, and no exact hash to look up, means no match:
        the caller need not open a database session at all."""
        best: Candidates = {}
        if not query.pdq_variants:
            return best
        radius = self._radius()
        if radius is None:
            return best
        result = self._follower.search([h for _, h in query.pdq_variants], radius)
        names = [n for n, _ in query.pdq_variants]
        for qi, entry_id, dist in zip(
            result.query_index.tolist(),
            result.ids.tolist(),
            result.distances.tolist(),
            strict=True,
        ):
            if entry_id not in best or dist < best[entry_id][0]:
                best[entry_id] = (dist, names[qi])
        return best

    def check(self, query: QuerySignals, best: Candidates) -> list[Match]:
        """:meth:`resolve` in a read transaction of its own. When only PDQ candidates
        need checking (hash-only and image screening), on a bare connection: a Session
        would cost more than the read (services/screening/service.py's hot path)."""
        if query.md5 or query.sha256 or query.video_frames:
            with unit_of_work(self._sessions, write=False) as session:
                return self.resolve(session, query, best)
        if not best:
            return []
        with read_connection(self._sessions) as connection:
            return sort_matches(self.pdq_matches(connection, query, best))

    def resolve(self, session: Session, query: QuerySignals, best: Candidates) -> list[Match]:
        """Check candidates (and the query's exact hashes) against the current rows."""
        exact = _exact_entries(session, query)
        frame_hits = self._video_hits(session, query)
        if not best and not exact and not frame_hits:
            return []
        matches: list[Match] = []
        if exact or frame_hits:
            rules = _load_rules(session)
            matches += self._video_matches(session, query, frame_hits, rules)
            for signal_type, entry in exact:
                if entry.bank_id in rules:
                    rule, bank_public_id = rules[entry.bank_id]
                    matches.append(
                        Match(MatchedEntry.of(entry), rule, bank_public_id, signal_type, 0, None)
                    )
        matches += self.pdq_matches(session.connection(), query, best)
        return sort_matches(matches)

    def pdq_matches(
        self, connection: Connection, query: QuerySignals, best: Candidates
    ) -> list[Match]:
        """The PDQ candidates that still count: entry and bank enabled, within the bank's
        threshold and quality floor. One read (the upload path's only one when a PDQ
        hits), in Core: loading ORM objects made it half as dear again (measured 235 vs
        160 us)."""
        if not best:
            return []
        matches: list[Match] = []
        for row in connection.execute(_CANDIDATE_ROWS, {"ids": list(best)}):
            rule = _rule(row.bank_id, row.bank_name, row)
            dist, variant = best[row.id]
            if pdq_candidate_counts(rule, dist, query.pdq_quality, row.quality):
                entry = MatchedEntry(*row[: len(_ENTRY_COLUMNS)])
                matches.append(Match(entry, rule, row.bank_public_id, "pdq", dist, variant))
        return matches

    # -- video ---------------------------------------------------------------------------
    def _video_hits(self, session: Session, query: QuerySignals) -> video_matching.FrameHits:
        if not query.video_frames:
            return video_matching.FrameHits([], [])
        radius = session.execute(
            select(func.max(Bank.pdq_threshold), func.max(Bank.video_frame_threshold)).where(
                Bank.enabled.is_(True)
            )
        ).one()
        if radius[0] is None:
            return video_matching.FrameHits([], [])
        result = self._follower.search([f.pdq for f in query.video_frames], max(radius))
        return video_matching.split_hits(result)

    def _video_matches(
        self,
        session: Session,
        query: QuerySignals,
        hits: video_matching.FrameHits,
        rules: dict[int, tuple[BankRule, str]],
    ) -> list[Match]:
        """Banked videos the upload's frames match under each bank's video rule, and
        banked images that one of its frames shows."""
        matches: list[Match] = []
        if hits.frames:
            owners = video_matching.frame_owners(session, [f for _, f, _ in hits.frames])
            entries = {
                e.id: e
                for e in session.scalars(
                    select(BankEntry).where(
                        BankEntry.id.in_(set(owners.values())), BankEntry.enabled.is_(True)
                    )
                )
                if e.bank_id in rules
            }
            rule_of_entry = {i: _video_rule(rules[e.bank_id][0]) for i, e in entries.items()}
            judged = video_matching.judge_banked(
                session, query.video_frames, hits.frames, rule_of_entry
            )
            for entry_id, video in judged.items():
                entry = entries[entry_id]
                rule, public_id = rules[entry.bank_id]
                found = Match(
                    MatchedEntry.of(entry), rule, public_id, "vpdq", video.distance, None, video
                )
                matches.append(found)
        if hits.other:
            matches += self._frames_showing_images(session, query, hits.other, rules)
        return matches

    def _frames_showing_images(
        self,
        session: Session,
        query: QuerySignals,
        hits: list[tuple[int, int, int]],
        rules: dict[int, tuple[BankRule, str]],
    ) -> list[Match]:
        best: dict[int, tuple[int, int]] = {}  # entry id -> (distance, frame index)
        for q, entry_id, d in hits:
            if entry_id not in best or d < best[entry_id][0]:
                best[entry_id] = (d, q)
        out: list[Match] = []
        for entry in session.scalars(
            select(BankEntry).where(BankEntry.id.in_(best), BankEntry.enabled.is_(True))
        ):
            if entry.bank_id not in rules:
                continue
            rule, public_id = rules[entry.bank_id]
            d, q = best[entry.id]
            frame = query.video_frames[q]
            if pdq_candidate_counts(rule, d, frame.quality, entry.quality):
                variant = f"frame@{frame.timestamp:g}s"
                out.append(Match(MatchedEntry.of(entry), rule, public_id, "pdq", d, variant))
        return out


RADIUS_TTL_S = 1.0
_ENTRY_ROWS = (
    "SELECT id, CASE WHEN signal_type = 'pdq' THEN value END FROM bank_entries "
    "WHERE id > :cursor ORDER BY id LIMIT :n"
)
_ACTION_RANK = {MatchAction.BLOCK: 0, MatchAction.REVIEW: 1, MatchAction.RECORD: 2}

_ENTRIES, _BANKS = Base.metadata.tables["bank_entries"], Base.metadata.tables["banks"]
_ENTRY_COLUMNS = [_ENTRIES.c[f.name] for f in fields(MatchedEntry)]
# Candidates and their banks, both still enabled, whatever the index remembers. Built
# once: constructing it cost ~50 us a call (measured), on every upload that hits.
_CANDIDATE_ROWS = (
    select(
        *_ENTRY_COLUMNS,
        _BANKS.c.name.label("bank_name"),
        _BANKS.c.public_id.label("bank_public_id"),
        _BANKS.c.match_action,
        _BANKS.c.pdq_threshold,
        _BANKS.c.pdq_quality_floor,
        _BANKS.c.video_match_percent,
        _BANKS.c.video_frame_threshold,
    )
    .join(_BANKS, _BANKS.c.id == _ENTRIES.c.bank_id)
    .where(
        _ENTRIES.c.id.in_(bindparam("ids", expanding=True)),
        _ENTRIES.c.enabled.is_(True),
        _BANKS.c.enabled.is_(True),
    )
)


def sort_matches(matches: list[Match]) -> list[Match]:
    """Strictest action first, then closest, then oldest entry."""
    return sorted(
        matches, key=lambda m: (_ACTION_RANK[m.bank.match_action], m.distance, m.entry.id)
    )


def _load_rules(session: Session) -> dict[int, tuple[BankRule, str]]:
    banks = session.scalars(select(Bank).where(Bank.enabled.is_(True))).all()
    return {b.id: (_rule(b.id, b.name, b), b.public_id) for b in banks}


def _rule(bank_id: int, name: str, b: Any) -> BankRule:
    """A bank's rule from its row (``b``: the ORM object, or a Core row that carries
    the bank's policy columns under their own names)."""
    return BankRule(
        bank_id,
        name,
        MatchAction(b.match_action),
        b.pdq_threshold,
        b.pdq_quality_floor,
        video_match_percent=b.video_match_percent,
        video_frame_threshold=b.video_frame_threshold,
    )


def _video_rule(rule: BankRule) -> VideoRule:
    return VideoRule(
        match_percent=rule.video_match_percent,
        frame_threshold=rule.video_frame_threshold,
        quality_floor=rule.pdq_quality_floor,
    )


def _exact_entries(session: Session, query: QuerySignals) -> list[tuple[str, BankEntry]]:
    found: list[tuple[str, BankEntry]] = []
    for signal_type, value in (("md5", query.md5), ("sha256", query.sha256)):
        if not value:
            continue
        entries = session.scalars(
            select(BankEntry).where(
                # Naming the banks lets the (bank_id, signal_type, value) index answer.
                BankEntry.bank_id.in_(select(Bank.id).where(Bank.enabled.is_(True))),
                BankEntry.signal_type == signal_type,
                BankEntry.value == value,
                BankEntry.enabled.is_(True),
            )
        ).all()
        found.extend((signal_type, e) for e in entries)
    return found
