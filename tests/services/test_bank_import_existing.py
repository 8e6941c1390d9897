"""Adding to a bank that already holds entries: what is there is counted, not added
again, whether the bank is read whole (small) or asked chunk by chunk (large)."""

from __future__ import annotations

import random

import pytest

from takedown.domain.hashlists import HashRecord
from takedown.runtime import Runtime
from takedown.services import banks


@pytest.mark.parametrize("read_whole_bank", [banks._READ_WHOLE_BANK, 1])
# read whole (the bank is small) / asked per chunk (it holds more than 1)
def test_entries_already_in_the_bank_are_counted(rt: Runtime, monkeypatch, read_whole_bank):
    monkeypatch.setattr(banks, "_READ_WHOLE_BANK", read_whole_bank)
    monkeypatch.setattr(banks, "_INSERT_CHUNK", 2)  # several chunks
    monkeypatch.setattr(banks, "_READ_WHOLE_BANK_FOR", 1)  # even for a few records
    rng = random.Random(4)
    old = [f"{rng.getrandbits(256):064x}" for _ in range(3)]
    new = [f"{rng.getrandbits(256):064x}" for _ in range(2)]
    rt.banks.create_bank("b", actor="t")
    rt.banks.add_hashes("b", [HashRecord("pdq", h) for h in old], actor="t")
    lines = [old[0], new[0], old[2], new[1], new[0]]
    result = rt.banks.import_list("b", lines, "text", actor="t", default_type="pdq")
    assert (result.added, result.already_present, result.duplicates_in_input) == (2, 2, 1)
    entries, _ = rt.banks.list_entries("b", limit=100)
    assert len(entries) == 5
