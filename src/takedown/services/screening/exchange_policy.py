"""An exchange's own threshold and action for the entries it carries, for the paths that
do not go through the matcher's upload-time check (``Matcher._by_exchange``): banked
videos' frame rule (vPDQ), retroactive matching (``services/registry/retroscan.py``)
and the registry acting on its pairs. The rule is the matcher's: the smallest of the
exchanges' thresholds, the strictest of their actions (block over review over record),
over the live upstream entries of enabled exchanges that have either.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from takedown.domain.banks import MatchAction
from takedown.store.models import Exchange, ExchangeEntry

_RANK = {MatchAction.BLOCK: 0, MatchAction.REVIEW: 1, MatchAction.RECORD: 2}
_CHUNK = 5_000


@dataclass(frozen=True)
class EntryPolicy:
    threshold: int | None  # a PDQ (and vPDQ frame) distance the entry is held to
    action: MatchAction | None  # replaces the bank's

    def withholds_restriction(self) -> bool:
        """An exchange set to review or record acts on nothing by itself: its entries
        do not take the bank's ``restrict_on_match``."""
        return self.action in (MatchAction.REVIEW, MatchAction.RECORD)


def combine(policies: Iterable[tuple[int | None, MatchAction | None]]) -> EntryPolicy:
    """Several exchanges carrying one entry: the stricter threshold, the strictest
    action."""
    pairs = list(policies)
    limits = [t for t, _ in pairs if t is not None]
    actions = [a for _, a in pairs if a is not None]
    return EntryPolicy(
        min(limits) if limits else None,
        min(actions, key=lambda a: _RANK[a]) if actions else None,
    )


def entry_policies(s: Session | Connection, entry_ids: Iterable[int]) -> dict[int, EntryPolicy]:
    """Bank entry id -> its exchanges' policy, for the entries carried by an exchange
    with a threshold or an action of its own (the others are absent: the bank's)."""
    ids = sorted(set(entry_ids))
    found: dict[int, list[tuple[int | None, MatchAction | None]]] = {}
    for start in range(0, len(ids), _CHUNK):
        for entry_id, threshold, action in s.execute(
            select(ExchangeEntry.entry_id, Exchange.threshold, Exchange.action)
            .join(Exchange, Exchange.id == ExchangeEntry.exchange_id)
            .where(
                ExchangeEntry.entry_id.in_(ids[start : start + _CHUNK]),
                ExchangeEntry.removed_at.is_(None),
                Exchange.enabled.is_(True),
                Exchange.threshold.is_not(None) | Exchange.action.is_not(None),
            )
        ):
            found.setdefault(entry_id, []).append(
                (threshold, MatchAction(action) if action else None)
            )
    return {e: combine(p) for e, p in found.items()}
