"""How banked matches become an answer for the upload path. Pure rules, no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from takedown.domain.banks import MatchAction
from takedown.domain.video import VideoRule
from takedown.signals import PDQ, VPDQ, SignalType, signal_type


class Verdict(StrEnum):
    BLOCK = "block"
    REVIEW = "review"
    ALLOW = "allow"


@dataclass(frozen=True)
class SignalSetting:
    """A bank's setting for one signal type; ``None`` means the type's own default."""

    threshold: int | None = None
    quality_floor: int | None = None
    match_percent: int | None = None  # vPDQ: share of frames that must match


@dataclass(frozen=True)
class BankRule:
    """The part of a bank that decides whether a candidate counts as a match: its action
    and its settings per signal type (a type without one uses the type's defaults)."""

    bank_id: int
    name: str
    match_action: MatchAction
    settings: Mapping[str, SignalSetting] = field(default_factory=dict, hash=False)

    def setting(self, t: SignalType | str) -> SignalSetting:
        return self.settings.get(t if isinstance(t, str) else t.name) or SignalSetting()

    def threshold(self, t: SignalType | str) -> int:
        st = signal_type(t) if isinstance(t, str) else t
        value = self.setting(st).threshold
        return st.default_threshold if value is None else value

    def quality_floor(self, t: SignalType | str) -> int | None:
        st = signal_type(t) if isinstance(t, str) else t
        value = self.setting(st).quality_floor
        return st.default_quality_floor if value is None else value

    @property
    def pdq_threshold(self) -> int:
        return self.threshold(PDQ)

    @property
    def pdq_quality_floor(self) -> int:
        return self.quality_floor(PDQ) or 0

    @property
    def video_rule(self) -> VideoRule:
        s = self.setting(VPDQ)
        return VideoRule(
            match_percent=VPDQ.default_match_percent
            if s.match_percent is None
            else s.match_percent,
            frame_threshold=self.threshold(VPDQ),
            quality_floor=self.quality_floor(VPDQ) or 0,
        )


def candidate_counts(
    rule: BankRule,
    t: SignalType,
    distance: int,
    query_quality: int | None,
    entry_quality: int | None,
) -> bool:
    """A Hamming candidate is a match when it is within the bank's threshold for its type
    and neither side's quality is below the bank's floor (low-quality hashes, e.g. of
    flat images, collide far more often). Unknown quality (a hash supplied without one)
    is trusted."""
    if distance > rule.threshold(t):
        return False
    floor = rule.quality_floor(t) if t.has_quality else None
    if floor is None:
        return True
    if query_quality is not None and query_quality < floor:
        return False
    return not (entry_quality is not None and entry_quality < floor)


def verdict_for(actions: Iterable[MatchAction]) -> Verdict:
    """The strictest bank policy wins: block over review over allow. A ``record``
    bank never changes the verdict: its matches are only kept. A match in a negative
    bank is checked first and wins over everything: known benign, so allowed."""
    seen = set(actions)
    if MatchAction.NEGATIVE in seen:
        return Verdict.ALLOW
    if MatchAction.BLOCK in seen:
        return Verdict.BLOCK
    if MatchAction.REVIEW in seen:
        return Verdict.REVIEW
    return Verdict.ALLOW
