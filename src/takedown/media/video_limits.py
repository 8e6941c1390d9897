"""Limits and sampling settings for video, applied before and during decoding.

A video is a program for a decoder: a few kilobytes can declare hours of 8K frames, a
frame rate of a million per second, or a stream that makes a decoder spin. Each limit
below bounds one of those, and each is checked as early as it can be known: bytes
before anything is parsed, declared size and duration once the container header is
read, and the same again on every decoded frame (a stream may change resolution half
way, and declared durations can lie).
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class VideoLimits:
    """Upper bounds for one video.

    ``max_bytes``: the encoded file. 200 MiB holds about 25 minutes of 1080p at a
    typical 1 Mbit/s phone upload rate and bounds the memory spent holding it.

    ``max_seconds``: duration, declared or decoded. At one hash a second this also
    bounds the number of frame hashes a video can add to a bank or a query.

    ``max_pixels`` / ``max_side``: frame size. 4096 x 2160 (DCI 4K) covers phone and
    camera video; one RGB frame of that size is 26 MB, and PDQ's float buffers twice
    that again.

    ``max_decode_seconds``: wall-clock time to decode and hash the whole video. Checked
    on every packet and frame by the decoder, and enforced from outside by killing the
    decoding process a little later (``media/bounded.py``), so even a decoder stuck
    inside one call cannot hold a worker.
    """

    max_bytes: int = 200 * MIB
    max_seconds: int = 3600
    max_pixels: int = 4096 * 2160
    max_side: int = 8192
    max_decode_seconds: float = 300.0

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_seconds", "max_pixels", "max_side"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"VideoLimits.{name} must be a positive integer, got {value!r}.")
        if not self.max_decode_seconds > 0:
            raise ValueError("VideoLimits.max_decode_seconds must be positive.")


@dataclass(frozen=True)
class VideoSampling:
    """Which frames are hashed and kept: the features Meta's vPDQ computes.

    ``seconds_per_hash``: one frame is hashed every this many seconds of video, chosen
    the way vPDQ chooses it (every ``int(seconds_per_hash * fps)``-th decoded frame).

    ``quality_floor``: frames whose PDQ quality is below this are dropped (flat or
    featureless frames such as fades to black collide with each other); 50 is Meta's
    recommendation and vPDQ's default.

    ``crop_windows``: for banked videos, each sampled frame is also hashed from centred
    sub-windows with this share cut off every edge (0.03: the middle 94 %), so a copy
    cropped by about that much still lands near a banked hash. Empty for uploads: their
    features stay vPDQ's.
    """

    seconds_per_hash: float = 1.0
    quality_floor: int = 50
    crop_windows: tuple[float, ...] = ()
    # Also compute TMK+PDQF (media/tmk.py): only when a bank holds TMK entries to compare
    # with, and ``tmkpy`` is installed.
    tmk: bool = False

    def __post_init__(self) -> None:
        if not self.seconds_per_hash > 0:
            raise ValueError("VideoSampling.seconds_per_hash must be positive.")
        if not 0 <= self.quality_floor <= 100:
            raise ValueError("VideoSampling.quality_floor must be between 0 and 100.")
        if not all(0 < c < 0.25 for c in self.crop_windows):
            raise ValueError("VideoSampling.crop_windows must each be between 0 and 0.25.")


DEFAULT_VIDEO_LIMITS = VideoLimits()
DEFAULT_SAMPLING = VideoSampling()
