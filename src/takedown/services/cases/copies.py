"""The copy graph: every registered item that carries the same material.

From a set of seed items, follow in rounds until nothing new turns up:
- repost and quote edges, both ways (a repost of the reported item, and the original
  that a reported repost reposts);
- the same bytes (items sharing a media row, keyed by SHA-256);
- PDQ near-duplicates of the seeds' media (another upload of the same picture), found
  through an in-memory index over all registered media.

PDQ is not chained: near-duplicates of near-duplicates are not followed, because
distances add up and the third hop may be a different picture. Everything else is
followed to its end. All queries go in batches, never one per item.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from functools import cache
from typing import Any, Literal, NamedTuple

import numpy as np
from sqlalchemy import (
    BindParameter,
    CompoundSelect,
    Select,
    bindparam,
    literal,
    select,
    union,
    union_all,
)
from sqlalchemy.orm import Session, aliased

from takedown.domain.video import VideoRule
from takedown.matching.hamming import (
    SearchResult,
    hex_to_bytes_array,
    stored_hex_to_bytes_array,
)
from takedown.matching.scan import ScanIndex
from takedown.media.pdq import DIHEDRAL_NAMES
from takedown.services.index.follower import IndexFollower
from takedown.services.screening import video as video_matching
from takedown.store.models import Item, ItemMedia, Media
from takedown.store.valuesets import in_values, named_value_set, value_set_argument

_CHUNK = 5_000  # ids per IN list: well below SQLite (32,766) and PostgreSQL (65,535) limits
MAX_ROUNDS = 20
_EDGE_REASONS = ("repost", "quote", "original")
PDQ_RADIUS = 31  # the field's threshold for "the same picture"
PDQ_QUALITY_FLOOR = 50

MEDIA_ROWS = "SELECT id, pdq FROM media WHERE id > :cursor ORDER BY id LIMIT :n"
# Video frames of registered media share the media index (services/screening/video.py).
MEDIA_MORE_ROWS = [(video_matching.MEDIA_FRAME_ROWS, video_matching.FRAME_ID_BASE)]
# Two uploads are the same video by the field's rule (domain/video.py).
VIDEO_RULE = VideoRule(frame_threshold=PDQ_RADIUS, quality_floor=PDQ_QUALITY_FLOOR)


# Media rows inserted by the session's open transaction, by PDQ (a compiled scan,
# matching/scan.py: thousands of the batch's media searched at once): the media index
# follows committed rows only, so a batch that registers many items in one transaction
# searches these too, and a near-duplicate registered a few lines earlier in the same
# batch is found as it would be had it come in its own request.
PENDING_MEDIA = "takedown.copies.pending_media"


def add_pending_media(s: Session, rows: Sequence[tuple[int, str]]) -> None:
    """Media rows ``(id, pdq hex)`` this session's transaction inserted; forgotten with
    :func:`forget_pending_media` when the transaction ends."""
    if not rows:
        return
    index = s.info.get(PENDING_MEDIA)
    if index is None:
        index = s.info[PENDING_MEDIA] = ScanIndex()
    _add_rows(index, rows)


def _add_rows(index: ScanIndex, rows: Sequence[tuple[int, str]]) -> None:
    # Normalised hashes (checked or stored): parsed in one go, the checking path only
    # should one be malformed (stored_hex_to_bytes_array).
    index.add(
        np.array([i for i, _ in rows], dtype=np.int64),
        stored_hex_to_bytes_array([h for _, h in rows]),
    )


def scan_index_of(rows: Sequence[tuple[int, str]]) -> ScanIndex:
    """A :class:`ScanIndex` of media rows ``(id, stored PDQ hex)``, each id once."""
    index = ScanIndex()
    if rows:
        _add_rows(index, rows)
    return index


def forget_pending_media(s: Session) -> None:
    s.info.pop(PENDING_MEDIA, None)


def _pending_search(s: Session, hashes: list[str] | np.ndarray) -> SearchResult | None:
    index = s.info.get(PENDING_MEDIA)
    if index is None or not len(index):
        return None
    queries = hashes if isinstance(hashes, np.ndarray) else hex_to_bytes_array(hashes)
    result: SearchResult = index.search(queries, PDQ_RADIUS)
    return result


# Which of some item ids a set holds, asked of the database (a case's items: a viral
# case holds 100,000, and a copy joining it needs to know of a few).
Members = Callable[[set[int]], set[int]]


class Among(NamedTuple):
    """A set of items a caller knows (the items of cases), for :meth:`CopyFinder.neighbour_map`:
    ``members``, which of some item ids are in it (one read); ``media``, its items'
    media's PDQs that pass the quality floor (:func:`scan_index_of`)."""

    members: Members
    media: ScanIndex


class Copy(NamedTuple):  # a tuple: 100,000 of them are made for one viral item
    item_id: int
    reason: str  # reported, repost, quote, original, same_bytes, pdq
    distance: int | None = None


def stored_variants(pdq: str | None, dihedral: str | None) -> tuple[tuple[str, str], ...]:
    """A media row's PDQ variants as (name, hex), the original first: all 8 when the
    row has them (``media.pdq_dihedral``), else the one PDQ."""
    if dihedral:
        return tuple(zip(DIHEDRAL_NAMES, dihedral.split(","), strict=True))
    return (("original", pdq),) if pdq else ()


def chunks(values: Sequence[int] | Sequence[str], size: int = _CHUNK) -> Iterable[list]:
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


class CopyFinder:
    def __init__(self, media_index: IndexFollower) -> None:
        self._media_index = media_index

    def expand(
        self,
        s: Session,
        seeds: Iterable[int] | Mapping[int, Copy],
        seed_reason: str = "reported",
        known: frozenset[int] | Members = frozenset(),
        seed_distance: int | None = None,
        *,
        through_known_seeds: bool = False,
    ) -> dict[int, Copy]:
        """Every copy reachable from ``seeds``. Items in ``known`` (already in the case)
        are neither returned nor walked through, so adding one late copy to a case of
        100,000 costs a few queries, not a walk of the whole case. ``known`` may be
        :data:`Members`, asked once a round of the items the round found: the case's
        items are then never all read (``CaseIntake``'s joins). ``through_known_seeds``:
        the walk starts from every seed, the known ones too (not returned), for a seed
        already in the case whose other copies may not be."""
        held: Members = (lambda ids: ids & known) if isinstance(known, frozenset) else known
        if isinstance(seeds, Mapping):  # each seed with its own reason (a batch's)
            candidates = dict(seeds)
        else:
            candidates = {i: Copy(i, seed_reason, seed_distance) for i in seeds}
        inside = held(set(candidates)) if candidates else set()
        found = {i: c for i, c in candidates.items() if i not in inside}
        frontier = set(candidates) if through_known_seeds else set(found)
        seen_media: set[int] = set()
        for _ in range(MAX_ROUNDS):
            if not frontier:
                break
            new = self._round(s, frontier, seen_media)
            fresh = {i for i in new if i not in found}
            frontier = fresh - held(fresh) if fresh else set()
            for i in frontier:
                found[i] = new[i]
        return found

    def neighbours(self, s: Session, item_ids: set[int]) -> dict[int, Copy]:
        """Items one step away (edge, same bytes, near-duplicate) and how they are
        linked: enough to tell whether a new item touches a case without walking it."""
        return {i: c for i, c in self._round(s, set(item_ids), set()).items() if i not in item_ids}

    def neighbour_map(
        self, s: Session, items: set[int], among: Among | None = None
    ) -> tuple[dict[int, dict[int, Copy]], set[int]]:
        """:meth:`neighbours` of many items at once, each item's own: item -> the items
        one step away and how they are linked (first an edge, then the same bytes, then
        a PDQ near-duplicate, as :meth:`neighbours` prefers them). Set-based, a few
        queries for a whole batch. Items with video media are returned apart (their
        copies are found by the video rule, which is not split by item): callers treat
        them one by one.

        ``among``: only the neighbours in that set, for a caller that needs no others
        (the items of cases: ``CaseIntake.may_join_cases``); near-duplicates are then
        looked up among its media, not every registered media and the transaction's
        own."""
        out: dict[int, dict[int, Copy]] = {i: {} for i in items}
        if not items:
            return out, set()
        by_pid: dict[str, int] = {}
        by_parent: dict[str, set[int]] = {}
        # Each read takes its whole set as one parameter (store/valuesets.py): a batch's
        # thousands of ids bound one by one cost more than the reads; and goes through
        # the session's connection (flushed first), whose rows cost a fraction of the
        # ORM's result layer's (tens of thousands of rows a batch).
        ids = sorted(items)
        s.flush()
        conn = s.connection()
        for i, pid, reposts, quotes in conn.execute(
            select(
                Item.id, Item.platform_id, Item.reposts_platform_id, Item.quotes_platform_id
            ).where(in_values(s, Item.id, ids))
        ).all():
            by_pid[pid] = i
            for parent in (reposts, quotes):
                if parent:
                    by_parent.setdefault(parent, set()).add(i)
        pids = sorted(by_pid)
        edges: list[tuple[str, int, str]] = []  # (reason, the other item, parent)
        for reason, column in (
            ("repost", Item.reposts_platform_id),
            ("quote", Item.quotes_platform_id),
        ):
            if not pids:
                break
            for i, parent in conn.execute(
                select(Item.id, column).where(in_values(s, column, pids))
            ).all():
                if parent is not None:
                    edges.append((reason, i, parent))
        parents: Sequence[tuple[int, str]] = ()
        if by_parent:
            parents = conn.execute(
                select(Item.id, Item.platform_id).where(
                    in_values(s, Item.platform_id, sorted(by_parent))
                )
            ).all()
        owners: dict[int, set[int]] = {}  # media id -> the seeds carrying it
        for i, mid in conn.execute(
            select(ItemMedia.item_id, ItemMedia.media_id).where(
                in_values(s, ItemMedia.item_id, ids)
            )
        ).all():
            owners.setdefault(mid, set()).add(i)
        near: dict[int, dict[int, int]] = {}  # other media -> seeds' media -> distance
        hashes: list[str] = []
        hash_owner: list[int] = []
        video: set[int] = set()
        if owners:
            for mid, h, dihedral, q, kind in conn.execute(
                select(
                    Media.id, Media.pdq, Media.pdq_dihedral, Media.pdq_quality, Media.media_type
                ).where(in_values(s, Media.id, sorted(owners)))
            ).all():
                if kind == "video":
                    video |= owners[mid]
                if h and (q is None or q >= PDQ_QUALITY_FLOOR):
                    for _, v in stored_variants(h, dihedral):
                        hashes.append(v)
                        hash_owner.append(mid)
        if hashes:
            queries = stored_hex_to_bytes_array(hashes)  # stored: parsed once, for both
            for result in (
                (among.media.search(queries, PDQ_RADIUS),)
                if among is not None
                else (self._media_index.search(queries, PDQ_RADIUS), _pending_search(s, queries))
            ):
                if result is None:
                    continue
                for qi, mid, d in zip(
                    result.query_index.tolist(),
                    result.ids.tolist(),
                    result.distances.tolist(),
                    strict=True,
                ):
                    own = hash_owner[qi]
                    if mid != own:
                        by_own = near.setdefault(mid, {})
                        by_own[own] = min(d, by_own.get(own, d))
        quality_ok: set[int] = set(near) if among is not None else set()
        if near and among is None:
            quality_ok.update(
                conn.execute(
                    select(Media.id).where(
                        in_values(s, Media.id, sorted(near)),
                        (Media.pdq_quality.is_(None)) | (Media.pdq_quality >= PDQ_QUALITY_FLOOR),
                    )
                ).scalars()
            )
        wanted = sorted(set(owners) | quality_ok)
        held: Sequence[tuple[int, int]] = ()  # (item, media id): the items carrying them
        if wanted:
            held = conn.execute(
                select(ItemMedia.item_id, ItemMedia.media_id).where(
                    in_values(s, ItemMedia.media_id, wanted)
                )
            ).all()
        # ``among``: which of these rows' items are in it, asked once of them all (in the
        # reads, SQLite would look every pair of two lists up in a two-column key; and
        # the set may be a viral case's 100,000 items, read for a few).
        keep = (
            among.members({i for _, i, _ in edges} | {i for i, _ in parents} | {i for i, _ in held})
            if among is not None
            else None
        )
        for reason, i, parent in edges:
            if keep is None or i in keep:
                out[by_pid[parent]].setdefault(i, Copy(i, reason))
        for i, pid in parents:
            if keep is None or i in keep:
                for seed in by_parent[pid]:
                    out[seed].setdefault(i, Copy(i, "original"))
        carriers: dict[int, list[int]] = {}  # media id -> items carrying it
        for i, mid in held:
            if keep is None or i in keep:
                carriers.setdefault(mid, []).append(i)
        for mid, seeds in owners.items():  # the same bytes
            for i in carriers.get(mid, ()):
                for seed in seeds:
                    out[seed].setdefault(i, Copy(i, "same_bytes"))
        for mid in quality_ok:  # near-duplicates (PDQ)
            for own, d in near[mid].items():
                for i in carriers.get(mid, ()):
                    for seed in owners[own]:
                        found = out[seed].get(i)
                        if found is None or (found.reason == "pdq" and (found.distance or 0) > d):
                            out[seed][i] = Copy(i, "pdq", d)
        for seed, links in out.items():
            links.pop(seed, None)
        return out, video

    def _round(self, s: Session, frontier: set[int], seen_media: set[int]) -> dict[int, Copy]:
        new: dict[int, Copy] = {}
        for copy in self._edges(s, frontier):
            new.setdefault(copy.item_id, copy)
        media = self._media_of(s, frontier) - seen_media
        seen_media |= media
        for copy in self._same_bytes(s, media):
            new.setdefault(copy.item_id, copy)
        near_media, near_items = self._near_duplicates(s, media)
        seen_media |= near_media  # not searched again: PDQ is not chained
        for copy in near_items:
            new.setdefault(copy.item_id, copy)
        for copy in self._same_video(s, media, seen_media):
            new.setdefault(copy.item_id, copy)
        return new

    def _same_video(self, s: Session, media: set[int], seen_media: set[int]) -> list[Copy]:
        """Items carrying a copy, a clip or a longer cut of one of these videos."""
        if not media:
            return []
        distance = video_matching.near_duplicate_videos(s, self._media_index, media, VIDEO_RULE)
        seen_media |= set(distance)  # not searched again: not chained
        out: list[Copy] = []
        for part in chunks(sorted(distance)):
            for item_id, media_id in s.execute(_LINKS_OF_MEDIA, {"ids": part}).all():
                out.append(Copy(item_id, "vpdq", distance[media_id]))
        return out

    def _edges(self, s: Session, items: set[int]) -> list[Copy]:
        """The items that repost or quote these, then the items these repost or quote.
        Joined in the database: a viral item's 100,000 reposts are one round of the walk,
        and their platform ids need not come to Python and go back as a parameter
        (measured: 1.35 s of a 3.7 s report on SQLite). The round's items are looked up
        once (``frontier``, a CTE the three links share) rather than once per link:
        100,000 primary-key probes each time, ~0.65 s apiece on PostgreSQL (measured)."""
        if not items:
            return []
        # The first link found names the copy's reason, as the rounds always did:
        # a repost before a quote before an original.
        best: dict[int, int] = {}
        for item_id, rank in _walk_read(s, "edges", items):
            if best.get(item_id, 3) > rank:
                best[item_id] = rank
        return [Copy(i, _EDGE_REASONS[rank]) for i, rank in best.items()]

    def _media_of(self, s: Session, items: set[int]) -> set[int]:
        if not items:
            return set()
        return {m for (m,) in _walk_read(s, "media_of", items)}

    def _same_bytes(self, s: Session, media: set[int]) -> list[Copy]:
        if not media:
            return []
        return [Copy(i, "same_bytes") for (i,) in _walk_read(s, "same_bytes", media)]

    def _near_duplicates(self, s: Session, media: set[int]) -> tuple[set[int], list[Copy]]:
        hashes: list[str] = []
        for part in chunks(sorted(media)):
            for h, dihedral, q in s.execute(_PDQ_OF, {"ids": part}).all():
                if h and (q is None or q >= PDQ_QUALITY_FLOOR):
                    # All 8 rotations and flips when known, like screening: a mirrored
                    # re-upload is the same picture.
                    hashes += [v for _, v in stored_variants(h, dihedral)]
        if not hashes:
            return set(), []
        distance: dict[int, int] = {}
        for result in (self._media_index.search(hashes, PDQ_RADIUS), _pending_search(s, hashes)):
            if result is None:
                continue
            for mid, d in zip(result.ids.tolist(), result.distances.tolist(), strict=True):
                if mid not in media and (mid not in distance or d < distance[mid]):
                    distance[mid] = d
        if not distance:
            return set(), []
        quality_ok: set[int] = set()
        for part in chunks(sorted(distance)):
            quality_ok.update(s.scalars(_QUALITY_OK, {"ids": part}))
        out: list[Copy] = []
        for part in chunks(sorted(quality_ok)):
            for item_id, media_id in s.execute(_LINKS_OF_MEDIA, {"ids": part}).all():
                out.append(Copy(item_id, "pdq", distance[media_id]))
        return quality_ok, out


class _WalkReads(NamedTuple):
    edges: CompoundSelect
    media_of: Select[Any]
    same_bytes: Select[Any]


@cache
def _walk_reads(dialect: str) -> _WalkReads:
    """The walk's reads of a round, each taking its ids as one parameter (``ids``),
    built once per dialect: a round is a few small reads, and building its statements
    cost more than running them (measured: 0.35 s of a 30,000-item batch's 0.5 s of
    edge reads, 193 rounds)."""
    ids = named_value_set(dialect, "ids")
    frontier = (
        select(Item.platform_id, Item.reposts_platform_id, Item.quotes_platform_id)
        .where(Item.id.in_(ids))
        .cte("frontier")
    )
    child = aliased(Item)
    reposts = select(child.id, literal(0)).join(
        frontier, child.reposts_platform_id == frontier.c.platform_id
    )
    quotes = select(child.id, literal(1)).join(
        frontier, child.quotes_platform_id == frontier.c.platform_id
    )
    linked = union(select(frontier.c.reposts_platform_id), select(frontier.c.quotes_platform_id))
    originals = select(Item.id, literal(2)).where(Item.platform_id.in_(linked))
    return _WalkReads(
        edges=union_all(reposts, quotes, originals),
        media_of=select(ItemMedia.media_id).where(ItemMedia.item_id.in_(ids)),
        same_bytes=select(ItemMedia.item_id).where(ItemMedia.media_id.in_(ids)),
    )


def _walk_read(
    s: Session, read: Literal["edges", "media_of", "same_bytes"], ids: Collection[int]
) -> list[Any]:
    """One of :func:`_walk_reads`' reads of these ids, through the session's connection
    (flushed first): the ORM's result layer costs ~2 µs a row, 0.4 s of CPU for a viral
    item's 100,000 copies."""
    dialect = s.get_bind().dialect.name
    s.flush()
    statement = getattr(_walk_reads(dialect), read)
    return list(s.connection().execute(statement, {"ids": value_set_argument(dialect, ids)}).all())


# The near-duplicate step's reads, built once (a statement built per call costs more
# than the query); each for one chunk of ids (``ids``). The walk's edges and
# ``neighbour_map`` take the whole set as one parameter instead (store/valuesets.py).
_IDS: BindParameter[list[object]] = bindparam("ids", expanding=True)
_LINKS_OF_MEDIA = select(ItemMedia.item_id, ItemMedia.media_id).where(ItemMedia.media_id.in_(_IDS))
_PDQ_OF = select(Media.pdq, Media.pdq_dihedral, Media.pdq_quality).where(
    Media.id.in_(_IDS), Media.pdq.is_not(None)
)
_QUALITY_OK = select(Media.id).where(
    Media.id.in_(_IDS),
    (Media.pdq_quality.is_(None)) | (Media.pdq_quality >= PDQ_QUALITY_FLOOR),
)
