"""Video signals: vPDQ's features from stand-in videos, copies that stay close, and
hostile files refused with their codes."""

from __future__ import annotations

import hashlib
import io
import os
import time

import pytest
from PIL import Image

from takedown.errors import (
    InvalidMedia,
    MediaCorrupt,
    MediaEmpty,
    MediaTooLarge,
    MediaTooManyPixels,
    MediaUnsupportedType,
    VideoDecodeTimeout,
    VideoNoStream,
    VideoTooLong,
)
from takedown.media.bounded import run_bounded
from takedown.media.video import hash_video_bytes, hash_video_file, is_video, render_poster
from takedown.media.video_limits import VideoLimits, VideoSampling
from takedown.signals import pdq_distance
from tests.media.videos import (
    audio_only,
    banked_video,
    encode_video,
    huge_declared_video,
    make_video,
    other_video,
    scene_frames,
    transcode,
)


def test_one_hash_per_second_with_frame_number_timestamp_and_quality():
    data = banked_video()  # 8 s at 10 fps
    v = hash_video_bytes(data)
    assert (v.media_type, v.format, v.codec, v.width, v.height) == (
        "video",
        "MP4",
        "h264",
        320,
        240,
    )
    assert v.fps == 10 and v.duration == 8.0 and v.frames_decoded == 80
    assert [f.frame_number for f in v.frames] == list(range(0, 80, 10))
    assert [f.timestamp for f in v.frames] == [float(t) for t in range(8)]
    assert all(f.quality >= 50 and len(f.pdq) == 64 for f in v.frames)
    assert v.md5 == hashlib.md5(data).hexdigest()
    assert v.sha256 == hashlib.sha256(data).hexdigest()


def test_sampling_is_configurable():
    v = hash_video_bytes(banked_video(), sampling=VideoSampling(seconds_per_hash=0.5))
    assert [f.frame_number for f in v.frames] == list(range(0, 80, 5))


def test_low_quality_frames_are_dropped_and_still_scenes_collapsed(tmp_path):
    import numpy as np

    frames = list(scene_frames(["astronaut"], 2, 10, (160, 120)))
    still = [frames[0]] * 30  # three seconds of the same picture
    black = [np.zeros((120, 160, 3), dtype=np.uint8)] * 20  # two seconds of black
    data = encode_video([*frames, *still, *black], 10, codec="mjpeg", container="avi")
    v = hash_video_bytes(data)
    assert v.frames_hashed == 7
    # The black seconds are gone; the still seconds are one feature.
    assert [f.timestamp for f in v.frames] == [0.0, 1.0, 2.0]
    # Each feature stands for its second; the still one for its whole run (2..5 s).
    assert [f.end for f in v.frames] == [1.0, 2.0, 5.0]
    assert all(len(f.variants) == 7 for f in v.frames)  # its rotations and flips
    path = tmp_path / "v.avi"
    path.write_bytes(data)
    assert hash_video_file(path).frames == v.frames


@pytest.mark.parametrize(
    "copy",
    [
        {"size": (256, 192), "crf": 35},  # rescaled and re-encoded at a low bitrate
        {"crop": 3},  # a few pixels cropped off every edge
        {"container": "matroska", "codec": "mpeg4", "bit_rate": 300_000},
    ],
    ids=["rescaled-reencoded", "cropped", "mpeg4-matroska"],
)
def test_copies_stay_within_the_frame_threshold(copy):
    banked = hash_video_bytes(banked_video()).frames
    frames = hash_video_bytes(transcode(banked_video(), **copy)).frames
    assert len(frames) == len(banked)
    for b, f in zip(banked, frames, strict=True):
        assert b.timestamp == f.timestamp
        assert pdq_distance(b.pdq, f.pdq) <= 31


def test_a_different_video_is_far_from_every_frame():
    banked = hash_video_bytes(banked_video()).frames
    other = hash_video_bytes(other_video()).frames
    assert min(pdq_distance(a.pdq, b.pdq) for a in banked for b in other) > 64


def test_a_poster_is_a_small_jpeg_of_a_detailed_frame():
    poster = render_poster(banked_video())
    blurred = render_poster(banked_video(), blur=6)
    for jpeg in (poster, blurred):
        with Image.open(io.BytesIO(jpeg)) as img:
            assert img.format == "JPEG" and img.size == (320, 240)
    assert len(blurred) < len(poster)  # blur removes detail


def test_video_containers_are_recognised_by_their_bytes():
    assert is_video(banked_video())
    assert not is_video(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 100)  # a HEIF photo
    assert not is_video(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)


# -- hostile input -----------------------------------------------------------------------
def _refused(data: bytes, kind: type[InvalidMedia], code: str, **limits: object) -> InvalidMedia:
    with pytest.raises(kind) as exc:
        hash_video_bytes(data, VideoLimits(**limits) if limits else None)  # type: ignore[arg-type]
    assert exc.value.code == code and exc.value.message
    return exc.value


def test_zero_length_and_oversized_files_are_refused():
    _refused(b"", MediaEmpty, "media_empty")
    _refused(banked_video(), MediaTooLarge, "media_too_large", max_bytes=1000)


def test_garbage_in_a_video_wrapper_is_corrupt():
    _refused(b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 40, MediaCorrupt, "media_corrupt")
    _refused(b"not a video at all", MediaUnsupportedType, "media_unsupported_type")


def test_truncated_videos_are_refused_not_hashed_in_part():
    mp4 = banked_video()
    _refused(mp4[: len(mp4) // 2], MediaCorrupt, "media_corrupt")
    mkv = make_video(size=(160, 120), container="matroska")
    error = _refused(mkv[: len(mkv) // 2], MediaCorrupt, "media_corrupt")
    assert "truncated" in error.message


def test_huge_declared_dimensions_are_refused_before_decoding():
    error = _refused(huge_declared_video(), MediaTooManyPixels, "media_too_many_pixels")
    assert error.details["width"] == 16_000
    _refused(banked_video(), MediaTooManyPixels, "media_too_many_pixels", max_pixels=10_000)


def test_no_video_stream_and_unaccepted_codecs():
    _refused(audio_only(), VideoNoStream, "video_no_stream")
    frames = list(scene_frames(["chelsea"], 1, 4, (32, 32)))
    ffv1 = encode_video(frames, 4, codec="ffv1", container="matroska")
    error = _refused(ffv1, MediaUnsupportedType, "media_unsupported_type")
    assert error.details["detected"] == "ffv1"


def test_too_long_and_too_slow_videos_are_refused():
    _refused(banked_video(), VideoTooLong, "video_too_long", max_seconds=3)
    _refused(banked_video(), VideoDecodeTimeout, "video_decode_timeout", max_decode_seconds=0.001)


def test_a_hung_decoder_is_killed_at_the_deadline():
    # Stopped, not waited for: an hour's hang ends far sooner (a child starting on a
    # loaded machine can take seconds, so no tighter bound than "not the hour").
    started = time.monotonic()
    with pytest.raises(VideoDecodeTimeout) as exc:
        run_bounded(time.sleep, (3600,), 0.5)
    assert time.monotonic() - started < 1800
    assert exc.value.code == "video_decode_timeout"


def test_a_crashing_decoder_is_a_refused_file_not_a_dead_server():
    with pytest.raises(MediaCorrupt) as exc:
        run_bounded(os.abort, (), 30)
    assert exc.value.details["exit_code"] != 0


def test_the_picture_inside_black_bars_is_found():
    import numpy as np

    from takedown.media.video_decode import _inside_bars

    picture = np.full((90, 160, 3), 120, dtype=np.uint8)
    boxed = np.zeros((120, 160, 3), dtype=np.uint8)
    boxed[15:105] = picture  # letterboxed: bars above and below
    inner = _inside_bars(boxed)
    assert inner is not None and inner.shape == (90, 160, 3)
    assert _inside_bars(picture) is None  # no bars
    assert _inside_bars(np.zeros((120, 160, 3), dtype=np.uint8)) is None  # a black frame
