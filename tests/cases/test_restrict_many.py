"""A report about an item with many copies, through the HTTP API: every copy restricted
in the one transaction, one outbox action per copy, and one audit event for the case's
action naming how many items, their digest and the outbox actions that carry them."""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import select

from takedown.runtime import Runtime
from takedown.store.models import AuditEvent, Item, OutboxMessage
from tests.cases.helpers import parent_report, platform_headers

NDJSON = {"Content-Type": "application/x-ndjson"}


def _register(client, headers: dict[str, str], reposts: int) -> list[str]:
    """An original and ``reposts`` reposts of it, each by its own account."""
    lines = [{"item": {"id": "orig", "account_id": "acc-0"}}]
    lines += [
        {"item": {"id": f"rp-{i}", "account_id": f"acc-{i}", "reposts": "orig"}}
        for i in range(1, reposts + 1)
    ]
    body = "\n".join(json.dumps(x) for x in lines).encode()
    r = client.post("/v1/registry/batch", content=body, headers={**headers, **NDJSON})
    assert r.status_code == 200, r.text
    return ["orig"] + [f"rp-{i}" for i in range(1, reposts + 1)]


def _restrict_events(rt: Runtime) -> list[AuditEvent]:
    with rt.sessions() as s:
        return list(
            s.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == "item.restrict")
                .order_by(AuditEvent.id)
            )
        )


def test_many_copies_one_event_naming_count_digest_and_actions(rt: Runtime, client):
    pids = _register(client, platform_headers(rt), 150)
    r = client.post("/v1/reports", json=parent_report(["rp-77"]))
    assert r.status_code == 201, r.text
    assert r.json()["restricted_items"] == 151
    case = r.json()["case_number"]
    with rt.sessions() as s:
        assert set(s.scalars(select(Item.visibility))) == {"restricted"}
        assert set(s.scalars(select(Item.monetization_paused))) == {True}
    [event] = _restrict_events(rt)
    assert (event.object_type, event.object_id, event.actor) == (
        "case",
        case,
        "reporter:parent_guardian",
    )
    details = json.loads(event.details)
    assert details["items"] == 151 and details["reason"] == "restrict_first"
    assert "item_ids" not in details  # more than are listed: the digest names them
    digest = hashlib.sha256("\n".join(sorted(pids)).encode()).hexdigest()
    assert details["items_sha256"] == digest
    with rt.sessions() as s:
        actions = s.execute(
            select(OutboxMessage.idempotency_key, OutboxMessage.target_platform_id).where(
                OutboxMessage.topic == "item.restrict"
            )
        ).all()
    assert len(actions) == 151
    assert all(key.startswith(details["actions"]) for key, _ in actions)
    assert sorted(p for _, p in actions) == sorted(pids)
    assert rt.audit.verify().ok


def test_a_few_copies_are_listed_in_the_event(rt: Runtime, client):
    pids = _register(client, platform_headers(rt), 3)
    r = client.post("/v1/reports", json=parent_report(["orig"]))
    assert r.status_code == 201 and r.json()["restricted_items"] == 4
    [event] = _restrict_events(rt)
    details = json.loads(event.details)
    assert details["item_ids"] == sorted(pids) and details["items"] == 4
    # A copy registered later is restricted as it joins: its own event, its own item.
    p = platform_headers(rt)
    r = client.put("/v1/items/late", json={"account_id": "acc-9", "reposts": "orig"}, headers=p)
    assert r.status_code in (200, 201), r.text
    events = _restrict_events(rt)
    assert len(events) == 2
    late = json.loads(events[1].details)
    assert late["item_ids"] == ["late"] and late["reason"] == "copy_of_restricted_content"
    assert rt.audit.verify().ok


def test_the_walk_follows_reposts_quotes_and_originals_both_ways(rt: Runtime, client):
    """Reported: a repost. The case holds what it reposts (original), the quotes and
    reposts of that original, a repost of a quote, and nothing unlinked — each with the
    link that brought it in."""
    from takedown.store.models import Case, CaseItem

    lines = [
        {"item": {"id": "orig", "account_id": "a0"}},
        {"item": {"id": "rp", "account_id": "a1", "reposts": "orig"}},
        {"item": {"id": "qt", "account_id": "a2", "quotes": "orig"}},
        {"item": {"id": "rp-of-qt", "account_id": "a3", "reposts": "qt"}},
        {"item": {"id": "qt-of-rp", "account_id": "a4", "quotes": "rp"}},
        {"item": {"id": "other", "account_id": "a5"}},
        {"item": {"id": "rp-of-other", "account_id": "a6", "reposts": "other"}},
    ]
    body = "\n".join(json.dumps(x) for x in lines).encode()
    headers = {**platform_headers(rt), **NDJSON}
    assert client.post("/v1/registry/batch", content=body, headers=headers).status_code == 200
    r = client.post("/v1/reports", json=parent_report(["rp"]))
    assert r.status_code == 201, r.text
    assert r.json()["restricted_items"] == 5
    with rt.sessions() as s:
        reasons = dict(
            s.execute(
                select(Item.platform_id, CaseItem.reason)
                .join(CaseItem, CaseItem.item_id == Item.id)
                .join(Case, Case.id == CaseItem.case_id)
                .where(Case.public_id == r.json()["case_number"])
            ).all()
        )
        visible = set(s.scalars(select(Item.platform_id).where(Item.visibility == "visible")))
    assert reasons == {
        "rp": "reported",
        "orig": "original",
        "qt-of-rp": "quote",
        "qt": "quote",
        "rp-of-qt": "repost",
    }
    assert visible == {"other", "rp-of-other"}
