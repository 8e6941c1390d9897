"""Snapshots of the bank index, so a worker starts in seconds instead of replaying the
database.

A snapshot is a directory in the data directory: the multi-index-hashing index as
written by :meth:`MultiIndexHammingIndex.save` (large arrays memory-mapped on load, so
several workers on one machine share their pages) plus ``snapshot.json`` with a format
version and the follower cursors it covers. A worker loads it, then follows the rows
above those cursors like any others. Rows disabled after the snapshot need nothing:
index hits are only candidates, checked against the current rows.

Layout: ``bank-index`` is a symbolic link to the current *generation*, a directory
``bank-index.g<time>-<pid>`` written whole before the link is switched to it (one
atomic rename), so a starting worker sees the old snapshot or the new one, never none.
The previous generation is kept; older ones are deleted, but never one that a worker is
loading: a reader holds a shared ``flock`` on the generation's directory from before it
reads ``snapshot.json`` until its arrays are mapped, and the writer deletes only the
generations it can lock exclusively without waiting (a locked one is left for the next
writer). A reader that resolved the link to a generation deleted before it could lock
it finds the directory gone and follows the link again. Workers that mapped a deleted
generation keep reading it until they exit (the files live on while mapped). A snapshot
that cannot be read (corrupt, another version, or ahead of the database it is meant
for) is ignored with a warning and the database is replayed.

Who writes: ``takedown index snapshot``, and every serving process through a
``SnapshotWorker`` (``takedown/runtime/workers.py``) once its index has grown by
``TAKEDOWN_INDEX_SNAPSHOT_ROWS`` hashes beyond the snapshot on disk. One process on the
machine at a time: writers take an exclusive ``flock`` on ``bank-index.lock`` in the
data directory (released by the kernel if the process dies); the CLI waits for it, a
serving process skips its round.
Writing does not hold up searches: the index is saved from an immutable snapshot of
itself while searches, adds and merges go on.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from takedown.matching import MultiIndexHammingIndex
from takedown.services.index.follower import IndexFollower

FORMAT = "takedown-bank-index"
VERSION = 1
DIRECTORY = "bank-index"  # under the data directory
_META = "snapshot.json"
_INDEX = "mih"
_GENERATION = ".g"  # bank-index.g<time_ns>-<pid>
_LOCK = ".lock"  # bank-index.lock
# Leftovers of interrupted writers (this layout's and the one before links), deleted by
# the next writer, which holds the lock so no other writer is using them.
_LEFTOVERS = (_GENERATION, ".link-", ".tmp-", ".old-")
# A reader follows the link again when the generation it resolved was deleted before it
# could lock it; that needs two rewrites in between, so a few attempts are plenty.
_LOAD_ATTEMPTS = 5

log = logging.getLogger(__name__)


def snapshot_path(data_dir: Path) -> Path:
    return data_dir / DIRECTORY


@contextmanager
def writer_lock(target: Path, *, wait: bool) -> Iterator[bool]:
    """Hold the machine-wide right to write the snapshot at ``target``; yields False
    (without waiting) when ``wait`` is False and another writer holds it.

    An ``flock`` on a file beside the snapshot: it excludes other processes and other
    threads (each opens the file anew), and the kernel drops it if the holder dies.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target.with_name(target.name + _LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock


def write(follower: IndexFollower, target: Path) -> int:
    """Bring the follower up to date and write its index (waiting for any other writer);
    returns the hashes written."""
    with writer_lock(target, wait=True):
        return write_generation(follower, target)


def written_hashes(target: Path) -> int:
    """Hashes in the snapshot at ``target``; 0 when there is none usable."""
    try:
        meta = json.loads((target / _META).read_text())
        if meta.get("format") == FORMAT and meta.get("version") == VERSION:
            return int(meta["hashes"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return 0


def write_generation(follower: IndexFollower, target: Path) -> int:
    """Write a new generation and point ``target`` at it; the caller holds the lock.

    The cursors are read before the index saves its own snapshot, so the files hold every
    row up to the cursors and perhaps a few above (added meanwhile), which a worker
    loading them reads again and replaces with the same hash: harmless.
    """
    follower.sync(force=True)
    index, cursors = follower.snapshot_state()
    if not isinstance(index, MultiIndexHammingIndex):
        raise TypeError(f"a {type(index).__name__} cannot be saved")
    # Save a settled layout: a worker maps the snapshot's shards and shares their pages
    # with the other workers, but a merge it ran itself would copy the merged rows into
    # its own memory (measured: 131 -> 263 MB private per worker at 1M hashes).
    index.maintain()
    generation = target.with_name(f"{target.name}{_GENERATION}{time.time_ns()}-{os.getpid()}")
    generation.mkdir(parents=True)
    try:
        hashes = index.save(generation / _INDEX)
        meta = {"format": FORMAT, "version": VERSION, "cursors": cursors, "hashes": hashes}
        (generation / _META).write_text(json.dumps(meta))
        _point(target, generation)
    except BaseException:
        shutil.rmtree(generation, ignore_errors=True)
        raise
    return hashes


def _point(target: Path, generation: Path) -> None:
    """Switch the link ``target`` to ``generation`` atomically; keep the previous
    generation, delete older ones and leftovers."""
    previous = os.readlink(target) if target.is_symlink() else None
    if target.is_dir() and not target.is_symlink():  # written before generations
        previous = f"{target.name}{_GENERATION}0-{os.getpid()}"
        target.rename(target.with_name(previous))
    link = target.with_name(f"{target.name}.link-{os.getpid()}-{threading.get_ident()}")
    link.unlink(missing_ok=True)
    link.symlink_to(generation.name)
    os.replace(link, target)
    keep = {generation.name, previous}
    for path in list(target.parent.iterdir()):
        name = path.name
        if name in keep or not any(name.startswith(target.name + p) for p in _LEFTOVERS):
            continue
        if path.is_symlink() or not path.is_dir():
            path.unlink(missing_ok=True)
        else:
            _remove_unless_read(path, target)


def _remove_unless_read(generation: Path, target: Path) -> None:
    """Delete an old generation unless a reader is loading it (its shared lock): then
    the next writer deletes it. Under the exclusive lock the directory is first renamed
    away, so a reader that opened it meanwhile finds, once it gets its lock, that it is
    no longer there and follows the link again."""
    try:
        fd = os.open(generation, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.debug("index snapshot %s is being loaded; kept for now", generation)
            return
        doomed = generation.with_name(f"{target.name}.old-{generation.name}")
        try:
            generation.rename(doomed)
        except OSError:
            return
        shutil.rmtree(doomed, ignore_errors=True)
    finally:
        os.close(fd)


@contextmanager
def _reading(generation: Path) -> Iterator[bool]:
    """Hold a shared lock on ``generation`` while it is read; yields False when it is
    gone (deleted, or being deleted, after the link was resolved)."""
    try:
        fd = os.open(generation, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # not there (any more), or not a directory
        yield False
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # a writer holds it only to rename the directory
        try:
            here = os.stat(generation)
        except OSError:
            here = None
        opened = os.fstat(fd)
        yield here is not None and (here.st_dev, here.st_ino) == (opened.st_dev, opened.st_ino)
    finally:
        os.close(fd)  # releases the lock


def load(follower: IndexFollower, source: Path) -> bool:
    """Start the follower from the snapshot at ``source``; False (and a warning) when
    there is none usable, leaving the follower to replay the database."""
    for _ in range(_LOAD_ATTEMPTS):
        generation = source.resolve()  # one generation, even if the link moves meanwhile
        with _reading(generation) as here:
            if here:
                loaded = _read(generation)
                break
        if source.resolve() == generation:  # the link did not move: there is none
            return False
        # The generation was deleted after the link was resolved: a newer one is there.
    else:
        log.warning("index snapshot %s kept moving; replaying the database", source)
        return False
    if loaded is None:
        return False
    index, cursors = loaded
    try:
        follower.adopt(index, cursors)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("index snapshot %s not used (%s); replaying the database", generation, exc)
        return False
    follower.snapshot_generation = str(generation)
    return True


def _read(generation: Path) -> tuple[MultiIndexHammingIndex, list[int]] | None:
    """The index and cursors of a generation the caller holds the read lock on (the
    arrays are mapped, so they stay readable after the lock is released and the
    generation is deleted)."""
    if not (generation / _META).exists():
        return None
    try:
        meta = json.loads((generation / _META).read_text())
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise ValueError(f"format {meta.get('format')!r} version {meta.get('version')!r}")
        cursors = [int(c) for c in meta["cursors"]]
        return MultiIndexHammingIndex.load(generation / _INDEX, mmap=True), cursors
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("index snapshot %s not used (%s); replaying the database", generation, exc)
        return None
