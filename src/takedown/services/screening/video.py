"""Video frames in the shared PDQ indexes, and the video rule applied to index hits.

Frame hashes live in the same in-memory index as image hashes (one follower, one
index, see ``services/index/follower.py``): bank entries enter it by their id, banked video
frames by ``FRAME_ID_BASE + frame id``; registered media and their video frames the
same way in the media index. One search of a video's frames therefore finds banked
images and banked videos alike, and the index is never rebuilt for video.

Hits are only candidates: this module loads the candidate videos' frames and lets
:func:`takedown.domain.video.video_match` decide, with each bank's current rule.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import null, select
from sqlalchemy.orm import Session

from takedown.domain.video import (
    Frame,
    FramePair,
    VideoMatch,
    VideoRule,
    better,
    estimate_interval,
    video_match,
)
from takedown.matching import SearchResult
from takedown.media.pdq import DIHEDRAL_NAMES
from takedown.media.video_decode import FrameFeature
from takedown.services.index.follower import IndexFollower
from takedown.store.models import BankVideoFrame, Media, MediaVideoFrame

# Index ids at or above this are frame rows; below it, bank entries or media rows.
# 2**48 leaves both id spaces far more room than any table will use.
FRAME_ID_BASE: Final = 1 << 48

BANK_FRAME_ROWS: Final = (
    "SELECT id, pdq FROM bank_video_frames WHERE id > :cursor ORDER BY id LIMIT :n"
)
MEDIA_FRAME_ROWS: Final = (
    "SELECT id, pdq FROM media_video_frames WHERE id > :cursor ORDER BY id LIMIT :n"
)
_CHUNK: Final = 5_000


@dataclass(frozen=True)
class FrameHits:
    """Index hits of a video's frames, split by what they point at. Each hit is
    ``(frame index, entry/media or frame row id, distance, variant index)``; the variant
    indexes :data:`takedown.media.pdq.DIHEDRAL_NAMES` (0: the frame as uploaded)."""

    other: list[tuple[int, int, int, int]]  # entry or media ids
    frames: list[tuple[int, int, int, int]]  # frame row ids

    def __bool__(self) -> bool:
        return bool(self.other or self.frames)


VARIANT_NAMES: Final = (*DIHEDRAL_NAMES, "without_borders")
"""What a query hash of a frame is: the 8 rotations/flips, then the picture inside black
bars (the frame itself when it has none)."""


def query_hashes(features: Sequence[FrameFeature]) -> list[str]:
    """The hashes one search asks for: every frame as uploaded, then (when the frames
    carry them) every frame in each of its 7 other rotations/flips -- 8 variants answered
    in one pass of the index, as an image's are -- and, when any frame has black bars,
    the picture inside them. Hit ``q`` is frame ``q % n`` in variant ``q // n`` of
    :data:`VARIANT_NAMES` (see :func:`split_hits`)."""
    hashes = [f.pdq for f in features]
    if features and all(len(f.variants) == len(DIHEDRAL_NAMES) - 1 for f in features):
        for v in range(len(DIHEDRAL_NAMES) - 1):
            hashes += [f.variants[v] for f in features]
        if any(f.unboxed for f in features):
            hashes += [f.unboxed or f.pdq for f in features]
    return hashes


def split_hits(result: SearchResult, n_frames: int) -> FrameHits:
    other: list[tuple[int, int, int, int]] = []
    frames: list[tuple[int, int, int, int]] = []
    for q, i, d in zip(
        result.query_index.tolist(), result.ids.tolist(), result.distances.tolist(), strict=True
    ):
        frame, variant = q % n_frames, q // n_frames
        if i >= FRAME_ID_BASE:
            frames.append((frame, i - FRAME_ID_BASE, d, variant))
        else:
            other.append((frame, i, d, variant))
    return FrameHits(other, frames)


def upload_frames(features: Sequence[FrameFeature]) -> list[Frame]:
    """The query video's frames, keyed by their position in the search."""
    return [Frame(i, f.timestamp, f.quality, f.end) for i, f in enumerate(features)]


def judge_banked(
    s: Session,
    features: Sequence[FrameFeature],
    hits: list[tuple[int, int, int, int]],
    rule_of_entry: dict[int, VideoRule],
    upload_interval: float | None = None,
) -> dict[int, VideoMatch]:
    """entry id -> how the upload matched that banked video (entries in ``rule_of_entry``
    only: the caller passes the enabled entries of enabled banks with their rules)."""
    return _judge(s, BankVideoFrame, features, hits, rule_of_entry, None, upload_interval)


def judge_media(
    s: Session,
    features: Sequence[FrameFeature],
    hits: list[tuple[int, int, int, int]],
    rule: VideoRule,
    exclude: set[int],
) -> dict[int, VideoMatch]:
    """media id -> how a registered video matched (the copy graph's near-duplicates)."""
    owners = _owners(s, MediaVideoFrame, [f for _, f, _, _ in hits])
    rules = {m: rule for m in set(owners.values()) - exclude}
    return _judge(s, MediaVideoFrame, features, hits, rules, owners)


def frame_owners(s: Session, frame_ids: list[int]) -> dict[int, int]:
    """frame id -> the bank entry it belongs to."""
    return _owners(s, BankVideoFrame, frame_ids)


FrameModel = type[BankVideoFrame] | type[MediaVideoFrame]


def _owner_column(model: FrameModel) -> Any:
    return BankVideoFrame.entry_id if model is BankVideoFrame else MediaVideoFrame.media_id


def _owners(s: Session, model: FrameModel, frame_ids: list[int]) -> dict[int, int]:
    owners: dict[int, int] = {}
    ids = sorted(set(frame_ids))
    column = _owner_column(model)
    for start in range(0, len(ids), _CHUNK):
        part = ids[start : start + _CHUNK]
        for frame_id, owner in s.execute(select(model.id, column).where(model.id.in_(part))):
            owners[frame_id] = owner
    return owners


def _judge(
    s: Session,
    model: FrameModel,
    features: Sequence[FrameFeature],
    hits: list[tuple[int, int, int, int]],
    rules: dict[int, VideoRule],
    owners: dict[int, int] | None = None,
    upload_interval: float | None = None,
) -> dict[int, VideoMatch]:
    if owners is None:
        owners = _owners(s, model, [f for _, f, _, _ in hits])
    owner_col = _owner_column(model)
    candidates = sorted({o for o in owners.values() if o in rules})
    if not candidates:
        return {}
    timelines: dict[int, list[Frame]] = defaultdict(list)
    # A banked frame's crop-window rows stand for the frame: window row id -> frame row id.
    alias: dict[int, int] = {}
    crop = BankVideoFrame.crop_permille if model is BankVideoFrame else null()
    for start in range(0, len(candidates), _CHUNK):
        part = candidates[start : start + _CHUNK]
        rows = s.execute(
            select(
                model.id,
                owner_col,
                model.frame_number,
                model.timestamp_ms,
                model.quality,
                model.end_ms,
                crop,
            ).where(owner_col.in_(part))
        ).all()
        base: dict[tuple[int, int], int] = {}
        windows: list[tuple[int, int, int]] = []
        for frame_id, owner, number, ts_ms, quality, end_ms, cut in rows:
            if cut is not None:
                windows.append((frame_id, owner, number))
                continue
            base[(owner, number)] = frame_id
            end = None if end_ms is None else end_ms / 1000
            timelines[owner].append(Frame(frame_id, ts_ms / 1000, quality, end))
        for frame_id, owner, number in windows:
            if (owner, number) in base:
                alias[frame_id] = base[(owner, number)]
    # owner -> variant -> pairs: each rotation/flip of the upload is judged on its own (a
    # mirrored copy matches in one variant throughout; mixing variants frame by frame
    # would only add chance matches).
    pairs: dict[int, dict[int, list[FramePair]]] = defaultdict(lambda: defaultdict(list))
    for q, frame_id, d, variant in hits:
        owner = owners.get(frame_id)
        if owner in rules:
            pairs[owner][variant].append(FramePair(q, alias.get(frame_id, frame_id), d))
    upload = upload_frames(features)
    if upload_interval is None:
        upload_interval = estimate_interval(f.timestamp for f in features)
    found: dict[int, VideoMatch] = {}
    for owner in candidates:
        banked_interval = estimate_interval(f.timestamp for f in timelines[owner])
        judged: VideoMatch | None = None
        for variant, variant_pairs in sorted(pairs[owner].items()):
            judged = better(
                judged,
                video_match(
                    rules[owner],
                    upload,
                    timelines[owner],
                    variant_pairs,
                    upload_interval=upload_interval,
                    banked_interval=banked_interval,
                    variant=VARIANT_NAMES[variant],
                ),
            )
        if judged is not None:
            found[owner] = judged
    return found


def stored_features(s: Session, media_id: int) -> tuple[FrameFeature, ...]:
    """A registered video's frames, as they were hashed."""
    rows = s.execute(
        select(
            MediaVideoFrame.frame_number,
            MediaVideoFrame.timestamp_ms,
            MediaVideoFrame.pdq,
            MediaVideoFrame.quality,
            MediaVideoFrame.end_ms,
        )
        .where(MediaVideoFrame.media_id == media_id)
        .order_by(MediaVideoFrame.frame_number)
    ).all()
    return tuple(
        FrameFeature(n, ts / 1000, pdq, q, end=None if end is None else end / 1000)
        for n, ts, pdq, q, end in rows
    )


def near_duplicate_videos(
    s: Session, media_index: IndexFollower, media_ids: set[int], rule: VideoRule
) -> dict[int, int]:
    """Registered videos that copy, contain or are cut from the videos among
    ``media_ids``: media id -> median frame distance. Not chained, like PDQ."""
    found: dict[int, int] = {}
    videos = sorted(
        s.scalars(select(Media.id).where(Media.id.in_(media_ids), Media.media_type == "video"))
    )
    for media_id in videos:
        features = stored_features(s, media_id)
        if not features:
            continue
        result = media_index.search([f.pdq for f in features], rule.frame_threshold)
        hits = split_hits(result, len(features)).frames
        for other, judged in judge_media(s, features, hits, rule, media_ids).items():
            if other not in found or judged.distance < found[other]:
                found[other] = judged.distance
    return found
