"""Consecutive pages of an exchange applied as one: the last change of an entry wins."""

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
