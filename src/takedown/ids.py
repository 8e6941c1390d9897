"""Identifiers and clocks.

Identifiers shown outside the process are ULIDs (sortable, opaque); row numbers stay
inside the database. Every time is timezone-aware UTC.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import numpy as np
from ulid import ULID


def new_id() -> str:
    return str(ULID())


_CROCKFORD = np.frombuffer(b"0123456789ABCDEFGHJKMNPQRSTVWXYZ", dtype=np.uint8)


def new_ids(count: int) -> list[str]:
    """``count`` ULIDs at once, for bulk inserts (``new_id`` costs ~15 us each, this ~0.3).

    Same layout as :func:`new_id`: 48-bit millisecond time (10 characters) then 80 random
    bits (16 characters, one per 5 random bits from ``os.urandom``), Crockford base32.
    In ascending order: rows inserted in this order add each id at the end of the unique
    index of public ids (PostgreSQL then skips the descent from its root, and fills its
    pages instead of splitting them anywhere), as one id after another would.
    """
    ms = int(datetime.now(UTC).timestamp() * 1000)
    prefix = "".join(chr(_CROCKFORD[(ms >> (5 * k)) & 31]) for k in range(9, -1, -1))
    if count <= 0:
        return []
    random = np.frombuffer(os.urandom(16 * count), dtype=np.uint8) & 31
    tails = np.sort(_CROCKFORD[random].view("S16")).tobytes().decode("ascii")
    return [prefix + tails[16 * i : 16 * i + 16] for i in range(count)]


def utcnow() -> datetime:
    return datetime.now(UTC)
