"""Use cases for hash banks: create and configure banks, add, disable, import and
export entries. Each public method is one transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import TextIO

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from takedown.domain.banks import (
    BankSource,
    MatchAction,
    parse_enum,
    validate_bank_name,
    validate_pdq_threshold,
    validate_quality_floor,
)
from takedown.domain.hashlists import (
    HashRecord,
    ParseResult,
    RejectedLine,
    parse_hash_list,
    write_hash_list,
)
from takedown.domain.screening import BankRule
from takedown.domain.video import validate_match_percent
from takedown.errors import Conflict, InvalidRequest, NotFound
from takedown.ids import new_ids, utcnow
from takedown.media import ImageLimits
from takedown.media.digests import md5_hex, sha256_hex
from takedown.media.video import VideoSignals, hash_image_upload, hash_video_bytes, is_video
from takedown.media.video_limits import VideoLimits, VideoSampling
from takedown.memory import paused_gc
from takedown.services.audit.chain import record
from takedown.services.banks.sharing import reoffer_shares, set_share_targets, withdraw_shares
from takedown.signals import PDQ, SHA256, VPDQ, all_types, signal_type
from takedown.store import repositories as repo
from takedown.store.db import bulk_cache, bulk_insert, refresh_statistics, unit_of_work
from takedown.store.models import Bank, BankEntry, BankEntryPayload, BankVideoFrame, Base

_INSERT_CHUNK = 5_000
_BULK_ROWS = 50_000
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class BankView:
    id: str
    name: str
    description: str
    source: str
    match_action: str
    pdq_threshold: int
    pdq_quality_floor: int
    enabled: bool
    restrict_on_match: bool
    created_at: datetime
    created_by: str
    updated_at: datetime
    disabled_at: datetime | None
    disabled_reason: str | None
    entries: int = 0
    enabled_entries: int = 0
    video_match_percent: int = 80
    video_frame_threshold: int = 31
    # Every signal type's effective setting (the bank's own, else the type's default).
    signal_settings: dict[str, dict[str, object]] = field(default_factory=dict)
    # The exchanges its confirmed hashes are offered to, for legal approval (none: off).
    share_to: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, bank: Bank, counts: tuple[int, int] = (0, 0)) -> BankView:
        rule = repo.bank_rule(bank)
        video = rule.video_rule
        return cls(
            id=bank.public_id,
            name=bank.name,
            description=bank.description,
            source=bank.source,
            match_action=bank.match_action,
            pdq_threshold=rule.pdq_threshold,
            pdq_quality_floor=rule.pdq_quality_floor,
            enabled=bank.enabled,
            restrict_on_match=bank.restrict_on_match,
            created_at=bank.created_at,
            created_by=bank.created_by,
            updated_at=bank.updated_at,
            disabled_at=bank.disabled_at,
            disabled_reason=bank.disabled_reason,
            entries=counts[0],
            enabled_entries=counts[1],
            video_match_percent=video.match_percent,
            video_frame_threshold=video.frame_threshold,
            signal_settings=effective_settings(rule),
            share_to=sorted(t.exchange.name for t in bank.share_targets),
        )


def effective_settings(rule: BankRule) -> dict[str, dict[str, object]]:
    """Per signal type: whether it is matched here, and the threshold, quality floor and
    (vPDQ) frame share in force, for the API and the CLI."""
    out: dict[str, dict[str, object]] = {}
    for st in all_types():
        item: dict[str, object] = {"matchable": st.matchable}
        if st.perceptual:
            item["threshold"] = rule.threshold(st)
        if st.has_quality:
            item["quality_floor"] = rule.quality_floor(st)
        if st is VPDQ:
            item["match_percent"] = rule.video_rule.match_percent
        out[st.name] = item
    return out


@dataclass(frozen=True)
class SettingChange:
    """A change to a bank's setting for one signal type (None: leave as is)."""

    threshold: int | None = None
    quality_floor: int | None = None
    match_percent: int | None = None


def setting_changes(
    *,
    pdq_threshold: int | None = None,
    pdq_quality_floor: int | None = None,
    video_match_percent: int | None = None,
    video_frame_threshold: int | None = None,
    signal_settings: Mapping[str, SettingChange] | None = None,
) -> dict[str, SettingChange]:
    """The API's and CLI's PDQ-named fields as changes per signal type, merged with the
    per-type ones (which win). The PDQ quality floor applies to video frames too, as it
    always has."""
    changes: dict[str, SettingChange] = {}
    if pdq_threshold is not None or pdq_quality_floor is not None:
        changes[PDQ.name] = SettingChange(pdq_threshold, pdq_quality_floor)
    if (
        video_frame_threshold is not None
        or video_match_percent is not None
        or pdq_quality_floor is not None
    ):
        changes[VPDQ.name] = SettingChange(
            video_frame_threshold, pdq_quality_floor, video_match_percent
        )
    for name, change in (signal_settings or {}).items():
        st = signal_type(name)
        before = changes.get(st.name, SettingChange())
        changes[st.name] = SettingChange(
            before.threshold if change.threshold is None else change.threshold,
            before.quality_floor if change.quality_floor is None else change.quality_floor,
            before.match_percent if change.match_percent is None else change.match_percent,
        )
    return changes


def apply_settings(bank: Bank, changes: Mapping[str, SettingChange]) -> None:
    """Validate and store setting changes; a caller mistake changes nothing (the
    transaction rolls back)."""
    for name, change in changes.items():
        st = signal_type(name)
        row = bank.setting(st.name)
        if change.threshold is not None:
            if not st.matchable:
                raise InvalidRequest(
                    f"{st.name} is stored and exchanged but not matched here: it takes no "
                    "threshold.",
                    code="signal_not_matchable",
                )
            row.threshold = (
                validate_pdq_threshold(change.threshold)
                if st in (PDQ, VPDQ)
                else st.validate_threshold(change.threshold)
            )
        if change.quality_floor is not None:
            if not st.has_quality:
                raise InvalidRequest(
                    f"{st.name} signals carry no quality: they take no quality floor.",
                    code="invalid_quality_floor",
                )
            row.quality_floor = validate_quality_floor(change.quality_floor)
        if change.match_percent is not None:
            if st is not VPDQ:
                raise InvalidRequest(
                    "Only vpdq (video) settings take a match percentage.",
                    code="invalid_video_match_percent",
                )
            row.match_percent = validate_match_percent(change.match_percent)


@dataclass(frozen=True)
class EntryView:
    id: str
    bank: str
    signal_type: str
    value: str
    quality: int | None
    source: str
    source_id: str | None
    category: str | None
    note: str | None
    added_by: str
    added_at: datetime
    enabled: bool
    disabled_at: datetime | None
    disabled_by: str | None
    disabled_reason: str | None
    # The SHA-256 of the file the entry was banked from (POST /v1/banks/{bank}/media),
    # shared by that file's other signals; None for entries added by hash or list.
    media_sha256: str | None = None

    @classmethod
    def of(cls, entry: BankEntry, bank_name: str) -> EntryView:
        return cls(
            id=entry.public_id,
            bank=bank_name,
            signal_type=entry.signal_type,
            value=entry.value,
            quality=entry.quality,
            source=entry.source,
            source_id=entry.source_id,
            category=entry.category,
            note=entry.note,
            added_by=entry.added_by,
            added_at=entry.added_at,
            enabled=entry.enabled,
            disabled_at=entry.disabled_at,
            disabled_by=entry.disabled_by,
            disabled_reason=entry.disabled_reason,
            media_sha256=entry.media_sha256,
        )


@dataclass(frozen=True)
class EntryChange(EntryView):
    """An entry just disabled or re-enabled, and the other signals banked from the same
    file, changed with it (unless only this entry was asked for)."""

    siblings: list[EntryView] = field(default_factory=list)


@dataclass(frozen=True)
class MediaChange:
    """A file's entries in a bank, just disabled or re-enabled: those banked from it and
    those that are exactly one of its signals."""

    bank: str
    media_sha256: str
    enabled: bool
    changed: int  # entries whose state changed (the others already were so)
    entries: list[EntryView]


@dataclass(frozen=True)
class Provenance:
    """Where an entry came from, as the person or feed adding it tells it."""

    source: str | None = None  # defaults to the bank's source
    source_id: str | None = None
    category: str | None = None
    note: str | None = None


@dataclass
class AddResult:
    added: int = 0
    already_present: int = 0
    duplicates_in_input: int = 0
    rejected: list[RejectedLine] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # sentences: what was left out, why
    entries: list[EntryView] = field(default_factory=list)  # filled for small adds only


@dataclass(frozen=True)
class BankSettings:
    """Defaults for new banks, from the deployment's configuration."""

    pdq_threshold: int = 31
    pdq_quality_floor: int = 50
    video_match_percent: int = 80
    video_frame_threshold: int = 31


class BankService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        defaults: BankSettings | None = None,
        image_limits: ImageLimits | None = None,
        on_policy_change: Callable[[], None] | None = None,
        video_limits: VideoLimits | None = None,
        video_sampling: VideoSampling | None = None,
    ) -> None:
        self._video_limits = video_limits
        self._video_sampling = video_sampling
        self._sessions = sessions
        # Called after a bank is created or its policy changes (the matcher re-reads
        # its search radius at once in this process).
        self._on_policy_change = on_policy_change or (lambda: None)
        self._defaults = defaults or BankSettings()
        self._limits = image_limits or ImageLimits()

    # -- banks ---------------------------------------------------------------------
    def create_bank(
        self,
        name: str,
        *,
        actor: str,
        source: str = "own",
        match_action: str = "review",
        pdq_threshold: int | None = None,
        pdq_quality_floor: int | None = None,
        description: str = "",
        restrict_on_match: bool = False,
        video_match_percent: int | None = None,
        video_frame_threshold: int | None = None,
        signal_settings: Mapping[str, SettingChange] | None = None,
    ) -> BankView:
        bank = Bank(
            name=validate_bank_name(name),
            description=description,
            restrict_on_match=restrict_on_match,
            source=parse_enum(BankSource, source, "bank source").value,
            match_action=parse_enum(MatchAction, match_action, "match action").value,
            created_by=actor,
        )
        # The deployment's defaults first, then what the caller asked for.
        d = self._defaults
        apply_settings(
            bank,
            setting_changes(
                pdq_threshold=d.pdq_threshold,
                pdq_quality_floor=d.pdq_quality_floor,
                video_match_percent=d.video_match_percent,
                video_frame_threshold=d.video_frame_threshold,
            ),
        )
        apply_settings(
            bank,
            setting_changes(
                pdq_threshold=pdq_threshold,
                pdq_quality_floor=pdq_quality_floor,
                video_match_percent=video_match_percent,
                video_frame_threshold=video_frame_threshold,
                signal_settings=signal_settings,
            ),
        )
        try:
            with unit_of_work(self._sessions) as s:
                if s.scalars(select(Bank.id).where(Bank.name == bank.name)).first():
                    raise _bank_exists(bank.name)
                s.add(bank)
                s.flush()
                record(
                    s,
                    actor,
                    "bank.created",
                    "bank",
                    bank.public_id,
                    {
                        "name": bank.name,
                        "source": bank.source,
                        "match_action": bank.match_action,
                        "pdq_threshold": repo.bank_rule(bank).pdq_threshold,
                        "restrict_on_match": bank.restrict_on_match,
                        "signal_settings": _recorded_settings(bank),
                    },
                )
                view = BankView.of(bank)
        except IntegrityError:  # lost a race with a concurrent create
            raise _bank_exists(bank.name) from None
        self._on_policy_change()
        return view

    def list_banks(self) -> list[BankView]:
        with unit_of_work(self._sessions, write=False) as s:
            counts = repo.entry_counts(s)
            banks = s.scalars(select(Bank).order_by(Bank.name)).all()
            return [BankView.of(b, counts.get(b.id, (0, 0))) for b in banks]

    def get_bank(self, ref: str) -> BankView:
        with unit_of_work(self._sessions, write=False) as s:
            bank = repo.get_bank(s, ref)
            return BankView.of(bank, repo.entry_counts(s).get(bank.id, (0, 0)))

    def update_bank(
        self,
        ref: str,
        *,
        actor: str,
        description: str | None = None,
        match_action: str | None = None,
        pdq_threshold: int | None = None,
        pdq_quality_floor: int | None = None,
        enabled: bool | None = None,
        restrict_on_match: bool | None = None,
        reason: str | None = None,
        video_match_percent: int | None = None,
        video_frame_threshold: int | None = None,
        signal_settings: Mapping[str, SettingChange] | None = None,
        share_to: Sequence[str] | None = None,
    ) -> BankView:
        """Change a bank's policy. Takes effect for the next query in every worker.
        ``share_to``: the exchanges its confirmed hashes are offered to from now on
        (replacing the list; empty: none), each offer waiting for legal approval."""
        changes = setting_changes(
            pdq_threshold=pdq_threshold,
            pdq_quality_floor=pdq_quality_floor,
            video_match_percent=video_match_percent,
            video_frame_threshold=video_frame_threshold,
            signal_settings=signal_settings,
        )
        with unit_of_work(self._sessions) as s:
            bank = repo.get_bank(s, ref, for_update=True)
            apply_settings(bank, changes)
            if restrict_on_match is not None:
                bank.restrict_on_match = restrict_on_match
            if description is not None:
                bank.description = description
            if match_action is not None:
                bank.match_action = parse_enum(MatchAction, match_action, "match action").value
            if enabled is not None and enabled != bank.enabled:
                if not enabled and not (reason and reason.strip()):
                    raise InvalidRequest(
                        "Say why the bank is being disabled (reason).", code="reason_required"
                    )
                bank.enabled = enabled
                bank.disabled_at = None if enabled else utcnow()
                bank.disabled_reason = None if enabled else reason
            if share_to is not None:
                set_share_targets(s, bank, share_to, actor)
            bank.updated_at = utcnow()
            s.flush()
            rule = repo.bank_rule(bank)
            record(
                s,
                actor,
                "bank.updated",
                "bank",
                bank.public_id,
                {
                    "name": bank.name,
                    "match_action": bank.match_action,
                    "pdq_threshold": rule.pdq_threshold,
                    "quality_floor": rule.pdq_quality_floor,
                    "enabled": bank.enabled,
                    "reason": bank.disabled_reason,
                    "restrict_on_match": bank.restrict_on_match,
                    "video_match_percent": rule.video_rule.match_percent,
                    "video_frame_threshold": rule.video_rule.frame_threshold,
                    "signal_settings": _recorded_settings(bank),
                },
            )
            view = BankView.of(bank, repo.entry_counts(s).get(bank.id, (0, 0)))
        self._on_policy_change()
        return view

    # -- entries -------------------------------------------------------------------
    def add_hashes(
        self,
        ref: str,
        records: Sequence[HashRecord],
        *,
        actor: str,
        progress: ProgressFn | None = None,
    ) -> AddResult:
        """Add entries, all in one transaction; hashes already in the bank are counted,
        not duplicated."""
        if any(r.signal_type == VPDQ.name for r in records):
            raise InvalidRequest(
                "A vpdq entry is a video's set of frame hashes: bank the video file itself "
                "(POST /v1/banks/{bank}/media or `takedown bank add-media`).",
                code="invalid_signal_type",
            )
        with unit_of_work(self._sessions) as s:
            bank = repo.get_bank(s, ref, for_update=True)
            result = _insert_records(s, bank, records, actor, progress)
            if len(records) <= 100:
                result.entries = _views_for(s, bank, records)
            return result

    def add_media(self, ref: str, data: bytes, provenance: Provenance, *, actor: str) -> AddResult:
        """Hash a file and bank its PDQ, MD5 and SHA-256, and the signals of plug-in types
        that hash images. A PDQ hash below the bank's quality floor is left out (it would
        only cause false matches) and said so. A video is banked by its digests and its
        frame features (:meth:`add_video`)."""
        if is_video(data):
            video = hash_video_bytes(data, self._video_limits, self._video_sampling)
            return self.add_video(ref, video, provenance, actor=actor)
        signals = hash_image_upload(data, self._limits)
        p = provenance
        with unit_of_work(self._sessions) as s:
            bank = repo.get_bank(s, ref, for_update=True)
            records = [
                HashRecord("md5", signals.md5, None, p.source, p.source_id, p.category, p.note),
                HashRecord(
                    "sha256", signals.sha256, None, p.source, p.source_id, p.category, p.note
                ),
            ]
            skipped: list[str] = []
            rule = repo.bank_rule(bank)
            for name, (value, quality) in signals.others.items():  # plug-in types
                other_floor = rule.quality_floor(name) if quality is not None else None
                if other_floor is not None and quality is not None and quality < other_floor:
                    skipped.append(
                        f"{name} left out: quality {quality} is below the bank's floor of "
                        f"{other_floor}."
                    )
                    continue
                records.append(
                    HashRecord(name, value, quality, p.source, p.source_id, p.category, p.note)
                )
            floor = rule.pdq_quality_floor
            if signals.pdq.quality >= floor:
                records.insert(
                    0,
                    HashRecord(
                        "pdq",
                        signals.pdq.hash,
                        signals.pdq.quality,
                        p.source,
                        p.source_id,
                        p.category,
                        p.note,
                    ),
                )
            else:
                skipped.append(
                    f"PDQ left out: quality {signals.pdq.quality} is below the bank's floor "
                    f"of {floor}; only exact copies will match."
                )
            result = _insert_records(s, bank, records, actor, None, media_sha256=signals.sha256)
            if result.already_present:
                _link_to_media(s, bank, records, signals.sha256)
            result.skipped = skipped
            result.entries = _views_for(s, bank, records)
            return result

    def add_video(
        self, ref: str, video: VideoSignals, provenance: Provenance, *, actor: str
    ) -> AddResult:
        """Bank a hashed video: its MD5 and SHA-256 as entries, and one ``vpdq`` entry
        (valued by the file's SHA-256) whose frame features follow it in
        ``bank_video_frames``. Frames below the bank's quality floor are left out."""
        p = provenance
        records = [
            HashRecord("md5", video.md5, None, p.source, p.source_id, p.category, p.note),
            HashRecord("sha256", video.sha256, None, p.source, p.source_id, p.category, p.note),
        ]
        with unit_of_work(self._sessions) as s:
            bank = repo.get_bank(s, ref, for_update=True)
            result = _insert_records(s, bank, records, actor, None, media_sha256=video.sha256)
            if result.already_present:
                _link_to_media(s, bank, records, video.sha256)
            floor = repo.bank_rule(bank).video_rule.quality_floor
            frames = [f for f in video.frames if f.quality >= floor]
            entry = s.scalars(
                select(BankEntry).where(
                    BankEntry.bank_id == bank.id,
                    BankEntry.signal_type == VPDQ.name,
                    BankEntry.value == video.sha256,
                )
            ).first()
            if not frames:
                result.skipped.append(
                    "Frames left out: no frame reaches the bank's quality floor of "
                    f"{floor}; only exact copies will match."
                )
            elif entry is not None:
                result.already_present += 1
            else:
                newest_before = repo.newest_entry_id(s)
                entry = BankEntry(
                    bank_id=bank.id,
                    signal_type=VPDQ.name,
                    value=video.sha256,
                    quality=None,
                    source=p.source or bank.source,
                    source_id=p.source_id,
                    category=p.category,
                    note=p.note,
                    added_by=actor,
                    media_sha256=video.sha256,
                )
                s.add(entry)
                s.flush()
                s.execute(
                    insert(BankVideoFrame),
                    [{"entry_id": entry.id, **row} for row in repo.bank_frame_rows(frames)],
                )
                result.added += 1
                repo.queue_retroscan(s, bank.id, newest_before, actor)
                record(
                    s,
                    actor,
                    "bank.video_added",
                    "bank",
                    bank.public_id,
                    {"entry": entry.public_id, "frames": len(frames), "sha256": video.sha256},
                )
            result.entries = _views_for(s, bank, records)
            if entry is not None:
                result.entries.insert(0, EntryView.of(entry, bank.name))
            return result

    def import_list(
        self,
        ref: str,
        lines: Iterable[str],
        fmt: str,
        *,
        actor: str,
        default_type: str | None = None,
        provenance: Provenance | None = None,
        skip_invalid: bool = False,
        progress: ProgressFn | None = None,
    ) -> AddResult:
        """Import a hash list. If any line is rejected, nothing is imported unless
        ``skip_invalid``; either way the rejected lines come back with their numbers."""
        with paused_gc():
            parsed: ParseResult = parse_hash_list(
                lines,
                fmt,
                default_type=signal_type(default_type) if default_type else None,
                allowed_types=_list_types(),
            )
        if parsed.rejected and not skip_invalid:
            raise InvalidRequest(
                f"{len(parsed.rejected)} line(s) rejected, nothing imported; fix them, or "
                "import only the valid lines with --skip-invalid (CLI) or skip_invalid=true "
                "(API).",
                code="import_rejected",
                rejected=[
                    {"line": r.line_number, "reason": r.reason} for r in parsed.rejected[:1000]
                ],
            )
        with paused_gc(), unit_of_work(self._sessions) as s:
            bank = repo.get_bank(s, ref, for_update=True)
            result = _insert_records(s, bank, parsed.records, actor, progress, provenance)
        if result.added >= _ANALYZE_AFTER:
            # The exact lookups that screen uploads (MD5, SHA-256) are planned from the
            # table's statistics: refresh them now rather than when autovacuum gets to it.
            with unit_of_work(self._sessions, write=False) as s:
                refresh_statistics(s.connection(), Base.metadata.tables["bank_entries"])
        result.rejected = parsed.rejected
        result.duplicates_in_input += parsed.duplicates_in_file
        return result

    def export_list(
        self,
        ref: str,
        fmt: str,
        out: TextIO,
        *,
        include_disabled: bool = False,
        with_provenance: bool = False,
        only_type: str | None = None,
    ) -> int:
        """Write a bank's entries as a hash list. A ``text`` list holds one signal type,
        so a bank with several needs ``only_type``."""
        with unit_of_work(self._sessions, write=False) as s:
            bank = repo.get_bank(s, ref)
            stmt = (
                select(BankEntry, BankEntryPayload.payload)
                # Types stored by digest (TMK) are exported whole.
                .outerjoin(BankEntryPayload, BankEntryPayload.entry_id == BankEntry.id)
                .where(BankEntry.bank_id == bank.id)
                .order_by(BankEntry.id)
            )
            # A banked video's frame set has no line in a hash list; its MD5 and
            # SHA-256 entries are exported like any other.
            stmt = stmt.where(BankEntry.signal_type != VPDQ.name)
            if only_type:
                stmt = stmt.where(BankEntry.signal_type == signal_type(only_type).name)
            if not include_disabled:
                stmt = stmt.where(BankEntry.enabled.is_(True))
            rows = s.execute(stmt.execution_options(yield_per=10_000))
            # Stored values are canonical already (validated when they went in), so a
            # type whose plug-in is no longer installed is still exported as stored.
            records = (
                HashRecord.stored(
                    e.signal_type,
                    payload or e.value,
                    e.quality,
                    e.source,
                    e.source_id,
                    e.category,
                    e.note,
                )
                for e, payload in rows
            )
            return write_hash_list(records, fmt, out, with_provenance=with_provenance)

    def list_entries(
        self,
        ref: str,
        *,
        after: str | None = None,
        limit: int = 100,
        include_disabled: bool = True,
    ) -> tuple[list[EntryView], str | None]:
        """A page of entries in insertion order and the cursor for the next page."""
        if not 1 <= limit <= 1000:
            raise InvalidRequest("limit must be between 1 and 1000.", code="invalid_limit")
        with unit_of_work(self._sessions, write=False) as s:
            bank = repo.get_bank(s, ref)
            stmt = select(BankEntry).where(BankEntry.bank_id == bank.id)
            if after:
                stmt = stmt.where(BankEntry.id > repo.get_entry(s, after).id)
            if not include_disabled:
                stmt = stmt.where(BankEntry.enabled.is_(True))
            rows = s.scalars(stmt.order_by(BankEntry.id).limit(limit + 1)).all()
            views = [EntryView.of(e, bank.name) for e in rows[:limit]]
            return views, (views[-1].id if len(rows) > limit else None)

    def get_entry(self, public_id: str) -> EntryView:
        with unit_of_work(self._sessions, write=False) as s:
            entry = repo.get_entry(s, public_id)
            bank = s.get_one(Bank, entry.bank_id)
            return EntryView.of(entry, bank.name)

    def set_entry_enabled(
        self,
        public_id: str,
        enabled: bool,
        *,
        actor: str,
        reason: str | None = None,
        all_signals: bool = True,
    ) -> EntryChange:
        """Disable an entry (a false positive) or re-enable it, effective at once. An
        entry banked from a file changes with the file's other signals (its PDQ, MD5,
        SHA-256...), or the upload would still match on them, unless ``all_signals`` is
        false. One transaction; an audit event per entry that changed."""
        _check_reason(enabled, reason)
        with unit_of_work(self._sessions) as s:
            entry = repo.get_entry(s, public_id)
            bank = s.get_one(Bank, entry.bank_id)
            siblings: list[BankEntry] = []
            if all_signals and entry.media_sha256:
                siblings = list(
                    s.scalars(
                        select(BankEntry)
                        .where(
                            BankEntry.bank_id == entry.bank_id,
                            BankEntry.media_sha256 == entry.media_sha256,
                            BankEntry.id != entry.id,
                        )
                        .order_by(BankEntry.id)
                    )
                )
            _set_enabled(s, [entry, *siblings], enabled, actor, reason, via=entry.public_id)
            s.flush()
            view = EntryView.of(entry, bank.name)
            return EntryChange(
                **vars(view), siblings=[EntryView.of(e, bank.name) for e in siblings]
            )

    def set_media_enabled(
        self,
        ref: str,
        enabled: bool,
        *,
        actor: str,
        data: bytes | None = None,
        sha256: str | None = None,
        reason: str | None = None,
    ) -> MediaChange:
        """Disable (or re-enable) a file's entries in a bank, given the file or its
        SHA-256: every entry banked from it, and every entry that is exactly one of its
        signals (its MD5 from a hash list, say). One transaction; an audit event per
        entry that changed."""
        _check_reason(enabled, reason)
        media_sha256, signals = self._file_signals(data, sha256)
        by_type: dict[str, list[str]] = {}
        for name, value in signals:
            by_type.setdefault(name, []).append(signal_type(name).stored_value(value))
        with unit_of_work(self._sessions) as s:
            bank = repo.get_bank(s, ref)
            entries = list(
                s.scalars(
                    select(BankEntry)
                    .where(
                        BankEntry.bank_id == bank.id,
                        or_(
                            BankEntry.media_sha256 == media_sha256,
                            *(
                                and_(BankEntry.signal_type == name, BankEntry.value.in_(values))
                                for name, values in by_type.items()
                            ),
                        ),
                    )
                    .order_by(BankEntry.id)
                )
            )
            if not entries:
                raise NotFound(
                    f"No entry of bank {bank.name!r} was banked from this file or is one of "
                    "its signals.",
                    code="media_not_in_bank",
                    sha256=media_sha256,
                )
            changed = _set_enabled(s, entries, enabled, actor, reason, via="media")
            s.flush()
            return MediaChange(
                bank=bank.name,
                media_sha256=media_sha256,
                enabled=enabled,
                changed=changed,
                entries=[EntryView.of(e, bank.name) for e in entries],
            )

    def _file_signals(
        self, data: bytes | None, sha256: str | None
    ) -> tuple[str, list[tuple[str, str]]]:
        """A file's SHA-256 and the signals an entry of it may hold: the digests, and
        for an image its PDQ and plug-in signals (a video's frame set is its vpdq entry,
        valued by the file's SHA-256). Given only the SHA-256, that much."""
        if (data is None) == (sha256 is None):
            raise InvalidRequest(
                "Give the file or its SHA-256 (one of them).", code="invalid_request"
            )
        if data is None:
            digest = SHA256.normalize(sha256 or "")
            return digest, [(SHA256.name, digest), (VPDQ.name, digest)]
        if is_video(data):  # no need to decode it: its entries are valued by digests
            digest = sha256_hex(data)
            return digest, [("md5", md5_hex(data)), (SHA256.name, digest), (VPDQ.name, digest)]
        image = hash_image_upload(data, self._limits)
        signals = [("md5", image.md5), (SHA256.name, image.sha256), (PDQ.name, image.pdq.hash)]
        signals += [(name, value) for name, (value, _) in image.others.items()]
        return image.sha256, signals


def _check_reason(enabled: bool, reason: str | None) -> None:
    if not enabled and not (reason and reason.strip()):
        raise InvalidRequest(
            "Say why the entry is being disabled (reason), e.g. 'false positive: benign meme'.",
            code="reason_required",
        )


def _set_enabled(
    s: Session,
    entries: Sequence[BankEntry],
    enabled: bool,
    actor: str,
    reason: str | None,
    *,
    via: str,
) -> int:
    """Set the entries' state; an audit event for each one that changed, saying how it
    was asked for (``via``: the entry named, or ``media``). Returns how many changed."""
    now = utcnow()
    changed = 0
    off: dict[int, set[tuple[str, str]]] = {}  # bank -> (type, value) disabled now
    on: dict[int, set[tuple[str, str]]] = {}  # and enabled again
    for entry in entries:
        if entry.enabled == enabled:
            continue
        (on if enabled else off).setdefault(entry.bank_id, set()).add(
            (entry.signal_type, entry.value)
        )
        entry.enabled = enabled
        entry.disabled_at = None if enabled else now
        entry.disabled_by = None if enabled else actor
        entry.disabled_reason = None if enabled else reason
        details: dict[str, object] = {"reason": reason}
        if entry.media_sha256:
            details["media_sha256"] = entry.media_sha256
        if via != entry.public_id:
            details["via"] = via
        record(
            s,
            actor,
            "entry.enabled" if enabled else "entry.disabled",
            "bank_entry",
            entry.public_id,
            details,
        )
        changed += 1
    # Shared to an exchange? Not confirmed any more: cancelled, or taken back.
    for bank_id, pairs in off.items():
        withdraw_shares(s, bank_id, pairs, actor=actor, now=now,
                        why=f"entry disabled: {reason or 'no reason given'}"[:2000])  # fmt: skip
    # Enabled again: a share cancelled or withdrawn for it is offered to legal again.
    for bank_id, pairs in on.items():
        reoffer_shares(s, bank_id, pairs, actor=actor, now=now)
    return changed


def _link_to_media(
    s: Session, bank: Bank, records: Sequence[HashRecord], media_sha256: str
) -> None:
    """Entries that were in the bank already (from a hash list, with no file) and are
    this file's signals: linked to the file, so they change with its other signals."""
    for r in records:
        s.execute(
            update(BankEntry)
            .where(
                BankEntry.bank_id == bank.id,
                BankEntry.signal_type == r.signal_type,
                BankEntry.value == signal_type(r.signal_type).stored_value(r.value),
                BankEntry.media_sha256.is_(None),
            )
            .values(media_sha256=media_sha256)
        )


def _bank_exists(name: str) -> Conflict:
    return Conflict(f"A bank named {name!r} already exists.", code="bank_exists")


def _insert_records(
    s: Session,
    bank: Bank,
    records: Sequence[HashRecord],
    actor: str,
    progress: ProgressFn | None,
    provenance: Provenance | None = None,
    *,
    media_sha256: str | None = None,
    known_absent: bool = False,
) -> AddResult:
    """Insert the records not yet in the bank; what a record leaves out comes from
    ``provenance`` (the import's defaults), then from the bank. ``media_sha256``: the
    file they were all hashed from (none for hash lists)."""
    repo.lock_entry_writes(s)
    newest_before = repo.newest_entry_id(s)
    result = AddResult()
    seen: set[tuple[str, str]] = set()
    unique: list[HashRecord] = []
    payloads: dict[tuple[str, str], str] = {}  # (type, digest) -> whole value (TMK)
    plain = {t.name for t in all_types() if not t.stored_by_digest}  # stored as they are
    for r in records:  # a HashRecord is already canonical (validated on construction)
        key = (r.signal_type, r.value)
        if key in seen:
            result.duplicates_in_input += 1
            continue
        seen.add(key)
        unique.append(r if r.signal_type in plain else _by_digest(r, payloads))
    total = len(unique)
    now = utcnow()
    # Only entries from before this call can collide (the input is deduplicated above,
    # and nobody else inserts meanwhile: the bank row is locked). For a large import
    # into a small bank -- the usual case, empty included -- the bank is read once;
    # otherwise it is asked per chunk. Per chunk, a large import into a small bank is
    # slow on PostgreSQL: its statistics still describe the table before the import,
    # and its planner then filters the whole bank for each chunk. A large bank is
    # asked per chunk, after its statistics are refreshed.
    table = Base.metadata.tables["bank_entries"]
    connection = s.connection()
    known: set[tuple[str, str]] | None = None
    if known_absent:
        known = set()
    elif total >= _READ_WHOLE_BANK_FOR:
        before = s.execute(
            select(BankEntry.signal_type, BankEntry.value)
            .where(BankEntry.bank_id == bank.id)
            .limit(_READ_WHOLE_BANK + 1)
        ).all()
        if len(before) <= _READ_WHOLE_BANK:
            known = {(t, v) for t, v in before}
        else:
            # A large import into a large bank asks per chunk: the plan of that
            # question must know how large the bank is now (see refresh_statistics).
            refresh_statistics(connection, table)
    # A large import on SQLite: a bigger page cache while it runs.
    with bulk_cache(connection) if total >= _BULK_ROWS else nullcontext():
        for start in range(0, total, _INSERT_CHUNK):
            chunk = unique[start : start + _INSERT_CHUNK]
            present: set[tuple[str, str]] = set()
            if known is not None:
                present.update(k for r in chunk if (k := (r.signal_type, r.value)) in known)
            for stype in sorted({r.signal_type for r in chunk}) if known is None else ():
                values = [r.value for r in chunk if r.signal_type == stype]
                present.update((stype, v) for v in repo.existing_values(s, bank.id, stype, values))
            result.already_present += len(present)
            # Input order is kept: it is the order of ids, exports and entry pages.
            fresh = [r for r in chunk if (r.signal_type, r.value) not in present]
            if fresh:
                # Plain rows, not ORM objects, and one executemany: a million-line
                # import spends its time in the database's indexes, not in Python.
                rows = _rows(bank, fresh, actor, now, provenance or _NO_PROVENANCE)
                if media_sha256:
                    for row in rows:
                        row["media_sha256"] = media_sha256
                bulk_insert(connection, table, rows)
                if payloads:
                    _insert_payloads(s, bank, fresh, payloads)
                s.info[repo.ENTRIES_ADDED] = True  # this process's matcher reads them at commit
                result.added += len(fresh)
            if progress:
                progress(min(start + _INSERT_CHUNK, total), total)
    if progress and total == 0:
        progress(0, 0)
    bank.updated_at = now
    if result.added:
        repo.queue_retroscan(s, bank.id, newest_before, actor)
    # One event per batch (an import of a million hashes is one decision); each entry
    # carries its own added_by and added_at.
    record(
        s,
        actor,
        "bank.entries_added",
        "bank",
        bank.public_id,
        {"added": result.added, "already_present": result.already_present},
    )
    return result


def _by_digest(r: HashRecord, payloads: dict[tuple[str, str], str]) -> HashRecord:
    """The record as its entry is stored: a type stored by digest (TMK) is valued by the
    SHA-256 of its value, which is kept in ``payloads`` for the entry's payload row."""
    st = signal_type(r.signal_type)
    if not st.stored_by_digest:
        return r
    digest = st.stored_value(r.value)
    payloads[(r.signal_type, digest)] = r.value
    return HashRecord.stored(
        r.signal_type, digest, r.quality, r.source, r.source_id, r.category, r.note
    )


def _insert_payloads(
    s: Session, bank: Bank, fresh: Sequence[HashRecord], payloads: dict[tuple[str, str], str]
) -> None:
    """The whole values of the new entries stored by digest, beside their entries."""
    wanted = [r for r in fresh if (r.signal_type, r.value) in payloads]
    for stype in sorted({r.signal_type for r in wanted}):
        digests = [r.value for r in wanted if r.signal_type == stype]
        rows = s.execute(
            select(BankEntry.id, BankEntry.value).where(
                BankEntry.bank_id == bank.id,
                BankEntry.signal_type == stype,
                BankEntry.value.in_(digests),
            )
        ).all()
        s.execute(
            insert(BankEntryPayload),
            [{"entry_id": i, "payload": payloads[(stype, v)]} for i, v in rows],
        )


_NO_PROVENANCE = Provenance()
_READ_WHOLE_BANK = 200_000  # entries: read once (~30 MB) rather than asked per chunk
_READ_WHOLE_BANK_FOR = 2 * _INSERT_CHUNK  # records: fewer are asked about directly
_ANALYZE_AFTER = 10_000  # entries added by one import: refresh the planner's statistics


def _rows(
    bank: Bank, records: Sequence[HashRecord], actor: str, now: datetime, p: Provenance
) -> list[dict[str, object]]:
    bank_id = bank.id  # read once: an ORM attribute costs a call per row
    return [
        {
            "public_id": public_id,
            "bank_id": bank_id,
            "signal_type": r.signal_type,
            "value": r.value,
            "quality": r.quality,
            "source": r.source or p.source or bank.source,
            "source_id": r.source_id or p.source_id,
            "category": r.category or p.category,
            "note": r.note or p.note,
            "added_by": actor,
            "added_at": now,
            "enabled": True,
        }
        for r, public_id in zip(records, new_ids(len(records)), strict=True)
    ]


def _views_for(s: Session, bank: Bank, records: Sequence[HashRecord]) -> list[EntryView]:
    views: list[EntryView] = []
    for r in records:
        entry = s.scalars(
            select(BankEntry).where(
                BankEntry.bank_id == bank.id,
                BankEntry.signal_type == r.signal_type,
                BankEntry.value == signal_type(r.signal_type).stored_value(r.value),
            )
        ).first()
        if entry is not None:
            views.append(EntryView.of(entry, bank.name))
    return views


def _recorded_settings(bank: Bank) -> dict[str, dict[str, int | None]]:
    """The bank's own settings rows, as the audit log keeps them."""
    return {
        row.signal_type: {
            "threshold": row.threshold,
            "quality_floor": row.quality_floor,
            "match_percent": row.match_percent,
        }
        for row in bank.signal_settings
    }


def _list_types() -> set[str]:
    """The types a hash list may carry: every registered one but vPDQ, whose entries are
    a video's frame set (banked from the video itself)."""
    return {t.name for t in all_types() if t is not VPDQ}


def insert_entries(
    s: Session,
    bank: Bank,
    records: Sequence[HashRecord],
    actor: str,
    *,
    known_absent: bool = False,
) -> AddResult:
    """Add validated records to ``bank`` inside the caller's transaction (an exchange's
    page): the same deduplication, entry-write lock, audit event and index follow-up
    as every other add. ``known_absent``: the caller took the entry-write lock
    (``repo.lock_entry_writes``) and found none of the records in the bank since, so
    the bank is not asked again."""
    return _insert_records(s, bank, records, actor, None, known_absent=known_absent)
