"""Snapshots of the bank index, so a worker starts in seconds instead of replaying the
database.

A snapshot is a directory in the data directory: the multi-index-hashing index as
written by :meth:`MultiIndexHammingIndex.save` (large arrays memory-mapped on load, so
several workers on one machine share their pages) plus ``snapshot.json`` with a format
version and the follower cursors it covers. A worker loads it, then follows the rows
above those cursors like any others. Rows disabled after the snapshot need nothing:
index hits are only candidates, checked against the current rows.

A snapshot is written whole into a staging directory and renamed into place, so a
reader sees the old one or the new one. One that cannot be read (corrupt, another
version, or ahead of the database it is meant for) is ignored with a warning and the
database is replayed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from pathlib import Path

from takedown.matching import MultiIndexHammingIndex
from takedown.services.follower import IndexFollower

FORMAT = "takedown-bank-index"
VERSION = 1
DIRECTORY = "bank-index"  # under the data directory
_META = "snapshot.json"
_INDEX = "mih"

log = logging.getLogger(__name__)


def snapshot_path(data_dir: Path) -> Path:
    return data_dir / DIRECTORY


def write(follower: IndexFollower, target: Path) -> int:
    """Bring the follower up to date and write its index; returns the hashes written."""
    follower.sync(force=True)
    staging = target.with_name(f"{target.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    index, cursors = follower.snapshot_state()
    if not isinstance(index, MultiIndexHammingIndex):
        raise TypeError(f"a {type(index).__name__} cannot be saved")
    index.save(staging / _INDEX)
    meta = {"format": FORMAT, "version": VERSION, "cursors": cursors, "hashes": len(index)}
    (staging / _META).write_text(json.dumps(meta))
    old = target.with_name(f"{target.name}.old-{os.getpid()}-{threading.get_ident()}")
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return len(index)


def load(follower: IndexFollower, source: Path) -> bool:
    """Start the follower from the snapshot at ``source``; False (and a warning) when
    there is none usable, leaving the follower to replay the database."""
    if not (source / _META).exists():
        return False
    try:
        meta = json.loads((source / _META).read_text())
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise ValueError(f"format {meta.get('format')!r} version {meta.get('version')!r}")
        cursors = [int(c) for c in meta["cursors"]]
        index = MultiIndexHammingIndex.load(source / _INDEX, mmap=True)
        follower.adopt(index, cursors)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("index snapshot %s not used (%s); replaying the database", source, exc)
        return False
    return True
