"""Priority and clocks: which case a reviewer should open next, and how long is left.

The priority is a sum of named factors so that a case can show *why* it is where it is
in the queue (a reviewer who cannot see the reason cannot challenge it). Weights are
deliberately coarse: the order matters, not the number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from takedown.domain.reports import MINOR_SAFETY, Category, ReporterRole

SEVERITY = {
    Category.CSAM: 100,
    Category.MINOR_EXPLOITATION: 90,
    Category.NCII: 70,
    Category.OTHER: 20,
}
MINOR_INVOLVED = 40
REPORTER_WEIGHT = {
    ReporterRole.PERSON_DEPICTED: 40,
    ReporterRole.PARENT_GUARDIAN: 40,
    ReporterRole.LAW_ENFORCEMENT: 40,
    ReporterRole.TRUSTED_FLAGGER: 35,
    ReporterRole.USER: 10,
}
HASH_SOURCE_WEIGHT = {"ncmec": 40, "take_it_down": 40, "stopncii": 35, "own": 35}
HASH_SOURCE_DEFAULT = 20
ACCOUNT_CONFIRMED_VIOLATION = 30  # per earlier confirmed violation, capped
ACCOUNT_FLAGGED = 20
ACCOUNT_HISTORY_CAP = 60
REACH_PER_DECADE = 10  # log10 of views: 1k views → 30, 100k → 50
REACH_CAP = 60
GROWTH_PER_DECADE = 15  # log10 of views gained in the last hour
GROWTH_CAP = 45


@dataclass(frozen=True)
class Factor:
    name: str
    points: int
    detail: str


@dataclass(frozen=True)
class TriageInput:
    categories: frozenset[Category]
    reporter_roles: frozenset[ReporterRole]
    hash_sources: frozenset[str]  # bank sources of matches that opened or joined the case
    account_confirmed_violations: int  # earlier confirmed violations of posting accounts
    accounts_flagged: int  # posting accounts flagged for sharing such material
    total_views: int
    views_last_hour: int


def priority(t: TriageInput) -> tuple[int, list[Factor]]:
    """The case's priority and the factors it is made of, largest first."""
    factors: list[Factor] = []
    if t.categories:
        top = max(t.categories, key=lambda c: SEVERITY[c])
        factors.append(Factor("severity", SEVERITY[top], f"category {top.value}"))
    if t.categories & MINOR_SAFETY:
        factors.append(Factor("minor_involved", MINOR_INVOLVED, "a minor is involved"))
    if t.reporter_roles:
        role = max(t.reporter_roles, key=lambda r: REPORTER_WEIGHT[r])
        factors.append(Factor("reporter", REPORTER_WEIGHT[role], f"reported by {role.value}"))
    if t.hash_sources:
        src = max(t.hash_sources, key=lambda s: HASH_SOURCE_WEIGHT.get(s, HASH_SOURCE_DEFAULT))
        factors.append(
            Factor(
                "hash_match",
                HASH_SOURCE_WEIGHT.get(src, HASH_SOURCE_DEFAULT),
                f"matches a bank from {src}",
            )
        )
    history = min(
        ACCOUNT_HISTORY_CAP,
        ACCOUNT_CONFIRMED_VIOLATION * t.account_confirmed_violations
        + ACCOUNT_FLAGGED * t.accounts_flagged,
    )
    if history:
        factors.append(
            Factor(
                "account_history",
                history,
                f"{t.account_confirmed_violations} earlier confirmed violation(s), "
                f"{t.accounts_flagged} flagged account(s)",
            )
        )
    if t.total_views > 0:
        pts = min(REACH_CAP, int(REACH_PER_DECADE * math.log10(1 + t.total_views)))
        factors.append(Factor("reach", pts, f"{t.total_views} views"))
    if t.views_last_hour > 0:
        pts = min(GROWTH_CAP, int(GROWTH_PER_DECADE * math.log10(1 + t.views_last_hour)))
        factors.append(Factor("growth", pts, f"{t.views_last_hour} views in the last hour"))
    factors.sort(key=lambda f: -f.points)
    return sum(f.points for f in factors), factors


class ClockState(StrEnum):
    ON_TIME = "on_time"
    DUE_SOON = "due_soon"
    OVERDUE = "overdue"
    MET = "met"


@dataclass(frozen=True)
class Clock:
    name: str  # "decision" or "take_it_down_48h"
    started_at: datetime
    due_at: datetime
    met_at: datetime | None

    def state(self, now: datetime, due_soon_share: float = 0.25) -> ClockState:
        """Met once satisfied; overdue past the deadline; due soon in the last quarter."""
        if self.met_at is not None:
            return ClockState.MET
        if now >= self.due_at:
            return ClockState.OVERDUE
        if self.due_at - now <= (self.due_at - self.started_at) * due_soon_share:
            return ClockState.DUE_SOON
        return ClockState.ON_TIME


TAKE_IT_DOWN_WINDOW = timedelta(hours=48)  # 47 U.S.C. 223a: remove within 48 hours


def decision_target(
    categories: Iterable[Category], minor_hours: float, other_hours: float
) -> timedelta:
    cats = set(categories)
    return timedelta(hours=minor_hours if cats & MINOR_SAFETY else other_hours)
