"""Decode an untrusted video and hash one frame a second, as Meta's vPDQ does.

This module runs inside the decoding child process (``media/bounded.py``); the caller
uses :mod:`takedown.media.video`.

**Compatibility with vPDQ.** Video hash lists (vPDQ) are lists of frame features: frame
number, timestamp, PDQ hash and quality. vPDQ decodes every frame with FFmpeg and
hashes every ``int(seconds_per_hash * fps)``-th one (frame numbers counted in decoding
output order from 0; ``fps`` is the stream's average frame rate, else its real base
rate), converts it to RGB at the stream's declared size with swscale, and runs PDQ on
the *full-size* frame: unlike the image reference, vPDQ does **not** resize to
512 x 512 first. The timestamp is ``frame_number / fps``. We do the same with PyAV
(which carries its own FFmpeg), and the PDQ itself is the same code and hex convention
as images (:mod:`takedown.media.pdq_compute`, held to Meta's ``pdqhash`` by the
tests). ``bench/vpdq_compat.py`` checks the result against Meta's own ``vpdq``
package.

Then the frames are pruned as vPDQ's users (HMA, python-threatexchange) prune them:
frames below the quality floor are dropped and a run of identical consecutive hashes
(a still scene) is collapsed into its first frame.

**Distrust.** Checks run in order of cost:

1. the container is sniffed from magic bytes and must be MP4/MOV, Matroska/WebM, AVI or
   MPEG-TS; FFmpeg is then told to use only that demuxer (``format=``), so none of its
   other ~300 demuxers -- playlists and ``concat`` among them, which open further files
   or URLs -- ever sees the input. Input is always a Python file object, never a path
   FFmpeg would open through its protocol layer;
2. the first video stream's codec must be on an allow-list of common codecs;
3. declared width, height and duration are checked against the limits before any frame
   is decoded;
4. every decoded frame is checked again (resolution changes mid-stream, timestamps past
   the duration limit), and the wall-clock budget is checked per packet and frame;
5. anything FFmpeg reports about the data becomes :class:`MediaCorrupt`, and a stream
   that ends well before its declared duration is refused as truncated rather than
   hashed in part.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any, BinaryIO, Final

import numpy as np
from PIL import Image, ImageFilter

from takedown.errors import (
    MediaCorrupt,
    MediaTooManyPixels,
    MediaUnsupportedType,
    VideoDecodeTimeout,
    VideoNoStream,
    VideoTooLong,
)
from takedown.media.pdq_compute import pdq_dihedral, pdq_original
from takedown.media.tmk import TMK_FPS, TMK_SIDE, TmkAccumulator, tmk_available
from takedown.media.video_limits import VideoLimits, VideoSampling

ACCEPTED_CONTAINERS_TEXT: Final = "MP4/MOV, Matroska/WebM, AVI and MPEG-TS"

# Decoders we let near hostile input: the codecs real uploads use.
ACCEPTED_CODECS: Final = frozenset(
    {"h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "mpeg2video", "mpeg1video", "mjpeg"}
)

# ISO base media brands that are still images (HEIF/AVIF), not video.
_IMAGE_BRANDS: Final = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis", b"hevc", b"hevx"}
)
# QuickTime files may start with one of these atoms instead of ``ftyp``.
_MOV_ATOMS: Final = frozenset({b"moov", b"mdat", b"wide", b"free", b"skip"})

POSTER_SIDE: Final = 640
# A stream ending this much before its declared duration is taken as truncated.
_TRUNCATION_SLACK_S: Final = 1.5
_TRUNCATION_SHARE: Final = 0.9


@dataclass(frozen=True)
class ContainerFormat:
    name: str  # what we report
    demuxer: str  # the only FFmpeg demuxer allowed to parse it
    mime_type: str


MP4 = ContainerFormat("MP4", "mov", "video/mp4")
MATROSKA = ContainerFormat("MATROSKA", "matroska", "video/x-matroska")
AVI = ContainerFormat("AVI", "avi", "video/x-msvideo")
MPEG_TS = ContainerFormat("MPEG-TS", "mpegts", "video/mp2t")


def sniff_container(head: bytes) -> ContainerFormat | None:
    """The accepted container these first bytes start, or None (not a video we take)."""
    box = head[4:8]
    if box == b"ftyp":
        return None if head[8:12] in _IMAGE_BRANDS else MP4
    if box in _MOV_ATOMS:
        return MP4
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return MATROSKA
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return AVI
    if len(head) > 376 and head[0] == head[188] == head[376] == 0x47:
        return MPEG_TS
    return None


@dataclass(frozen=True)
class FrameFeature:
    """One hashed frame: vPDQ's feature."""

    frame_number: int
    timestamp: float  # seconds: frame_number / fps, vPDQ's convention
    pdq: str
    quality: int
    # The hashes of the frame's 7 other rotations/flips, in ``DIHEDRAL_NAMES`` order
    # after "original" (derived from the same DCT, ~0.05 ms): a mirrored or rotated
    # upload is searched in all 8 forms, as images are. Empty for frames read back from
    # storage or imported from an exchange.
    variants: tuple[str, ...] = ()
    # Timestamp (seconds) up to which this feature stands for the video: the end of the
    # sampling interval of the last frame of a collapsed still run. None: unknown.
    end: float | None = None
    # (share cut off every edge, PDQ of that centred window): banked videos only, see
    # ``VideoSampling.crop_windows``.
    windows: tuple[tuple[float, str], ...] = ()
    # PDQ of the picture inside black bars (letterbox, pillarbox) when the frame has them;
    # searched as one more variant of an upload, banked as one more window.
    unboxed: str | None = None


@dataclass(frozen=True)
class DecodedVideo:
    format: ContainerFormat
    codec: str
    width: int
    height: int
    fps: float
    duration: float  # seconds, from the decoded frames
    frames_decoded: int
    frames_hashed: int  # sampled and hashed, before pruning
    features: tuple[FrameFeature, ...]  # after pruning
    poster_jpeg: bytes | None
    tmk: str | None = None  # TMK+PDQF, base64 of the .tmk file (when asked for)


def decode_and_hash(
    data: bytes | str,
    fmt: ContainerFormat,
    limits: VideoLimits,
    sampling: VideoSampling,
    poster_blur: float | None,
) -> DecodedVideo:
    """Decode ``data`` (bytes, or a path we open ourselves) and compute its features.

    ``poster_blur``: None for no poster; else the Gaussian blur radius of the poster.
    Runs in the decoding child: every problem is raised as a TakedownError.
    """
    deadline = time.monotonic() + limits.max_decode_seconds
    handle: BinaryIO = io.BytesIO(data) if isinstance(data, bytes) else open(data, "rb")  # noqa: SIM115
    try:
        with _open(handle, fmt) as container:
            return _Hasher(container, fmt, limits, sampling, deadline, poster_blur).run()
    finally:
        handle.close()


def _open(handle: BinaryIO, fmt: ContainerFormat) -> Any:
    # PyAV is imported where it is used: this module's small types are imported by every
    # serving process, FFmpeg only ever runs in the decoding child, and loading it costs
    # ~22 MB of resident memory per process.
    import av

    try:
        return av.open(handle, mode="r", format=fmt.demuxer)
    except av.FFmpegError as exc:
        raise _corrupt(fmt, exc) from exc


def _corrupt(fmt: ContainerFormat, exc: BaseException | None = None, why: str = "") -> MediaCorrupt:
    message = why or f"The {fmt.name} file could not be decoded; it is truncated or corrupt."
    details: dict[str, Any] = {"format": fmt.name}
    if exc is not None:
        details["decoder_message"] = str(exc)[:200]
    return MediaCorrupt(message, **details)


class _Hasher:
    def __init__(
        self,
        container: Any,
        fmt: ContainerFormat,
        limits: VideoLimits,
        sampling: VideoSampling,
        deadline: float,
        poster_blur: float | None,
    ) -> None:
        self.container = container
        self.fmt = fmt
        self.limits = limits
        self.sampling = sampling
        self.deadline = deadline
        self.poster_blur = poster_blur
        self.best_poster: tuple[int, np.ndarray] | None = None

    def run(self) -> DecodedVideo:
        import av  # see _open

        stream = self._video_stream()
        codec = stream.codec_context.name
        if codec not in ACCEPTED_CODECS:
            raise MediaUnsupportedType(
                f"The video codec {codec!r} is not accepted; accepted codecs: "
                f"{', '.join(sorted(ACCEPTED_CODECS))}.",
                detected=codec,
            )
        width, height = stream.codec_context.width, stream.codec_context.height
        _check_size(width, height, self.limits)
        self._check_declared_duration(stream)
        fps = _frame_rate(stream)
        if fps is None:
            raise _corrupt(self.fmt, why="The video stream declares no frame rate.")
        frame_mod = max(1, int(self.sampling.seconds_per_hash * fps))
        tmk = _tmk_accumulator() if self.sampling.tmk else None
        tmk_next = 0  # the next 15-a-second instant TMK needs a frame for
        stream.thread_type = "AUTO"
        hashed: list[FrameFeature] = []
        decoded = 0
        last_time = 0.0
        try:
            for packet in self.container.demux(stream):
                self._check_deadline()
                for frame in packet.decode():
                    self._check_deadline()
                    number = decoded
                    decoded += 1
                    timestamp = number / fps
                    if frame.time is not None:
                        last_time = max(last_time, float(frame.time))
                    if max(timestamp, last_time) > self.limits.max_seconds:
                        raise _too_long(self.limits)
                    if tmk is not None:  # ``ffmpeg -r 15``: the latest frame at each instant
                        while tmk_next / TMK_FPS < (number + 1) / fps - 1e-9:
                            tmk.add(frame.to_ndarray(**_TMK_FRAME))
                            tmk_next += 1
                    if number % frame_mod:
                        continue
                    _check_size(frame.width, frame.height, self.limits)
                    hashed.append(self._hash(frame, number, timestamp, width, height))
        except av.FFmpegError as exc:
            raise _corrupt(self.fmt, exc) from exc
        if not decoded:
            raise _corrupt(self.fmt, why=f"The {self.fmt.name} file holds no decodable frames.")
        duration = max(last_time, (decoded - 1) / fps) + 1 / fps
        self._check_truncation(stream, duration)
        return DecodedVideo(
            format=self.fmt,
            codec=codec,
            width=width,
            height=height,
            fps=fps,
            duration=round(duration, 3),
            frames_decoded=decoded,
            frames_hashed=len(hashed),
            features=prune(hashed, self.sampling.quality_floor, frame_mod / fps, duration),
            poster_jpeg=self._poster(),
            tmk=_tmk_text(tmk),
        )

    def _video_stream(self) -> Any:
        streams = self.container.streams.video
        if not streams:
            raise VideoNoStream(
                f"The {self.fmt.name} file holds no video stream.", format=self.fmt.name
            )
        return streams[0]

    def _check_deadline(self) -> None:
        if time.monotonic() > self.deadline:
            raise VideoDecodeTimeout(
                f"Decoding took longer than {self.limits.max_decode_seconds:g} s and was stopped.",
                limit_seconds=self.limits.max_decode_seconds,
            )

    def _check_declared_duration(self, stream: Any) -> None:
        declared = _declared_duration(self.container, stream)
        if declared is not None and declared > self.limits.max_seconds:
            raise _too_long(self.limits, declared)

    def _check_truncation(self, stream: Any, decoded_duration: float) -> None:
        declared = _declared_duration(self.container, stream)
        if declared is None:
            return
        if decoded_duration + _TRUNCATION_SLACK_S < declared * _TRUNCATION_SHARE:
            raise _corrupt(
                self.fmt,
                why=f"The {self.fmt.name} file declares {declared:.1f} s of video but its "
                f"stream ends after {decoded_duration:.1f} s; it is truncated or corrupt.",
            )

    def _hash(self, frame: Any, number: int, timestamp: float, w: int, h: int) -> FrameFeature:
        # vPDQ converts every frame to RGB24 at the stream's declared size.
        rgb = frame.to_ndarray(format="rgb24", width=w, height=h)
        hexes, quality = pdq_dihedral(rgb)
        pdq = hexes[0]
        windows = tuple((c, pdq_original(_centre(rgb, c))[0]) for c in self.sampling.crop_windows)
        inner = _inside_bars(rgb)
        unboxed = pdq_original(inner)[0] if inner is not None else None
        if self.poster_blur is not None and (
            self.best_poster is None or quality > self.best_poster[0]
        ):
            self.best_poster = (int(quality), _shrink(rgb))
        return FrameFeature(
            number,
            round(timestamp, 3),
            pdq,
            quality,
            tuple(hexes[1:]),
            windows=windows,
            unboxed=unboxed,
        )

    def _poster(self) -> bytes | None:
        if self.poster_blur is None or self.best_poster is None:
            return None
        image = Image.fromarray(self.best_poster[1])
        if self.poster_blur > 0:
            image = image.filter(ImageFilter.GaussianBlur(self.poster_blur))
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=85)
        return out.getvalue()


def prune(
    features: list[FrameFeature],
    quality_floor: int,
    interval: float | None = None,
    duration: float | None = None,
) -> tuple[FrameFeature, ...]:
    """Drop frames below the quality floor, then collapse runs of identical hashes.

    With ``interval`` (seconds between sampled frames), each kept feature's ``end`` says
    how far it stands for the video: the end of the interval of the last frame of its
    collapsed run -- so a still title card hashed once still covers its whole span --
    and never past the video's ``duration`` (the last frame of an 8.5 s video stands
    for half a second, not a whole one)."""

    def end_of(feature: FrameFeature) -> float | None:
        if interval is None:
            return None
        end = feature.timestamp + interval
        return round(min(end, duration) if duration is not None else end, 3)

    kept: list[FrameFeature] = []
    for feature in features:
        if feature.quality < quality_floor:
            continue
        if kept and kept[-1].pdq == feature.pdq:
            if interval is not None:
                kept[-1] = replace(kept[-1], end=end_of(feature))
            continue
        if interval is not None:
            feature = replace(feature, end=end_of(feature))
        kept.append(feature)
    return tuple(kept)


_TMK_FRAME: Final = {
    "format": "rgb24",
    "width": TMK_SIDE,
    "height": TMK_SIDE,
    "interpolation": "BICUBIC",  # ffmpeg's default scaler, which TMK's tools use
}


def _tmk_accumulator() -> TmkAccumulator | None:
    return TmkAccumulator() if tmk_available() else None


def _tmk_text(tmk: TmkAccumulator | None) -> str | None:
    vectors = tmk.finish() if tmk is not None else None
    return vectors.to_text() if vectors is not None else None


_BAR_LUMA: Final = 24  # a bar's rows or columns are darker than this throughout ...
_MIN_BAR_SHARE: Final = 0.04  # ... and together at least this share of the side


def _inside_bars(rgb: np.ndarray) -> np.ndarray | None:
    """The picture inside black bars (top and bottom, or left and right), or None when
    the frame has none: a letterboxed or pillarboxed copy hashes like the picture."""
    # The brightest channel of each pixel. np.maximum over the three channel planes:
    # ``rgb.max(axis=2)`` reduces along the short last axis, ~15x slower (~35 ms a
    # 640 x 360 frame, more than the frame's PDQ).
    grey = np.maximum(np.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])
    h, w = grey.shape
    rows = np.flatnonzero(grey.max(axis=1) >= _BAR_LUMA)
    cols = np.flatnonzero(grey.max(axis=0) >= _BAR_LUMA)
    if not len(rows) or not len(cols):
        return None  # a black frame
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    if (h - (bottom - top)) < _MIN_BAR_SHARE * h and (w - (right - left)) < _MIN_BAR_SHARE * w:
        return None
    if bottom - top < h // 4 or right - left < w // 4:
        return None  # mostly dark: no picture to speak of
    return np.ascontiguousarray(rgb[top:bottom, left:right])


def _centre(rgb: np.ndarray, cut: float) -> np.ndarray:
    """The centred window of ``rgb`` with ``cut`` (a share) taken off every edge."""
    h, w = rgb.shape[:2]
    y, x = int(h * cut), int(w * cut)
    return np.ascontiguousarray(rgb[y : h - y, x : w - x])


def _shrink(rgb: np.ndarray) -> np.ndarray:
    image = Image.fromarray(rgb)
    image.thumbnail((POSTER_SIDE, POSTER_SIDE))
    return np.asarray(image)


def _check_size(width: int, height: int, limits: VideoLimits) -> None:
    if width < 1 or height < 1:
        raise MediaCorrupt(f"The video declares an empty frame size of {width} x {height}.")
    if max(width, height) > limits.max_side or width * height > limits.max_pixels:
        raise MediaTooManyPixels(
            f"The video's frames are {width:,} x {height:,} pixels; the limits are "
            f"{limits.max_pixels:,} pixels and {limits.max_side:,} px per side.",
            width=width,
            height=height,
            max_pixels=limits.max_pixels,
            max_side=limits.max_side,
        )


def _too_long(limits: VideoLimits, declared: float | None = None) -> VideoTooLong:
    said = f"declares {declared:,.0f} s" if declared is not None else "runs longer than that"
    return VideoTooLong(
        f"Videos are accepted up to {limits.max_seconds:,} s; this one {said}.",
        max_seconds=limits.max_seconds,
    )


def _frame_rate(stream: Any) -> float | None:
    """vPDQ's choice: the average frame rate, else the real base rate."""
    for rate in (stream.average_rate, stream.base_rate):
        if rate and Fraction(rate) > 0:
            return float(rate)
    return None


def _declared_duration(container: Any, stream: Any) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        import av  # see _open

        return float(container.duration) / av.time_base
    return None
