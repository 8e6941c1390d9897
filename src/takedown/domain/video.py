"""When one video is a copy of another, judged from their frame hashes. Pure rules.

A video is a sequence of frame features (one PDQ hash a second, vPDQ's features).
Frames of two videos *pair up* when their hashes are within the frame threshold (the
search that finds the pairs lives elsewhere; this module only judges them). From the
pairs:

- **banked share**: the share of the banked video's frames that some uploaded frame
  matches. At least ``match_percent`` (default 80 %) means the upload shows what the
  banked video shows: a copy (re-encoded, rescaled, slightly cropped...) or a longer
  video that contains it. This is the field's rule (vPDQ's "compared match percent").
- **upload share**: the share of the uploaded video's frames that match some banked
  frame. At least ``match_percent`` means the upload is *made of* banked material:
  a clip cut from a longer banked video.

Either makes a match. Frames below the quality floor count on neither side (vPDQ drops
them too). Order is not required: a re-edited video with scenes swapped still matches,
as it does in vPDQ. The matched time ranges are reported on both timelines, so a
reviewer can go straight to the part that matched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import median_low

from takedown.errors import InvalidRequest

DEFAULT_MATCH_PERCENT = 80
DEFAULT_FRAME_THRESHOLD = 31


@dataclass(frozen=True)
class VideoRule:
    """A bank's video policy."""

    match_percent: int = DEFAULT_MATCH_PERCENT
    frame_threshold: int = DEFAULT_FRAME_THRESHOLD
    quality_floor: int = 50
    # Matched frames further apart than this (seconds) start a new time range. Two
    # sampling intervals: one unmatched second between matches does not split a range.
    max_gap: float = 2.0


@dataclass(frozen=True)
class Frame:
    """A frame on a video's timeline: ``key`` identifies it to the pairs."""

    key: int
    timestamp: float  # seconds
    quality: int | None = None  # None: unknown, trusted


@dataclass(frozen=True)
class FramePair:
    upload_key: int
    banked_key: int
    distance: int


@dataclass(frozen=True)
class TimeRange:
    start: float  # timestamp of the first matching sampled frame, seconds
    end: float  # timestamp of the last one

    def to_dict(self) -> dict[str, float]:
        return {"start": self.start, "end": self.end}


@dataclass(frozen=True)
class VideoMatch:
    """How an upload matched one banked video.

    ``kind``: ``copy`` (both shares reach the rule), ``contains`` (the upload holds the
    banked video and more) or ``clip`` (the upload is part of the banked video).
    ``distance`` is the median of the best distances of the matched banked frames.
    """

    kind: str
    banked_percent: float
    upload_percent: float
    distance: int
    matched_frames: int  # banked frames matched
    upload_ranges: tuple[TimeRange, ...]
    banked_ranges: tuple[TimeRange, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "banked_percent": self.banked_percent,
            "upload_percent": self.upload_percent,
            "matched_frames": self.matched_frames,
            "upload_ranges": [r.to_dict() for r in self.upload_ranges],
            "banked_ranges": [r.to_dict() for r in self.banked_ranges],
        }


def validate_match_percent(value: int) -> int:
    if not 1 <= value <= 100:
        raise InvalidRequest(
            f"The video match percentage must be between 1 and 100; got {value}. The "
            "field's usual value is 80.",
            code="invalid_video_match_percent",
        )
    return value


def video_match(
    rule: VideoRule,
    upload: Sequence[Frame],
    banked: Sequence[Frame],
    pairs: Iterable[FramePair],
) -> VideoMatch | None:
    """Judge one (upload, banked video) pair under ``rule``; None when it is no match."""
    up = {f.key: f for f in upload if _usable(f, rule)}
    bk = {f.key: f for f in banked if _usable(f, rule)}
    if not up or not bk:
        return None
    best: dict[int, int] = {}  # banked key -> best distance
    upload_hits: set[int] = set()
    for pair in pairs:
        if pair.distance > rule.frame_threshold:
            continue
        if pair.upload_key not in up or pair.banked_key not in bk:
            continue
        upload_hits.add(pair.upload_key)
        if pair.distance < best.get(pair.banked_key, pair.distance + 1):
            best[pair.banked_key] = pair.distance
    if not best:
        return None
    banked_percent = 100 * len(best) / len(bk)
    upload_percent = 100 * len(upload_hits) / len(up)
    whole = banked_percent >= rule.match_percent
    part = upload_percent >= rule.match_percent
    if not (whole or part):
        return None
    kind = "copy" if whole and part else "contains" if whole else "clip"
    return VideoMatch(
        kind=kind,
        banked_percent=round(banked_percent, 1),
        upload_percent=round(upload_percent, 1),
        distance=median_low(best.values()),
        matched_frames=len(best),
        upload_ranges=time_ranges([up[k].timestamp for k in upload_hits], rule.max_gap),
        banked_ranges=time_ranges([bk[k].timestamp for k in best], rule.max_gap),
    )


def time_ranges(timestamps: Iterable[float], max_gap: float) -> tuple[TimeRange, ...]:
    """Sorted timestamps merged into ranges wherever neighbours are <= ``max_gap`` apart."""
    ranges: list[TimeRange] = []
    for t in sorted(timestamps):
        if ranges and t - ranges[-1].end <= max_gap:
            ranges[-1] = TimeRange(ranges[-1].start, t)
        else:
            ranges.append(TimeRange(t, t))
    return tuple(ranges)


def _usable(frame: Frame, rule: VideoRule) -> bool:
    return frame.quality is None or frame.quality >= rule.quality_floor
