"""Bulk ids come in ascending order (appended at the end of the public-id index)."""

from __future__ import annotations

from takedown.ids import new_id, new_ids


def test_new_ids_are_ascending_unique_ulids():
    ids = new_ids(5000)
    assert ids == sorted(ids) and len(set(ids)) == 5000
    assert all(len(i) == 26 and i[:10] == ids[0][:10] for i in ids)
    assert len(new_id()) == 26 and new_ids(0) == []
