"""POST /v1/registry/batch against single requests, event for event: the set-wise
paths (new items, registered items said again or differently) give what PUT
/v1/items/{id} and POST /v1/items/{id}/views give, in the database, the outbox and the
audit log."""

from __future__ import annotations

import json
import random
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from takedown.runtime import Runtime
from takedown.store.models import (
    AuditEvent,
    Case,
    CaseEntry,
    CaseItem,
    Item,
    ItemViews,
    OutboxMessage,
)
from tests.cases.helpers import parent_report, platform_headers

NDJSON = {"Content-Type": "application/x-ndjson"}


def _pdq(seed: int, flip: int = 0) -> str:
    bits = random.Random(seed).getrandbits(256) ^ ((1 << flip) - 1)
    return f"{bits:064x}"


def _media(seed: int, flip: int = 0) -> dict[str, object]:
    return {
        "sha256": f"{seed:02x}{flip:02x}" * 16,
        "md5": f"{seed:02x}{flip:02x}" * 8,
        "pdq": _pdq(seed, flip),
        "pdq_quality": 90,
    }


def _item(prefix: str, name: str, **fields: Any) -> dict[str, Any]:
    for key in ("reposts", "quotes", "account_id"):
        if key in fields:
            fields[key] = prefix + fields[key]
    return {"item": {"id": prefix + name, **fields}}


def _first(prefix: str, seed: int) -> list[dict[str, Any]]:
    """The first batch: the same item twice (said differently the second time), a
    near-duplicate of the reported item and a repost of it a line later, a bad line,
    a repost of an item further down the batch, a file to be banked later."""
    return [
        _item(prefix, "d", account_id="u1", media=[_media(seed + 1)], view_count=3),
        _item(prefix, "n", media=[_media(seed, flip=4)], monetized=True),
        _item(prefix, "nr", reposts="n", account_id="u2"),
        {"item": {"id": prefix + "bad", "media": [{"sha256": "not a hash"}]}},
        _item(prefix, "early", reposts="late"),
        _item(prefix, "d", account_id="u1", media=[_media(seed + 1)], view_count=5, url="u"),
        _item(prefix, "late", media=[_media(seed + 3)]),
        _item(prefix, "m", account_id="u3", media=[_media(seed + 2)]),
        _item(prefix, "m2", media=[_media(seed + 5)]),
        {"views": {"item_id": prefix + "n", "view_count": 40}},
        _item(prefix, "plain", media=[_media(seed + 4)], view_count=1),
        {"views": {"item_id": prefix + "d", "view_count": 7}},  # d: read twice above
        {"views": {"item_id": prefix + "n", "view_count": 40}},  # the same: nothing
        {"views": {"item_id": prefix + "n", "view_count": 42}},
    ]


def _second(prefix: str, seed: int) -> list[dict[str, Any]]:
    """The second batch: registered items said again (unchanged), with a new view
    count, with a new edge into the reported case, without their (now banked) media."""
    return [
        _item(prefix, "plain", media=[_media(seed + 4)], view_count=1),
        _item(prefix, "d", account_id="u1", media=[_media(seed + 1)], view_count=9, url="u"),
        _item(prefix, "late", media=[_media(seed + 3)], quotes="r"),
        _item(prefix, "m", account_id="u3", url="https://x.example/m"),
        _item(prefix, "m2"),  # said again as it was, without its media
        _item(prefix, "n", media=[_media(seed, flip=4)], monetized=True, view_count=41),
        {"views": {"item_id": prefix + "plain", "view_count": 2}},
    ]


def _single(client: TestClient, p: dict[str, str], events: list[dict[str, Any]]) -> list[int]:
    codes = []
    for event in events:
        if "views" in event:
            v = event["views"]
            r = client.post(
                f"/v1/items/{v['item_id']}/views", json={"view_count": v["view_count"]}, headers=p
            )
        else:
            body = dict(event["item"])
            r = client.put(f"/v1/items/{body.pop('id')}", json=body, headers=p)
        codes.append(r.status_code)
    return codes


def _batch(client: TestClient, p: dict[str, str], events: list[dict[str, Any]]) -> dict[str, Any]:
    body = "\n".join(json.dumps(e) for e in events).encode()
    r = client.post("/v1/registry/batch", content=body, headers={**p, **NDJSON})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def _state(rt: Runtime, client: TestClient, p: dict[str, str], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("r", "d", "n", "nr", "early", "late", "m", "m2", "plain"):
        got = client.get(f"/v1/items/{prefix}{name}", headers=p).json()
        out[name] = (got["visibility"], got["monetization_paused"])
    cut = len(prefix)
    like = Item.platform_id.like(f"{prefix}%")
    with rt.sessions() as s:
        out["cases"] = sorted(
            n
            for (n,) in s.execute(
                select(func.count())
                .select_from(CaseItem)
                .join(Item, Item.id == CaseItem.item_id)
                .where(like)
                .group_by(CaseItem.case_id)
            ).all()
        )
        out["links"] = sorted(
            (pid[cut:], reason, distance)
            for pid, reason, distance in s.execute(
                select(Item.platform_id, CaseItem.reason, CaseItem.distance)
                .join(Item, Item.id == CaseItem.item_id)
                .where(like)
            ).all()
        )
        out["items"] = sorted(
            (pid[cut:], url, views)
            for pid, url, views in s.execute(
                select(Item.platform_id, Item.url, Item.view_count).where(like)
            ).all()
        )
        out["views"] = sorted(
            (pid[cut:], n)
            for pid, n in s.execute(
                select(Item.platform_id, ItemViews.view_count)
                .join(Item, Item.id == ItemViews.item_id)
                .where(like)
            ).all()
        )
        out["outbox"] = sorted(
            (pid[cut:], topic)
            for pid, topic in s.execute(
                select(OutboxMessage.target_platform_id, OutboxMessage.topic).where(
                    OutboxMessage.target_platform_id.like(f"{prefix}%")
                )
            ).all()
        )
        out["audit"] = sorted(
            (action, pid[cut:], json.loads(details).get("reason"))
            for action, pid, details in s.execute(
                select(AuditEvent.action, AuditEvent.object_id, AuditEvent.details).where(
                    AuditEvent.object_type == "item", AuditEvent.object_id.like(f"{prefix}%")
                )
            ).all()
        )
    return out


def test_batches_do_what_single_requests_do(rt: Runtime, client: TestClient, auth):
    p = platform_headers(rt)
    r = client.post(
        "/v1/banks",
        headers=auth,
        json={
            "name": "ncmec",
            "source": "ncmec",
            "match_action": "block",
            "restrict_on_match": True,
        },
    )
    assert r.status_code == 201, r.text
    seeds = {"s-": 10, "b-": 20}
    for prefix, seed in seeds.items():
        r = client.put(f"/v1/items/{prefix}r", json={"media": [_media(seed)]}, headers=p)
        assert r.status_code == 200, r.text
        receipt = client.post("/v1/reports", json=parent_report([f"{prefix}r"])).json()
        assert receipt["restricted_items"] == 1

    codes = _single(client, p, _first("s-", 10))
    first = _batch(client, p, _first("b-", 20))
    assert [x["line"] for x in first["rejected"]] == [codes.index(422) + 1] == [4]
    assert (first["items_created"], first["items_changed"]) == (8, 1)  # d twice
    assert first["views_changed"] == 3

    for seed in seeds.values():  # m's and m2's files banked after registration
        r = client.post(
            "/v1/banks/ncmec/entries",
            headers=auth,
            json={
                "entries": [
                    {"signal_type": "md5", "value": _media(seed + k)["md5"]} for k in (2, 5)
                ]
            },
        )
        assert r.status_code in (200, 201), r.text

    assert set(_single(client, p, _second("s-", 10))) == {200}
    second = _batch(client, p, _second("b-", 20))
    assert second["rejected"] == [] and second["items_created"] == 0
    assert (second["items_changed"], second["views_changed"], second["matched"]) == (4, 1, 2)

    single, batched = _state(rt, client, p, "s-"), _state(rt, client, p, "b-")
    assert single == batched
    # What the rules say, whichever way the events came:
    assert single["n"] == single["nr"] == ("restricted", True)  # restricted first
    assert single["late"][0] == single["early"][0] == "restricted"  # quoted r later
    assert single["m"][0] == single["m2"][0] == "restricted"  # matched by stored media
    assert single["d"][0] == single["plain"][0] == "visible"
    assert [n for pid, n in single["views"] if pid == "d"] == [3, 5, 7, 9]
    assert [n for pid, n in single["views"] if pid == "n"] == [40, 41, 42]
    assert ("item.updated", "d", None) in single["audit"]


def _matched_state(rt: Runtime, prefix: str) -> dict[str, Any]:
    """Cases (their items, links, treatment), the outbox and the audit log of the items
    under ``prefix``, the cases named by their first item."""
    cut = len(prefix)
    like = Item.platform_id.like(f"{prefix}%")
    with rt.sessions() as s:
        rows = s.execute(
            select(
                CaseItem.case_id,
                Item.platform_id,
                CaseItem.reason,
                CaseItem.distance,
                Item.visibility,
                Item.monetization_paused,
            )
            .join(Item, Item.id == CaseItem.item_id)
            .where(like)
            .order_by(Item.platform_id)
        ).all()
        cases: dict[int, list[tuple[Any, ...]]] = {}
        for case_id, pid, reason, distance, visibility, paused in rows:
            cases.setdefault(case_id, []).append((pid[cut:], reason, distance, visibility, paused))
        facts = {}  # each case's own state, triage and provenance
        events_of = {}  # and its events, when it holds one item
        for case in s.scalars(select(Case).where(Case.id.in_(sorted(cases)))):
            events = sorted(
                (action, json.loads(details).get("reason"), len(json.loads(details)))
                for action, details in s.execute(
                    select(AuditEvent.action, AuditEvent.details).where(
                        AuditEvent.object_type == "case", AuditEvent.object_id == case.public_id
                    )
                ).all()
            )
            entries = s.scalar(
                select(func.count()).select_from(CaseEntry).where(CaseEntry.case_id == case.id)
            )
            facts[case.id] = (
                case.state,
                case.restrict_first,
                case.categories,
                case.hash_sources,
                case.minor_safety,
                case.priority,
                case.priority_factors,
                case.restricted_at is not None,
                case.decision_due_at is not None,
                entries,
            )
            if len(cases[case.id]) == 1:  # (a batch restricts copies with their original)
                events_of[case.id] = tuple(events)
        items = sorted(
            (pid[cut:], visibility)
            for pid, visibility in s.execute(select(Item.platform_id, Item.visibility).where(like))
        )
        outbox = sorted(
            (pid[cut:], topic)
            for pid, topic in s.execute(
                select(OutboxMessage.target_platform_id, OutboxMessage.topic).where(
                    OutboxMessage.target_platform_id.like(f"{prefix}%")
                )
            ).all()
        )
        audit = sorted(
            (action, pid[cut:], json.loads(details).get("reason"))
            for action, pid, details in s.execute(
                select(AuditEvent.action, AuditEvent.object_id, AuditEvent.details).where(
                    AuditEvent.object_type == "item", AuditEvent.object_id.like(f"{prefix}%")
                )
            ).all()
        )
    return {
        "cases": sorted(cases.values()),
        "case_facts": sorted((cases[i][0][0], f) for i, f in facts.items()),
        "case_events": sorted((cases[i][0][0], e) for i, e in events_of.items()),
        "items": items,
        "outbox": outbox,
        "audit": audit,
    }


def test_bank_matches_alone_or_with_copies_as_single_requests(
    rt: Runtime, client: TestClient, auth
):
    """Items whose media a bank matches, in one batch: one with no copy anywhere (its
    case opened without walking the copy graph: it is its own only copy), one reposted
    and re-uploaded a few lines later, one whose near-duplicate is registered in the
    same batch, two carrying the same banked bytes. Each opens or joins the case it
    would had every line come as its own request."""
    p = platform_headers(rt)
    r = client.post(
        "/v1/banks",
        headers=auth,
        json={
            "name": "ncmec",
            "source": "ncmec",
            "match_action": "block",
            "restrict_on_match": True,
        },
    )
    assert r.status_code == 201, r.text
    # Pictures of their own for each run (a run's items are no copies of the other's).
    pictures = [40 + k for k in range(6)] + [50 + k for k in range(6)]
    r = client.post(
        "/v1/banks/ncmec/entries",
        headers=auth,
        json={
            "entries": [{"signal_type": "pdq", "value": _pdq(k), "quality": 90} for k in pictures]
        },
    )
    assert r.status_code in (200, 201), r.text

    def events(prefix: str, seed: int) -> list[dict[str, Any]]:
        def near(k: int, flip: int) -> dict[str, object]:  # a banked picture's upload
            return {
                "sha256": f"{seed:02x}{k:02x}{flip:02x}" * 10 + "abcd",
                "md5": f"{seed:02x}{k:02x}{flip:02x}" * 5 + "cd",
                "pdq": _pdq(seed - 20 + k, flip),
                "pdq_quality": 90,
            }

        return [
            _item(prefix, "alone", account_id="u1", media=[near(0, 1)], monetized=True),
            _item(prefix, "plain", media=[_media(seed)]),
            _item(prefix, "shared", account_id="u2", media=[near(1, 1)]),
            _item(prefix, "repost", reposts="shared", account_id="u3"),
            _item(prefix, "reupload", media=[near(1, 1)]),
            _item(prefix, "first", media=[near(2, 1)]),
            _item(prefix, "second", media=[near(2, 3)]),  # a near-duplicate of first
            _item(prefix, "quote", quotes="plain", media=[near(3, 2)]),
            _item(prefix, "alone", account_id="u1", media=[near(0, 1)], view_count=4),
            _item(prefix, "solo", account_id="u4", media=[near(4, 5)]),  # its own
            _item(prefix, "solo2", media=[near(5, 1)], monetized=True),  # and another
        ]

    assert set(_single(client, p, events("s-", 60))) == {200}
    out = _batch(client, p, events("b-", 70))
    assert out["rejected"] == []
    single, batched = _matched_state(rt, "s-"), _matched_state(rt, "b-")
    assert single == batched
    # Again (the items in their cases now: they stay in them, nothing opens twice).
    assert set(_single(client, p, events("s-", 60))) == {200}
    out = _batch(client, p, events("b-", 70))
    assert out["rejected"] == [] and out["items_created"] == 0
    again = _matched_state(rt, "s-")
    assert again == _matched_state(rt, "b-")
    assert again["cases"] == single["cases"]
    # What the rules say, whichever way the events came: a case each, every copy in
    # its original's case by its link, every one restricted first.
    assert single["cases"] == [
        [("alone", "hash_match", None, "restricted", True)],
        [
            ("first", "hash_match", None, "restricted", True),
            ("second", "pdq", 2, "restricted", True),
        ],
        [
            ("plain", "original", None, "restricted", True),
            ("quote", "hash_match", None, "restricted", True),
        ],
        [
            ("repost", "repost", None, "restricted", True),
            ("reupload", "same_bytes", None, "restricted", True),
            ("shared", "hash_match", None, "restricted", True),
        ],
        [("solo", "hash_match", None, "restricted", True)],
        [("solo2", "hash_match", None, "restricted", True)],
    ]
    assert {t for _, t in single["outbox"]} == {"item.restrict"} and len(single["outbox"]) == 10
