"""What a confirmed violation does to the accounts that posted it. Pure rules.

- Child sexual abuse material or the sexual exploitation of a minor: the account is
  suspended at once (configurable) and its other items are queued for checking; a
  repeat offender's account is terminated.
- Non-consensual intimate imagery: DSA Art. 23 asks for a warning before suspending
  those who frequently provide manifestly illegal content; the account is warned, and
  suspended once its strikes reach the threshold.
- Anything else: a strike, recorded, and no account measure here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from takedown.domain.reports import MINOR_SAFETY, Category


class AccountMeasure(StrEnum):
    NONE = "none"
    WARN = "warn"
    SUSPEND = "suspend"
    TERMINATE = "terminate"


@dataclass(frozen=True)
class AccountPolicy:
    suspend_on_minor_safety: bool = True
    minor_safety_strikes_to_terminate: int = 2  # a repeat offender's account is closed
    ncii_strikes_to_suspend: int = 2  # the first confirmed violation is a warning


def measure_for(
    categories: set[Category], strikes: int, status: str, policy: AccountPolicy
) -> AccountMeasure:
    """``strikes`` counts confirmed violations including the one just confirmed."""
    if status in ("terminated", "deleted"):
        return AccountMeasure.NONE  # nothing more to do on the platform's side
    if categories & MINOR_SAFETY:
        if strikes >= policy.minor_safety_strikes_to_terminate:
            return AccountMeasure.TERMINATE
        if policy.suspend_on_minor_safety and status != "suspended":
            return AccountMeasure.SUSPEND
        return AccountMeasure.NONE
    if status == "suspended":
        return AccountMeasure.NONE
    if Category.NCII in categories:
        if strikes >= policy.ncii_strikes_to_suspend:
            return AccountMeasure.SUSPEND
        return AccountMeasure.WARN
    return AccountMeasure.NONE


class ReporterMeasure(StrEnum):
    NONE = "none"
    WARN = "warn"
    LIMIT = "limit"


@dataclass(frozen=True)
class ReporterPolicy:
    """DSA Art. 23(2): after a warning, suspend the processing of notices from those who
    frequently submit manifestly unfounded ones. We never drop a report (it might be
    real): a limited reporter's reports are still reviewed, but no longer hide content
    before review and no longer raise the priority by the reporter's role."""

    warn_after: int = 2
    limit_after: int = 3
    limit_days: int = 30


def reporter_measure(
    unfounded: int, already_warned: bool, policy: ReporterPolicy
) -> ReporterMeasure:
    if unfounded >= policy.limit_after and already_warned:
        return ReporterMeasure.LIMIT
    if unfounded >= policy.warn_after and not already_warned:
        return ReporterMeasure.WARN
    return ReporterMeasure.NONE
