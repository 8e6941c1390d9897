"""One call from video bytes (or a file) to every signal we match a video on.

MD5 and SHA-256 of the file as received (what NCMEC and StopNCII exchange for video),
and vPDQ-compatible frame features: one PDQ hash per second of video with its frame
number, timestamp and quality, low-quality frames dropped and still scenes collapsed
(see :mod:`takedown.media.video_decode` for how frames are chosen and hashed).

Decoding happens in a child process with a deadline (:mod:`takedown.media.bounded`), so
no decoder hang or crash can hold or take down the calling worker. The cheap refusals
-- empty, too many bytes, not a container we accept -- happen here first, before any
process is started.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Final

from takedown.errors import MediaEmpty, MediaTooLarge, MediaUnsupportedType
from takedown.media.bounded import run_bounded
from takedown.media.decode import ACCEPTED_FORMATS_TEXT, sniff_format
from takedown.media.digests import md5_hex, sha256_hex
from takedown.media.hashing import MediaSignals, hash_image_bytes
from takedown.media.limits import ImageLimits
from takedown.media.video_decode import (
    ACCEPTED_CONTAINERS_TEXT,
    DecodedVideo,
    FrameFeature,
    decode_and_hash,
    sniff_container,
)
from takedown.media.video_limits import (
    DEFAULT_SAMPLING,
    DEFAULT_VIDEO_LIMITS,
    VideoLimits,
    VideoSampling,
)

# Extra wall time the parent allows beyond the decoder's own budget before it kills the
# child: start-up, and the child's clean refusal when it notices the budget itself.
KILL_GRACE_S: Final = 5.0
DEFAULT_POSTER_BLUR: Final = 0.0

__all__ = [
    "FrameFeature",
    "VideoSignals",
    "hash_video_bytes",
    "hash_video_file",
    "hash_image_upload",
    "is_video",
    "render_poster",
]


@dataclass(frozen=True)
class VideoSignals:
    """Everything we learn from one video file."""

    media_type: str  # "video"
    format: str
    mime_type: str
    codec: str
    width: int
    height: int
    fps: float
    duration: float  # seconds
    size_bytes: int
    md5: str
    sha256: str
    frames_decoded: int
    frames_hashed: int
    frames: tuple[FrameFeature, ...]  # kept features (quality >= floor, runs collapsed)
    poster_jpeg: bytes | None = None
    tmk: str | None = None  # TMK+PDQF (base64 of the .tmk file), when asked for

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the poster is left out: it is media, not a signal)."""
        return {
            "media_type": self.media_type,
            "format": self.format,
            "mime_type": self.mime_type,
            "codec": self.codec,
            "width": self.width,
            "height": self.height,
            "fps": round(self.fps, 3),
            "duration": self.duration,
            "bytes": self.size_bytes,
            "md5": self.md5,
            "sha256": self.sha256,
            "frames_decoded": self.frames_decoded,
            "frames_hashed": self.frames_hashed,
            "frames": [
                {
                    "frame_number": f.frame_number,
                    "timestamp": f.timestamp,
                    "pdq": f.pdq,
                    "quality": f.quality,
                }
                for f in self.frames
            ],
        }


def is_video(data: bytes) -> bool:
    """Whether ``data`` starts like a container this module accepts (magic bytes only)."""
    return sniff_container(data[:512]) is not None


def hash_image_upload(data: bytes, limits: ImageLimits | None = None) -> MediaSignals:
    """:func:`hash_image_bytes` for the paths that take an image or a video, once
    :func:`is_video` has said it is no video: a refusal of the file's type names the
    accepted video containers too, not only the image formats."""
    try:
        return hash_image_bytes(data, limits)
    except MediaUnsupportedType as exc:
        seen = str(exc.details.get("detected") or "data in an unrecognised format")
        if data[4:8] == b"ftyp":  # an ISO base media file that is no video: HEIF/AVIF
            seen = "a HEIF/AVIF image (not accepted)"
        raise MediaUnsupportedType(
            f"This file looks like {seen}; only {ACCEPTED_FORMATS_TEXT} images and "
            f"{ACCEPTED_CONTAINERS_TEXT} videos are accepted.",
            detected=seen,
        ) from None


def media_mime_type(data: bytes) -> str:
    """The MIME type of an accepted image or video, from its first bytes (the file has
    already been hashed, so it is one of them)."""
    container = sniff_container(data[:512])
    if container is not None:
        return container.mime_type
    return sniff_format(data).mime_type


def hash_video_bytes(
    data: bytes,
    limits: VideoLimits | None = None,
    sampling: VideoSampling | None = None,
    *,
    poster: bool = False,
    poster_blur: float = DEFAULT_POSTER_BLUR,
) -> VideoSignals:
    """Decode ``data`` safely (in a bounded child process) and compute its signals.

    Raises an :class:`takedown.errors.InvalidMedia` subclass for empty, oversized,
    unsupported, too long, too large, too slow or corrupt input.
    """
    limits = limits or DEFAULT_VIDEO_LIMITS
    sampling = sampling or DEFAULT_SAMPLING
    _check_bytes(len(data), limits)
    fmt = sniff_container(data[:512])
    if fmt is None:
        raise MediaUnsupportedType(
            f"This file is not a video in an accepted container ({ACCEPTED_CONTAINERS_TEXT}).",
            detected="data in an unrecognised format",
        )
    decoded: DecodedVideo = run_bounded(
        decode_and_hash,
        (data, fmt, limits, sampling, poster_blur if poster else None),
        limits.max_decode_seconds + KILL_GRACE_S,
    )
    return VideoSignals(
        media_type="video",
        format=decoded.format.name,
        mime_type=decoded.format.mime_type,
        codec=decoded.codec,
        width=decoded.width,
        height=decoded.height,
        fps=decoded.fps,
        duration=decoded.duration,
        size_bytes=len(data),
        md5=md5_hex(data),
        sha256=sha256_hex(data),
        frames_decoded=decoded.frames_decoded,
        frames_hashed=decoded.frames_hashed,
        frames=decoded.features,
        poster_jpeg=decoded.poster_jpeg,
        tmk=decoded.tmk,
    )


def hash_video_file(
    path: str | os.PathLike[str],
    limits: VideoLimits | None = None,
    sampling: VideoSampling | None = None,
) -> VideoSignals:
    """Hash the video at ``path``, reading at most ``max_bytes + 1`` bytes of it."""
    limits = limits or DEFAULT_VIDEO_LIMITS
    with open(path, "rb") as handle:
        data = handle.read(limits.max_bytes + 1)
    return hash_video_bytes(data, limits, sampling)


def render_poster(
    data: bytes, limits: VideoLimits | None = None, *, blur: float = DEFAULT_POSTER_BLUR
) -> bytes:
    """A JPEG (at most 640 px a side) of the video's most detailed sampled frame.

    "Most detailed" is the frame with the highest PDQ quality: never a black fade or a
    title card when there is a real picture. ``blur`` is a Gaussian radius in pixels,
    for review screens that show media blurred until a reviewer asks for more. The
    same limits and bounded decoding apply as for hashing.
    """
    signals = hash_video_bytes(data, limits, poster=True, poster_blur=blur)
    if signals.poster_jpeg is None:  # pragma: no cover - every decoded video has a frame
        raise RuntimeError("a decoded video produced no poster frame")
    return signals.poster_jpeg


def _check_bytes(size: int, limits: VideoLimits) -> None:
    if size == 0:
        raise MediaEmpty("The file is empty (0 bytes).")
    if size > limits.max_bytes:
        raise MediaTooLarge(
            f"The video exceeds the size limit of {limits.max_bytes:,} bytes.",
            max_bytes=limits.max_bytes,
        )
