"""Which media belong to a case: the files on the case's items (its copy graph)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from takedown.errors import InvalidRequest
from takedown.services.cases.copies import chunks
from takedown.store.models import CaseItem, ItemMedia, Media


def case_media_ids(s: Session, case_id: int, public_ids: Sequence[str]) -> set[str]:
    """Those of ``public_ids`` that are media on an item of the case."""
    found: set[str] = set()
    for part in chunks(list(public_ids)):
        found.update(
            s.scalars(
                select(Media.public_id)
                .join(ItemMedia, ItemMedia.media_id == Media.id)
                .join(CaseItem, CaseItem.item_id == ItemMedia.item_id)
                .where(CaseItem.case_id == case_id, Media.public_id.in_(part))
                .distinct()
            )
        )
    return found


def check_media_in_case(s: Session, case_id: int, public_ids: Sequence[str]) -> None:
    if not public_ids:
        return
    missing = sorted(set(public_ids) - case_media_ids(s, case_id, public_ids))
    if missing:
        raise InvalidRequest(
            "Only files of this case can be classified in its decision.",
            code="media_not_in_case",
            media=missing[:20],
        )


def accounts_of_case(s: Session, case_id: int) -> set[str]:
    """The platform ids of the accounts whose items are in the case ("" stands for
    items of no known account); a case with no item at all has the one subject ""."""
    from takedown.store.models import Account, Item

    rows = s.execute(
        select(Account.platform_id)
        .select_from(CaseItem)
        .join(Item, Item.id == CaseItem.item_id)
        .outerjoin(Account, Account.id == Item.account_id)
        .where(CaseItem.case_id == case_id)
        .distinct()
    ).all()
    return {r[0] or "" for r in rows} or {""}
