"""The pure rules behind the compliance figures and the clocks set by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from takedown.domain import transparency as tr
from takedown.domain.clocks import check_between, check_new_time
from takedown.errors import InvalidRequest

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("topic", "reason", "how"),
    [
        ("item.restrict", "restrict_first", "fully"),
        ("item.restrict", "hash_match", "fully"),
        ("item.restrict", "copy_of_restricted_content", "fully"),
        ("item.demonetize", "under_review", "fully"),
        ("item.remove", "copy_of_confirmed_violation", "fully"),
        ("account.suspend", "copy_of_confirmed_violation", "fully"),
        ("item.remove", "confirmed_violation", "not_automated"),
        ("item.restore", "no_violation", "not_automated"),
        ("item.restore", "appeal_upheld", "not_automated"),
        ("account.warn", "confirmed_violation", "partially"),
        ("account.terminate", None, "partially"),  # actions written before reasons
        ("account.reinstate", None, "not_automated"),
    ],
)
def test_how_automated_each_measure_is(topic: str, reason: str | None, how: str):
    assert tr.automation(topic, reason) == how


def test_the_48_hours_are_judged_on_removal():
    now = T0 + timedelta(hours=60)
    assert not tr.past_48_hours(T0, T0 + timedelta(hours=48), now)
    assert tr.past_48_hours(T0, T0 + timedelta(hours=48, seconds=1), now)
    assert tr.past_48_hours(T0, None, now)  # not removed, 60 hours on
    assert not tr.past_48_hours(T0, None, T0 + timedelta(hours=47))
    assert tr.time_to(T0, T0 - timedelta(hours=3)) == timedelta(0)  # removed before
    assert tr.time_to(T0, None) is None


def test_why_a_request_was_late():
    def why(**facts: object) -> str:
        base: dict[str, object] = {
            "copies_found": 1,
            "from_limited_reporter": False,
            "outcome": None,
            "hidden": False,
            "removed": False,
        }
        return tr.late_reason(**{**base, **facts})  # type: ignore[arg-type]

    assert "not found" in why(copies_found=0)
    assert "not to be non-consensual" in why(outcome="no_violation")
    assert why(removed=True, hidden=True).startswith("Removed after 48 hours")
    assert "hidden from the public before" in why(removed=True, hidden=True)
    assert "limited for misuse" in why(from_limited_reporter=True)
    assert "not removed within 48 hours" in why(hidden=True)
    assert "still public" in why()


def test_a_clock_moves_back_only_with_a_zone():
    check_new_time(T0, T0)
    with pytest.raises(InvalidRequest) as err:
        check_new_time(T0.replace(tzinfo=None), T0 + timedelta(days=1))
    assert err.value.code == "invalid_time"
    with pytest.raises(InvalidRequest) as err:
        check_new_time(T0 + timedelta(seconds=1), T0)
    assert err.value.code == "invalid_time"
    for far in (T0 - timedelta(days=5 * 366 + 1), datetime.min.replace(tzinfo=UTC)):
        with pytest.raises(InvalidRequest) as err:
            check_new_time(far, T0)
        assert err.value.code == "invalid_time"
    zoned = datetime(2026, 5, 1, 11, 0, tzinfo=timezone(timedelta(hours=2)))
    assert check_new_time(zoned, T0) == T0 and check_new_time(zoned, T0).tzinfo is UTC
    check_between(T0, T0, T0, "decision")
    check_between(T0, None, None, "decision")
    for earliest, latest in ((T0 + timedelta(1), None), (None, T0 - timedelta(1))):
        with pytest.raises(InvalidRequest) as err:
            check_between(T0, earliest, latest, "decision")
        assert err.value.code == "clock_out_of_order"
