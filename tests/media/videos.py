"""Stand-in videos for the tests and benchmarks, made with PyAV from benign photos.

Each scene is a window panning and zooming slowly across one stand-in photo (the
astronaut, the cat, the coffee cup...), so consecutive seconds differ a little and
scenes differ a lot -- the structure of real footage. Nothing is downloaded; nothing
real is ever used. Re-encoding, rescaling, cropping and clipping work on decoded
frames, as a re-upload through another app would.
"""

from __future__ import annotations

import functools
import io
import re
import struct
from collections.abc import Iterator, Sequence

import av
import numpy as np

from tests.media.standins import load_rgb, stand_in

SCENES_A = ("astronaut", "chelsea", "coffee", "motorcycle_right")
SCENES_B = ("china", "grace_hopper", "hubble_deep_field", "coins")


@functools.lru_cache(maxsize=32)
def _photo(name: str) -> np.ndarray:
    return load_rgb(stand_in(name))


def scene_frames(
    scenes: Sequence[str], seconds_per_scene: float, fps: int, size: tuple[int, int]
) -> Iterator[np.ndarray]:
    """RGB frames: per scene, a window gliding and zooming across the photo."""
    width, height = size
    per_scene = round(seconds_per_scene * fps)
    for name in scenes:
        photo = _photo(name)
        ph, pw = photo.shape[:2]
        for i in range(per_scene):
            t = i / max(1, per_scene - 1)
            crop_w = int(pw * (0.75 - 0.15 * t))
            crop_h = min(ph, int(crop_w * height / width))
            x = int((pw - crop_w) * t)
            y = int((ph - crop_h) * (0.5 - 0.3 * t))
            window = np.ascontiguousarray(photo[y : y + crop_h, x : x + crop_w])
            frame = av.VideoFrame.from_ndarray(window, format="rgb24")
            yield frame.reformat(width=width, height=height).to_ndarray(format="rgb24")


def encode_video(
    frames: Iterator[np.ndarray] | Sequence[np.ndarray],
    fps: int,
    *,
    codec: str = "libx264",
    container: str = "mp4",
    bit_rate: int | None = None,
    crf: int | None = None,
) -> bytes:
    """Encode RGB frames into a container, in memory."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        stream = out.add_stream(codec, rate=fps)
        first = True
        for pixels in frames:
            if first:
                stream.height, stream.width = pixels.shape[:2]
                stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
                if bit_rate:
                    stream.bit_rate = bit_rate
                if crf is not None:
                    stream.options = {"crf": str(crf)}
                first = False
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buffer.getvalue()


def decode_frames(data: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(data)) as source:
        return [f.to_ndarray(format="rgb24") for f in source.decode(video=0)]


def make_video(
    scenes: Sequence[str] = SCENES_A,
    seconds_per_scene: float = 2.0,
    fps: int = 10,
    size: tuple[int, int] = (320, 240),
    **encode_options: object,
) -> bytes:
    """A stand-in video: ``len(scenes) * seconds_per_scene`` seconds."""
    return encode_video(
        scene_frames(scenes, seconds_per_scene, fps, size),
        fps,
        **encode_options,  # type: ignore[arg-type]
    )


def transcode(
    data: bytes,
    *,
    size: tuple[int, int] | None = None,
    crop: int = 0,
    fps: int | None = None,
    start_s: float = 0.0,
    end_s: float | None = None,
    bit_rate: int | None = None,
    crf: int | None = None,
    codec: str = "libx264",
    container: str = "mp4",
    flip: bool = False,
) -> bytes:
    """Re-encode a video: another size, ``crop`` pixels off every edge, a clip of it,
    mirrored left to right (``flip``)."""
    with av.open(io.BytesIO(data)) as source:
        stream = source.streams.video[0]
        source_fps = int(round(float(stream.average_rate)))
        frames: list[np.ndarray] = []
        for index, frame in enumerate(source.decode(stream)):
            t = index / source_fps
            if t < start_s or (end_s is not None and t >= end_s):
                continue
            pixels = frame.to_ndarray(format="rgb24")
            if crop:
                pixels = np.ascontiguousarray(pixels[crop:-crop, crop:-crop])
            if flip:
                pixels = np.ascontiguousarray(pixels[:, ::-1])
            if size:
                pixels = (
                    av.VideoFrame.from_ndarray(pixels, format="rgb24")
                    .reformat(width=size[0], height=size[1])
                    .to_ndarray(format="rgb24")
                )
            frames.append(pixels)
    step = 1 if fps is None else max(1, round(source_fps / fps))
    return encode_video(
        frames[::step],
        source_fps // step,
        codec=codec,
        container=container,
        bit_rate=bit_rate,
        crf=crf,
    )


@functools.lru_cache(maxsize=8)
def banked_video() -> bytes:
    """8 s, four scenes, 320 x 240 at 10 fps: the video the matching tests bank."""
    return make_video(SCENES_A)


@functools.lru_cache(maxsize=8)
def other_video() -> bytes:
    """A different 8 s stand-in video (other photos)."""
    return make_video(SCENES_B)


def huge_declared_video(width: int = 16_000, height: int = 10_000) -> bytes:
    """A tiny MJPEG-in-AVI whose headers (container and every JPEG frame) declare a
    huge frame size: a decoder that trusted them would allocate gigabytes."""
    frames = list(scene_frames(SCENES_A[:1], 1, 4, (32, 32)))
    data = bytearray(encode_video(frames, 4, codec="mjpeg", container="avi"))
    at = data.find(b"strf")  # BITMAPINFOHEADER: size, then width and height
    struct.pack_into("<ii", data, at + 12, width, height)
    at = data.find(b"avih")  # main AVI header: width and height at bytes 32 and 36
    struct.pack_into("<II", data, at + 8 + 32, width, height)
    for sof in re.finditer(b"\xff\xc0\x00\x11\x08", bytes(data)):  # JPEG start of frame
        struct.pack_into(">HH", data, sof.start() + 5, height, width)
    return bytes(data)


def audio_only() -> bytes:
    """A Matroska file with one second of silence and no video stream."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="matroska") as out:
        stream = out.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 8000), dtype=np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)
    return buffer.getvalue()


@functools.lru_cache(maxsize=2)
def slow_video() -> bytes:
    """16 s, two slow scenes, 160 x 120 at 10 fps: footage whose half-second-off clips
    the dense banked sampling must find (frames a tenth of a second apart differ by
    4-26 bits, half a second apart by 30-110)."""
    return make_video(("astronaut", "coffee"), 8.0, fps=10, size=(160, 120))
