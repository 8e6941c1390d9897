"""Setting a clock by hand, for test and staging deployments. Pure rules, no I/O.

The TAKE IT DOWN Act's 48 hours run from a request's receipt, and the DSA's six-month
appeal window from a decision; neither can be tested by waiting. An admin of a test or
staging deployment may move a report's received time or a decision's time, and what
happened *with* it moves too (the same transaction stamped them with the same time):
the restriction a report fired, the case it opened, the removal a decision made. The
deadlines derived from them follow (``takedown_due_at`` = request + 48 h, the decision
target by the same amount, the appeal window from the decision). The platform's action
records (outbox) keep their real times: they say when the platform was told.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from takedown.errors import InvalidRequest

MAX_BACK = timedelta(days=5 * 366)  # far enough for a year's preservation, six months' appeal


def check_new_time(at: datetime, now: datetime) -> datetime:
    """The time to set, in UTC: with a zone, not in the future, at most five years back."""
    if at.tzinfo is None:
        raise InvalidRequest(
            "Give the time with a zone (e.g. 2026-05-01T09:00:00Z).", code="invalid_time"
        )
    try:
        at = at.astimezone(UTC)
    except (OverflowError, ValueError):
        at = datetime.min.replace(tzinfo=UTC)
    if at > now:
        raise InvalidRequest("A clock can be set back, not into the future.", code="invalid_time")
    if at < now - MAX_BACK:
        raise InvalidRequest("A clock can be set back at most five years.", code="invalid_time")
    return at


def check_between(
    at: datetime, earliest: datetime | None, latest: datetime | None, what: str
) -> None:
    """A decision keeps its place among the case's events (after the case opened and
    the decisions before it, before the decisions and appeals after it)."""
    if (earliest is not None and at < earliest) or (latest is not None and at > latest):
        raise InvalidRequest(
            f"That time would put the {what} out of order with the case's other events "
            f"(between {earliest.isoformat() if earliest else 'the start'} and "
            f"{latest.isoformat() if latest else 'now'}).",
            code="clock_out_of_order",
        )
