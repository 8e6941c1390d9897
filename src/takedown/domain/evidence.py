"""Rules of the evidence vault: preservation periods, holds, purposes, manifests.

18 U.S.C. 2258A(h) (as amended by the REPORT Act) requires a provider to preserve the
contents of a report and reasonably accessible context for one year after the report
is submitted; longer voluntary retention is allowed, and 2258B(c) asks for access
limited to need and destruction when law enforcement asks. Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from takedown.errors import Conflict, InvalidRequest

MIN_PRESERVATION = timedelta(days=365)
PURPOSE_MIN, PURPOSE_MAX = 5, 500
CLOCK_SKEW = timedelta(minutes=5)


class EvidenceState(StrEnum):
    PRESERVED = "preserved"
    DELETED = "deleted"  # retention over, no hold: deleted by an operator
    DESTROYED = "destroyed"  # on a law-enforcement request (2258B(c))


class HoldKind(StrEnum):
    PRESERVATION = "preservation"  # the statutory year after a report; not releasable
    LEGAL = "legal"  # litigation or a preservation request; set, extended, released


def one_year_after(t: datetime) -> datetime:
    """The same moment a calendar year later (29 February becomes 1 March): never
    shorter than a year, which 365 days would be across a leap day."""
    try:
        return t.replace(year=t.year + 1)
    except ValueError:  # 29 February
        return t.replace(year=t.year + 1, month=3, day=1)


def preservation_until(completed_at: datetime, period: timedelta) -> datetime:
    """End of the statutory hold: ``period`` (at least 365 days) after the report was
    completed, and never before the same date a year later."""
    return max(one_year_after(completed_at), completed_at + max(period, MIN_PRESERVATION))


def clean_purpose(purpose: str | None) -> str:
    """Every access to evidence states why; the reason goes into the audit log."""
    text = " ".join((purpose or "").split())
    if not PURPOSE_MIN <= len(text) <= PURPOSE_MAX:
        raise InvalidRequest(
            f"Say why you access this evidence: a purpose of {PURPOSE_MIN} to "
            f"{PURPOSE_MAX} characters is required (it is written to the audit log).",
            code="purpose_required",
        )
    return text


def check_completed_at(completed_at: datetime, now: datetime) -> None:
    if completed_at.tzinfo is None or completed_at > now + CLOCK_SKEW:
        raise InvalidRequest(
            "completed_at must be a time with a zone, not in the future.",
            code="invalid_completed_at",
        )


@dataclass(frozen=True)
class Hold:
    kind: HoldKind
    until: datetime
    released: bool


def active_holds(holds: Iterable[Hold], now: datetime) -> list[Hold]:
    return [h for h in holds if not h.released and h.until > now]


def check_deletable(state: EvidenceState, holds: Sequence[Hold], now: datetime) -> None:
    """Ordinary deletion: refused while any hold is active."""
    check_open(state)
    active = active_holds(holds, now)
    if active:
        until = max(h.until for h in active)
        raise Conflict(
            f"This evidence is held until {until.isoformat()} "
            f"({', '.join(sorted({h.kind.value for h in active}))} hold); it cannot be "
            "deleted before then.",
            code="evidence_held",
            held_until=until.isoformat(),
        )


def check_destroyable(state: EvidenceState, holds: Sequence[Hold], now: datetime) -> None:
    """Destruction on a law-enforcement request overrides the statutory preservation
    hold (which exists for law enforcement) but not a legal hold, which counsel must
    release first."""
    check_open(state)
    if any(h.kind is HoldKind.LEGAL for h in active_holds(holds, now)):
        raise Conflict(
            "A legal hold is active on this evidence; release it before destroying.",
            code="evidence_legal_hold",
        )


def check_open(state: EvidenceState) -> None:
    if state is not EvidenceState.PRESERVED:
        raise Conflict(f"This evidence was {state.value}; nothing is left.", code="evidence_closed")


def check_new_until(until: datetime, now: datetime, current: datetime | None = None) -> None:
    if until.tzinfo is None or until <= now or (current is not None and until <= current):
        floor = "now" if current is None else f"the current end ({current.isoformat()})"
        raise InvalidRequest(
            f"until must be a time with a zone, later than {floor}.", code="invalid_hold_until"
        )


def sha256sum_lines(files: Iterable[tuple[str, str]]) -> str:
    """A manifest ``sha256sum -c`` can check: ``<hash>  <name>`` per file."""
    return "".join(f"{digest}  {name}\n" for name, digest in files)
