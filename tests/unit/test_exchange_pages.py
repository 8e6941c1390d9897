"""Consecutive pages of an exchange applied as one: the last change of an entry wins;
and the pages fetched ahead, handed over in batches within a budget."""

import pytest

from takedown.domain.exchanges import Page, UpstreamEntry, merge_pages


def test_the_last_change_of_an_entry_wins():
    a1 = UpstreamEntry("1-a", (("md5", "0" * 32),))
    a2 = UpstreamEntry("1-a", (("md5", "1" * 32),))
    b = UpstreamEntry("2-b", (("pdq", "f" * 64),))
    pages = [
        Page([a1, b], [], {"from": 1, "next": "x"}, False),
        Page([], ["2-b"], {"from": 1, "next": "y"}, False),
        Page([a2], ["3-c"], {"from": 9}, True),
    ]
    merged = merge_pages(pages)
    assert merged.entries == [a2] and merged.removed == ["2-b", "3-c"]
    assert merged.checkpoint == {"from": 9} and merged.done
    # Removed, then added again: live.
    again = merge_pages([Page([], ["1-a"], {}, False), Page([a1], [], {"from": 2}, False)])
    assert again.entries == [a1] and again.removed == [] and not again.done
    assert merge_pages(pages[:1]) is pages[0]


def _page(i: int, entries: int, value_len: int = 64) -> Page:
    signals = (("pdq", "f" * value_len),)
    return Page([UpstreamEntry(f"{i}-{k}", signals) for k in range(entries)], [], {"n": i}, False)


def test_pages_fetched_ahead_come_in_batches_in_order_within_the_budget():
    from takedown.services.exchanges.service import _prefetched, _weight

    # Light pages, and one heavier than the whole budget (fetched and applied alone).
    pages = [_page(i, 10) for i in range(30)] + [_page(30, 3, 20_000)] + [_page(31, 10)]
    budget = 5 * _weight(pages[0])
    assert _weight(pages[30]) > budget
    batches = list(_prefetched(iter(pages), budget))
    assert [p for batch in batches for p in batch] == pages  # every page, in order
    for batch in batches:
        # A batch stops at the page that reaches the budget.
        assert sum(_weight(p) for p in batch[:-1]) < budget


def test_a_feed_error_comes_after_the_pages_fetched_before_it():
    from takedown.services.exchanges.service import _prefetched

    def failing():
        yield _page(0, 5)
        yield _page(1, 5)
        raise RuntimeError("the exchange went away")

    seen: list[Page] = []
    with pytest.raises(RuntimeError, match="went away"):
        for batch in _prefetched(failing(), 10**9):
            seen.extend(batch)
    assert [p.checkpoint for p in seen] == [{"n": 0}, {"n": 1}]
