"""The video rule: shares of matched frames, copy / contains / clip, time ranges."""

from __future__ import annotations

import pytest

from takedown.domain.video import (
    Frame,
    FramePair,
    TimeRange,
    VideoRule,
    estimate_interval,
    time_ranges,
    validate_match_percent,
    video_match,
)
from takedown.errors import InvalidRequest


def timeline(seconds: int, quality: int = 90, start_key: int = 0) -> list[Frame]:
    return [Frame(start_key + t, float(t), quality) for t in range(seconds)]


def diagonal(upload_from: int, banked_from: int, n: int, d: int = 10) -> list[FramePair]:
    return [FramePair(upload_from + i, banked_from + i, d) for i in range(n)]


def test_a_full_copy_matches_as_a_copy():
    m = video_match(VideoRule(), timeline(10), timeline(10), diagonal(0, 0, 10))
    assert m is not None and m.kind == "copy"
    assert m.banked_percent == m.upload_percent == 100.0 and m.distance == 10
    assert m.upload_ranges == m.banked_ranges == (TimeRange(0.0, 10.0),)  # 10 one-second spans
    assert m.threshold == 31 and m.match_percent == 80 and m.upload_frames == 10


def test_a_clip_of_a_longer_banked_video_is_found_with_its_time_ranges():
    # 4 s cut from seconds 20..23 of a 60 s banked video.
    m = video_match(VideoRule(), timeline(4), timeline(60), diagonal(0, 20, 4))
    assert m is not None and m.kind == "clip"
    assert m.upload_percent == 100.0 and m.banked_percent == pytest.approx(6.7)
    assert m.banked_ranges == (TimeRange(20.0, 24.0),)
    assert m.upload_ranges == (TimeRange(0.0, 4.0),)


def test_an_upload_that_contains_the_banked_video_and_more():
    m = video_match(VideoRule(), timeline(30), timeline(10), diagonal(12, 0, 10))
    assert m is not None and m.kind == "contains"
    assert m.upload_ranges == (TimeRange(12.0, 22.0),)


def test_below_the_share_is_no_match_and_the_share_is_configurable():
    pairs = diagonal(0, 0, 7)  # 7 of 10 frames both ways
    assert video_match(VideoRule(), timeline(10), timeline(10), pairs) is None
    m = video_match(VideoRule(match_percent=70), timeline(10), timeline(10), pairs)
    assert m is not None and m.kind == "copy"


def test_frames_beyond_the_threshold_do_not_count_and_the_threshold_is_configurable():
    pairs = diagonal(0, 0, 10, d=40)
    assert video_match(VideoRule(), timeline(10), timeline(10), pairs) is None
    assert video_match(VideoRule(frame_threshold=40), timeline(10), timeline(10), pairs)


def test_low_quality_frames_count_on_neither_side():
    banked = timeline(8) + [Frame(100 + t, 8.0 + t, 20) for t in range(4)]  # a dark ending
    m = video_match(VideoRule(), timeline(8), banked, diagonal(0, 0, 8))
    assert m is not None and m.banked_percent == 100.0


def test_unmatched_frames_split_time_ranges_and_spans_touching_merge():
    spans = [(0, 1), (1, 2), (2, 3), (5, 6), (6, 7), (30, 31)]
    assert time_ranges(spans) == (TimeRange(0, 3), TimeRange(5, 7), TimeRange(30, 31))


def test_one_matched_frame_spans_its_sampling_interval():
    m = video_match(VideoRule(match_percent=10), timeline(5), timeline(5), diagonal(2, 2, 1))
    assert m is not None and m.upload_ranges == (TimeRange(2.0, 3.0),)
    assert m.upload_matched == 1 and m.upload_percent == 20.0


def test_a_collapsed_still_run_covers_its_whole_span():
    # A title card over seconds 0..3 hashed once (a run collapsed into its first frame).
    banked = [Frame(0, 0.0, 90, end=4.0)] + [Frame(t, float(t), 90) for t in range(4, 10)]
    upload = [Frame(0, 0.0, 90, end=4.0)] + [Frame(t, float(t), 90) for t in range(4, 10)]
    pairs = [FramePair(0, 0, 0)] + [FramePair(t, t, 5) for t in range(4, 10)]
    m = video_match(VideoRule(), upload, banked, pairs)
    assert m is not None and m.banked_ranges == m.upload_ranges == (TimeRange(0.0, 10.0),)


def test_densely_banked_video_is_judged_in_windows_of_the_upload_interval():
    # Banked at 4 frames a second, the upload at 1: each upload frame can only match
    # one banked frame in four; the banked share counts one-second windows.
    banked = [Frame(i, i / 4, 90) for i in range(40)]
    upload = [Frame(i, float(i), 90) for i in range(10)]
    pairs = [FramePair(i, 4 * i + 2, 8) for i in range(10)]  # the clip is half a second off
    m = video_match(VideoRule(), upload, banked, pairs, banked_interval=0.25)
    assert m is not None and m.kind == "copy" and m.banked_percent == 100.0
    # From the first match to the end of the banked video: the last matched banked frame
    # (9.5 s) stands for as much as the upload frame that matched it, the video's last
    # half second.
    assert m.banked_ranges == (TimeRange(0.5, 10.0),)
    # At equal intervals the share is vPDQ's own: matched frames over frames.
    sparse = video_match(
        VideoRule(), upload, banked[::4], [FramePair(i, 4 * i, 8) for i in range(8)]
    )
    assert sparse is not None and sparse.banked_percent == 80.0


def test_estimated_interval_is_the_smallest_gap():
    assert estimate_interval([0.0, 0.25, 0.5, 2.0]) == 0.25
    assert estimate_interval([3.0]) == 1.0


def test_no_pairs_or_no_usable_frames_is_no_match():
    assert video_match(VideoRule(), timeline(5), timeline(5), []) is None
    assert video_match(VideoRule(), timeline(5, quality=10), timeline(5), diagonal(0, 0, 5)) is None


def test_the_match_percent_is_validated():
    assert validate_match_percent(80) == 80
    for bad in (0, 101):
        with pytest.raises(InvalidRequest) as exc:
            validate_match_percent(bad)
        assert exc.value.code == "invalid_video_match_percent"


def test_a_densely_banked_clip_reads_as_long_on_both_timelines():
    # One upload frame (a 1 s clip) matched a banked frame sampled every 0.25 s: the
    # banked range is the second the upload frame stands for, not a quarter of it.
    banked = [Frame(i, i / 4, 90) for i in range(80)]
    m = video_match(
        VideoRule(),
        [Frame(0, 0.0, 90, end=1.0)],
        banked,
        [FramePair(0, 42, 6)],
        banked_interval=0.25,
    )
    assert m is not None and m.upload_ranges == (TimeRange(0.0, 1.0),)
    assert m.banked_ranges == (TimeRange(10.5, 11.5),)
    # An upload frame standing for less (the clip's last half second) reaches no further.
    m = video_match(
        VideoRule(),
        [Frame(0, 0.0, 90, end=0.5)],
        banked,
        [FramePair(0, 42, 6)],
        banked_interval=0.25,
    )
    assert m is not None and m.banked_ranges == (TimeRange(10.5, 11.0),)
    # A still run of the upload (4 s of one picture) says nothing more of the banked
    # timeline than one sampling interval.
    m = video_match(
        VideoRule(),
        [Frame(0, 0.0, 90, end=4.0)],
        banked,
        [FramePair(0, 42, 6)],
        banked_interval=0.25,
    )
    assert m is not None and m.banked_ranges == (TimeRange(10.5, 11.5),)
