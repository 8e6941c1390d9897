"""What a confirmed violation does to the accounts that posted it. Pure rules.

Each account is measured by its **part** in the case, the most serious one if it had
several: the **uploader** of the media (the first to post it), a **re-uploader** (posted
its own copy later), a **quoter** (quoted it with comment) or a **reposter** (reposted
it). Per part and per kind of material, the policy names the first measure:

- ``none``: the item is removed, nothing is counted against the account;
- ``strike``: a strike is counted, no message;
- ``warn``: a strike and a warning (DSA Art. 23 asks for one before suspending those
  who frequently provide manifestly illegal content);
- ``suspend``: a strike and the account suspended; its other items are queued for
  checking.

Strikes escalate: an account whose strikes reach ``strikes_to_suspend`` is suspended
whatever its part (unless the part's measure is ``none``); a suspending part's repeat
offender (``minor_safety_strikes_to_terminate`` minor-safety strikes) is terminated.

The defaults, for the child-safety lead to defend: whoever uploads or re-uploads child
sexual abuse material is suspended at once and terminated on a repeat; reposting or
quoting it (often done in outrage or ignorance, in a viral spread thousands at a time)
is a strike with a warning, suspension on the second. For non-consensual intimate
imagery, uploaders, re-uploaders and quoters are warned first and suspended on the
second strike; a repost is removed without a strike. Other material: a strike for the
uploaders, nothing for sharers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from takedown.domain.reports import MINOR_SAFETY, Category


class AccountMeasure(StrEnum):
    NONE = "none"
    WARN = "warn"
    SUSPEND = "suspend"
    TERMINATE = "terminate"


class Part(StrEnum):
    """An account's part in a case, most serious first."""

    UPLOADER = "uploader"
    REUPLOADER = "reuploader"
    QUOTER = "quoter"
    REPOSTER = "reposter"


PART_ORDER = (Part.UPLOADER, Part.REUPLOADER, Part.QUOTER, Part.REPOSTER)


class FirstMeasure(StrEnum):
    """What a part's first confirmed violation of a kind does."""

    NONE = "none"
    STRIKE = "strike"
    WARN = "warn"
    SUSPEND = "suspend"


def part_measures(text: str) -> dict[Part, FirstMeasure]:
    """``uploader=suspend,reuploader=suspend,quoter=warn,reposter=warn`` → a mapping
    with every part; a ValueError names what is wrong."""
    out: dict[Part, FirstMeasure] = {}
    for chunk in filter(None, (c.strip() for c in text.split(","))):
        name, sep, value = chunk.partition("=")
        try:
            part = Part(name.strip())
            measure = FirstMeasure(value.strip())
        except ValueError:
            raise ValueError(
                f"{chunk!r}: write part=measure, the parts being "
                f"{', '.join(p.value for p in PART_ORDER)} and the measures "
                f"{', '.join(m.value for m in FirstMeasure)}."
            ) from None
        if not sep:
            raise ValueError(f"{chunk!r}: write part=measure.")
        out[part] = measure
    missing = [p.value for p in PART_ORDER if p not in out]
    if missing:
        raise ValueError(f"The account policy names no measure for {', '.join(missing)}.")
    return out


def _parts(**kw: str) -> Mapping[Part, FirstMeasure]:
    return {Part(k): FirstMeasure(v) for k, v in kw.items()}


DEFAULT_MINOR_SAFETY = _parts(
    uploader="suspend", reuploader="suspend", quoter="warn", reposter="warn"
)
DEFAULT_NCII = _parts(uploader="warn", reuploader="warn", quoter="warn", reposter="none")
DEFAULT_OTHER = _parts(uploader="strike", reuploader="strike", quoter="none", reposter="none")


@dataclass(frozen=True)
class AccountPolicy:
    minor_safety: Mapping[Part, FirstMeasure] = field(default_factory=lambda: DEFAULT_MINOR_SAFETY)
    ncii: Mapping[Part, FirstMeasure] = field(default_factory=lambda: DEFAULT_NCII)
    other: Mapping[Part, FirstMeasure] = field(default_factory=lambda: DEFAULT_OTHER)
    minor_safety_strikes_to_terminate: int = 2  # a repeat offender's account is closed
    strikes_to_suspend: int = 2  # a warned account is suspended at this many strikes

    def first_measure(self, categories: set[Category], part: Part) -> FirstMeasure:
        if categories & MINOR_SAFETY:
            return self.minor_safety[part]
        if Category.NCII in categories:
            return self.ncii[part]
        return self.other[part]


def most_serious(parts: Iterable[Part]) -> Part:
    return min(parts, key=PART_ORDER.index)


@dataclass(frozen=True)
class Outcome:
    """What the rule does to one account: a strike or not, and the measure."""

    strike: bool
    measure: AccountMeasure


def measure_for(
    categories: set[Category],
    part: Part,
    strikes: int,
    status: str,
    policy: AccountPolicy,
) -> Outcome:
    """``strikes`` counts confirmed violations before this one; ``status`` is the
    account's status now (Takedown's or the platform's, the more severe)."""
    first = policy.first_measure(categories, part)
    if first is FirstMeasure.NONE or status in ("terminated", "deleted"):
        return Outcome(False, AccountMeasure.NONE)  # nothing (more) to do
    strikes += 1
    measure = AccountMeasure.NONE
    if first is FirstMeasure.SUSPEND:
        measure = AccountMeasure.SUSPEND
        if categories & MINOR_SAFETY and strikes >= policy.minor_safety_strikes_to_terminate:
            measure = AccountMeasure.TERMINATE
    elif first is FirstMeasure.WARN:
        measure = (
            AccountMeasure.SUSPEND if strikes >= policy.strikes_to_suspend else AccountMeasure.WARN
        )
    if measure is AccountMeasure.SUSPEND and status == "suspended":
        measure = AccountMeasure.NONE  # already suspended: the strike still counts
    return Outcome(True, measure)


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


@dataclass(frozen=True)
class PostedItem:
    """What the part rule needs of one item of a case."""

    account: int
    reposts: bool
    quotes: bool
    at: datetime | None  # when it was posted (or else registered)


def parts_of(items: Iterable[PostedItem]) -> dict[int, Part]:
    """Each account's most serious part. The uploader posted the earliest copy of its
    own (not a repost or a quote); every other account that posted its own copy is a
    re-uploader; a quote outranks a repost."""
    items = list(items)
    own = [i for i in items if not i.reposts and not i.quotes]
    first = min(own, key=lambda i: (i.at is None, i.at or datetime.min)).account if own else None
    parts: dict[int, set[Part]] = {}
    for i in items:
        if i.reposts:
            part = Part.REPOSTER
        elif i.quotes:
            part = Part.QUOTER
        else:
            part = Part.UPLOADER if i.account == first else Part.REUPLOADER
        parts.setdefault(i.account, set()).add(part)
    return {account: most_serious(p) for account, p in parts.items()}
