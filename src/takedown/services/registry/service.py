"""The content registry: the platform tells Takedown about accounts, items, their media
and views, so that a decision can reach every copy.

Every call is idempotent on the platform's ids: the same event twice changes nothing
(no new rows, no audit events, no actions). Registered media are screened against the
banks; an item that is a copy of material in an active case joins that case and gets
its treatment (restricted while under review, removed once confirmed).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import NamedTuple

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from takedown.domain.banks import MatchAction
from takedown.domain.screening import Verdict, verdict_for
from takedown.errors import InvalidRequest, NotFound
from takedown.ids import new_id, utcnow
from takedown.media import DIHEDRAL_NAMES, ImageLimits
from takedown.media.video import hash_image_upload, hash_video_bytes, is_video
from takedown.media.video_decode import FrameFeature
from takedown.media.video_limits import VideoLimits, VideoSampling
from takedown.services.audit.chain import record
from takedown.services.cases.copies import Copy, stored_variants
from takedown.services.cases.intake import AloneMatch
from takedown.services.cases.negative import negative_media
from takedown.services.cases.service import CaseService
from takedown.services.screening.exchange_policy import entry_policies
from takedown.services.screening.matcher import Match, Matcher, QuerySignals
from takedown.services.screening.video import stored_features
from takedown.signals import MD5, PDQ, SHA256
from takedown.store import repositories as repo
from takedown.store.blobs import BlobStore
from takedown.store.db import unit_of_work
from takedown.store.models import (
    Account,
    AppliedMeasure,
    Bank,
    BankEntry,
    Case,
    CaseItem,
    IpEvent,
    Item,
    ItemMedia,
    ItemViews,
    Media,
    MediaVideoFrame,
    Screening,
    ScreeningMatch,
)

ACCOUNT_STATUSES = ("active", "suspended", "terminated", "deleted")
# What the platform saw an IP address for (the CyberTipline's ipCaptureEvent names).
IP_EVENTS = ("registration", "login", "upload", "purchase", "other")
MAX_IP_EVENTS = 100  # per request
IP_EVENTS_SHOWN = 200  # newest first, on an account or item read by legal staff
# The platform's visibility of an item; "public" is what publiclyAvailable means.
ITEM_VISIBILITIES = ("public", "restricted", "private")
MAX_FILE_NAME = 255


@dataclass(frozen=True)
class IpEventInput:
    """An IP address the platform saw: for an account (registration, login, purchase,
    other) or an item (its upload), when and on which source port, if known."""

    ip: str
    event: str
    at: datetime | None = None
    port: int | None = None


@dataclass(frozen=True)
class AccountInput:
    """What the platform says of an account. ``None`` means "not said": the field
    stays as it is. Takedown's own state (strikes, its suspension) is never set here."""

    platform_id: str
    handle: str | None = None
    platform_status: str | None = None  # the platform's own status
    flagged: bool | None = None  # the platform knows it for sharing abuse material
    flag_reason: str | None = None
    flag_source: str | None = None
    prior_violations: int | None = None  # confirmed before, by the platform or others
    prior_violations_source: str | None = None
    ip_events: Sequence[IpEventInput] = ()  # added to those known (idempotent)


@dataclass(frozen=True)
class MediaInput:
    """A media file by its hashes (computed by the platform or by us from bytes)."""

    sha256: str
    md5: str | None = None
    pdq: str | None = None
    pdq_quality: int | None = None
    pdq_variants: tuple[tuple[str, str], ...] = ()  # only when we hashed the bytes
    media_type: str = "image"
    video_frames: tuple[FrameFeature, ...] = ()  # a video we hashed: its frame features
    file_name: str | None = None  # the name it was uploaded with, in this item


@dataclass(frozen=True)
class ItemInput:
    platform_id: str
    account_id: str | None = None
    url: str | None = None
    posted_at: datetime | None = None
    reposts: str | None = None
    quotes: str | None = None
    replies_to: str | None = None
    monetized: bool = False
    view_count: int | None = None
    media: Sequence[MediaInput] = ()
    visibility: str | None = None  # the platform's: public, restricted or private
    ip_events: Sequence[IpEventInput] = ()  # usually its upload (idempotent)


@dataclass(frozen=True)
class AccountView:
    account_id: str
    handle: str | None
    platform_status: str  # what the platform says
    status: str  # Takedown's measure: active, suspended or terminated
    strikes: int  # violations confirmed here (a withdrawn decision takes its strike back)
    flagged: bool
    flag_reason: str | None
    flag_source: str | None
    prior_violations: int
    prior_violations_source: str | None
    platform_reinstated_at: datetime | None  # the platform reactivated it while suspended
    suspended_by: list[str] = field(default_factory=list)  # cases whose measure holds it
    cases: list[dict[str, object]] = field(default_factory=list)
    measures: list[dict[str, object]] = field(default_factory=list)
    # Personal data: only for those who may read evidence (legal, admin); else None.
    ip_events: list[dict[str, object]] | None = None


@dataclass
class _Screened:
    """What the banks said of an item's media (``RegistryService._screen``)."""

    media: list[MediaInput]
    actions: list[MatchAction] = field(default_factory=list)
    sources: set[str] = field(default_factory=set)
    restrict_sources: set[str] = field(default_factory=set)
    origins: set[str] = field(default_factory=set)  # cases the matched entries came from
    categories: set[str] = field(default_factory=set)  # the matched entries' categories
    entries: set[int] = field(default_factory=set)  # the matched entries (provenance)


@dataclass
class ItemResult:
    item_id: str
    created: bool
    changed: bool
    visibility: str
    monetization_paused: bool
    verdict: str  # screening verdict for the item's media
    cases: list[str] = field(default_factory=list)
    matched_banks: list[str] = field(default_factory=list)
    # Personal data: only for those who may read evidence (legal, admin); else None.
    ip_events: list[dict[str, object]] | None = None

    @classmethod
    def of(cls, item: Item, *, created: bool = False, changed: bool = False) -> ItemResult:
        """The answer about ``item`` as it stands, before screening says otherwise."""
        return cls(
            item_id=item.platform_id,
            created=created,
            changed=changed,
            visibility=item.visibility,
            monetization_paused=item.monetization_paused,
            verdict=Verdict.ALLOW.value,
        )


def _text(value: str | None, what: str, limit: int = 200) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if len(value) > limit:
        raise InvalidRequest(f"{what} is longer than {limit} characters.", code="field_too_long")
    return value


def _required_id(value: str, what: str) -> str:
    text = _text(value, what)
    if not text:
        raise InvalidRequest(f"{what} is required.", code="invalid_request")
    return text


def check_account(a: AccountInput) -> tuple[str, list[IpEventInput]]:
    """An account event's checks, before anything is stored: its id and its IP events
    in canonical form; raises the caller's mistake (``invalid_status``...)."""
    pid = _required_id(a.platform_id, "account id")
    if a.platform_status is not None and a.platform_status not in ACCOUNT_STATUSES:
        raise InvalidRequest(
            f"platform_status is one of {', '.join(ACCOUNT_STATUSES)}.",
            code="invalid_status",
        )
    if a.prior_violations is not None:
        if a.prior_violations < 0:
            raise InvalidRequest("prior_violations cannot be negative.", code="invalid_request")
        if a.prior_violations and not _text(a.prior_violations_source, "source"):
            raise InvalidRequest(
                "Say where the earlier violations were confirmed (prior_violations_source).",
                code="source_required",
            )
    _text(a.handle, "handle")
    _text(a.flag_reason, "flag_reason", 500)
    _text(a.flag_source, "flag_source")
    _text(a.prior_violations_source, "prior_violations_source")
    return pid, clean_ip_events(a.ip_events)


def account_fields(a: AccountInput) -> dict[str, object]:
    """The account row's columns the event says (checked by :func:`check_account`)."""
    new: dict[str, object] = {}
    if a.handle is not None:
        new["handle"] = _text(a.handle, "handle")
    if a.platform_status is not None:
        new["platform_status"] = a.platform_status
    if a.flagged is not None:
        new["flagged"] = a.flagged
        new["flag_reason"] = _text(a.flag_reason, "flag_reason", 500) if a.flagged else None
        new["flag_source"] = (
            (_text(a.flag_source, "flag_source") or "platform") if a.flagged else None
        )
    if a.prior_violations is not None:
        new["prior_violations"] = a.prior_violations
        new["prior_violations_source"] = (
            _text(a.prior_violations_source, "prior_violations_source")
            if a.prior_violations
            else None
        )
    return new


@dataclass(frozen=True)
class CheckedItem:
    """An item event that passed :func:`check_item`: its id, media and IP events in
    canonical form."""

    item: ItemInput
    platform_id: str
    media: list[MediaInput]
    ip_events: list[IpEventInput]
    fields: dict[str, object]  # item_fields' columns, the account's id not yet known

    def fields_with(self, account_id: int | None) -> dict[str, object]:
        """The item row's columns as the event says them (:func:`item_fields`)."""
        return {**self.fields, "account_id": account_id}


def check_item(it: ItemInput) -> CheckedItem:
    """An item event's checks, before anything is stored; raises the caller's mistake
    (``invalid_hash``, ``field_too_long``...)."""
    pid = _required_id(it.platform_id, "item id")
    media = [_normalize_media(m) for m in it.media]
    if it.view_count is not None and it.view_count < 0:
        raise InvalidRequest("view_count cannot be negative.", code="invalid_request")
    if it.visibility is not None and it.visibility not in ITEM_VISIBILITIES:
        raise InvalidRequest(
            f"visibility is one of {', '.join(ITEM_VISIBILITIES)}.",
            code="invalid_visibility",
        )
    if it.account_id:
        _required_id(it.account_id, "account id")
    fields = item_fields(it, None)  # the fields' own checks (lengths) too
    events = clean_ip_events(it.ip_events, default_event="upload")
    return CheckedItem(it, pid, media, events, fields)


def item_fields(it: ItemInput, account_id: int | None) -> dict[str, object]:
    """The item row's columns as the event says them."""
    fields: dict[str, object] = {
        "account_id": account_id,
        "url": _text(it.url, "url", 2000),
        "reposts_platform_id": _text(it.reposts, "reposts"),
        "quotes_platform_id": _text(it.quotes, "quotes"),
        "replies_to_platform_id": _text(it.replies_to, "replies_to"),
        "posted_at": it.posted_at,
        "monetized": it.monetized,
    }
    if it.view_count is not None:
        fields["view_count"] = it.view_count
    if it.visibility is not None:
        fields["platform_visibility"] = it.visibility
    return fields


class RegistryService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        matcher: Matcher,
        cases: CaseService,
        limits: ImageLimits,
        blobs: BlobStore,
        video_limits: VideoLimits | None = None,
        video_sampling: VideoSampling | None = None,
    ) -> None:
        self._blobs = blobs
        self._video_limits = video_limits
        self._video_sampling = video_sampling
        self._sessions = sessions
        self._matcher = matcher
        self._cases = cases
        self._limits = limits

    # -- accounts ----------------------------------------------------------------------
    def upsert_account(self, a: AccountInput, *, actor: str) -> AccountView:
        pid, events = check_account(a)
        with unit_of_work(self._sessions) as s:
            acc = self._account(s, pid, create=True, actor=actor)
            self.apply_account(s, acc, a, events, actor)
            return _account_view(s, acc)

    def apply_account(
        self, s: Session, acc: Account, a: AccountInput, events: list[IpEventInput], actor: str
    ) -> bool:
        """What the platform says of an account (checked by :func:`check_account`),
        applied to its row; True when anything changed. One place for the rule, for
        single requests and batches alike."""
        added = self._add_ip_events(s, events, actor, account=acc)
        new = account_fields(a)
        changed = {k: v for k, v in new.items() if getattr(acc, k) != v}
        now = utcnow()
        if a.platform_status == "active" and acc.status != "active":
            # Said active while Takedown's suspension stands: recorded once per
            # suspension, whether or not the platform had said otherwise before.
            self._reinstated_by_platform(s, acc, actor, now)
        if changed:
            for k, v in changed.items():
                setattr(acc, k, v)
            acc.updated_at = now
            self.account_updated(s, acc, changed, actor)
        return bool(changed) or bool(added)

    def account_updated(
        self, s: Session, acc: Account, changed: dict[str, object], actor: str
    ) -> None:
        """What follows a change of an account's fields, however it was written: its
        event, and the priority of its cases when their triage reads the change."""
        record(s, actor, "account.updated", "account", acc.platform_id, changed)
        if {"flagged", "prior_violations"} & set(changed):
            self._cases.refresh_priority_for_accounts(s, [acc.id])

    def _reinstated_by_platform(self, s: Session, acc: Account, actor: str, now: datetime) -> None:
        """The platform reactivated an account Takedown suspended: recorded, on the
        account and on each case whose measure holds it, and not applied (Takedown's
        suspension stands until a decision lifts it)."""
        since = s.scalar(
            select(func.max(AppliedMeasure.applied_at)).where(
                AppliedMeasure.account_id == acc.id,
                AppliedMeasure.reversed_at.is_(None),
                AppliedMeasure.measure.in_(("suspend", "terminate")),
            )
        )
        if acc.platform_reinstated_at is not None and (
            since is None or acc.platform_reinstated_at >= since
        ):
            return  # already recorded since this suspension
        acc.platform_reinstated_at = now
        cases = _holding_cases(s, acc.id)
        record(
            s,
            actor,
            "account.reinstated_by_platform",
            "account",
            acc.platform_id,
            {"status": acc.status, "cases": cases},
        )
        for case in cases:
            record(
                s,
                actor,
                "account.reinstated_by_platform",
                "case",
                case,
                {"account": acc.platform_id, "status": acc.status},
            )

    def get_account(self, platform_id: str, *, ip_events_for: str | None = None) -> AccountView:
        """The account; with ``ip_events_for`` (the actor, who may read evidence) also
        its IP events, the read recorded in the audit log."""
        with unit_of_work(self._sessions, write=ip_events_for is not None) as s:
            acc = s.scalars(select(Account).where(Account.platform_id == platform_id)).first()
            if acc is None:
                raise NotFound(f"No account {platform_id[:60]!r}.", code="account_not_found")
            view = _account_view(s, acc)
            if ip_events_for is not None:
                shown = _ip_events_shown(s, IpEvent.account_id == acc.id)
                record(
                    s,
                    ip_events_for,
                    "account.ip_events_viewed",
                    "account",
                    acc.platform_id,
                    {"shown": len(shown)},
                )
                view = replace(view, ip_events=shown)
            return view

    def _add_ip_events(
        self,
        s: Session,
        events: list[IpEventInput],
        actor: str,
        *,
        account: Account | None = None,
        item: Item | None = None,
    ) -> int:
        """Keep the events not known yet for this account or item; returns how many.
        The owner's row is locked first, so that the same event sent twice at once is
        kept once (the unique key would refuse the second)."""
        if not events:
            return 0
        if account is not None:
            owner, key = account.platform_id, f"a{account.id}"
            s.execute(select(Account.id).where(Account.id == account.id).with_for_update())
        else:
            assert item is not None
            owner, key = item.platform_id, f"i{item.id}"
            s.execute(select(Item.id).where(Item.id == item.id).with_for_update())
        rows = {f"{key}|{e.ip}|{e.event}|{e.at.isoformat() if e.at else ''}": e for e in events}
        known = set(s.scalars(select(IpEvent.dedupe_key).where(IpEvent.dedupe_key.in_(rows))))
        now = utcnow()
        fresh = [
            {
                "account_id": account.id if account is not None else None,
                "item_id": item.id if item is not None else None,
                "ip": e.ip,
                "event": e.event,
                "at": e.at,
                "port": e.port,
                "dedupe_key": k,
                "received_at": now,
                "received_by": actor,
            }
            for k, e in rows.items()
            if k not in known
        ]
        if fresh:
            s.execute(insert(IpEvent), fresh)
            # The count and kinds only: the addresses are personal data, read by legal.
            record(
                s,
                actor,
                "account.ip_events_added" if account is not None else "item.ip_events_added",
                "account" if account is not None else "item",
                owner,
                {"added": len(fresh), "events": sorted({r["event"] for r in fresh})},
            )
        return len(fresh)

    def _account(self, s: Session, pid: str, *, create: bool, actor: str) -> Account:
        acc = s.scalars(select(Account).where(Account.platform_id == pid)).first()
        if acc is None:
            if not create:
                raise NotFound(f"No account {pid[:60]!r}.", code="account_not_found")
            acc = Account(platform_id=pid)
            s.add(acc)
            s.flush()
            record(s, actor, "account.registered", "account", pid, {})
        return acc

    # -- items -----------------------------------------------------------------------
    def media_from_bytes(self, data: bytes) -> MediaInput:
        if is_video(data):
            video = hash_video_bytes(data, self._video_limits, self._video_sampling)
            return MediaInput(
                sha256=video.sha256,
                md5=video.md5,
                media_type="video",
                video_frames=video.frames,
            )
        signals = hash_image_upload(data, self._limits)
        return MediaInput(
            sha256=signals.sha256,
            md5=signals.md5,
            pdq=signals.pdq.hash,
            pdq_quality=signals.pdq.quality,
            pdq_variants=signals.pdq.dihedral,
        )

    def upsert_item(self, it: ItemInput, *, actor: str) -> ItemResult:
        checked = check_item(it)
        with unit_of_work(self._sessions) as s:
            return self.apply_item(s, checked, actor)

    def apply_item(self, s: Session, c: CheckedItem, actor: str) -> ItemResult:
        """An item event (checked by :func:`check_item`) applied in ``s``: the row, its
        media and IP events, then screening and the cases it joins. One place for the
        rule, for single requests and batches alike."""
        it, pid = c.item, c.platform_id
        item = s.scalars(select(Item).where(Item.platform_id == pid)).first()
        created = item is None
        account = (
            self._account(s, _required_id(it.account_id, "account id"), create=True, actor=actor)
            if it.account_id
            else None
        )
        fields = item_fields(it, account.id if account else None)
        if item is None:
            item = Item(platform_id=pid, **fields)
            s.add(item)
            s.flush()
            record(s, actor, "item.registered", "item", pid, {})
            changes = fields
        else:
            changes = {k: v for k, v in fields.items() if getattr(item, k) != v}
            for k, v in changes.items():
                setattr(item, k, v)
            if changes:
                item.updated_at = utcnow()
                record(
                    s,
                    actor,
                    "item.updated",
                    "item",
                    pid,
                    {k: v for k, v in changes.items() if k != "account_id"},
                )
        if "view_count" in changes:
            s.add(ItemViews(item_id=item.id, at=utcnow(), view_count=item.view_count))
        new_media = self._attach_media(s, item, c.media)
        new_ips = self._add_ip_events(s, c.ip_events, actor, item=item)
        result = ItemResult.of(
            item,
            created=created,
            changed=created or bool(changes) or bool(new_media) or bool(new_ips),
        )
        # Always screened and checked (reads; joins are idempotent), so a repeated
        # event gets the same answer and changes nothing.
        self.screen_and_join(s, item, c.media, result, actor)
        s.refresh(item)
        result.visibility = item.visibility
        result.monetization_paused = item.monetization_paused
        return result

    def attach_media(
        self,
        platform_id: str,
        media: MediaInput,
        *,
        actor: str,
        content: bytes | None = None,
        content_type: str = "application/octet-stream",
    ) -> ItemResult:
        """Add one media file to a registered item, then screen it and join cases.

        With ``content`` (the file's bytes), they are kept, encrypted, for review and
        evidence (the first copy of a given SHA-256 is enough)."""
        m = _normalize_media(media)
        with unit_of_work(self._sessions) as s:
            item = s.scalars(select(Item).where(Item.platform_id == platform_id)).first()
            if item is None:
                raise NotFound(
                    f"No item {platform_id[:60]!r}; register it first.", code="item_not_found"
                )
            fresh = self._attach_media(s, item, [m])
            if content is not None:
                self._keep_content(s, m.sha256, content, content_type)
            result = ItemResult.of(item, changed=bool(fresh))
            if fresh:
                record(
                    s,
                    actor,
                    "item.media_added",
                    "item",
                    platform_id,
                    {"sha256": m.sha256, "media_type": m.media_type},
                )
            self.screen_and_join(s, item, [m], result, actor)
            s.refresh(item)
            result.visibility = item.visibility
            result.monetization_paused = item.monetization_paused
            return result

    def _attach_media(self, s: Session, item: Item, media: list[MediaInput]) -> list[int]:
        if not media:
            return []
        ids = []
        for m in media:
            row = s.scalars(select(Media).where(Media.sha256 == m.sha256)).first()
            if row is None:
                repo.lock_inserts(s, repo.MEDIA_INSERTS)
                row = Media(
                    sha256=m.sha256,
                    md5=m.md5,
                    pdq=m.pdq,
                    pdq_quality=m.pdq_quality,
                    pdq_dihedral=_dihedral_text(m),
                    media_type=m.media_type,
                )
                s.add(row)
                s.flush()
                if m.video_frames:  # followed by the media index, like the row itself
                    s.execute(
                        insert(MediaVideoFrame),
                        [{"media_id": row.id, **r} for r in repo.frame_rows(m.video_frames)],
                    )
            elif row.pdq_dihedral is None and row.pdq and row.pdq == m.pdq and m.pdq_variants:
                # A media row's PDQ never changes once set (the media index follows
                # ids), but its variants may arrive with a later event.
                row.pdq_dihedral = _dihedral_text(m)
            ids.append(row.id)
        names = {i: m.file_name for i, m in zip(ids, media, strict=True) if m.file_name}
        present = {
            link.media_id: link
            for link in s.scalars(select(ItemMedia).where(ItemMedia.item_id == item.id))
        }
        fresh = [i for i in dict.fromkeys(ids) if i not in present]
        if fresh:
            s.execute(
                insert(ItemMedia),
                [{"item_id": item.id, "media_id": i, "file_name": names.get(i)} for i in fresh],
            )
        for i, link in present.items():  # a name said later (or corrected)
            if i in names and link.file_name != names[i]:
                link.file_name = names[i]
                fresh.append(i)
        return fresh

    def _keep_content(self, s: Session, sha256: str, content: bytes, content_type: str) -> None:
        row = s.scalars(select(Media).where(Media.sha256 == sha256)).one()
        if row.blob_id is None:
            row.blob_id = self._blobs.put(
                s, content, kind="media", content_type=content_type
            ).public_id

    def screen_and_join(
        self,
        s: Session,
        item: Item,
        media: list[MediaInput],
        result: ItemResult,
        actor: str,
        neighbours: Mapping[int, Mapping[int, Copy]] | None = None,
        by_location: bool = True,
    ) -> None:
        """Screen the item's media and join the cases it belongs to (``neighbours``:
        the item's one-step neighbours when a batch has them already; ``by_location``
        False: a batch found the item at no reported place and its media matching no
        reported hashes, which its lines cannot change)."""
        found = self._screen(s, item, media, result, actor)
        self._act_on(s, item, found, result, actor, neighbours, by_location)

    def _act_on(
        self,
        s: Session,
        item: Item,
        found: _Screened,
        result: ItemResult,
        actor: str,
        neighbours: Mapping[int, Mapping[int, Copy]] | None,
        by_location: bool,
    ) -> None:
        """:meth:`_act` on what :meth:`_screen` found."""
        self._act(
            s,
            item,
            found.media,
            result,
            actor,
            found.actions,
            found.sources,
            found.restrict_sources,
            found.origins,
            found.categories,
            neighbours=neighbours,
            entries=found.entries,
            by_location=by_location,
        )

    def screen_and_join_many(
        self,
        s: Session,
        items: Sequence[tuple[Item, list[MediaInput], ItemResult]],
        actor: str,
        neighbours: Mapping[int, Mapping[int, Copy]],
        one_by_one: set[int],
        not_banked: set[str] | None = None,
        created: Collection[int] = frozenset(),
    ) -> None:
        """:meth:`screen_and_join` for a batch's items, in their order (``neighbours``:
        every item's one-step neighbours; ``one_by_one``: the items at a reported
        place, matching reported hashes or with video; ``not_banked``: MD5 and SHA-256
        values no bank entry holds, from ``Matcher.may_match`` in this transaction, not
        looked up again; ``created``: the items this transaction inserted). An item one
        step from nothing whose match opens a case (no negative match, no origin case)
        is its only copy and joins nothing: its case is opened with the others of its
        kind in a row, set-wise (``CaseIntake.open_alone_for_matches``), which gives
        what opening them one after the other gives; any other item goes the single
        request's way, after the cases of the items before it are opened.

        The cases of such items in ``created`` are opened after all the others, in one
        go: nothing another item does reads them. A new item one step from nothing is
        no item's neighbour (the map holds the batch's later lines too) and was in no
        case before this transaction, so no walk, join or holding-case read of another
        item reaches it or its case; its case has no reported places and is no origin
        case; triage reads copies, reports and accounts' strikes, which opening it does
        not change. Only the cases' creation order differs (their ids, the audit
        events' order), as between concurrent single requests. (An item registered
        before may be in a case another item joins: those wait for no one.) Measured:
        34 set-wise openings of ~10 ms each for 30,000 items of ``bench/registry.py``'s
        feed became one per chunk."""
        waiting: list[tuple[ItemResult, AloneMatch, set[int]]] = []
        last: list[tuple[ItemResult, AloneMatch, set[int]]] = []  # new items: at the end

        def open_alone(group: list[tuple[ItemResult, AloneMatch, set[int]]]) -> None:
            if not group:
                return
            refs = self._cases.open_alone_for_matches(s, [w for _, w, _ in group], actor)
            for (result, _, _), ref in zip(group, refs, strict=True):
                result.cases = [ref]
            # record_matched_entries' for each item, in one read and one flush
            self._cases.record_matched_entries_many(
                s, [(ref, entries) for (_, _, entries), ref in zip(group, refs, strict=True)]
            )
            group.clear()

        banks: dict[int, Bank] = {}  # read once for the batch (held: not read again)
        recorded: list[_Recorded] = []  # the items' matches, written at the end at once
        for item, media, result in items:
            found = self._screen(s, item, media, result, actor, banks, not_banked, recorded)
            alone = item.id in neighbours and not neighbours[item.id]
            if alone and item.id not in one_by_one and not found.origins:
                result.matched_banks = sorted(set(result.matched_banks))
                result.verdict = verdict_for(found.actions).value
                opens = found.restrict_sources or (
                    found.sources and result.verdict != Verdict.ALLOW.value
                )
                if MatchAction.NEGATIVE not in found.actions and opens:
                    (last if item.id in created else waiting).append(
                        (
                            result,
                            AloneMatch(
                                item.id,
                                frozenset(found.sources),
                                bool(found.restrict_sources),
                                frozenset(found.categories),
                            ),
                            found.entries,
                        )
                    )
                    continue
            open_alone(waiting)
            self._act_on(s, item, found, result, actor, neighbours, item.id in one_by_one)
        open_alone(waiting)
        open_alone(last)
        _write_matches(s, recorded)

    def _screen(
        self,
        s: Session,
        item: Item,
        media: list[MediaInput],
        result: ItemResult,
        actor: str,
        banks: dict[int, Bank] | None = None,
        not_banked: set[str] | None = None,
        recorded: list[_Recorded] | None = None,
    ) -> _Screened:
        """What the banks say of the item's media (the item's stored media when the
        event did not repeat them). ``banks``: bank rows read before in this
        transaction, added to; ``not_banked``: exact values known to be in no bank;
        ``recorded``: the matches' screenings kept there, not written (a batch's)."""
        found = _Screened(media or _stored_media(s, item))
        skip = not_banked or set()
        for m in found.media:
            variants = m.pdq_variants or ((("original", m.pdq),) if m.pdq else ())
            matches = self._matcher.find(
                s,
                QuerySignals(
                    pdq_variants=variants,
                    pdq_quality=m.pdq_quality,
                    md5=None if m.md5 in skip else m.md5,
                    sha256=None if m.sha256 in skip else m.sha256,
                    video_frames=m.video_frames,
                ),
            )
            _record_matches(s, item, m, matches, actor, recorded)
            for match in matches:
                found.actions.append(match.bank.match_action)
                result.matched_banks.append(match.bank.name)
                bank = banks.get(match.bank.bank_id) if banks is not None else None
                if bank is None:
                    bank = s.get_one(Bank, match.bank.bank_id)
                    if banks is not None:
                        banks[bank.id] = bank
                found.sources.add(bank.source)
                if bank.restrict_on_match and match.exchange_action in (None, MatchAction.BLOCK):
                    found.restrict_sources.add(bank.source)  # (an exchange's review: not)
                if match.entry.source == "own" and match.entry.source_id:
                    found.origins.add(match.entry.source_id)  # banked from that case
                if match.entry.category:
                    found.categories.add(match.entry.category)
                if match.bank.match_action is not MatchAction.NEGATIVE:
                    found.entries.add(match.entry.id)
        return found

    def _act(
        self,
        s: Session,
        item: Item,
        media: list[MediaInput],
        result: ItemResult,
        actor: str,
        actions: list[MatchAction],
        sources: set[str],
        restrict_sources: set[str],
        origins: set[str],
        categories: set[str],
        neighbours: Mapping[int, Mapping[int, Copy]] | None = None,
        entries: set[int] | None = None,
        by_location: bool = True,
    ) -> None:
        """What a bank match does to an item, found at upload or afterwards
        (:meth:`act_on_retroactive_matches`): the bank's policy opens a case or joins
        one, restricting first when a bank says so; copies join their originals' cases."""
        result.matched_banks = sorted(set(result.matched_banks))
        result.verdict = verdict_for(actions).value
        if MatchAction.NEGATIVE in actions:  # known benign: no restriction, no case
            sources.clear()
            restrict_sources.clear()
        joined = self._cases.join_later_copies(s, {item.id}, actor, neighbours=neighbours)
        if by_location:
            joined += self._cases.join_by_location(
                s, item.id, item.platform_id, item.url, actor, media=media
            )
        if restrict_sources or (sources and result.verdict != Verdict.ALLOW.value):
            # A batch's item one step from nothing (``neighbours``: a copy-graph read
            # for the whole batch, which the batch does not change) is its only copy:
            # what the walk from it would find, without walking.
            alone = neighbours is not None and item.id in neighbours and not neighbours[item.id]
            joined.append(
                self._cases.open_for_match(
                    s,
                    {item.id},
                    sources,
                    restrict=bool(restrict_sources),
                    actor=actor,
                    origins=sorted(origins),
                    categories=categories,
                    copies={item.id: Copy(item.id, "hash_match")} if alone else None,
                )
            )
        result.cases = sorted(set(joined))
        if entries and MatchAction.NEGATIVE not in actions:
            self._cases.record_matched_entries(s, result.cases, entries)

    def act_on_retroactive_matches(
        self, s: Session, media_id: int, entries: Sequence[BankEntry], actor: str
    ) -> list[str]:
        """Registered media found to match bank entries after it was registered
        (services/registry/retroscan.py): every item carrying it is handled as if the
        match had been found at upload, by the matched banks' current policies; returns
        the cases opened or joined. Disabled entries and banks are left out."""
        banks = {e.bank_id: s.get_one(Bank, e.bank_id) for e in entries}
        live = [e for e in entries if e.enabled and banks[e.bank_id].enabled]
        if not live:
            return []
        # What each entry's match means: its exchange's action when it has one, else
        # its bank's; an exchange set to review or record restricts nothing by itself.
        own = entry_policies(s, [e.id for e in live])
        action_of: dict[int, MatchAction] = {}
        for e in live:
            action = MatchAction(banks[e.bank_id].match_action)
            exchange = own[e.id].action if e.id in own else None
            negative = action is MatchAction.NEGATIVE
            action_of[e.id] = exchange if exchange and not negative else action
        restricting = [
            e
            for e in live
            if banks[e.bank_id].restrict_on_match
            and not (e.id in own and own[e.id].withholds_restriction())
        ]
        # Media a negative bank matches (known benign) is acted on as at upload: no case,
        # no restriction, whatever the new entries say (cases/negative.py).
        benign = bool(negative_media(s, self._matcher, [media_id]))
        cases: list[str] = []
        items = s.scalars(
            select(Item)
            .join(ItemMedia, ItemMedia.item_id == Item.id)
            .where(ItemMedia.media_id == media_id)
            .order_by(Item.id)
        ).all()
        for item in items:
            result = ItemResult.of(item)
            actions = [action_of[e.id] for e in live]
            if benign:
                actions.append(MatchAction.NEGATIVE)
            result.matched_banks = [banks[e.bank_id].name for e in live]
            sources = {banks[e.bank_id].source for e in live}
            restrict = {banks[e.bank_id].source for e in restricting}
            origins = {e.source_id for e in live if e.source == "own" and e.source_id}
            categories = {e.category for e in live if e.category}
            record(
                s,
                actor,
                "item.retroactive_match",
                "item",
                item.platform_id,
                {"entries": sorted(e.public_id for e in live), "banks": result.matched_banks},
            )
            self._act(
                s,
                item,
                _stored_media(s, item),
                result,
                actor,
                actions,
                sources,
                restrict,
                origins,
                categories,
                entries={e.id for e in live if action_of[e.id] is not MatchAction.NEGATIVE},
            )
            cases += result.cases
        return sorted(set(cases))

    def record_views(
        self, platform_id: str, view_count: int, *, actor: str, at: datetime | None = None
    ) -> ItemResult:
        if view_count < 0:
            raise InvalidRequest("view_count cannot be negative.", code="invalid_request")
        with unit_of_work(self._sessions) as s:
            item = s.scalars(select(Item).where(Item.platform_id == platform_id)).first()
            if item is None:
                raise NotFound(
                    f"No item {platform_id[:60]!r}; register it first.", code="item_not_found"
                )
            changed = self.apply_views(s, item, view_count, at)
            if changed:
                self._cases.refresh_priority_for_items(s, [item.id])
            return ItemResult.of(item, changed=changed)

    @staticmethod
    def apply_views(s: Session, item: Item, view_count: int, at: datetime | None) -> bool:
        """A view count said for the item: kept with its time when it changed (the
        caller refreshes the priority of the item's cases once, after all of them)."""
        if item.view_count == view_count:
            return False
        item.view_count = view_count
        s.add(ItemViews(item_id=item.id, at=at or utcnow(), view_count=view_count))
        return True

    def get_item(self, platform_id: str, *, ip_events_for: str | None = None) -> ItemResult:
        """The item's state; with ``ip_events_for`` (the actor, who may read evidence)
        also its IP events, the read recorded in the audit log."""
        with unit_of_work(self._sessions, write=ip_events_for is not None) as s:
            item = s.scalars(select(Item).where(Item.platform_id == platform_id)).first()
            if item is None:
                raise NotFound(f"No item {platform_id[:60]!r}.", code="item_not_found")
            result = ItemResult.of(item)
            if ip_events_for is not None:
                result.ip_events = _ip_events_shown(s, IpEvent.item_id == item.id)
                record(
                    s,
                    ip_events_for,
                    "item.ip_events_viewed",
                    "item",
                    item.platform_id,
                    {"shown": len(result.ip_events)},
                )
            return result


def _stored_media(s: Session, item: Item) -> list[MediaInput]:
    """The item's registered media, as screening needs them."""
    return [
        MediaInput(
            r.sha256,
            r.md5,
            r.pdq,
            r.pdq_quality,
            pdq_variants=stored_variants(r.pdq, r.pdq_dihedral),
            media_type=r.media_type,
            video_frames=stored_features(s, r.id) if r.media_type == "video" else (),
        )
        for r in s.scalars(
            select(Media)
            .join(ItemMedia, ItemMedia.media_id == Media.id)
            .where(ItemMedia.item_id == item.id)
            .order_by(Media.id)
        )
    ]


def clean_ip_events(
    events: Sequence[IpEventInput], *, default_event: str | None = None
) -> list[IpEventInput]:
    """Canonical events (the address as ``ipaddress`` writes it, the time in UTC), the
    same event once; raises ``invalid_ip_address``, ``invalid_ip_event``,
    ``invalid_port`` or ``too_many_ip_events`` before anything is stored."""
    if len(events) > MAX_IP_EVENTS:
        raise InvalidRequest(
            f"At most {MAX_IP_EVENTS} IP events per request.", code="too_many_ip_events"
        )
    out: dict[tuple[object, ...], IpEventInput] = {}
    for e in events:
        try:
            address = ipaddress.ip_address((e.ip or "").strip())
        except ValueError:
            raise InvalidRequest(
                f"Not an IPv4 or IPv6 address: {str(e.ip)[:60]!r}.", code="invalid_ip_address"
            ) from None
        ip = str(address)
        if getattr(address, "scope_id", None) or len(ip) > 45:  # fe80::1%eth0: a local one
            raise InvalidRequest(
                f"Not an Internet address: {ip[:60]!r}.", code="invalid_ip_address"
            )
        event = (e.event or default_event or "").strip().lower()
        if event not in IP_EVENTS:
            raise InvalidRequest(
                f"An IP event is one of {', '.join(IP_EVENTS)}.", code="invalid_ip_event"
            )
        if e.port is not None and not 0 <= e.port <= 65535:
            raise InvalidRequest("A port is a number from 0 to 65535.", code="invalid_port")
        if e.at is not None and e.at.tzinfo is None:
            raise InvalidRequest(
                "An IP event's time needs its time zone (RFC 3339).", code="invalid_ip_event"
            )
        at = e.at.astimezone(UTC) if e.at is not None else None
        out.setdefault((ip, event, at), IpEventInput(ip, event, at, e.port))
    return list(out.values())


def _ip_events_shown(s: Session, owner: object) -> list[dict[str, object]]:
    return [
        {"ip": e.ip, "event": e.event, "at": e.at, "port": e.port, "received_at": e.received_at}
        for e in s.scalars(
            select(IpEvent)
            .where(owner)  # type: ignore[arg-type]
            .order_by(IpEvent.at.is_(None), IpEvent.at.desc(), IpEvent.id.desc())  # no time: last
            .limit(IP_EVENTS_SHOWN)
        )
    ]


def _file_name(value: str | None) -> str | None:
    """The name a file was uploaded with: a name, not a path; no control characters."""
    if value is None or not value.strip():
        return None
    name = value.strip()
    if len(name) > MAX_FILE_NAME:
        raise InvalidRequest(
            f"A file name is at most {MAX_FILE_NAME} characters.", code="invalid_file_name"
        )
    if (
        "/" in name
        or "\\" in name
        or name in (".", "..")
        or any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in name)
    ):
        raise InvalidRequest(
            "A file name is the name alone: no folders (/ or \\) and no control characters.",
            code="invalid_file_name",
        )
    return name


def _normalize_media(m: MediaInput) -> MediaInput:
    if m.pdq_quality is not None and not 0 <= m.pdq_quality <= 100:
        raise InvalidRequest("pdq_quality must be between 0 and 100.", code="invalid_quality")
    pdq = PDQ.normalize(m.pdq) if m.pdq else None
    variants = tuple((n, PDQ.normalize(v)) for n, v in m.pdq_variants)
    if variants and (pdq is None or len(variants) != len(DIHEDRAL_NAMES) or variants[0][1] != pdq):
        raise InvalidRequest(
            f"The dihedral variants are {len(DIHEDRAL_NAMES)} PDQ hashes, the first being "
            "the file's own PDQ.",
            code="invalid_hash",
        )
    return MediaInput(
        sha256=SHA256.normalize(m.sha256),
        md5=MD5.normalize(m.md5) if m.md5 else None,
        pdq=pdq,
        pdq_quality=m.pdq_quality,
        pdq_variants=variants,
        media_type=m.media_type,
        video_frames=m.video_frames,
        file_name=_file_name(m.file_name),
    )


def _dihedral_text(m: MediaInput) -> str | None:
    return ",".join(v for _, v in m.pdq_variants) if m.pdq_variants else None


def _holding_cases(s: Session, account_id: int) -> list[str]:
    """The cases whose standing suspension or termination holds the account."""
    return list(
        s.scalars(
            select(Case.public_id)
            .join(AppliedMeasure, AppliedMeasure.case_id == Case.id)
            .where(
                AppliedMeasure.account_id == account_id,
                AppliedMeasure.reversed_at.is_(None),
                AppliedMeasure.measure.in_(("suspend", "terminate")),
            )
            .order_by(AppliedMeasure.applied_at, AppliedMeasure.id)
        )
    )


ACCOUNT_CASES_SHOWN = 100


def _account_view(s: Session, a: Account) -> AccountView:
    cases: list[dict[str, object]] = [
        {"case": pid, "state": state, "outcome": outcome, "items": items}
        for pid, state, outcome, items in s.execute(
            select(Case.public_id, Case.state, Case.outcome, func.count(Item.id))
            .join(CaseItem, CaseItem.case_id == Case.id)
            .join(Item, Item.id == CaseItem.item_id)
            .where(Item.account_id == a.id)
            .group_by(Case.id)
            .order_by(Case.opened_at.desc(), Case.id.desc())
            .limit(ACCOUNT_CASES_SHOWN)
        ).all()
    ]
    measures: list[dict[str, object]] = [
        {
            "case": case,
            "part": m.part,
            "measure": m.measure,
            "strike": m.strike,
            "decision": m.decision,
            "applied_at": m.applied_at,
            "reversed_at": m.reversed_at,
            "reversed_by": m.reversed_by,
        }
        for m, case in s.execute(
            select(AppliedMeasure, Case.public_id)
            .join(Case, Case.id == AppliedMeasure.case_id)
            .where(AppliedMeasure.account_id == a.id)
            .order_by(AppliedMeasure.applied_at.desc(), AppliedMeasure.id.desc())
            .limit(ACCOUNT_CASES_SHOWN)
        ).all()
    ]
    return AccountView(
        account_id=a.platform_id,
        handle=a.handle,
        platform_status=a.platform_status,
        status=a.status,
        strikes=a.confirmed_violations,
        flagged=a.flagged,
        flag_reason=a.flag_reason,
        flag_source=a.flag_source,
        prior_violations=a.prior_violations,
        prior_violations_source=a.prior_violations_source,
        platform_reinstated_at=a.platform_reinstated_at,
        suspended_by=_holding_cases(s, a.id) if a.status != "active" else [],
        cases=cases,
        measures=measures,
    )


def _record_matches(
    s: Session,
    item: Item,
    m: MediaInput,
    matches: Sequence[Match],
    actor: str,
    into: list[_Recorded] | None = None,
) -> None:
    """A registered item's file matching bank entries, kept as a screening of that item
    (``content_ref`` ``item:<id>``), so each entry's match history and flood quarantine
    (services/banks/quarantine.py) count registered uploads as they count screenings.
    Not when a negative bank matched too: the item is spared, and its match is not
    evidence of a flood. Only matches are written: a clean upload costs nothing.
    ``into``: kept there, for :func:`_write_matches` to write with a batch's others
    (nothing in the batch's transaction reads them back)."""
    if not matches or any(x.bank.match_action is MatchAction.NEGATIVE for x in matches):
        return
    recorded = _Recorded(
        {
            "public_id": new_id(),
            "screened_at": utcnow(),
            "requested_by": actor[:200],
            "content_ref": f"item:{item.platform_id}"[:500],
            "verdict": verdict_for([x.bank.match_action for x in matches]).value,
            "md5": m.md5,
            "sha256": m.sha256,
            "pdq": m.pdq,
            "pdq_quality": m.pdq_quality,
        },
        [
            {
                "entry_id": x.entry.id,
                "bank_id": x.bank.bank_id,
                "signal_type": x.signal_type,
                "distance": x.distance,
                "threshold": x.threshold,
                "variant": x.variant,
                "video_match": json.dumps(v) if (v := x.video_dict()) else None,
            }
            for x in matches
        ],
    )
    if into is not None:
        into.append(recorded)
    else:
        _write_matches(s, [recorded])


class _Recorded(NamedTuple):
    screening: dict[str, object]  # the screenings row
    matches: list[dict[str, object]]  # its screening_matches rows, without its id


def _write_matches(s: Session, recorded: Sequence[_Recorded]) -> None:
    """Screenings and their matches (:func:`_record_matches`), in their order: two
    statements for all."""
    if not recorded:
        return
    ids = s.scalars(
        insert(Screening).returning(Screening.id, sort_by_parameter_order=True),
        [r.screening for r in recorded],
    ).all()
    s.execute(
        insert(ScreeningMatch),
        [{"screening_id": i, **x} for i, r in zip(ids, recorded, strict=True) for x in r.matches],
    )
