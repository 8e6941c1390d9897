"""The video rule: shares of matched frames, copy / contains / clip, time ranges."""

from __future__ import annotations

import pytest

from takedown.domain.video import (
    Frame,
    FramePair,
    TimeRange,
    VideoRule,
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
    assert m.upload_ranges == m.banked_ranges == (TimeRange(0.0, 9.0),)


def test_a_clip_of_a_longer_banked_video_is_found_with_its_time_ranges():
    # 4 s cut from seconds 20..23 of a 60 s banked video.
    m = video_match(VideoRule(), timeline(4), timeline(60), diagonal(0, 20, 4))
    assert m is not None and m.kind == "clip"
    assert m.upload_percent == 100.0 and m.banked_percent == pytest.approx(6.7)
    assert m.banked_ranges == (TimeRange(20.0, 23.0),)
    assert m.upload_ranges == (TimeRange(0.0, 3.0),)


def test_an_upload_that_contains_the_banked_video_and_more():
    m = video_match(VideoRule(), timeline(30), timeline(10), diagonal(12, 0, 10))
    assert m is not None and m.kind == "contains"
    assert m.upload_ranges == (TimeRange(12.0, 21.0),)


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


def test_gaps_split_time_ranges():
    assert time_ranges([0, 1, 2, 5, 6, 30], max_gap=2.0) == (
        TimeRange(0, 2),
        TimeRange(5, 6),
        TimeRange(30, 30),
    )


def test_no_pairs_or_no_usable_frames_is_no_match():
    assert video_match(VideoRule(), timeline(5), timeline(5), []) is None
    assert video_match(VideoRule(), timeline(5, quality=10), timeline(5), diagonal(0, 0, 5)) is None


def test_the_match_percent_is_validated():
    assert validate_match_percent(80) == 80
    for bad in (0, 101):
        with pytest.raises(InvalidRequest) as exc:
            validate_match_percent(bad)
        assert exc.value.code == "invalid_video_match_percent"
