"""How banked matches become an answer for the upload path. Pure rules, no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from takedown.domain.banks import MatchAction


class Verdict(StrEnum):
    BLOCK = "block"
    REVIEW = "review"
    ALLOW = "allow"


@dataclass(frozen=True)
class BankRule:
    """The part of a bank that decides whether a candidate counts as a match."""

    bank_id: int
    name: str
    match_action: MatchAction
    pdq_threshold: int
    pdq_quality_floor: int
    video_match_percent: int = 80  # the video rule (domain/video.py)
    video_frame_threshold: int = 31


def pdq_candidate_counts(
    rule: BankRule, distance: int, query_quality: int | None, entry_quality: int | None
) -> bool:
    """A PDQ candidate is a match when it is within the bank's threshold and neither
    side's quality is below the bank's floor (low-quality hashes, e.g. of flat images,
    collide far more often). Unknown quality (a hash supplied without one) is trusted."""
    if distance > rule.pdq_threshold:
        return False
    if query_quality is not None and query_quality < rule.pdq_quality_floor:
        return False
    return not (entry_quality is not None and entry_quality < rule.pdq_quality_floor)


def verdict_for(actions: Iterable[MatchAction]) -> Verdict:
    """The strictest bank policy wins: block over review over allow. A ``record``
    bank never changes the verdict: its matches are only kept."""
    seen = set(actions)
    if MatchAction.BLOCK in seen:
        return Verdict.BLOCK
    if MatchAction.REVIEW in seen:
        return Verdict.REVIEW
    return Verdict.ALLOW
