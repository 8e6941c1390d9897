"""Identifiers and clocks.

Identifiers shown outside the process are ULIDs (sortable, opaque); row numbers stay
inside the database. Every time is timezone-aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ulid import ULID


def new_id() -> str:
    return str(ULID())


def utcnow() -> datetime:
    return datetime.now(UTC)
