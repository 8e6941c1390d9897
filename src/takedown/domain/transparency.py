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


def time_to_removal(received_at: datetime, hidden_at: datetime | None) -> timedelta | None:
    """Content hidden before the request arrived counts as removed at once."""
    if hidden_at is None:
        return None
    return max(timedelta(0), hidden_at - received_at)


def past_48_hours(received_at: datetime, hidden_at: datetime | None, now: datetime) -> bool:
    removal = time_to_removal(received_at, hidden_at)
    if removal is None:
        return now - received_at > TAKE_IT_DOWN_WINDOW
    return removal > TAKE_IT_DOWN_WINDOW


def late_reason(
    *,
    copies_found: int,
    from_limited_reporter: bool,
    outcome: str | None,
    hidden: bool,
) -> str:
    """Why a TAKE IT DOWN request was not met within 48 hours, from the recorded facts."""
    if copies_found == 0:
        return (
            "No registered item matched the locations given; the content was not found "
            "on the platform."
        )
    if outcome == "no_violation":
        return "Reviewed and found not to be non-consensual intimate imagery; not removed."
    if from_limited_reporter:
        return (
            "The reporter's notices were limited for misuse (DSA art. 23), so nothing was "
            "restricted before review, and the review took longer than 48 hours."
        )
    if hidden:
        return "The content was restricted only after 48 hours: restrict-first was off."
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
