"""Turns query signals into bank matches.

Each Hamming signal type has an in-memory index that follows the ``bank_entries`` table
(see ``services/index/follower.py``: new entries are picked up on the next query, no
rebuild): PDQ and video frames share the multi-index-hashing one, a plug-in type gets a
brute-force one of its own (its values zero-padded to 256 bits, which keeps distances).
Exact types are looked up in the database. Types that are not matchable here are left
to the caller to report (``ScreeningService``).
Disabling an entry or a bank, or changing a threshold, needs no index change at all:
index hits are only *candidates*, and every candidate is checked against its current
row and bank before it is reported. So a disable is effective on the very next query,
in every worker process.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, event, func, select
from sqlalchemy.orm import Session, sessionmaker

from takedown.domain.banks import MatchAction
from takedown.domain.screening import BankRule, SignalSetting, candidate_counts
from takedown.domain.video import VideoMatch
from takedown.matching import BruteForceHammingIndex, HammingIndex
from takedown.media.video_decode import FrameFeature
from takedown.services.index.follower import IndexFollower
from takedown.services.screening import exchange_policy
from takedown.services.screening import video as video_matching
from takedown.signals import (
    MD5,
    PDQ,
    SHA256,
    TMK,
    VPDQ,
    IndexKind,
    SignalType,
    hamming_types,
    signal_type,
)
from takedown.store import repositories as repo
from takedown.store.db import read_connection, unit_of_work
from takedown.store.models import (
    Bank,
    BankEntry,
    BankEntryPayload,
    Base,
    Exchange,
    ExchangeEntry,
)
from takedown.store.valuesets import in_values

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
    video_interval: float | None = None  # seconds between its sampled frames
    tmk: str | None = None  # TMK+PDQF of a video (base64 of the .tmk file)
    # Signals of other types (plug-ins, exact types beyond MD5/SHA-256): (type name,
    # normalised value, quality or None). The built-in fields above are the upload
    # path's, kept apart so that path stays lean.
    others: Sequence[tuple[str, str, int | None]] = ()


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
    scores: dict[str, object] | None = None  # a TMK match's scores and thresholds
    # The action of the exchanges carrying the entry, when one has its own (it replaced
    # the bank's in ``bank``): review or record withholds the bank's restrict_on_match.
    exchange_action: MatchAction | None = None

    def video_dict(self) -> dict[str, object] | None:
        """How a video matched, for the API and the evidence: vPDQ's frame shares and
        ranges, or TMK's scores."""
        return self.video.to_dict() if self.video is not None else self.scores

    @property
    def threshold(self) -> int | None:
        """The bank's threshold the distance was held to: for an image-like Hamming
        signal, and for a video the frame threshold its frames were held to (the share of
        frames it took is in ``video``); exact matches have none."""
        if self.video is not None:
            return self.video.threshold
        st = signal_type(self.signal_type)
        if not st.perceptual:
            return None
        return self.bank.threshold(st)


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
        # A plug-in Hamming type's own index (PDQ and vPDQ frames share the one above).
        plugins = [t for t in hamming_types() if t not in (PDQ, VPDQ)]
        self._others: dict[str, IndexFollower] = {
            t.name: IndexFollower(
                sessions, _padded_rows(t), BruteForceHammingIndex(), sync_interval_s
            )
            for t in plugins
        }
        self._other_radius = {t.name: _max_threshold(t) for t in plugins}  # built once
        # Entries committed by this process are searchable on the next query, whatever
        # the sync interval (which only delays what other processes add).
        event.listen(sessions, "after_commit", self._after_commit)
        self._radius_value: int | None = None
        self._radius_at = float("-inf")
        self._tmk_cache: dict[int, Any] = {}  # entry id -> parsed TMK vectors
        # Exchanges with a threshold or action of their own: id -> (threshold, action).
        self._overrides_value: dict[int, tuple[int | None, MatchAction | None]] = {}
        self._overrides_at = float("-inf")

    @property
    def indexed(self) -> int:
        return len(self._follower)

    def sync(self, *, force: bool = False) -> int:
        """Load Hamming entries added since the last sync; returns how many were added."""
        return self._follower.sync(force=force) + sum(
            f.sync(force=force) for f in self._others.values()
        )

    def close(self) -> None:
        for follower in (self._follower, *self._others.values()):
            follower.close()

    @property
    def follower(self) -> IndexFollower:
        """The follower of bank entries (for snapshots: services/index/snapshot.py)."""
        return self._follower

    def invalidate(self) -> None:
        """Banks or entries changed in this process: re-read the radius and the new
        entries on the next query (other processes see it within their sync interval
        and within a second for the radius)."""
        self._radius_at = float("-inf")
        self._overrides_at = float("-inf")
        for follower in (self._follower, *self._others.values()):
            follower.mark_stale()

    def _after_commit(self, session: Session) -> None:
        if session.info.pop(repo.ENTRIES_ADDED, False):
            for follower in (self._follower, *self._others.values()):
                follower.mark_stale()

    def _radius(self) -> int | None:
        """The largest threshold of the enabled banks, re-read at most once a second.

        Only the radius is cached, never a decision: every candidate is checked against
        its bank's current row. The one effect of the cache: a threshold *raised* in
        another process applies there within a second."""
        now = time.monotonic()
        if self._radius_value is None or now - self._radius_at > RADIUS_TTL_S:
            with unit_of_work(self._sessions, write=False) as session:
                self._radius_value = session.scalar(_MAX_THRESHOLD[PDQ.name])
            self._radius_at = now
        return self._radius_value

    def _exchange_overrides(self) -> dict[int, tuple[int | None, MatchAction | None]]:
        """The exchanges with a threshold or an action of their own, re-read at most once
        a second (like the radius)."""
        now = time.monotonic()
        if now - self._overrides_at > RADIUS_TTL_S:
            with unit_of_work(self._sessions, write=False) as session:
                self._overrides_value = {
                    ex_id: (threshold, MatchAction(action) if action else None)
                    for ex_id, threshold, action in session.execute(
                        select(Exchange.id, Exchange.threshold, Exchange.action).where(
                            Exchange.enabled.is_(True),
                            (Exchange.threshold.is_not(None)) | (Exchange.action.is_not(None)),
                        )
                    )
                }
            self._overrides_at = now
        return self._overrides_value

    def _by_exchange(self, connection: Connection, matches: list[Match]) -> list[Match]:
        """An exchange's own threshold and action for the entries it carries: a PDQ
        match farther than the exchange's threshold does not count (the stricter of the
        bank's and the exchange's), and the exchange's action replaces the bank's (the
        strictest, when several exchanges with an action carry the entry). Nothing to
        read while no exchange has either."""
        if not matches:
            return matches
        overrides = self._exchange_overrides()
        if not overrides:
            return matches
        carried: dict[int, list[int]] = {}
        for entry_id, ex_id in connection.execute(
            select(ExchangeEntry.entry_id, ExchangeEntry.exchange_id).where(
                ExchangeEntry.entry_id.in_(sorted({m.entry.id for m in matches})),
                ExchangeEntry.exchange_id.in_(sorted(overrides)),
                ExchangeEntry.removed_at.is_(None),
            )
        ):
            carried.setdefault(entry_id, []).append(ex_id)
        kept: list[Match] = []
        for m in matches:
            own = exchange_policy.combine(overrides[x] for x in carried.get(m.entry.id, ()))
            limit = own.threshold
            if limit is not None and m.signal_type == PDQ.name and m.distance > limit:
                continue
            # (vPDQ: the frame rule was held to it in _video_matches; TMK's scores have
            # their own thresholds, not a bit distance.)
            if own.action is not None and m.bank.match_action is not MatchAction.NEGATIVE:
                m = replace(
                    m,
                    bank=replace(m.bank, match_action=own.action),
                    exchange_action=own.action,
                )
            kept.append(m)
        return kept

    def find(self, session: Session, query: QuerySignals) -> list[Match]:
        """Every enabled entry in an enabled bank that the query matches, best first.

        The common case — nothing matches — costs the follower's check for new rows and
        the in-memory search; banks are read only when there are candidates."""
        return self.resolve(session, query, self.candidates(query))

    def may_match(
        self,
        session: Session,
        queries: Sequence[QuerySignals],
        not_banked: set[str] | None = None,
    ) -> set[int]:
        """Which of ``queries`` (their positions) may match a bank: one index search and
        one read of exact hashes for a whole batch. A superset (any entry, enabled or
        not, within the largest threshold); :meth:`find` decides for each of these.
        ``not_banked``, when given, receives the queries' MD5 and SHA-256 values that no
        bank entry holds (enabled or not): :meth:`find` need not look them up again in
        the same transaction."""
        found = {i for i, q in enumerate(queries) if q.video_frames or q.others}
        radius = self._radius()
        asked = [(i, h) for i, q in enumerate(queries) for _, h in q.pdq_variants]
        if asked and radius is not None:
            result = self._follower.search([h for _, h in asked], radius)
            found.update(asked[qi][0] for qi in set(result.query_index.tolist()))
        values = sorted({v for q in queries for v in (q.md5, q.sha256) if v})
        banked: set[str] = set()
        for start in range(0, len(values), 5_000):
            banked.update(
                session.scalars(
                    select(BankEntry.value).where(
                        # Naming the banks lets the (bank_id, signal_type, value) index answer.
                        BankEntry.bank_id.in_(select(Bank.id)),
                        BankEntry.signal_type.in_((MD5.name, SHA256.name)),
                        # The values one parameter (store/valuesets.py).
                        in_values(session, BankEntry.value, values[start : start + 5_000]),
                    )
                )
            )
        found.update(i for i, q in enumerate(queries) if (q.md5 in banked) or (q.sha256 in banked))
        if not_banked is not None:
            not_banked.update(v for v in values if v not in banked)
        return found

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
        if query.md5 or query.sha256 or query.video_frames or query.others or query.tmk:
            with unit_of_work(self._sessions, write=False) as session:
                return self.resolve(session, query, best)
        if not best:
            return []
        with read_connection(self._sessions) as connection:
            return sort_matches(
                self._by_exchange(connection, self.pdq_matches(connection, query, best))
            )

    def resolve(self, session: Session, query: QuerySignals, best: Candidates) -> list[Match]:
        """Check candidates (and the query's exact hashes) against the current rows."""
        exact = _exact_entries(session, query)
        frame_hits = self._video_hits(session, query)
        matches: list[Match] = self._other_hamming_matches(session, query)
        if not best and not exact and not frame_hits and not query.tmk:
            return sort_matches(self._by_exchange(session.connection(), matches))
        if exact or frame_hits or query.tmk:
            rules = _load_rules(session)
            if query.tmk:
                matches += self._tmk_matches(session, query.tmk, rules)
            matches += self._video_matches(session, query, frame_hits, rules)
            for signal_type, entry in exact:
                if entry.bank_id in rules:
                    rule, bank_public_id = rules[entry.bank_id]
                    matches.append(
                        Match(MatchedEntry.of(entry), rule, bank_public_id, signal_type, 0, None)
                    )
        matches += self.pdq_matches(session.connection(), query, best)
        return sort_matches(self._by_exchange(session.connection(), matches))

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
            rule = _row_rule(row)
            dist, variant = best[row.id]
            if candidate_counts(rule, PDQ, dist, query.pdq_quality, row.quality):
                entry = MatchedEntry(*row[: len(_ENTRY_COLUMNS)])
                matches.append(Match(entry, rule, row.bank_public_id, "pdq", dist, variant))
        return matches

    def _other_hamming_matches(self, session: Session, query: QuerySignals) -> list[Match]:
        """Matches of plug-in Hamming signals: their own index, their bank thresholds."""
        matches: list[Match] = []
        for name, value, quality in query.others:
            follower = self._others.get(name)
            if follower is None:
                continue
            st = signal_type(name)
            radius = session.scalar(self._other_radius[name])
            if radius is None:
                continue
            result = follower.search([_pad(st, value)], radius)
            best: dict[int, int] = {}
            for entry_id, dist in zip(result.ids.tolist(), result.distances.tolist(), strict=True):
                best[entry_id] = min(dist, best.get(entry_id, dist))
            if not best:
                continue
            for row in session.connection().execute(_CANDIDATE_ROWS, {"ids": list(best)}):
                rule = _row_rule(row)
                if row.signal_type == name and candidate_counts(
                    rule, st, best[row.id], quality, row.quality
                ):
                    entry = MatchedEntry(*row[: len(_ENTRY_COLUMNS)])
                    matches.append(Match(entry, rule, row.bank_public_id, name, best[row.id], None))
        return matches

    # -- TMK -----------------------------------------------------------------------------
    def wants_tmk(self) -> bool:
        """Whether an enabled bank holds enabled TMK entries (and ``tmkpy`` can compare
        them): only then does a video's screening compute its TMK."""
        if not TMK.matchable:
            return False
        with unit_of_work(self._sessions, write=False) as session:
            return session.scalar(_ANY_TMK) is not None

    def _tmk_matches(
        self, session: Session, tmk: str, rules: dict[int, tuple[BankRule, str]]
    ) -> list[Match]:
        """Banked TMK entries the query's TMK matches (Meta's level-1 and level-2 scores,
        both at least 0.7). A linear scan: TMK compares whole videos, one vector each."""
        from takedown.media import tmk as tmk_code

        query = tmk_code.parse_tmk(base64.b64decode(tmk))
        rows = session.execute(
            select(BankEntry, BankEntryPayload.payload)
            .join(BankEntryPayload, BankEntryPayload.entry_id == BankEntry.id)
            .where(
                BankEntry.bank_id.in_(select(Bank.id).where(Bank.enabled.is_(True))),
                BankEntry.signal_type == TMK.name,
                BankEntry.enabled.is_(True),
            )
        ).all()
        out: list[Match] = []
        for entry, payload in rows:
            if entry.bank_id not in rules:
                continue
            banked = self._tmk_cache.get(entry.id)
            if banked is None:
                banked = tmk_code.parse_tmk(base64.b64decode(payload))
                if len(self._tmk_cache) > 1_000:
                    self._tmk_cache.clear()
                self._tmk_cache[entry.id] = banked
            score = tmk_code.compare(query, banked)
            if score is None or not score.matches:
                continue
            rule, public_id = rules[entry.bank_id]
            scores: dict[str, object] = {
                "kind": "tmk",
                "level1": round(score.level1, 4),
                "level2": round(score.level2, 4),
                "level1_threshold": tmk_code.LEVEL1_THRESHOLD,
                "level2_threshold": tmk_code.LEVEL2_THRESHOLD,
            }
            distance = round(100 * (1 - score.level2))
            out.append(
                Match(
                    MatchedEntry.of(entry), rule, public_id, TMK.name, distance, None, None, scores
                )
            )
        return out

    # -- video ---------------------------------------------------------------------------
    def _video_hits(self, session: Session, query: QuerySignals) -> video_matching.FrameHits:
        if not query.video_frames:
            return video_matching.FrameHits([], [])
        radius = (
            session.scalar(_MAX_THRESHOLD[PDQ.name]),
            session.scalar(_MAX_THRESHOLD[VPDQ.name]),
        )
        if radius[0] is None or radius[1] is None:
            return video_matching.FrameHits([], [])
        hashes = video_matching.query_hashes(query.video_frames)
        result = self._follower.search(hashes, max(radius))
        return video_matching.split_hits(result, len(query.video_frames))

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
            owners = video_matching.frame_owners(session, [f for _, f, _, _ in hits.frames])
            entries = {
                e.id: e
                for e in session.scalars(
                    select(BankEntry).where(
                        BankEntry.id.in_(set(owners.values())), BankEntry.enabled.is_(True)
                    )
                )
                if e.bank_id in rules
            }
            rule_of_entry = {i: rules[e.bank_id][0].video_rule for i, e in entries.items()}
            if entries and self._exchange_overrides():
                # An exchange's own threshold holds its banked videos' frames too.
                for i, own in exchange_policy.entry_policies(session, entries).items():
                    held = rule_of_entry[i]
                    if own.threshold is not None and own.threshold < held.frame_threshold:
                        rule_of_entry[i] = replace(held, frame_threshold=own.threshold)
            judged = video_matching.judge_banked(
                session, query.video_frames, hits.frames, rule_of_entry, query.video_interval
            )
            for entry_id, video in judged.items():
                entry = entries[entry_id]
                rule, public_id = rules[entry.bank_id]
                variant = None if video.variant == "original" else video.variant
                found = Match(
                    MatchedEntry.of(entry), rule, public_id, "vpdq", video.distance, variant, video
                )
                matches.append(found)
        if hits.other:
            matches += self._frames_showing_images(session, query, hits.other, rules)
        return matches

    def _frames_showing_images(
        self,
        session: Session,
        query: QuerySignals,
        hits: list[tuple[int, int, int, int]],
        rules: dict[int, tuple[BankRule, str]],
    ) -> list[Match]:
        # entry id -> (distance, frame index, variant index)
        best: dict[int, tuple[int, int, int]] = {}
        for q, entry_id, d, v in hits:
            if entry_id not in best or (d, v) < best[entry_id][::2]:
                best[entry_id] = (d, q, v)
        out: list[Match] = []
        for entry in session.scalars(
            select(BankEntry).where(BankEntry.id.in_(best), BankEntry.enabled.is_(True))
        ):
            if entry.bank_id not in rules:
                continue
            rule, public_id = rules[entry.bank_id]
            d, q, v = best[entry.id]
            frame = query.video_frames[q]
            if candidate_counts(rule, PDQ, d, frame.quality, entry.quality):
                variant = f"frame@{frame.timestamp:g}s"
                if v:
                    variant += f"/{video_matching.VARIANT_NAMES[v]}"
                out.append(Match(MatchedEntry.of(entry), rule, public_id, "pdq", d, variant))
        return out


RADIUS_TTL_S = 1.0
_ANY_TMK = (
    select(BankEntry.id)
    .where(
        BankEntry.bank_id.in_(select(Bank.id).where(Bank.enabled.is_(True))),
        BankEntry.signal_type == "tmk",
        BankEntry.enabled.is_(True),
    )
    .limit(1)
)
_ENTRY_ROWS = (
    "SELECT id, CASE WHEN signal_type = 'pdq' THEN value END FROM bank_entries "
    "WHERE id > :cursor ORDER BY id LIMIT :n"
)
# A negative bank's match first: it is why the verdict is what it is.
_ACTION_RANK = {
    MatchAction.NEGATIVE: -1,
    MatchAction.BLOCK: 0,
    MatchAction.REVIEW: 1,
    MatchAction.RECORD: 2,
}

_ENTRIES, _BANKS = Base.metadata.tables["bank_entries"], Base.metadata.tables["banks"]
_SETTINGS = Base.metadata.tables["bank_signal_settings"]
_ENTRY_COLUMNS = [_ENTRIES.c[f.name] for f in fields(MatchedEntry)]
# Candidates and their banks, both still enabled, whatever the index remembers. Built
# once: constructing it cost ~50 us a call (measured), on every upload that hits.
_CANDIDATE_ROWS = (
    select(
        *_ENTRY_COLUMNS,
        _BANKS.c.name.label("bank_name"),
        _BANKS.c.public_id.label("bank_public_id"),
        _BANKS.c.match_action,
        _ENTRIES.c.signal_type,
        _SETTINGS.c.threshold.label("setting_threshold"),
        _SETTINGS.c.quality_floor.label("setting_quality_floor"),
        _SETTINGS.c.match_percent.label("setting_match_percent"),
    )
    .join(_BANKS, _BANKS.c.id == _ENTRIES.c.bank_id)
    # The bank's setting for the entry's own signal type (none: the type's defaults).
    .outerjoin(
        _SETTINGS,
        and_(
            _SETTINGS.c.bank_id == _ENTRIES.c.bank_id,
            _SETTINGS.c.signal_type == _ENTRIES.c.signal_type,
        ),
    )
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


def _max_threshold(t: SignalType) -> Any:
    """The largest threshold for ``t`` among the enabled banks (None: no enabled bank)."""
    return (
        select(func.max(func.coalesce(_SETTINGS.c.threshold, t.default_threshold)))
        .select_from(
            _BANKS.outerjoin(
                _SETTINGS,
                and_(_SETTINGS.c.bank_id == _BANKS.c.id, _SETTINGS.c.signal_type == t.name),
            )
        )
        .where(_BANKS.c.enabled.is_(True))
    )


_MAX_THRESHOLD = {t.name: _max_threshold(t) for t in (PDQ, VPDQ)}  # built once


def _padded_rows(t: SignalType) -> str:
    """The follower's rows for a plug-in Hamming type: its values, zero-padded on the
    left to the index's 64 hex digits (the registry checked the name and width)."""
    zeros = "0" * (64 - (t.hex_digits or 64))
    return (
        f"SELECT id, CASE WHEN signal_type = '{t.name}' THEN '{zeros}' || value END "
        "FROM bank_entries WHERE id > :cursor ORDER BY id LIMIT :n"
    )


def _pad(t: SignalType, value: str) -> str:
    """A plug-in value as the index holds it (see :func:`_padded_rows`)."""
    return "0" * (64 - (t.hex_digits or 64)) + value


def _load_rules(session: Session) -> dict[int, tuple[BankRule, str]]:
    banks = session.scalars(select(Bank).where(Bank.enabled.is_(True))).all()
    return {b.id: (repo.bank_rule(b), b.public_id) for b in banks}


def _row_rule(row: Any) -> BankRule:
    """A bank's rule for one candidate, from the candidate read's columns: its action
    and its setting for the candidate's signal type."""
    return BankRule(
        row.bank_id,
        row.bank_name,
        MatchAction(row.match_action),
        {
            row.signal_type: SignalSetting(
                row.setting_threshold, row.setting_quality_floor, row.setting_match_percent
            )
        },
    )


def _exact_entries(session: Session, query: QuerySignals) -> list[tuple[str, BankEntry]]:
    found: list[tuple[str, BankEntry]] = []
    asked = [(MD5.name, query.md5), (SHA256.name, query.sha256)]
    asked += [(n, v) for n, v, _ in query.others if signal_type(n).index is IndexKind.EXACT]
    for signal_type_name, value in asked:
        if not value:
            continue
        entries = session.scalars(
            select(BankEntry).where(
                # Naming the banks lets the (bank_id, signal_type, value) index answer.
                BankEntry.bank_id.in_(select(Bank.id).where(Bank.enabled.is_(True))),
                BankEntry.signal_type == signal_type_name,
                BankEntry.value == value,
                BankEntry.enabled.is_(True),
            )
        ).all()
        found.extend((signal_type_name, e) for e in entries)
    return found
