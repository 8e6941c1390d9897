"""Rules of the review console. Pure, no I/O.

Locks: a claimed case is worked by one reviewer; the lock lapses after a quiet spell so
that a reviewer who walked away does not hold a child-safety case hostage.
Escalation: a moderator hands a case to a child-safety specialist (it then waits in the
specialists' queue as a second review). Wellness: how strongly media is blurred, and
when to suggest a break. Dashboard: the figures over a period.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from takedown.domain.cases import MIN_REASONS, CaseState, UserRole
from takedown.errors import Conflict, Forbidden, InvalidRequest

# Why a reviewer opens a piece of media. Logged with every view (the purpose is part
# of the audit contract the CyberTipline code relies on).
MEDIA_PURPOSES = {
    "review": "Reviewing the case",
    "second_review": "Second review",
    "legal_report": "Preparing a legal report",
    "appeal": "Deciding an appeal",
}

BLUR_MIN, BLUR_MAX, BLUR_DEFAULT = 4, 40, 16  # Gaussian radius in px on a 480 px preview
BREAK_MIN, BREAK_MAX = 10, 600

# Who may escalate: people who decide cases but are not the specialists themselves.
ESCALATORS = frozenset({UserRole.MODERATOR, UserRole.ADMIN})
ESCALATABLE = frozenset(
    {CaseState.OPEN, CaseState.RESTRICTED, CaseState.IN_REVIEW, CaseState.APPEALED}
)

# Priority bands for the dashboard and the queue's badges (see domain/triage.py: a
# parent's report of CSAM scores 180 before reach is counted).
PRIORITY_BANDS: tuple[tuple[str, int], ...] = (
    ("critical", 160),
    ("high", 100),
    ("medium", 50),
    ("low", 0),
)


def lock_is_free(
    holder: str | None, expires_at: datetime | None, claimant: str, now: datetime
) -> bool:
    """A case can be claimed when nobody holds it, its lock has lapsed, or the claimant
    already holds it (claiming again extends the lock)."""
    return holder is None or holder == claimant or expires_at is None or expires_at <= now


def check_escalation(state: CaseState, role: UserRole | None, note: str) -> None:
    if role not in ESCALATORS:
        raise Forbidden(
            "Only moderators and admins escalate; a specialist decides the case.",
            code="forbidden",
        )
    if state not in ESCALATABLE:
        raise Conflict(
            f"A case that is {state.value.replace('_', ' ')} cannot be escalated.",
            code="not_escalatable",
        )
    if len(note.strip()) < MIN_REASONS:
        raise InvalidRequest(
            f"Say why the case needs a specialist (at least {MIN_REASONS} characters).",
            code="reasons_required",
        )


@dataclass(frozen=True)
class Wellness:
    blur_strength: int
    greyscale: bool
    break_minutes: int


def check_wellness(blur_strength: int, greyscale: bool, break_minutes: int) -> Wellness:
    if not BLUR_MIN <= blur_strength <= BLUR_MAX:
        raise InvalidRequest(
            f"Blur strength is between {BLUR_MIN} and {BLUR_MAX}.", code="invalid_settings"
        )
    if not BREAK_MIN <= break_minutes <= BREAK_MAX:
        raise InvalidRequest(
            f"A break reminder comes after {BREAK_MIN} to {BREAK_MAX} minutes.",
            code="invalid_settings",
        )
    return Wellness(blur_strength, greyscale, break_minutes)


def break_due_at(stretch_started_at: datetime | None, minutes: int) -> datetime | None:
    return None if stretch_started_at is None else stretch_started_at + timedelta(minutes=minutes)


def priority_band(priority: int) -> str:
    for name, floor in PRIORITY_BANDS:
        if priority >= floor:
            return name
    return PRIORITY_BANDS[-1][0]


def median(values: Sequence[timedelta]) -> timedelta | None:
    if not values:
        return None
    return timedelta(seconds=statistics.median(v.total_seconds() for v in values))


@dataclass(frozen=True)
class Compliance:
    met: int  # met before the deadline
    missed: int  # met late, or still open past the deadline
    running: int  # still open, deadline ahead

    @property
    def share(self) -> float | None:
        done = self.met + self.missed
        return None if done == 0 else self.met / done


def compliance(clocks: Iterable[tuple[datetime, datetime | None]], now: datetime) -> Compliance:
    """Clocks as (due, met) pairs: met on time, missed, or still running."""
    met = missed = running = 0
    for due, done in clocks:
        if done is not None:
            if done <= due:
                met += 1
            else:
                missed += 1
        elif now >= due:
            missed += 1
        else:
            running += 1
    return Compliance(met, missed, running)
