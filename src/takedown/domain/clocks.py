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

from datetime import datetime

from takedown.errors import InvalidRequest


def check_new_time(at: datetime, now: datetime) -> None:
    if at.tzinfo is None:
        raise InvalidRequest(
            "Give the time with a zone (e.g. 2026-05-01T09:00:00Z).", code="invalid_time"
        )
    if at > now:
        raise InvalidRequest("A clock can be set back, not into the future.", code="invalid_time")


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
