"""Retroactive matching: when a bank learns a hash, find the registered media that
already match it, and handle them as a match at upload would have been.

Every path that adds bank entries queues a job (``store/repositories.queue_retroscan``):
the bank and the range of entry ids added. A worker (``takedown worker``; ``takedown
serve`` too with ``TAKEDOWN_RETROSCAN_IN_SERVE``) takes the oldest job, indexes its
entries once -- PDQ in the scan index (``matching/retro.py``, within the bank's
threshold), MD5 and SHA-256 as sets, banked videos by their frames -- and streams the
``media`` table past it in chunks ordered by id, all 8 dihedral variants of each stored
PDQ. Each chunk is one transaction: the pairs found are inserted into
``retroscan_matches`` (unique per (entry, media): a rescan or a resumed scan never acts
twice), the items carrying newly matched media are handled by
``RegistryService.act_on_retroactive_matches``, and the job's checkpoint moves past the
chunk. A worker killed midway loses at most its current chunk; the job is taken over
from its checkpoint once its lease runs out.

Matches computed elsewhere (the Spark job, ``integrations/spark.py``) come back as
NDJSON through :meth:`RetroscanService.ingest` and are acted on the same way.
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from takedown.domain.video import VideoRule
from takedown.errors import InvalidRequest, NotFound
from takedown.ids import utcnow
from takedown.matching.hamming import stored_hex_to_bytes_array
from takedown.matching.retro import EntryIndex, ScanIndex, match_signals, scan
from takedown.services.audit.chain import record
from takedown.services.registry.service import RegistryService
from takedown.services.screening.exchange_policy import entry_policies
from takedown.services.screening.video import judge_banked, stored_features
from takedown.store import repositories as repo
from takedown.store.db import unit_of_work
from takedown.store.models import (
    Account,
    Bank,
    BankEntry,
    BankVideoFrame,
    CaseEntry,
    CaseItem,
    Item,
    ItemMedia,
    Media,
    RetroscanJob,
    RetroscanMatch,
)

log = logging.getLogger(__name__)

ACTOR = "system:retroscan"
# Threads a chunk's PDQ scan is split over (the kernel releases the GIL): the cores.
_THREADS = max(1, min(8, os.cpu_count() or 1))


@dataclass
class JobView:
    id: str
    bank: str
    kind: str
    state: str
    entries_from: int
    entries_through: int
    media_total: int | None
    media_scanned: int
    matches: int
    cases: int
    requested_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None

    @classmethod
    def of(cls, job: RetroscanJob, bank_name: str) -> JobView:
        return cls(
            job.public_id,
            bank_name,
            job.kind,
            job.state,
            job.after_entry_id + 1,
            job.through_entry_id,
            job.media_total,
            job.media_scanned,
            job.matches,
            job.cases,
            job.requested_by,
            job.created_at,
            job.started_at,
            job.finished_at,
            job.error,
        )

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for k in ("created_at", "started_at", "finished_at"):
            out[k] = out[k].isoformat() if out[k] else None
        return out


@dataclass
class JobEntries:
    """A job's entries, indexed once and kept while its chunks are scanned."""

    index: ScanIndex  # PDQ, MD5, SHA-256 (matching/retro.py: the rule of every engine)
    videos: dict[int, VideoRule]  # vpdq entry id -> the bank's video rule
    video_frames: EntryIndex | None  # the banked videos' frames (ids: frame ids)

    def __len__(self) -> int:
        return len(self.index) + len(self.videos)


@dataclass
class IngestResult:
    lines: int = 0
    new_pairs: int = 0
    already_known: int = 0
    cases: list[str] = field(default_factory=list)


class RetroscanService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        registry: RegistryService,
        *,
        chunk: int = 50_000,
        lease: timedelta = timedelta(seconds=60),
    ) -> None:
        self._sessions = sessions
        self._registry = registry
        self.chunk = chunk
        self.lease = lease

    # -- queue and progress ---------------------------------------------------------
    def rescan_bank(self, ref: str, *, actor: str) -> JobView:
        """Queue a scan of the whole bank (``takedown retroscan BANK``; POST
        /v1/banks/{bank}/retroscans)."""
        with unit_of_work(self._sessions) as s:
            bank = repo.get_bank(s, ref)
            through = s.scalar(select(func.max(BankEntry.id)).where(BankEntry.bank_id == bank.id))
            job = RetroscanJob(
                bank_id=bank.id,
                kind="whole_bank",
                after_entry_id=0,
                through_entry_id=through or 0,
                state="queued" if through else "done",
                checkpoint_media_id=0,
                media_scanned=0,
                matches=0,
                cases=0,
                requested_by=actor,
                created_at=utcnow(),
                finished_at=None if through else utcnow(),
            )
            s.add(job)
            s.flush()
            record(
                s, actor, "bank.retroscan_requested", "bank", bank.public_id, {"job": job.public_id}
            )
            return JobView.of(job, bank.name)

    def list_jobs(self, ref: str, limit: int = 100) -> list[JobView]:
        with unit_of_work(self._sessions, write=False) as s:
            bank = repo.get_bank(s, ref)
            jobs = s.scalars(
                select(RetroscanJob)
                .where(RetroscanJob.bank_id == bank.id)
                .order_by(RetroscanJob.id.desc())
                .limit(limit)
            ).all()
            return [JobView.of(j, bank.name) for j in jobs]

    def pending(self) -> int:
        with unit_of_work(self._sessions, write=False) as s:
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(RetroscanJob)
                    .where(RetroscanJob.state.in_(("queued", "running")))
                )
                or 0
            )

    # -- running ----------------------------------------------------------------------
    def run_pending(self, *, limit: int | None = None) -> int:
        """Run due jobs to their end, oldest first; returns how many were run."""
        done = 0
        while limit is None or done < limit:
            job_id = self._claim()
            if job_id is None:
                break
            self.run_job(job_id)
            done += 1
        return done

    def _claim(self) -> int | None:
        """The oldest queued job, or a running one whose worker fell silent (its lease
        ran out), marked running by this worker."""
        now = utcnow()
        stale = now - self.lease
        with unit_of_work(self._sessions) as s:
            candidates = s.execute(
                select(RetroscanJob.id, RetroscanJob.state, RetroscanJob.updated_at)
                .where(RetroscanJob.state.in_(("queued", "running")))
                .order_by(RetroscanJob.id)
                .limit(20)
            ).all()
            for job_id, state, updated in candidates:
                if state == "running" and updated is not None and updated > stale:
                    continue  # another worker is on it
                taken = s.execute(
                    update(RetroscanJob)
                    .where(
                        RetroscanJob.id == job_id,
                        RetroscanJob.state == state,
                        (RetroscanJob.updated_at == updated)
                        if updated is not None
                        else RetroscanJob.updated_at.is_(None),
                    )
                    .values(
                        state="running",
                        updated_at=now,
                        started_at=func.coalesce(RetroscanJob.started_at, now),
                    )
                    .execution_options(synchronize_session=False)
                )
                if taken.rowcount:  # type: ignore[attr-defined]
                    return int(job_id)
        return None

    def run_job(self, job_id: int) -> None:
        try:
            entries = self._load_entries(job_id)
            with unit_of_work(self._sessions) as s:
                job = s.get_one(RetroscanJob, job_id)
                if job.media_total is None:
                    job.media_total = (
                        int(
                            s.scalar(
                                select(func.count())
                                .select_from(Media)
                                .where(Media.id > job.checkpoint_media_id)
                            )
                            or 0
                        )
                        + job.media_scanned
                    )
            while self._step(job_id, entries):
                pass
        except Exception as exc:  # a job that fails is marked so, and the worker goes on
            log.exception("retroactive scan %s failed", job_id)
            with unit_of_work(self._sessions) as s:
                s.execute(
                    update(RetroscanJob)
                    .where(RetroscanJob.id == job_id)
                    .values(state="failed", error=str(exc)[:2000], updated_at=utcnow())
                )

    def _load_entries(self, job_id: int) -> JobEntries:
        with unit_of_work(self._sessions, write=False) as s:
            job = s.get_one(RetroscanJob, job_id)
            bank = s.get_one(Bank, job.bank_id)
            rule = repo.bank_rule(bank)
            rows = s.execute(
                select(BankEntry.id, BankEntry.signal_type, BankEntry.value).where(
                    BankEntry.bank_id == job.bank_id,
                    BankEntry.id > job.after_entry_id,
                    BankEntry.id <= job.through_entry_id,
                    BankEntry.enabled.is_(True),
                )
            ).all()
            index = ScanIndex.build(
                ((e, "", t, v) for e, t, v in rows if t != "vpdq"),
                rule.pdq_threshold,
                rule.pdq_quality_floor,
            )
            videos = {e: rule.video_rule for e, t, _ in rows if t == "vpdq"}
            if videos:  # an exchange's own threshold holds its banked videos' frames too
                for e, own in entry_policies(s, videos).items():
                    if (
                        own.threshold is not None
                        and own.threshold < rule.video_rule.frame_threshold
                    ):
                        videos[e] = replace(rule.video_rule, frame_threshold=own.threshold)
            frames = None
            if videos:
                frame_rows = s.execute(
                    select(BankVideoFrame.id, BankVideoFrame.pdq).where(
                        BankVideoFrame.entry_id.in_(sorted(videos))
                    )
                ).all()
                if frame_rows:
                    frames = EntryIndex.build(
                        np.array([r[0] for r in frame_rows], dtype=np.int64),
                        stored_hex_to_bytes_array([r[1] for r in frame_rows]),
                        rule.video_rule.frame_threshold,
                    )
            return JobEntries(index, videos, frames)

    def _step(self, job_id: int, entries: JobEntries) -> bool:
        """Scan the next chunk of media and act on what it matched, in one transaction;
        False when the job is done."""
        with unit_of_work(self._sessions) as s:
            job = s.get_one(RetroscanJob, job_id)
            if job.state != "running":
                return False
            # Core rows, not the ORM's (a million rows: seconds of the ORM's loading).
            rows = (
                s.connection()
                .execute(
                    select(*_SCANNED)
                    .where(Media.id > job.checkpoint_media_id)
                    .order_by(Media.id)
                    .limit(self.chunk)
                )
                .all()
            )
            now = utcnow()
            if not rows:
                job.state = "done"
                job.finished_at = now
                job.updated_at = now
                return False
            pairs = held_to_exchanges(s, match_chunk(s, entries, rows) if len(entries) else {})
            fresh = _not_handled_yet(s, _insert_pairs(s, pairs, job.id, "database"))
            cases = self._act(s, fresh)
            job.checkpoint_media_id = int(rows[-1][0])
            job.media_scanned += len(rows)
            job.matches += len(fresh)
            job.cases += len(cases)
            job.updated_at = now
            return True

    def _act(self, s: Session, fresh: dict[tuple[int, int], int]) -> list[str]:
        by_media: dict[int, list[int]] = defaultdict(list)
        for entry_id, media_id in fresh:
            by_media[media_id].append(entry_id)
        cases: set[str] = set()
        for media_id, entry_ids in sorted(by_media.items()):
            entries = s.scalars(select(BankEntry).where(BankEntry.id.in_(entry_ids))).all()
            cases.update(
                self._registry.act_on_retroactive_matches(s, media_id, list(entries), ACTOR)
            )
        return sorted(cases)

    # -- other engines (Spark) ---------------------------------------------------------
    def bank_index(self, ref: str) -> ScanIndex:
        """The bank's enabled entries as a scan index, for an engine outside the
        database (the Spark job broadcasts it)."""
        with unit_of_work(self._sessions, write=False) as s:
            bank = repo.get_bank(s, ref)
            rows = s.execute(
                select(
                    BankEntry.id, BankEntry.public_id, BankEntry.signal_type, BankEntry.value
                ).where(BankEntry.bank_id == bank.id, BankEntry.enabled.is_(True))
            ).all()
            rule = repo.bank_rule(bank)
            return ScanIndex.build(
                ((int(i), p, t, v) for i, p, t, v in rows),
                rule.pdq_threshold,
                rule.pdq_quality_floor,
            )

    def registry_rows(
        self, chunk: int = 50_000
    ) -> Iterator[list[tuple[str, str | None, str, str, int | None]]]:
        """The registered media's signals, item by item, as (item id, account id, signal
        type, signal, quality) rows in chunks: what a platform's warehouse keeps, for
        ``takedown registry export`` (a PDQ's dihedral variants are rows of their own,
        each with the PDQ's quality; None for other types)."""
        after = 0
        while True:
            with unit_of_work(self._sessions, write=False) as s:
                rows = s.execute(
                    select(
                        Media.id,
                        Item.platform_id,
                        Account.platform_id,
                        Media.sha256,
                        Media.md5,
                        Media.pdq,
                        Media.pdq_dihedral,
                        Media.pdq_quality,
                    )
                    .join(ItemMedia, ItemMedia.media_id == Media.id)
                    .join(Item, Item.id == ItemMedia.item_id)
                    .outerjoin(Account, Account.id == Item.account_id)
                    .where(Media.id > after)
                    .order_by(Media.id, Item.id)
                    .limit(chunk)
                ).all()
            if not rows:
                return
            # A chunk ends at a media row's end: its other items come in the next one.
            last = rows[-1][0]
            if len(rows) == chunk and rows[0][0] != last:
                rows = [r for r in rows if r[0] != last]
                last = rows[-1][0]
            out: list[tuple[str, str | None, str, str, int | None]] = []
            for _, item, account, sha256, md5, pdq, dihedral, quality in rows:
                out.append((item, account, "sha256", sha256, None))
                if md5:
                    out.append((item, account, "md5", md5, None))
                if pdq:
                    for v in dihedral.split(",") if dihedral else [pdq]:
                        out.append((item, account, "pdq", v, quality))
            yield out
            after = last

    # -- matches found elsewhere (Spark) -------------------------------------------------
    def ingest(self, lines: Iterable[str], *, actor: str) -> IngestResult:
        """Act on matches found outside the database (the Spark job's NDJSON): one JSON
        object a line with ``entry_id`` (the entry's public id), ``item_id`` (the
        platform's) and ``distance``. Items not registered here are skipped (the
        platform registers them first, or posts them to the registry API); all or
        nothing: a malformed line refuses the file."""
        result = IngestResult()
        wanted: list[tuple[str, str, int]] = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                wanted.append((str(obj["entry_id"]), str(obj["item_id"]), int(obj["distance"])))
            except (ValueError, KeyError, TypeError):
                raise InvalidRequest(
                    f"Line {number} is not a match (JSON with entry_id, item_id, distance).",
                    code="invalid_match_line",
                ) from None
        result.lines = len(wanted)
        with unit_of_work(self._sessions) as s:
            claimed: dict[int, set[str]] = defaultdict(set)  # entry id -> items named
            for entry_pid, item_pid, _ in wanted:
                entry_id = s.scalar(select(BankEntry.id).where(BankEntry.public_id == entry_pid))
                if entry_id is None:
                    raise NotFound(f"No bank entry {entry_pid[:40]!r}.", code="entry_not_found")
                claimed[int(entry_id)].add(item_pid)
            pairs = _confirmed(s, claimed)
            inserted = _insert_pairs(s, held_to_exchanges(s, pairs), None, "ingested")
            fresh = _not_handled_yet(s, inserted)
            result.new_pairs = len(fresh)
            result.already_known = len(pairs) - len(fresh)
            result.cases = self._act(s, fresh)
            record(
                s,
                actor,
                "retroscan.matches_ingested",
                "retroscan",
                "ingest",
                {"lines": result.lines, "new_pairs": result.new_pairs},
            )
        return result


# The media columns a scan reads, in the order match_chunk takes them.
_SCANNED = (
    Media.id,
    Media.sha256,
    Media.md5,
    Media.pdq,
    Media.pdq_dihedral,
    Media.pdq_quality,
    Media.media_type,
)


def match_chunk(s: Session, entries: JobEntries, rows: Sequence[Any]) -> dict[tuple[int, int], int]:
    """(entry id, media id) -> distance for one chunk of media rows (id, sha256, md5,
    pdq, pdq_dihedral, pdq_quality, media_type)."""
    found: dict[tuple[int, int], int] = {}

    def keep(entry_id: int, media_id: int, distance: int) -> None:
        key = (entry_id, media_id)
        if key not in found or distance < found[key]:
            found[key] = distance

    owners: list[int] = []
    types: list[str] = []
    values: list[str] = []
    qualities: list[int | None] = []
    videos: list[int] = []
    for media_id, sha256, md5, pdq, dihedral, quality, media_type in rows:
        owners.append(media_id)
        types.append("sha256")
        values.append(sha256)
        qualities.append(None)
        if md5:
            owners.append(media_id)
            types.append("md5")
            values.append(md5)
            qualities.append(None)
        if pdq:  # below the bank's quality floor: left out by match_signals
            variants = dihedral.split(",") if dihedral else [pdq]
            n = len(variants)
            owners.extend([media_id] * n)
            types.extend(["pdq"] * n)
            values.extend(variants)
            qualities.extend([quality] * n)
        if media_type == "video" and entries.video_frames is not None:
            videos.append(media_id)
    matched = match_signals(entries.index, owners, types, values, qualities, threads=_THREADS)
    for key, distance in matched.items():
        keep(*key, distance)
    for media_id in videos:
        features = stored_features(s, media_id)
        if not features or entries.video_frames is None:
            continue
        frames = stored_hex_to_bytes_array([f.pdq for f in features])
        q, frame_ids, d = scan(entries.video_frames, frames)
        # Stored frames keep their hash as uploaded only (the other rotations need the
        # frame's DCT), so a retroactive scan judges variant 0: the video as uploaded.
        hits = [
            (frame, frame_id, distance, 0)
            for frame, frame_id, distance in zip(
                q.tolist(), frame_ids.tolist(), d.tolist(), strict=True
            )
        ]
        for entry_id in judge_banked(s, features, hits, entries.videos):
            keep(entry_id, media_id, 0)
    return found


def _confirmed(s: Session, claimed: dict[int, set[str]]) -> dict[tuple[int, int], int]:
    """The (entry id, media id) pairs among the items each entry is said to match that
    the one-machine rule confirms on the media registered here (match_signals with the
    entry's bank's threshold and quality floor): an item's other files, a PDQ below the
    floor or a pair past the threshold are not acted on, whatever the file says."""
    entries = s.execute(
        select(BankEntry.id, BankEntry.bank_id, BankEntry.signal_type, BankEntry.value).where(
            BankEntry.id.in_(sorted(claimed)), BankEntry.enabled.is_(True)
        )
    ).all()
    by_bank: dict[int, list[Any]] = defaultdict(list)
    for row in entries:
        by_bank[int(row[1])].append(row)
    found: dict[tuple[int, int], int] = {}
    for bank_id, rows in by_bank.items():
        rule = repo.bank_rule(s.get_one(Bank, bank_id))
        index = ScanIndex.build(
            ((int(e), "", t, v) for e, _, t, v in rows),
            rule.pdq_threshold,
            rule.pdq_quality_floor,
        )
        items = sorted({i for e, *_ in rows for i in claimed[int(e)]})
        media = s.execute(
            select(Item.platform_id, *_SCANNED)
            .join(ItemMedia, ItemMedia.media_id == Media.id)
            .join(Item, Item.id == ItemMedia.item_id)
            .where(Item.platform_id.in_(items))
        ).all()
        carried: dict[int, set[str]] = defaultdict(set)  # media id -> items named with it
        for item_pid, media_id, *_ in media:
            carried[int(media_id)].add(item_pid)
        unique = {int(r[1]): tuple(r[1:]) for r in media}
        matched = match_chunk(s, JobEntries(index, {}, None), list(unique.values()))
        for (e, m), d in matched.items():
            if carried[m] & claimed[e]:
                found[(e, m)] = d
    return found


def _not_handled_yet(s: Session, pairs: dict[tuple[int, int], int]) -> dict[tuple[int, int], int]:
    """The pairs still to act on: not those whose every item carrying the media is
    already in a case this entry's match brought it into (matched at upload, after the
    entry was banked; a rescan of the bank finds them again and leaves them be)."""
    if not pairs:
        return pairs
    media = sorted({m for _, m in pairs})
    entries = sorted({e for e, _ in pairs})
    carriers: dict[int, set[int]] = defaultdict(set)
    for start in range(0, len(media), 1000):
        for m, i in s.execute(
            select(ItemMedia.media_id, ItemMedia.item_id).where(
                ItemMedia.media_id.in_(media[start : start + 1000])
            )
        ).all():
            carriers[int(m)].add(int(i))
    items = sorted({i for held in carriers.values() for i in held})
    handled: set[tuple[int, int]] = set()  # (entry id, item id)
    for start in range(0, len(items), 1000):
        handled.update(
            (int(e), int(i))
            for e, i in s.execute(
                select(CaseEntry.entry_id, CaseItem.item_id)
                .join(CaseItem, CaseItem.case_id == CaseEntry.case_id)
                .where(
                    CaseItem.item_id.in_(items[start : start + 1000]),
                    CaseEntry.entry_id.in_(entries),
                )
            ).all()
        )
    return {
        (e, m): d
        for (e, m), d in pairs.items()
        if not carriers[m] or any((e, i) not in handled for i in carriers[m])
    }


def held_to_exchanges(s: Session, pairs: dict[tuple[int, int], int]) -> dict[tuple[int, int], int]:
    """The pairs that still count under the own threshold of the exchanges carrying
    their entries (the stricter of the bank's and the exchange's, as at upload; exact
    hashes match at distance 0, banked videos were held to it by their frame rule)."""
    if not pairs:
        return pairs
    limits = {
        e: p.threshold
        for e, p in entry_policies(s, {e for e, _ in pairs}).items()
        if p.threshold is not None
    }
    return {(e, m): d for (e, m), d in pairs.items() if d <= limits.get(e, d)}


def _insert_pairs(
    s: Session, pairs: dict[tuple[int, int], int], job_id: int | None, source: str
) -> dict[tuple[int, int], int]:
    """Insert the pairs not yet known; returns those inserted (acted on by the caller,
    once: a pair already there was acted on by whoever inserted it)."""
    if not pairs:
        return {}
    dialect = s.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    now = utcnow()
    fresh: dict[tuple[int, int], int] = {}
    items = list(pairs.items())
    for start in range(0, len(items), 1000):
        part = items[start : start + 1000]
        stmt = (
            insert(RetroscanMatch)
            .values(
                [
                    {
                        "entry_id": e,
                        "media_id": m,
                        "job_id": job_id,
                        "source": source,
                        "distance": d,
                        "found_at": now,
                    }
                    for (e, m), d in part
                ]
            )
            .on_conflict_do_nothing(index_elements=["entry_id", "media_id"])
            .returning(RetroscanMatch.entry_id, RetroscanMatch.media_id)
        )
        for e, m in s.execute(stmt).all():
            fresh[(int(e), int(m))] = pairs[(int(e), int(m))]
    return fresh
