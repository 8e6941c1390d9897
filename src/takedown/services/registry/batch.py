"""Registry events in bulk: many accounts, items and view counts in one call
(``POST /v1/registry/batch``, ``takedown consume``).

The rules are the single requests' (``service.py``: ``check_account``/``apply_account``,
``check_item``/``apply_item``/``screen_and_join``, ``apply_views``); what differs is how
much is read and written at a time. Events go in chunks, one transaction each. In a
chunk every event is checked first (a bad one is rejected with its line and code, the
others go on); new accounts, new items, their media, media links, IP events and view
rows are inserted in bulk; then the chunk is screened and checked for cases set-wise
(``Matcher.may_match``, ``CaseIntake.may_join_cases``: a few reads for the whole chunk)
and only the items that may match a bank or join a case are screened, in order
(``RegistryService.screen_and_join_many``): the cases of bank matches one step from no
other item opened set-wise, the others by the single request's ``screen_and_join``.
Items already registered whose media the event repeats as they are (no new file, name
or variants, no IP events) are updated set-wise when said
differently (``item.updated`` and a view count sample each, as ``apply_item`` writes
them) and screened with the chunk; the others (new media or IP events, an event without
media for an item that has some, an id seen twice in a chunk) go through ``apply_item``
as a single request does. View counts are applied line after line, written set-wise.
Media inserted by the chunk are searched as near-duplicates within the same transaction
(``services.cases.copies.add_pending_media``), so a copy a few lines after its original
is found as it would be in a request of its own. No cyclic garbage collection runs
while a chunk is applied (``takedown.memory.paused_gc``).

With message ids (a stream's), an id already applied is skipped: the record of applied
ids is written in the same transaction as the events (``applied_messages``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from takedown.errors import InvalidRequest, NotFound, TakedownError
from takedown.ids import new_ids, utcnow
from takedown.memory import paused_gc
from takedown.services.audit.chain import record, record_many
from takedown.services.cases.copies import add_pending_media, chunks, forget_pending_media
from takedown.services.registry.service import (
    AccountInput,
    CheckedItem,
    IpEventInput,
    ItemInput,
    ItemResult,
    MediaInput,
    RegistryService,
    _dihedral_text,
    account_fields,
    check_account,
    check_item,
)
from takedown.services.screening.matcher import QuerySignals
from takedown.store import repositories as repo
from takedown.store.db import bulk_insert, bulk_writer, unit_of_work
from takedown.store.models import (
    Account,
    AppliedMessage,
    Base,
    IpEvent,
    Item,
    ItemMedia,
    ItemViews,
    Media,
    MediaVideoFrame,
)
from takedown.store.valuesets import in_values

MAX_LINES = 10_000  # per request
CHUNK = 5_000  # events per transaction


@dataclass(frozen=True)
class ViewsInput:
    item_id: str
    view_count: int
    at: datetime | None = None


@dataclass(frozen=True)
class Rejected:
    line: int
    code: str
    message: str


@dataclass
class BatchResult:
    lines: int = 0
    accepted: int = 0
    accounts_created: int = 0
    accounts_changed: int = 0
    items_created: int = 0
    items_changed: int = 0
    views_changed: int = 0
    matched: int = 0  # items whose media matched a bank
    duplicates: int = 0  # messages applied before (by message id)
    cases: set[str] = field(default_factory=set)  # cases joined or opened
    rejected: list[Rejected] = field(default_factory=list)


def register_batch(
    registry: RegistryService,
    events: Sequence[tuple[int, AccountInput | ItemInput | ViewsInput]],
    *,
    actor: str,
    message_ids: Sequence[str | None] | None = None,
    chunk: int = CHUNK,
) -> BatchResult:
    """Apply numbered events (line numbers, or stream sequences) in chunks of
    ``chunk``, one transaction each; each rejected event is answered with its number."""
    result = BatchResult(lines=len(events))
    # One connection for the chunks, on SQLite with a large page cache while it is held
    # (store/db.py's bulk_writer): a chunk inserts thousands of rows at random places of
    # a dozen indexes, which SQLite's default 2 MB cache would otherwise read back page
    # by page, and spill its dirty pages to the log before the commit.
    with bulk_writer(registry._sessions) as connection:
        for start in range(0, len(events), chunk):
            part = list(events[start : start + chunk])
            ids = list(message_ids[start : start + chunk]) if message_ids is not None else None
            with paused_gc():  # a chunk's rows, then collected at once
                _Chunk(registry, actor, result, connection).run(part, ids)
    result.accepted = result.lines - len(result.rejected) - result.duplicates
    return result


class _Chunk:
    def __init__(
        self,
        registry: RegistryService,
        actor: str,
        result: BatchResult,
        connection: Connection | None = None,
    ) -> None:
        self.reg = registry
        self.actor = actor
        self.result = result
        self.connection = connection

    def reject(self, line: int, exc: TakedownError) -> None:
        self.result.rejected.append(Rejected(line, exc.code, exc.message))

    def run(
        self,
        events: list[tuple[int, AccountInput | ItemInput | ViewsInput]],
        message_ids: list[str | None] | None,
    ) -> None:

        with unit_of_work(self.reg._sessions, bind=self.connection) as s:
            try:
                if s.get_bind().dialect.name == "postgresql":
                    # Each statement planned for its own values: a chunk's reads take sets
                    # of 1 to thousands of ids as one parameter, which no one generic plan
                    # fits, and psycopg prepares a statement run five times, whose generic
                    # plan PostgreSQL then keeps (made while the tables were small).
                    # Measured (20,000 items of bench/registry.py's feed, a new database):
                    # the copy walk's edge reads 0.8-0.9 s -> 0.1 s, all statements
                    # 2.9-3.4 s -> 1.8-2.0 s of database time.
                    s.connection().exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")
                if message_ids is not None:
                    events = self._unapplied(s, events, message_ids)
                accounts: list[tuple[int, AccountInput, str, list[IpEventInput]]] = []
                items: list[tuple[int, CheckedItem]] = []
                views: list[tuple[int, ViewsInput]] = []
                for n, e in events:
                    try:
                        if isinstance(e, AccountInput):
                            pid, ips = check_account(e)
                            accounts.append((n, e, pid, ips))
                        elif isinstance(e, ItemInput):
                            items.append((n, check_item(e)))
                        else:
                            views.append((n, _check_views(e)))
                    except TakedownError as exc:
                        self.reject(n, exc)
                account_ids = self._accounts(s, accounts, items)
                self._items(s, items, account_ids)
                self._views(s, views)
            finally:
                forget_pending_media(s)

    # -- messages already applied ----------------------------------------------------
    def _unapplied(
        self,
        s: Session,
        events: list[tuple[int, AccountInput | ItemInput | ViewsInput]],
        message_ids: list[str | None],
    ) -> list[tuple[int, AccountInput | ItemInput | ViewsInput]]:
        asked = sorted({m for m in message_ids if m})
        known: set[str] = set()
        for part in chunks(asked):
            known.update(
                s.scalars(
                    select(AppliedMessage.message_id).where(
                        in_values(s, AppliedMessage.message_id, part)
                    )
                )
            )
        fresh: list[tuple[int, AccountInput | ItemInput | ViewsInput]] = []
        new_ids_seen: set[str] = set()
        for event, mid in zip(events, message_ids, strict=True):
            if mid and (mid in known or mid in new_ids_seen):
                self.result.duplicates += 1
                continue
            if mid:
                new_ids_seen.add(mid)
            fresh.append(event)
        if new_ids_seen:  # one executemany (PostgreSQL: COPY), as the chunk's rows
            now = utcnow()
            _bulk(
                s,
                AppliedMessage,
                [{"message_id": m, "applied_at": now} for m in sorted(new_ids_seen)],
            )
        return fresh

    # -- accounts --------------------------------------------------------------------
    def _accounts(
        self,
        s: Session,
        accounts: list[tuple[int, AccountInput, str, list[IpEventInput]]],
        items: list[tuple[int, CheckedItem]],
    ) -> dict[str, int]:
        """Every account the chunk names, registered if new; their lines applied."""
        named = [pid for _, _, pid, _ in accounts]
        named += [c.item.account_id.strip() for _, c in items if c.item.account_id]
        wanted = list(dict.fromkeys(named))
        rows: dict[str, Account] = {}
        for part in chunks(wanted):
            rows.update(
                (a.platform_id, a)
                for a in s.scalars(select(Account).where(in_values(s, Account.platform_id, part)))
            )
        missing = [pid for pid in wanted if pid not in rows]
        # A new account's first line: its fields written with the row, not by an update
        # of it (the same columns, the same account.updated event, recorded below).
        folded: dict[str, dict[str, object]] = {}
        if missing:
            absent = set(missing)
            for _, a, pid, _ in accounts:
                if pid in absent and pid not in folded:
                    folded[pid] = {
                        k: v for k, v in account_fields(a).items() if _ACCOUNT_DEFAULTS[k] != v
                    }
            now = utcnow()
            _bulk(
                s,
                Account,
                [
                    {
                        **_ACCOUNT_DEFAULTS,
                        **folded.get(pid, {}),
                        "platform_id": pid,
                        "public_id": pub,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for pid, pub in zip(missing, new_ids(len(missing)), strict=True)
                ],
            )
            record_many(s, self.actor, "account.registered", "account", missing, {})
            for part in chunks(missing):
                rows.update(
                    (a.platform_id, a)
                    for a in s.scalars(
                        select(Account).where(in_values(s, Account.platform_id, part))
                    )
                )
            self.result.accounts_created += len({pid for _, _, pid, _ in accounts} & set(missing))
        created = set(missing)
        for _, a, pid, ips in accounts:
            changes = folded.pop(pid, None)
            changed = self.reg.apply_account(s, rows[pid], a, ips, self.actor)
            if changes:  # written with the row: what apply_account does after an update
                self.reg.account_updated(s, rows[pid], changes, self.actor)
            if changed and pid not in created:
                self.result.accounts_changed += 1
        return {pid: acc.id for pid, acc in rows.items()}

    # -- items -----------------------------------------------------------------------
    def _items(
        self, s: Session, items: list[tuple[int, CheckedItem]], account_ids: dict[str, int]
    ) -> None:
        pids = [c.platform_id for _, c in items]
        known: dict[str, Any] = {}
        for part in chunks(pids):
            for found in s.execute(
                select(*_ITEM_COLUMNS).where(in_values(s, Item.platform_id, part))
            ):
                known[found.platform_id] = found
        links = self._links(s, [r.id for r in known.values()])
        fresh: list[CheckedItem] = []
        fresh_fields: list[dict[str, object]] = []
        unchanged: list[tuple[CheckedItem, dict[str, object]]] = []
        updated: list[tuple[CheckedItem, Any, dict[str, object]]] = []
        again: list[CheckedItem] = []  # new media or IP events, twice in this chunk...
        seen: set[str] = set()
        for _, c in items:
            if c.platform_id in seen:
                again.append(c)
                continue
            seen.add(c.platform_id)
            account = account_ids[c.item.account_id.strip()] if c.item.account_id else None
            f = c.fields_with(account)
            row = known.get(c.platform_id)
            if row is None:
                fresh.append(c)
                fresh_fields.append(f)
            elif not _same_media(c, links.get(row.id, {})):
                again.append(c)  # the single request's rule, whole
            elif all(getattr(row, k) == v for k, v in f.items()):
                unchanged.append((c, f))  # a replay: nothing to write, screened below
            else:
                updated.append((c, row, f))  # new fields only (a view count...)
        ids = self._insert_items(s, fresh, fresh_fields)
        created = set(ids.values())
        self._update_items(s, updated)
        self._insert_media(s, fresh, ids)
        self._insert_ip_events(s, fresh, ids)
        self.result.items_created += len(fresh)
        for c in again:  # the single request's rule, whole
            r = self.reg.apply_item(s, c, self.actor)
            self.result.items_changed += int(r.changed)
            self.result.matched += int(bool(r.matched_banks))
            self.result.cases.update(r.cases)
        unchanged += [(c, f) for c, _, f in updated]
        ids.update((c.platform_id, known[c.platform_id].id) for c, _ in unchanged)
        fields = fresh_fields + [f for _, f in unchanged]
        fresh = fresh + [c for c, _ in unchanged]
        # Screening and cases: a few reads for the chunk, then the single request's
        # rule for the items that may match or join.
        queries: list[QuerySignals] = []
        owner: list[int] = []
        for k, c in enumerate(fresh):
            for m in c.media:
                variants = m.pdq_variants or ((("original", m.pdq),) if m.pdq else ())
                queries.append(
                    QuerySignals(
                        pdq_variants=variants,
                        pdq_quality=m.pdq_quality,
                        md5=m.md5,
                        sha256=m.sha256,
                        video_frames=m.video_frames,
                    )
                )
                owner.append(k)
        not_banked: set[str] = set()  # exact hashes in no bank: not looked up again
        todo = {owner[q] for q in self.reg._matcher.may_match(s, queries, not_banked)}
        by_id = {ids[c.platform_id]: k for k, c in enumerate(fresh)}
        joining = self.reg._cases.may_join_cases(
            s,
            [
                (ids[c.platform_id], c.platform_id, f["url"], c.media)  # type: ignore[misc]
                for c, f in zip(fresh, fields, strict=True)
            ],
            screened={ids[fresh[k].platform_id] for k in todo},
        )
        todo |= {by_id[i] for i in joining.one_by_one}
        # Copies of what is in a case (a repost, the same bytes, a near-duplicate), and
        # nothing else to check: the single request's join, for all of them at once,
        # each item by its own links.
        joiners = {i for i in joining.by_neighbour if by_id[i] not in todo}
        if joiners:
            self.result.cases.update(
                self.reg._cases.join_later_copies(
                    s, joiners, self.actor, neighbours=joining.by_neighbour
                )
            )
        screened: list[tuple[Item, list[MediaInput], ItemResult]] = []
        order = sorted(todo)
        loaded = (
            {  # one read; the rows loaded before in the chunk are these objects
                it.id: it
                for it in s.scalars(
                    select(Item).where(
                        in_values(s, Item.id, sorted({ids[fresh[k].platform_id] for k in order}))
                    )
                )
            }
            if order
            else {}
        )
        for k in order:
            c = fresh[k]
            item = loaded[ids[c.platform_id]]
            screened.append((item, c.media, ItemResult.of(item)))
        self.reg.screen_and_join_many(
            s,
            screened,
            self.actor,
            neighbours=joining.neighbours,
            one_by_one=joining.one_by_one,
            not_banked=not_banked,
            created=created,
        )
        for _, _, r in screened:
            self.result.matched += int(bool(r.matched_banks))
            self.result.cases.update(r.cases)

    def _update_items(
        self, s: Session, updated: list[tuple[CheckedItem, Any, dict[str, object]]]
    ) -> None:
        """Registered items said differently, their media as they were: the changed
        columns set, ``item.updated`` recorded and a new view count kept, as
        ``apply_item`` does, a statement per set of changed columns."""
        if not updated:
            return
        now = utcnow()
        groups: dict[tuple[str, ...], list[dict[str, object]]] = {}
        views: list[dict[str, object]] = []
        for c, row, f in updated:
            changes = {k: v for k, v in f.items() if getattr(row, k) != v}
            groups.setdefault(tuple(sorted(changes)), []).append(
                {"_id": row.id, "updated_at": now, **changes}
            )
            record(
                s,
                self.actor,
                "item.updated",
                "item",
                c.platform_id,
                {k: v for k, v in changes.items() if k != "account_id"},
            )
            if "view_count" in changes:
                views.append({"item_id": row.id, "at": now, "view_count": changes["view_count"]})
        for rows in groups.values():  # the columns set: each row's keys
            s.connection().execute(update(Item).where(Item.id == bindparam("_id")), rows)
        if views:
            _bulk(s, ItemViews, views)
        self.result.items_changed += len(updated)

    def _links(
        self, s: Session, item_ids: list[int]
    ) -> dict[int, dict[str, tuple[str | None, str | None, str | None]]]:
        """Registered items' media: item id -> sha256 -> (file name, pdq, dihedral)."""
        out: dict[int, dict[str, tuple[str | None, str | None, str | None]]] = {}
        for part in chunks(item_ids):
            for item_id, sha, name, pdq, dihedral in s.execute(
                select(
                    ItemMedia.item_id,
                    Media.sha256,
                    ItemMedia.file_name,
                    Media.pdq,
                    Media.pdq_dihedral,
                )
                .join(Media, Media.id == ItemMedia.media_id)
                .where(in_values(s, ItemMedia.item_id, part))
            ).all():
                out.setdefault(item_id, {})[sha] = (name, pdq, dihedral)
        return out

    def _insert_items(
        self, s: Session, fresh: list[CheckedItem], fields: list[dict[str, object]]
    ) -> dict[str, int]:
        if not fresh:
            return {}
        now = utcnow()
        rows = [
            {
                "platform_id": c.platform_id,
                "public_id": pub,
                "registered_at": now,
                "updated_at": now,
                "view_count": 0,
                "platform_visibility": None,
                "monetization_paused": False,
                "visibility": "visible",
                **f,
            }
            for c, f, pub in zip(fresh, fields, new_ids(len(fresh)), strict=True)
        ]
        _bulk(s, Item, rows)
        ids: dict[str, int] = {}
        for part in chunks([c.platform_id for c in fresh]):
            ids.update(
                (pid, i)
                for i, pid in s.execute(
                    select(Item.id, Item.platform_id).where(in_values(s, Item.platform_id, part))
                ).all()
            )
        pids = [c.platform_id for c in fresh]
        record_many(s, self.actor, "item.registered", "item", pids, {})
        views = [
            {"item_id": ids[c.platform_id], "at": now, "view_count": f["view_count"]}
            for c, f in zip(fresh, fields, strict=True)
            if "view_count" in f
        ]
        if views:
            _bulk(s, ItemViews, views)
        return ids

    def _insert_media(self, s: Session, fresh: list[CheckedItem], ids: dict[str, int]) -> None:
        first: dict[str, MediaInput] = {}
        for c in fresh:
            for m in c.media:
                first.setdefault(m.sha256, m)
        if not first:
            return
        media_id: dict[str, int] = {}
        stored: dict[str, tuple[str | None, str | None]] = {}
        for part in chunks(sorted(first)):
            for i, sha, pdq, dihedral in s.execute(
                select(Media.id, Media.sha256, Media.pdq, Media.pdq_dihedral).where(
                    in_values(s, Media.sha256, part)
                )
            ).all():
                media_id[sha] = i
                stored[sha] = (pdq, dihedral)
        new = [m for sha, m in first.items() if sha not in media_id]
        if new:
            repo.lock_inserts(s, repo.MEDIA_INSERTS)  # ids visible in commit order
            now = utcnow()
            rows: list[dict[str, object]] = [
                {
                    "sha256": m.sha256,
                    "public_id": pub,
                    "md5": m.md5,
                    "pdq": m.pdq,
                    "pdq_quality": m.pdq_quality,
                    "pdq_dihedral": _dihedral_text(m),
                    "media_type": m.media_type,
                    "created_at": now,
                    "blob_id": None,
                }
                for m, pub in zip(new, new_ids(len(new)), strict=True)
            ]
            _bulk(s, Media, rows)
            for part in chunks([m.sha256 for m in new]):
                media_id.update(
                    (sha, i)
                    for i, sha in s.execute(
                        select(Media.id, Media.sha256).where(in_values(s, Media.sha256, part))
                    ).all()
                )
            add_pending_media(
                s,
                [(media_id[m.sha256], m.pdq) for m in new if m.pdq],
            )
            if any(m.video_frames for m in new):
                for m in new:
                    if m.video_frames:
                        s.execute(
                            insert(MediaVideoFrame),
                            [
                                {"media_id": media_id[m.sha256], **r}
                                for r in repo.frame_rows(m.video_frames)
                            ],
                        )
        # A media row's variants may arrive with a later event (as in _attach_media).
        for c in fresh:
            for m in c.media:
                pdq, dihedral = stored.get(m.sha256, (None, "new"))
                if dihedral is None and pdq and pdq == m.pdq and m.pdq_variants:
                    s.execute(
                        update(Media)
                        .where(Media.id == media_id[m.sha256])
                        .values(pdq_dihedral=_dihedral_text(m))
                    )
                    stored[m.sha256] = (pdq, "set")
        links = []
        for c in fresh:
            mids = [media_id[m.sha256] for m in c.media]
            names = {i: m.file_name for i, m in zip(mids, c.media, strict=True) if m.file_name}
            links += [
                {"item_id": ids[c.platform_id], "media_id": i, "file_name": names.get(i)}
                for i in dict.fromkeys(mids)
            ]
        if links:
            _bulk(s, ItemMedia, links)

    def _insert_ip_events(self, s: Session, fresh: list[CheckedItem], ids: dict[str, int]) -> None:
        now = utcnow()
        rows = []
        for c in fresh:
            if not c.ip_events:
                continue
            item_id = ids[c.platform_id]
            rows += [
                {
                    "account_id": None,
                    "item_id": item_id,
                    "ip": e.ip,
                    "event": e.event,
                    "at": e.at,
                    "port": e.port,
                    "dedupe_key": f"i{item_id}|{e.ip}|{e.event}|{e.at.isoformat() if e.at else ''}",
                    "received_at": now,
                    "received_by": self.actor,
                }
                for e in c.ip_events
            ]
            # The count and kinds only: the addresses are personal data, read by legal.
            record(
                s,
                self.actor,
                "item.ip_events_added",
                "item",
                c.platform_id,
                {"added": len(c.ip_events), "events": sorted({e.event for e in c.ip_events})},
            )
        if rows:
            _bulk(s, IpEvent, rows)

    # -- views -----------------------------------------------------------------------
    def _views(self, s: Session, views: list[tuple[int, ViewsInput]]) -> None:
        """View counts, line after line as ``apply_views`` keeps them (a count equal to
        the item's current one changes nothing), written set-wise."""
        if not views:
            return
        current: dict[str, list[int]] = {}  # platform id -> [item id, view count]
        for part in chunks(sorted({v.item_id for _, v in views})):
            for i, pid, count in s.execute(
                select(Item.id, Item.platform_id, Item.view_count).where(
                    in_values(s, Item.platform_id, part)
                )
            ).all():
                current[pid] = [i, count]
        samples: list[dict[str, object]] = []
        changed: dict[int, int] = {}  # item id -> its last count
        now = utcnow()
        for n, v in views:
            row = current.get(v.item_id)
            if row is None:
                self.reject(
                    n,
                    NotFound(
                        f"No item {v.item_id[:60]!r}; register it first.", code="item_not_found"
                    ),
                )
                continue
            if row[1] == v.view_count:
                continue
            row[1] = changed[row[0]] = v.view_count
            samples.append({"item_id": row[0], "at": v.at or now, "view_count": v.view_count})
            self.result.views_changed += 1
        if not changed:
            return
        s.connection().execute(
            update(Item).where(Item.id == bindparam("_id")),
            [{"_id": i, "view_count": count} for i, count in sorted(changed.items())],
        )
        _bulk(s, ItemViews, samples)
        for item in s.identity_map.values():  # loaded earlier in the chunk: as written
            if isinstance(item, Item) and item.id in changed:
                set_committed_value(item, "view_count", changed[item.id])
        self.reg._cases.refresh_priority_for_items(s, sorted(changed))


# A new account's columns before any event says otherwise: the model's defaults.
_ACCOUNT_DEFAULTS: dict[str, object] = {
    c.name: c.default.arg if c.default is not None else None
    for c in Account.__table__.c
    if c.name
    in (
        "handle",
        "platform_status",
        "status",
        "flagged",
        "flag_reason",
        "flag_source",
        "confirmed_violations",
        "prior_violations",
        "prior_violations_source",
        "platform_reinstated_at",
    )
}

_ITEM_COLUMNS = (
    Item.id,
    Item.platform_id,
    Item.account_id,
    Item.url,
    Item.reposts_platform_id,
    Item.quotes_platform_id,
    Item.replies_to_platform_id,
    Item.posted_at,
    Item.monetized,
    Item.view_count,
    Item.platform_visibility,
)


def _same_media(
    c: CheckedItem, links: dict[str, tuple[str | None, str | None, str | None]]
) -> bool:
    """The event would add nothing to a registered item's media and IP events (what
    ``apply_item`` would find): its media linked under the same names, no variants to
    add, no IP events (those are checked one by one). An event without media, for an
    item with media, is screened by the item's stored media: one by one too."""
    if c.ip_events or (not c.media and links):
        return False
    for m in c.media:
        link = links.get(m.sha256)
        if link is None:
            return False
        name, pdq, dihedral = link
        if m.file_name and m.file_name != name:
            return False
        if dihedral is None and pdq and pdq == m.pdq and m.pdq_variants:
            return False
    return True


def _bulk(s: Session, model: type[Base], rows: list[dict[str, Any]]) -> None:
    """Rows in by one ``executemany`` (PostgreSQL: ``COPY``), every column given."""
    bulk_insert(s.connection(), model.__table__, rows)  # type: ignore[arg-type]


def _check_views(v: ViewsInput) -> ViewsInput:
    item_id = (v.item_id or "").strip()
    if not item_id:
        raise InvalidRequest("item_id is required.", code="invalid_request")
    if v.view_count < 0:
        raise InvalidRequest("view_count cannot be negative.", code="invalid_request")
    return ViewsInput(item_id, v.view_count, v.at)
