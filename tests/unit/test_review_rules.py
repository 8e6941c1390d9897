"""The console's pure rules: locks, escalation, wellness bounds, dashboard figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from takedown.domain.access import ROLE_PERMISSIONS, Principal, may_view_media
from takedown.domain.cases import CaseState, UserRole
from takedown.domain.review import (
    break_due_at,
    check_escalation,
    check_wellness,
    compliance,
    lock_is_free,
    median,
    priority_band,
)
from takedown.errors import Conflict, Forbidden, InvalidRequest

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def test_a_lock_is_free_when_absent_lapsed_or_mine():
    assert lock_is_free(None, None, "me", NOW)
    assert lock_is_free("me", NOW + timedelta(minutes=5), "me", NOW)
    assert lock_is_free("other", NOW, "me", NOW)  # lapsed exactly now
    assert not lock_is_free("other", NOW + timedelta(seconds=1), "me", NOW)


def test_escalation_rules():
    check_escalation(CaseState.RESTRICTED, UserRole.MODERATOR, "Age unclear; specialist.")
    with pytest.raises(Forbidden):
        check_escalation(CaseState.RESTRICTED, UserRole.CHILD_SAFETY_SPECIALIST, "x" * 20)
    with pytest.raises(Conflict):
        check_escalation(CaseState.AWAITING_SECOND_REVIEW, UserRole.ADMIN, "x" * 20)
    with pytest.raises(InvalidRequest):
        check_escalation(CaseState.OPEN, UserRole.MODERATOR, "short")


def test_wellness_bounds_and_break():
    assert check_wellness(16, True, 90).blur_strength == 16
    for blur, minutes in ((3, 90), (41, 90), (16, 9), (16, 601)):
        with pytest.raises(InvalidRequest):
            check_wellness(blur, True, minutes)
    assert break_due_at(NOW, 90) == NOW + timedelta(minutes=90)
    assert break_due_at(None, 90) is None


def test_dashboard_figures():
    assert median([]) is None
    assert median([timedelta(minutes=m) for m in (1, 3, 10)]) == timedelta(minutes=3)
    c = compliance(
        [
            (NOW, NOW - timedelta(hours=1)),  # met on time
            (NOW, NOW + timedelta(hours=1)),  # met late
            (NOW - timedelta(hours=1), None),  # overdue
            (NOW + timedelta(hours=1), None),  # running
        ],
        NOW,
    )
    assert (c.met, c.missed, c.running, c.share) == (1, 2, 1, 1 / 3)
    assert compliance([], NOW).share is None
    assert [priority_band(p) for p in (200, 120, 60, 0)] == ["critical", "high", "medium", "low"]


def test_media_is_for_people_in_the_media_roles_only():
    def person(role: UserRole) -> Principal:
        return Principal("user", "u", "n", ROLE_PERMISSIONS[role], role)

    allowed = {r for r in UserRole if may_view_media(person(r))}
    assert allowed == {
        UserRole.ADMIN,
        UserRole.MODERATOR,
        UserRole.CHILD_SAFETY_SPECIALIST,
        UserRole.LEGAL,
    }
    key = Principal("apikey", "k", "admin-key", ROLE_PERMISSIONS[UserRole.ADMIN])
    assert not may_view_media(key)
