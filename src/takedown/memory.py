"""Handing memory a serving process no longer needs back to the system (glibc, Linux),
and not walking it needlessly (:func:`paused_gc`).

The first two measures are about what ``ps`` and the kernel count as a worker's resident memory
(RSS), which decides its out-of-memory score and what dashboards show; neither changes
what the process computes. Elsewhere than glibc on Linux they do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import mmap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_MADV_DONTNEED = getattr(mmap, "MADV_DONTNEED", 4)


# Pauses can overlap (requests in a worker's threads, a batch awaiting its thread): the
# collector is back when the last one ends, not when the first one does.
_pause_lock = threading.Lock()
_pauses = 0
_enabled_before = False


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while many objects are made at once (a bank
    import's records, a registry batch's rows): each allocation past the threshold
    would trigger collections that walk every object the process holds (measured: a
    third of a 1M-line parse; a tenth of a registry batch). Cycles made meanwhile are
    collected once it is over. Process-wide, as the collector is: overlapping pauses
    (several threads) end together, the collector back as it was before the first."""
    global _pauses, _enabled_before
    with _pause_lock:
        if _pauses == 0:
            _enabled_before = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pauses -= 1
            if _pauses == 0 and _enabled_before:
                gc.enable()


def freeze_startup() -> None:
    """Leave what the process made to start (modules, the app, compiled kernels, index
    structures: ~300,000 objects in a serving process) out of every later garbage
    collection: they live as long as the process, and each full collection walked them
    all again (0.13 s, measured, a pause in whatever request was running then; a
    registry batch of 30,000 items had one). Called once, where a long-running process
    has started (``takedown serve``'s workers, ``takedown worker``, ``takedown
    consume``), not in code that tests run many times in one process. Objects made later
    are collected as before; start-up garbage is collected first."""
    gc.collect()
    gc.freeze()


def release_freed_memory() -> None:
    """Hand memory freed after a large read back to the system. glibc keeps freed heap
    pages for reuse, and after a million rows were read as Python tuples and strings
    (then dropped) a worker stayed ~70 MB larger than one that never read them
    (measured). ``malloc_trim`` is glibc's own call for this."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)


def drop_clean_library_pages(name: str) -> int:
    """Drop from this process's page tables the resident pages of the shared library
    whose file name contains ``name`` that are clean copies of the file (the mappings
    stay); returns the bytes dropped.

    Why: loading LLVM (``libllvmlite.so``, which numba needs to load its compiled
    kernels) runs its static constructors, scattered over the whole library, and the
    kernel maps pages around each one it touches: ~90 MB of every worker's RSS
    (measured), although after the kernels are loaded nothing calls into LLVM again
    unless something new has to be compiled. Dropped pages stay in the page cache,
    shared; if LLVM runs again they are mapped back from it on first touch.

    Only mappings with no private (copy-on-write) page are dropped -- for those, the
    file is exactly what is in memory -- and the kernel re-reads a dropped page from the
    file, so this can never change what the library sees. Writable mappings are left
    alone.
    """
    madvise = getattr(_libc(), "madvise", None)
    smaps = Path("/proc/self/smaps")
    if madvise is None or not smaps.exists():
        return 0
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    dropped = 0
    for start, end, rss in _clean_mappings(smaps.read_text(), name):
        if madvise(start, end - start, _MADV_DONTNEED) == 0:
            dropped += rss
    return dropped


@dataclass
class _Mapping:
    start: int
    end: int
    rss: int = 0
    anonymous: int = -1  # unknown until its line is read


def _clean_mappings(smaps: str, name: str) -> list[tuple[int, int, int]]:
    """``(start, end, resident bytes)`` of the read-only mappings of a file whose name
    contains ``name`` and that hold no anonymous (copy-on-write) page, from the text of
    ``/proc/<pid>/smaps``."""
    mappings: list[_Mapping] = []
    current: _Mapping | None = None
    for line in smaps.splitlines():
        fields = line.split(None, 5)
        if not fields:
            continue
        if "-" in fields[0] and not fields[0].endswith(":") and len(fields) >= 5:
            # A mapping's header: "start-end perms offset device inode [path]".
            current = None
            path = fields[5] if len(fields) > 5 else ""
            if path.startswith("/") and name in Path(path).name and "w" not in fields[1]:
                low, high = fields[0].split("-")
                current = _Mapping(int(low, 16), int(high, 16))
                mappings.append(current)
        elif current is not None and fields[0] == "Rss:":
            current.rss = int(fields[1]) * 1024
        elif current is not None and fields[0] == "Anonymous:":
            current.anonymous = int(fields[1]) * 1024
    return [(m.start, m.end, m.rss) for m in mappings if m.anonymous == 0 and m.rss]


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name, use_errno=True) if name else None
    except OSError:
        return None
