"""What a confirmed violation does to the accounts that posted it. Pure rules.

- Child sexual abuse material or the sexual exploitation of a minor: the account is
  suspended at once (configurable) and its other items are queued for checking.
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


@dataclass(frozen=True)
class AccountPolicy:
    suspend_on_minor_safety: bool = True
    ncii_strikes_to_suspend: int = 2  # the first confirmed violation is a warning


def measure_for(
    categories: set[Category], strikes: int, status: str, policy: AccountPolicy
) -> AccountMeasure:
    """``strikes`` counts confirmed violations including the one just confirmed."""
    if status in ("suspended", "terminated", "deleted"):
        return AccountMeasure.NONE  # nothing more to do on the platform's side
    if categories & MINOR_SAFETY and policy.suspend_on_minor_safety:
        return AccountMeasure.SUSPEND
    if Category.NCII in categories:
        if strikes >= policy.ncii_strikes_to_suspend:
            return AccountMeasure.SUSPEND
        return AccountMeasure.WARN
    return AccountMeasure.NONE
