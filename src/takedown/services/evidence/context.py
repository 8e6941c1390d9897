"""What a preserved case holds: the context document (case, items, accounts, media
metadata and hashes, reports, decisions, the case's audit trail) as plain data, read
inside the caller's transaction."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from takedown.store.models import (
    Account,
    AuditEvent,
    Case,
    CaseItem,
    CaseLocation,
    Decision,
    IpEvent,
    Item,
    ItemMedia,
    Media,
    Report,
)

FORMAT = "takedown-evidence-v1"


@dataclass(frozen=True)
class MediaRef:
    sha256: str
    blob_id: str | None


def _t(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _chunks(ids: list[int], size: int = 500) -> list[list[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def case_context(s: Session, case: Case) -> tuple[dict[str, Any], list[MediaRef]]:
    """The context document and the media it names (with their stored bytes, if any)."""
    rows = s.execute(
        select(CaseItem, Item)
        .join(Item, Item.id == CaseItem.item_id)
        .where(CaseItem.case_id == case.id)
        .order_by(Item.id)
    ).all()
    item_ids = [it.id for _, it in rows]
    media_of: dict[int, list[str]] = {}
    media: dict[int, Media] = {}
    for chunk in _chunks(item_ids):
        for link, m in s.execute(
            select(ItemMedia, Media)
            .join(Media, Media.id == ItemMedia.media_id)
            .where(ItemMedia.item_id.in_(chunk))
            .order_by(ItemMedia.item_id, ItemMedia.media_id)
        ).all():
            media_of.setdefault(link.item_id, []).append(m.sha256)
            media[m.id] = m
    account_ids = sorted({it.account_id for _, it in rows if it.account_id is not None})
    accounts: dict[int, Account] = {}
    for chunk in _chunks(account_ids):
        accounts.update(
            {
                a.id: a
                for a in s.scalars(
                    select(Account).where(Account.id.in_(chunk)).order_by(Account.id)
                )
            }
        )
    names = _file_names(s, item_ids)
    ips = _ip_events(s, IpEvent.account_id, account_ids) | _ip_events(s, IpEvent.item_id, item_ids)
    doc: dict[str, Any] = {
        "format": FORMAT,
        "case": {
            "id": case.public_id,
            "state": case.state,
            "categories": case.categories.split(",") if case.categories else [],
            "hash_sources": case.hash_sources.split(",") if case.hash_sources else [],
            "minor_safety": case.minor_safety,
            "priority": case.priority,
            "priority_factors": json.loads(case.priority_factors or "[]"),
            "opened_at": _t(case.opened_at),
            "first_report_at": _t(case.first_report_at),
            "restricted_at": _t(case.restricted_at),
            "takedown_requested_at": _t(case.takedown_requested_at),
            "decided_at": _t(case.decided_at),
            "outcome": case.outcome,
            "outcome_policy": case.outcome_policy,
            "public_reasons": case.public_reasons,
            "views_at_first_report": case.views_at_first_report,
        },
        "locations": [
            {"kind": loc.kind, "value": loc.value}
            for loc in s.scalars(
                select(CaseLocation)
                .where(CaseLocation.case_id == case.id)
                .order_by(CaseLocation.id)
            )
        ],
        "items": [
            {
                "item_id": it.platform_id,
                "url": it.url,
                "account_id": accounts[it.account_id].platform_id if it.account_id else None,
                "in_case_because": link.reason,
                "distance": link.distance,
                "added_to_case_at": _t(link.added_at),
                "reposts": it.reposts_platform_id,
                "quotes": it.quotes_platform_id,
                "replies_to": it.replies_to_platform_id,
                "posted_at": _t(it.posted_at),
                "registered_at": _t(it.registered_at),
                "visibility": it.visibility,
                "view_count": it.view_count,
                "monetized": it.monetized,
                "media_sha256": sorted(media_of.get(it.id, [])),
                "file_names": names.get(it.id, {}),
                "platform_visibility": it.platform_visibility,
                "publicly_available_when_found": link.publicly_available,
                "ip_events": ips.get(("item", it.id), []),
            }
            for link, it in rows
        ],
        "accounts": [
            {
                "account_id": a.platform_id,
                "handle": a.handle,
                "status": a.status,
                "flagged": a.flagged,
                "confirmed_violations": a.confirmed_violations,
                "created_at": _t(a.created_at),
                "ip_events": ips.get(("account", a.id), []),
            }
            for a in accounts.values()
        ],
        "media": [
            {
                "sha256": m.sha256,
                "md5": m.md5,
                "pdq": m.pdq,
                "pdq_quality": m.pdq_quality,
                "media_type": m.media_type,
                "first_seen_at": _t(m.created_at),
                "bytes_preserved": m.blob_id is not None,
            }
            for m in media.values()
        ],
        "reports": [
            _report(r)
            for r in s.scalars(select(Report).where(Report.case_id == case.id).order_by(Report.id))
        ],
        "decisions": [
            {
                "id": d.public_id,
                "kind": d.kind,
                "outcome": d.outcome,
                "policy": d.policy,
                "reasons": d.reasons,
                "internal_note": d.internal_note,
                "manifestly_unfounded": d.manifestly_unfounded,
                "user_id": d.user_id,
                "user_role": d.user_role,
                "effective": d.effective,
                "decided_at": _t(d.decided_at),
            }
            for d in s.scalars(
                select(Decision).where(Decision.case_id == case.id).order_by(Decision.id)
            )
        ],
        "audit_trail": [
            {"event": e.id, "at": _t(e.at), "actor": e.actor, "action": e.action}
            for e in s.scalars(
                select(AuditEvent)
                .where(AuditEvent.object_type == "case", AuditEvent.object_id == case.public_id)
                .order_by(AuditEvent.id)
            )
        ],
    }
    return doc, [MediaRef(m.sha256, m.blob_id) for m in media.values()]


def _file_names(s: Session, item_ids: list[int]) -> dict[int, dict[str, str]]:
    """Per item, the name each file was uploaded with (by SHA-256)."""
    out: dict[int, dict[str, str]] = {}
    for chunk in _chunks(item_ids):
        for item_id, sha, name in s.execute(
            select(ItemMedia.item_id, Media.sha256, ItemMedia.file_name)
            .join(Media, Media.id == ItemMedia.media_id)
            .where(ItemMedia.item_id.in_(chunk), ItemMedia.file_name.is_not(None))
        ).all():
            out.setdefault(item_id, {})[sha] = str(name)
    return out


def _ip_events(
    s: Session, column: Any, ids: list[int]
) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """The IP events of these accounts or items (personal data, kept with the evidence:
    what the CyberTipline reports were built from)."""
    kind = "account" if column is IpEvent.account_id else "item"
    out: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for chunk in _chunks(ids):
        for e in s.scalars(select(IpEvent).where(column.in_(chunk)).order_by(IpEvent.id)):
            owner = e.account_id if kind == "account" else e.item_id
            out.setdefault((kind, owner or 0), []).append(
                {
                    "ip": e.ip,
                    "event": e.event,
                    "at": _t(e.at),
                    "port": e.port,
                    "received_at": _t(e.received_at),
                    "received_by": e.received_by,
                }
            )
    return out


def _report(r: Report) -> dict[str, Any]:
    return {
        "id": r.public_id,
        "channel": r.channel,
        "submitted_by": r.submitted_by,
        "category": r.category,
        "reporter_role": r.reporter_role,
        "explanation": r.explanation,
        "locations": json.loads(r.locations),
        "reporter_name": r.reporter_name,
        "reporter_email": r.reporter_email,
        "contact": r.contact,
        "signature": r.signature,
        "good_faith": r.good_faith,
        "not_consensual": r.not_consensual,
        "takedown_request": r.takedown_request,
        "victim_consent": r.victim_consent,
        "victim": {
            "first_name": r.victim_first_name,
            "last_name": r.victim_last_name,
            "email": r.victim_email,
            "phone": r.victim_phone,
            "age": r.victim_age,
            "date_of_birth": r.victim_date_of_birth.isoformat() if r.victim_date_of_birth else None,
        },
        "received_at": _t(r.received_at),
        "withdrawn_at": _t(r.withdrawn_at),
    }
