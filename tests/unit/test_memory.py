"""takedown/memory.py: what is dropped from a worker's resident memory, and that the
process works on as before."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading

import pytest

from takedown.memory import _clean_mappings, drop_clean_library_pages, paused_gc

SMAPS = """\
7f0000000000-7f0000004000 r--p 00000000 08:01 11 /opt/lib/libllvmlite.so
Size:                 16 kB
Rss:                  12 kB
Anonymous:             0 kB
VmFlags: rd mr mw me
7f0000004000-7f0000010000 r-xp 00004000 08:01 11 /opt/lib/libllvmlite.so
Size:                 48 kB
Rss:                  40 kB
Anonymous:             0 kB
7f0000010000-7f0000012000 r--p 00010000 08:01 11 /opt/lib/libllvmlite.so
Size:                  8 kB
Rss:                   8 kB
Anonymous:             8 kB
7f0000012000-7f0000013000 rw-p 00012000 08:01 11 /opt/lib/libllvmlite.so
Size:                  4 kB
Rss:                   0 kB
Anonymous:             0 kB
7f0000020000-7f0000030000 r-xp 00000000 08:01 12 /opt/lib/libother.so
Size:                 64 kB
Rss:                  64 kB
Anonymous:             0 kB
7f0000030000-7f0000031000 r--p 00000000 00:00 0
Rss:                   4 kB
Anonymous:             0 kB
"""


def test_only_clean_read_only_mappings_of_the_named_library_are_chosen():
    chosen = _clean_mappings(SMAPS, "libllvmlite")
    # Relocated (copy-on-write) and writable mappings stay, as do other files and
    # anonymous memory.
    assert chosen == [
        (0x7F0000000000, 0x7F0000004000, 12 * 1024),
        (0x7F0000004000, 0x7F0000010000, 40 * 1024),
    ]
    assert _clean_mappings(SMAPS, "libnothing") == []


def test_a_name_that_maps_nothing_drops_nothing():
    assert drop_clean_library_pages("no-such-library-here") == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
def test_llvm_pages_are_dropped_and_the_kernels_and_compiler_still_work():
    """In a fresh process: the index kernels loaded (LLVM mapped), LLVM's clean pages
    dropped from its resident memory, then a search still finds exactly what it should
    and numba still compiles something new (its pages come back from the file)."""
    script = """
import numpy as np
from pathlib import Path
from numba import njit
from takedown.matching import MultiIndexHammingIndex
from takedown.matching.mih import compile_kernels
from takedown.memory import _clean_mappings, drop_clean_library_pages

def resident():
    smaps = Path("/proc/self/smaps").read_text()
    return sum(r for _, _, r in _clean_mappings(smaps, "libllvmlite"))

compile_kernels()
before = resident()
dropped = drop_clean_library_pages("libllvmlite")
after = resident()
rng = np.random.default_rng(7)
hashes = rng.integers(0, 256, size=(5000, 32), dtype=np.uint8)
index = MultiIndexHammingIndex(strategy="probe")
index.add(np.arange(1, 5001), hashes)
query = hashes[1234].copy()
query[0] ^= 0b111  # 3 bits away
found = index.search(query, 31)
assert found.ids.tolist() == [1235] and found.distances.tolist() == [3], found

@njit
def twice(x):
    return 2 * x

assert twice(21) == 42
print(before, dropped, after)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    before, dropped, after = (int(x) for x in done.stdout.split())
    assert before > 20 * 2**20  # tens of MB of LLVM were resident
    assert dropped >= before * 0.9
    assert after < before * 0.1


def test_overlapping_pauses_of_the_collector_end_with_the_last_one():
    """Two threads' pauses overlapping (a registry batch and a report): the first to end
    leaves the collector off for the other; the last one brings it back as it was."""
    assert gc.isenabled()
    inside, release = threading.Event(), threading.Event()
    seen: list[bool] = []

    def other() -> None:
        with paused_gc():
            inside.set()
            release.wait(10)
            seen.append(gc.isenabled())

    thread = threading.Thread(target=other)
    with paused_gc():
        thread.start()
        assert inside.wait(10)
    assert not gc.isenabled()  # the other thread's pause still holds
    release.set()
    thread.join(10)
    assert seen == [False] and gc.isenabled()
    gc.disable()  # off before: a pause leaves it off
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
