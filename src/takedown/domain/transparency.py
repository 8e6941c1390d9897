"""Figures for transparency and compliance reports, and their CSV form. Pure.

The services gather rows; the arithmetic (medians, the 48-hour rule, why a request ran
late) and the flat CSV layout live here so that they are tested without a database.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from statistics import median

from takedown.errors import InvalidRequest

MAX_RANGE = timedelta(days=3 * 366)
TAKE_IT_DOWN_WINDOW = timedelta(hours=48)


def check_range(start: datetime, end: datetime) -> None:
    if start.tzinfo is None or end.tzinfo is None or end <= start or end - start > MAX_RANGE:
        raise InvalidRequest(
            "Give a date range with the end after the start, at most three years long.",
            code="invalid_date_range",
        )


def median_hours(durations: Iterable[timedelta]) -> float | None:
    values = [max(0.0, d.total_seconds() / 3600) for d in durations]
    return round(median(values), 2) if values else None


def hours(d: timedelta | None) -> float | None:
    return None if d is None else round(max(0.0, d.total_seconds()) / 3600, 2)


# -- automated means (DSA Art. 15(1)(b), (c), (e); the statements' automated_decision) --
# One decision in the DSA's sense is one measure on one item or account: each reaches
# the platform as one action with its own statement of reasons. A measure is taken
# *solely by automated means* when no person decided about that item or account before
# it was applied: the rules apply it on receipt of a report, on a hash match, or because
# the item is a copy of material already restricted or confirmed. It is *partially*
# automated when a person confirmed the content and a rule chose the measure (the
# repeat-violation policy's account measures after a reviewer's decision), and not
# automated when it carries out a reviewer's decision on the case.
FULLY, PARTIALLY, NOT_AUTOMATED = "fully", "partially", "not_automated"
SOLELY_AUTOMATED_REASONS = frozenset(
    {
        "restrict_first",  # a report's content hidden on receipt, pending review
        "hash_match",  # an item matching a bank hidden pending review
        "copy_of_restricted_content",  # a copy joining a case under restriction
        "under_review",  # monetization paused while a report is reviewed
        "copy_of_confirmed_violation",  # a copy of confirmed material, removed on joining
    }
)
BY_A_PERSON_REASONS = frozenset({"confirmed_violation", "no_violation", "appeal_upheld"})


def automation(topic: str, reason: str | None) -> str:
    """How automated the measure of one action (outbox row) was: ``reason`` is the
    ``reason`` its payload carries (what caused it)."""
    if reason in SOLELY_AUTOMATED_REASONS:
        return FULLY
    if topic.startswith("account.") and topic != "account.reinstate":
        # the repeat-violation rule after a reviewer's confirmation
        return PARTIALLY
    return NOT_AUTOMATED


def time_to(received_at: datetime, at: datetime | None) -> timedelta | None:
    """From a request to an event; an event before the request counts as at once."""
    if at is None:
        return None
    return max(timedelta(0), at - received_at)


def time_to_removal(received_at: datetime, removed_at: datetime | None) -> timedelta | None:
    return time_to(received_at, removed_at)


def past_48_hours(received_at: datetime, removed_at: datetime | None, now: datetime) -> bool:
    """The Act's rule: removed within 48 hours of a valid request (47 U.S.C.
    223a(a)(3)). Hiding the content pending review does not meet it on its own."""
    removal = time_to(received_at, removed_at)
    if removal is None:
        return now - received_at > TAKE_IT_DOWN_WINDOW
    return removal > TAKE_IT_DOWN_WINDOW


def late_reason(
    *,
    copies_found: int,
    from_limited_reporter: bool,
    outcome: str | None,
    hidden: bool,
    removed: bool = False,
) -> str:
    """Why a TAKE IT DOWN request was not met within 48 hours, from the recorded facts."""
    if copies_found == 0:
        return (
            "No registered item matched the locations given; the content was not found "
            "on the platform."
        )
    if outcome == "no_violation":
        return "Reviewed and found not to be non-consensual intimate imagery; not removed."
    if removed:
        return "Removed after 48 hours: the review confirmed the violation late." + (
            " The content was hidden from the public before." if hidden else ""
        )
    if from_limited_reporter:
        return (
            "The reporter's notices were limited for misuse (DSA art. 23), so nothing was "
            "restricted before review, and the review took longer than 48 hours."
        )
    if hidden:
        return (
            "Hidden from the public pending review, but not removed within 48 hours: "
            "the review has not confirmed it."
        )
    return "The content is still public: restrict-first was off and the review is pending."


def flatten(figures: Mapping[str, object], prefix: str = "") -> list[tuple[str, object]]:
    """Nested figures as ``("notices.by_category.csam", 3)`` rows; lists are skipped."""
    rows: list[tuple[str, object]] = []
    for key, value in figures.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            rows += flatten(value, name + ".")
        elif not isinstance(value, list):
            rows.append((name, "" if value is None else value))
    return rows


def to_csv(header: list[str], rows: Iterable[Iterable[object]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue()
