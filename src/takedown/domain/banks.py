"""What a bank is and what a match in it means. Pure rules, no I/O."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import TypeVar

from takedown.errors import InvalidRequest


class MatchAction(StrEnum):
    """What a match against a bank means for the upload being screened."""

    BLOCK = "block"  # refuse the upload (known, confirmed material)
    REVIEW = "review"  # let a human decide (e.g. unverified third-party list)
    RECORD = "record"  # allow, but keep a record of the match (monitoring a new list)
    # A negative bank: hashes known to be benign (memes, stock images that exchanges'
    # lists caught by mistake). A match here means the upload is never blocked, sent
    # to review or restricted for a match, whatever other banks it matches.
    NEGATIVE = "negative"


class BankSource(StrEnum):
    """Where a bank's material comes from: provenance shown with every match."""

    NCMEC = "ncmec"
    STOPNCII = "stopncii"
    TAKE_IT_DOWN = "take_it_down"
    TECH_COALITION = "tech_coalition"
    THREATEXCHANGE = "threatexchange"
    OWN = "own"  # the platform's own confirmed cases
    OTHER = "other"


BANK_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
MAX_PDQ_THRESHOLD = 128  # beyond half the bits a "match" is noise


def validate_bank_name(name: str) -> str:
    if not BANK_NAME.match(name):
        raise InvalidRequest(
            "A bank name is 1 to 100 characters: lowercase letters, digits, '-', '_' "
            f"or '.', starting with a letter or digit; got {name[:120]!r}.",
            code="invalid_bank_name",
        )
    return name


def validate_pdq_threshold(value: int) -> int:
    if not 0 <= value <= MAX_PDQ_THRESHOLD:
        raise InvalidRequest(
            f"The PDQ distance threshold must be between 0 and {MAX_PDQ_THRESHOLD} bits; "
            f"got {value}. The field's usual value is 31.",
            code="invalid_threshold",
        )
    return value


def validate_quality_floor(value: int) -> int:
    if not 0 <= value <= 100:
        raise InvalidRequest(
            f"The PDQ quality floor must be between 0 and 100; got {value}. "
            "The field's usual value is 50.",
            code="invalid_quality_floor",
        )
    return value


E = TypeVar("E", bound=StrEnum)


def parse_enum(enum: type[E], value: str, what: str) -> E:
    try:
        return enum(value.strip().lower())
    except ValueError:
        allowed = ", ".join(m.value for m in enum)
        raise InvalidRequest(
            f"Unknown {what} {value[:60]!r}; use one of: {allowed}.",
            code=f"invalid_{what.replace(' ', '_')}",
        ) from None
