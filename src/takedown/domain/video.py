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
from math import floor
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


@dataclass(frozen=True)
class Frame:
    """A frame on a video's timeline: ``key`` identifies it to the pairs.

    ``end``: where the frame stops standing for the video (the end of its sampling
    interval, or of the still run collapsed into it); None: one sampling interval."""

    key: int
    timestamp: float  # seconds
    quality: int | None = None  # None: unknown, trusted
    end: float | None = None


@dataclass(frozen=True)
class FramePair:
    upload_key: int
    banked_key: int
    distance: int


@dataclass(frozen=True)
class TimeRange:
    start: float  # seconds: where the first matching frame's span starts
    end: float  # where the last one's span ends (exclusive)

    def to_dict(self) -> dict[str, float]:
        return {"start": self.start, "end": self.end}


@dataclass(frozen=True)
class VideoMatch:
    """How an upload matched one banked video.

    ``kind``: ``copy`` (both shares reach the rule), ``contains`` (the upload holds the
    banked video and more) or ``clip`` (the upload is part of the banked video).
    ``distance`` is the median of the best distances of the matched banked frames.
    ``variant``: the rotation/flip of the upload's frames that matched ("original", or
    a name from ``media/pdq.DIHEDRAL_NAMES``: a mirrored copy matches "flip_left_right").
    """

    kind: str
    banked_percent: float
    upload_percent: float
    distance: int
    matched_frames: int  # banked frames matched
    upload_ranges: tuple[TimeRange, ...]
    banked_ranges: tuple[TimeRange, ...]
    threshold: int = DEFAULT_FRAME_THRESHOLD  # the frame distance the pairs were held to
    match_percent: int = DEFAULT_MATCH_PERCENT  # the share either side had to reach
    upload_frames: int = 0  # usable frames of the upload
    upload_matched: int = 0  # of which matched
    banked_frames: int = 0  # usable frames of the banked video
    variant: str = "original"

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "variant": self.variant,
            "threshold": self.threshold,
            "match_percent": self.match_percent,
            "banked_percent": self.banked_percent,
            "upload_percent": self.upload_percent,
            "matched_frames": self.matched_frames,
            "banked_frames": self.banked_frames,
            "upload_matched_frames": self.upload_matched,
            "upload_frames": self.upload_frames,
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
    *,
    upload_interval: float = 1.0,
    banked_interval: float = 1.0,
    variant: str = "original",
) -> VideoMatch | None:
    """Judge one (upload, banked video) pair under ``rule``; None when it is no match.

    ``upload_interval`` / ``banked_interval``: seconds between the sampled frames of
    each side. A banked video hashed more densely than the upload (4 frames a second
    against 1) cannot have every banked frame matched, so its share is counted in
    windows of the coarser interval: the share of windows holding a usable banked frame
    in which one was matched. At equal intervals each frame is its own window, and the
    share is vPDQ's "compared match percent" exactly.
    """
    up = {f.key: f for f in upload if _usable(f, rule)}
    bk = {f.key: f for f in banked if _usable(f, rule)}
    if not up or not bk:
        return None
    best: dict[int, int] = {}  # banked key -> best distance
    upload_hits: set[int] = set()
    # banked key -> how much of the upload its matching frames stand for (one sampling
    # interval at most: a still run of the upload says nothing of the banked timeline)
    reach: dict[int, float] = {}
    for pair in pairs:
        if pair.distance > rule.frame_threshold:
            continue
        if pair.upload_key not in up or pair.banked_key not in bk:
            continue
        upload_hits.add(pair.upload_key)
        start, end = _span(up[pair.upload_key], upload_interval)
        length = min(end - start, upload_interval)
        reach[pair.banked_key] = max(reach.get(pair.banked_key, 0.0), length)
        if pair.distance < best.get(pair.banked_key, pair.distance + 1):
            best[pair.banked_key] = pair.distance
    if not best:
        return None
    # Where the banked timeline stops: no banked range runs past it.
    banked_end = max(_span(f, banked_interval)[1] for f in banked)
    window = max(upload_interval, banked_interval)
    windows = {_window(f.timestamp, window) for f in bk.values()}
    matched_windows = {_window(bk[k].timestamp, window) for k in best}
    banked_percent = 100 * len(matched_windows) / len(windows)
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
        upload_ranges=time_ranges([_span(up[k], upload_interval) for k in upload_hits]),
        banked_ranges=time_ranges(
            [_banked_span(bk[k], banked_interval, reach[k], banked_end) for k in best],
            join=max(0.0, upload_interval - banked_interval),
        ),
        threshold=rule.frame_threshold,
        match_percent=rule.match_percent,
        upload_frames=len(up),
        upload_matched=len(upload_hits),
        banked_frames=len(bk),
        variant=variant,
    )


def better(a: VideoMatch | None, b: VideoMatch | None) -> VideoMatch | None:
    """The stronger of two judgements of the same pair of videos (say, under two
    rotations of the upload): the larger share, then the closer distance."""
    if a is None or b is None:
        return a or b
    key_a = (max(a.banked_percent, a.upload_percent), -a.distance)
    key_b = (max(b.banked_percent, b.upload_percent), -b.distance)
    return b if key_b > key_a else a


def estimate_interval(timestamps: Iterable[float], default: float = 1.0) -> float:
    """Seconds between sampled frames, from a timeline: the smallest gap (collapsed
    still runs and dropped frames only make gaps larger)."""
    ordered = sorted(set(timestamps))
    gaps = [b - a for a, b in zip(ordered, ordered[1:], strict=False) if b - a > 1e-6]
    return min(gaps) if gaps else default


def time_ranges(spans: Iterable[tuple[float, float]], join: float = 0.0) -> tuple[TimeRange, ...]:
    """Spans ``(start, end)`` merged where they touch or overlap (to within a
    millisecond's rounding), or lie less than ``join`` seconds apart: on a densely
    banked timeline, the banked frames between two the sparser upload matched could not
    have been matched, and do not split a range."""
    ranges: list[TimeRange] = []
    for start, end in sorted(spans):
        if ranges and start <= ranges[-1].end + join + 0.002:
            ranges[-1] = TimeRange(ranges[-1].start, max(ranges[-1].end, end))
        else:
            ranges.append(TimeRange(start, end))
    return tuple(TimeRange(round(r.start, 3), round(r.end, 3)) for r in ranges)


def _span(frame: Frame, interval: float) -> tuple[float, float]:
    end = frame.end if frame.end is not None else frame.timestamp + interval
    return frame.timestamp, max(end, frame.timestamp)


def _banked_span(
    frame: Frame, banked_interval: float, reach: float, banked_end: float
) -> tuple[float, float]:
    """A matched banked frame's span: its own (its interval, or its collapsed still run),
    and at least as long as the span of the upload frame that matched it (``reach``), up
    to the banked video's end. On a timeline banked more densely than the upload was
    sampled, the banked frames after it within that span could not have been matched
    (the upload has no frame there): a clip's banked range runs as long as its upload
    range, a full copy's to the banked video's end."""
    start, end = _span(frame, banked_interval)
    return start, max(end, min(start + reach, banked_end))


def _window(timestamp: float, width: float) -> int:
    return floor(timestamp / width + 1e-6)


def _usable(frame: Frame, rule: VideoRule) -> bool:
    return frame.quality is None or frame.quality >= rule.quality_floor
