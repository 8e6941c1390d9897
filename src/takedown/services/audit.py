"""The audit trail: one append-only row per state change, written in the same
transaction as the change (so there is never a change without its record). The
tamper-evident hash chain over these rows is a later step."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from takedown.ids import utcnow
from takedown.store.models import AuditEvent


def record(
    session: Session,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    details: Mapping[str, Any],
) -> None:
    session.add(
        AuditEvent(
            actor=actor,
            action=action,
            object_type=object_type,
            object_id=object_id,
            details=json.dumps(details, default=str),
        )
    )


def record_many(
    session: Session,
    actor: str,
    action: str,
    object_type: str,
    object_ids: Iterable[str],
    details: Mapping[str, Any],
) -> None:
    """One event per object, inserted in bulk (restricting 100,000 copies is 100,000
    state changes, and each is its own event)."""
    now = utcnow()
    text = json.dumps(details, default=str)
    rows = [
        {
            "at": now,
            "actor": actor,
            "action": action,
            "object_type": object_type,
            "object_id": oid,
            "details": text,
        }
        for oid in object_ids
    ]
    for start in range(0, len(rows), 5000):
        session.execute(insert(AuditEvent), rows[start : start + 5000])
