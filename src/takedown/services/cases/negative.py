"""Negative banks over the copy graph: registered items whose media a negative bank
matches (known benign: a meme or a stock picture an exchange's list caught by mistake).

Such an item is never restricted, demonetized or removed automatically -- not when a
report restricts first over the copy graph, not as a near-duplicate or a later copy of
restricted or confirmed content, not for a retroactive match. It may still join the
case, for a person to see (``CopyView.negative_match``); a person's decision on the
case applies to it like to any copy.

One read while no enabled negative bank exists (the usual deployment); otherwise the
items' distinct media are screened with the matcher's own rules (thresholds, quality
floors, dihedral variants, the video rule): a viral item's 100,000 reposts carry a few
media rows, not 100,000.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from takedown.domain.banks import MatchAction
from takedown.services.cases.copies import chunks, stored_variants
from takedown.services.screening.matcher import Matcher, QuerySignals
from takedown.services.screening.video import stored_features
from takedown.store.models import Bank, ItemMedia, Media

_ANY_NEGATIVE = (
    select(Bank.id)
    .where(Bank.enabled.is_(True), Bank.match_action == MatchAction.NEGATIVE.value)
    .limit(1)
)


def any_negative_bank(s: Session) -> bool:
    """Whether an enabled negative bank exists (else nothing here reads more)."""
    return s.scalar(_ANY_NEGATIVE) is not None


def negative_media(s: Session, matcher: Matcher, media_ids: Iterable[int]) -> set[int]:
    """Which of these media rows an enabled negative bank matches."""
    ids = sorted(set(media_ids))
    if not ids or not any_negative_bank(s):
        return set()
    owners: list[int] = []
    queries: list[QuerySignals] = []
    for part in chunks(ids):
        for row in s.scalars(select(Media).where(Media.id.in_(part))):
            owners.append(row.id)
            queries.append(
                QuerySignals(
                    pdq_variants=stored_variants(row.pdq, row.pdq_dihedral),
                    pdq_quality=row.pdq_quality,
                    md5=row.md5,
                    sha256=row.sha256,
                    video_frames=stored_features(s, row.id) if row.media_type == "video" else (),
                )
            )
    found: set[int] = set()
    for k in sorted(matcher.may_match(s, queries)):
        matches = matcher.find(s, queries[k])
        if any(m.bank.match_action is MatchAction.NEGATIVE for m in matches):
            found.add(owners[k])
    return found


def negative_items(s: Session, matcher: Matcher, item_ids: Iterable[int]) -> set[int]:
    """Which of these items carry media an enabled negative bank matches."""
    ids = sorted(set(item_ids))
    if not ids or not any_negative_bank(s):
        return set()
    carried: dict[int, set[int]] = {}  # media id -> items
    for part in chunks(ids):
        for item_id, media_id in s.execute(
            select(ItemMedia.item_id, ItemMedia.media_id).where(ItemMedia.item_id.in_(part))
        ):
            carried.setdefault(media_id, set()).add(item_id)
    out: set[int] = set()
    for media_id in negative_media(s, matcher, carried):
        out |= carried[media_id]
    return out
