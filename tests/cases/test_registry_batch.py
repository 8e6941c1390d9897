"""POST /v1/registry/batch: NDJSON events in bulk, by the single requests' rules."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from takedown.runtime import Runtime
from takedown.store.models import AuditEvent, CaseItem, Item, ItemViews, OutboxMessage
from tests.cases.helpers import parent_report, platform_headers, user_headers

NDJSON = {"Content-Type": "application/x-ndjson"}


def _ndjson(lines: list[object]) -> bytes:
    return "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines).encode()


def _count(rt: Runtime, model) -> int:
    with rt.sessions() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def _pdq(seed: int, flip: int = 0) -> str:
    """A stand-in PDQ (random bits from a seed), ``flip`` bits changed."""
    import random

    bits = random.Random(seed).getrandbits(256) ^ ((1 << flip) - 1)
    return f"{bits:064x}"


def _media(seed: int, flip: int = 0) -> dict[str, object]:
    return {
        "sha256": f"{seed:02x}{flip:02x}" * 16,
        "md5": f"{seed:02x}{flip:02x}" * 8,
        "pdq": _pdq(seed, flip),
        "pdq_quality": 90,
    }


def test_mixed_lines_keep_the_good_ones_and_answer_the_bad(rt: Runtime, client):
    p = platform_headers(rt)
    body = _ndjson(
        [
            {"account": {"id": "acc-1", "handle": "first"}},
            {"item": {"id": "i1", "account_id": "acc-1", "media": [_media(1)], "view_count": 3}},
            "{not json",
            {"item": {"id": "i2", "media": [{"sha256": "zz"}]}},
            "",  # blank lines are skipped, not counted
            {"views": {"item_id": "i1", "view_count": 10}},
            {"views": {"item_id": "nobody", "view_count": 10}},
            {"comment": {"id": "x"}},
            {"account": {"id": "acc-2", "platform_status": "sleeping"}},
            {"item": {"id": "i3", "reposts": "i1", "surprise": 1}},
            {"item": {"id": "i4", "account_id": "acc-3", "quotes": "i1"}},
        ]
    )
    r = client.post("/v1/registry/batch", content=body, headers={**p, **NDJSON})
    assert r.status_code == 200, r.text
    out = r.json()
    assert [(x["line"], x["code"]) for x in out["rejected"]] == [
        (3, "invalid_json"),
        (4, "invalid_hash"),
        (7, "item_not_found"),
        (8, "invalid_event"),
        (9, "invalid_status"),
        (10, "invalid_request"),
    ]
    assert out["lines"] == 10 and out["accepted"] == 4
    assert (out["items_created"], out["accounts_created"], out["views_changed"]) == (2, 1, 1)
    i1 = client.get("/v1/items/i1", headers=p)
    assert i1.status_code == 200 and i1.json()["visibility"] == "visible"
    assert client.get("/v1/items/i2", headers=p).status_code == 404
    assert client.get("/v1/accounts/acc-1", headers=p).json()["handle"] == "first"
    assert client.get("/v1/accounts/acc-3", headers=p).status_code == 200  # named by i4
    assert _count(rt, ItemViews) == 2  # i1's 3 at registration, then 10


def test_a_replayed_batch_changes_nothing(rt: Runtime, client):
    p = platform_headers(rt)
    body = _ndjson(
        [{"account": {"id": "a1", "handle": "h"}}]
        + [
            {"item": {"id": f"i{k}", "account_id": "a1", "media": [_media(k)], "view_count": k}}
            for k in range(1, 30)
        ]
        + [
            {"item": {"id": "i0", "account_id": "a1"}},
            {"views": {"item_id": "i0", "view_count": 7}},
        ]
    )
    first = client.post("/v1/registry/batch", content=body, headers={**p, **NDJSON}).json()
    assert first["items_created"] == 30 and first["rejected"] == []
    counts = [_count(rt, m) for m in (AuditEvent, ItemViews, Item)]
    again = client.post("/v1/registry/batch", content=body, headers={**p, **NDJSON}).json()
    assert (again["items_created"], again["items_changed"], again["accounts_created"]) == (0, 0, 0)
    assert again["views_changed"] == 0 and again["accepted"] == 32
    assert [_count(rt, m) for m in (AuditEvent, ItemViews, Item)] == counts
    # A registered item said differently is updated, as PUT /v1/items/{id} would.
    changed = _ndjson([{"item": {"id": "i2", "account_id": "a1", "url": "https://x.example/2"}}])
    out = client.post("/v1/registry/batch", content=changed, headers={**p, **NDJSON}).json()
    assert (out["items_created"], out["items_changed"]) == (0, 1)
    assert _count(rt, AuditEvent) == counts[0] + 1  # item.updated


def _scenario(prefix: str, seed: int) -> list[dict[str, object]]:
    """A feed around one reported item (``{prefix}r``) and one banked picture: the
    banked upload, a near-duplicate of it a line later, reposts and quotes, a
    near-duplicate of the reported item, and unrelated items."""
    return [
        {"item": {"id": f"{prefix}q", "account_id": f"{prefix}u2", "quotes": f"{prefix}r"}},
        {"item": {"id": f"{prefix}b", "account_id": f"{prefix}u3", "media": [_media(seed + 1)]}},
        {"item": {"id": f"{prefix}bn", "media": [_media(seed + 1, flip=5)], "monetized": True}},
        {"item": {"id": f"{prefix}br", "reposts": f"{prefix}b"}},
        {"item": {"id": f"{prefix}rn", "media": [_media(seed, flip=3)]}},
        {"item": {"id": f"{prefix}x", "media": [_media(seed + 2)]}},
        {"item": {"id": f"{prefix}y", "reposts": f"{prefix}x"}},
    ]


def test_copies_join_and_are_restricted_first_as_with_single_requests(rt: Runtime, client, auth):
    p = platform_headers(rt)
    client.post(
        "/v1/banks",
        headers=auth,
        json={
            "name": "ncmec",
            "source": "ncmec",
            "match_action": "block",
            "restrict_on_match": True,
        },
    )
    for seed in (10, 20):
        client.post(
            "/v1/banks/ncmec/entries",
            headers=auth,
            json={"entries": [{"signal_type": "md5", "value": _media(seed + 1)["md5"]}]},
        )
    cases = {}
    for prefix, seed in (("s-", 10), ("b-", 20)):  # single requests, then one batch
        client.put(
            f"/v1/items/{prefix}r",
            json={"account_id": f"{prefix}u1", "media": [_media(seed)]},
            headers=p,
        )
        receipt = client.post("/v1/reports", json=parent_report([f"{prefix}r"])).json()
        assert receipt["restricted_items"] == 1
        cases[prefix] = receipt["case_number"]
    for event in _scenario("s-", 10):
        body = dict(event["item"])  # type: ignore[call-overload]
        r = client.put(f"/v1/items/{body.pop('id')}", json=body, headers=p)
        assert r.status_code == 200, r.text
    batch = client.post(
        "/v1/registry/batch", content=_ndjson(_scenario("b-", 20)), headers={**p, **NDJSON}
    )
    assert batch.status_code == 200 and batch.json()["rejected"] == []
    assert batch.json()["matched"] == 1 and cases["b-"] in batch.json()["cases"]

    def state(prefix: str) -> dict[str, object]:
        out = {}
        for event in _scenario(prefix, 0):
            pid = event["item"]["id"]  # type: ignore[index]
            got = client.get(f"/v1/items/{pid}", headers=p).json()
            out[pid[len(prefix) :]] = (got["visibility"], got["monetization_paused"])
        with rt.sessions() as s:
            out["case sizes"] = sorted(
                n
                for (n,) in s.execute(
                    select(func.count())
                    .select_from(CaseItem)
                    .join(Item, Item.id == CaseItem.item_id)
                    .where(Item.platform_id.like(f"{prefix}%"))
                    .group_by(CaseItem.case_id)
                ).all()
            )
            out["links"] = sorted(
                (pid[len(prefix) :], reason, distance)
                for pid, reason, distance in s.execute(
                    select(Item.platform_id, CaseItem.reason, CaseItem.distance)
                    .join(Item, Item.id == CaseItem.item_id)
                    .where(Item.platform_id.like(f"{prefix}%"))
                ).all()
            )
        return out

    single, batched = state("s-"), state("b-")
    assert single == batched
    assert single["q"][0] == single["rn"][0] == "restricted"  # joined the reported case
    assert single["b"][0] == single["bn"][0] == single["br"][0] == "restricted"  # banked
    assert single["x"][0] == single["y"][0] == "visible"
    assert single["case sizes"] == [3, 3]
    with rt.sessions() as s:
        topics = s.execute(
            select(OutboxMessage.target_platform_id, OutboxMessage.topic).order_by(OutboxMessage.id)
        ).all()
    one = sorted((pid[2:], t) for pid, t in topics if pid.startswith("s-"))
    two = sorted((pid[2:], t) for pid, t in topics if pid.startswith("b-"))
    assert one == two and one


def test_limits_content_type_and_auth(rt: Runtime, client, auth):
    p = platform_headers(rt)
    many = b"\n".join([b'{"views": {"item_id": "i", "view_count": 1}}'] * 10_001)
    r = client.post("/v1/registry/batch", content=many, headers={**p, **NDJSON})
    assert r.status_code == 413 and r.json()["code"] == "too_many_lines"
    r = client.post(
        "/v1/registry/batch", content=b"{}", headers={**p, "Content-Type": "application/json"}
    )
    assert r.status_code == 415 and r.json()["code"] == "unsupported_content_type"
    r = client.post("/v1/registry/batch", content=b"", headers=NDJSON)
    assert r.status_code == 401
    _, reader = rt.api_keys.create("screener", ["screen"], actor="test")
    r = client.post(
        "/v1/registry/batch", content=b"", headers={"Authorization": f"Bearer {reader}", **NDJSON}
    )
    assert r.status_code == 403
    r = client.post("/v1/registry/batch", content=b"\n\n", headers={**p, **NDJSON})
    assert r.status_code == 200 and r.json()["lines"] == 0


def _account_rows(rt: Runtime, prefix: str) -> list[tuple[object, ...]]:
    from takedown.store.models import Account

    with rt.sessions() as s:
        return [
            (a.platform_id[len(prefix) :], a.handle, a.platform_status, a.status, a.flagged)
            + (a.flag_reason, a.flag_source, a.prior_violations, a.prior_violations_source)
            for a in s.scalars(
                select(Account).where(Account.platform_id.startswith(prefix)).order_by(Account.id)
            )
        ]


def _account_events(rt: Runtime, prefix: str) -> list[tuple[str, str, str]]:
    with rt.sessions() as s:
        return [
            (e.action, e.object_id[len(prefix) :], e.details)
            for e in s.scalars(
                select(AuditEvent)
                .where(AuditEvent.object_type == "account")
                .where(AuditEvent.object_id.startswith(prefix))
                .order_by(AuditEvent.id)
            )
        ]


def test_new_accounts_in_a_batch_as_with_single_requests(rt: Runtime, client):
    """A new account's first line is written with its row: the same columns and the
    same audit events (registered, IP events added, updated) as PUT /v1/accounts."""
    p = platform_headers(rt)
    ip = [{"ip": "192.0.2.7", "event": "login", "at": "2026-01-02T03:04:05Z"}]

    def lines(prefix: str) -> list[dict[str, object]]:
        return [
            {"account": {"id": f"{prefix}a", "handle": "first", "ip_events": ip}},
            {"account": {"id": f"{prefix}b"}},
            {"account": {"id": f"{prefix}c", "flagged": True, "flag_reason": "known"}},
            {"account": {"id": f"{prefix}a", "handle": "second", "flagged": False}},
            {
                "account": {
                    "id": f"{prefix}d",
                    "prior_violations": 2,
                    "prior_violations_source": "x",
                }
            },
            {"account": {"id": f"{prefix}e", "platform_status": "suspended", "flagged": False}},
            {"item": {"id": f"{prefix}i", "account_id": f"{prefix}f"}},
        ]

    for line in lines("s-"):
        body = dict(next(iter(line.values())))
        kind = "accounts" if "account" in line else "items"
        r = client.put(f"/v1/{kind}/{body.pop('id')}", json=body, headers=p)
        assert r.status_code == 200, r.text
    out = client.post("/v1/registry/batch", content=_ndjson(lines("b-")), headers={**p, **NDJSON})
    assert out.status_code == 200 and out.json()["rejected"] == [], out.text
    assert out.json()["accounts_created"] == 5
    assert _account_rows(rt, "b-") == _account_rows(rt, "s-")
    # The single requests register each account as it comes; the batch, all at once.
    assert sorted(_account_events(rt, "b-")) == sorted(_account_events(rt, "s-"))
    assert [e for e in _account_events(rt, "b-") if e[0] != "account.registered"] == [
        e for e in _account_events(rt, "s-") if e[0] != "account.registered"
    ]


def test_near_duplicates_join_only_the_cases_copies_may_still_join(rt: Runtime, client):
    """A batch's PDQ near-duplicates are looked up among the media of the items of
    active and confirmed cases: one of an open case's item is restricted with it, one
    of a confirmed case's item is removed, one of a case closed without a violation or
    of an item in no case joins nothing; the near-duplicate's repost goes where it goes."""
    p = platform_headers(rt)
    spec_a = user_headers(rt, "spec-a", "child_safety_specialist")
    spec_b = user_headers(rt, "spec-b", "child_safety_specialist")
    seeds = {"open": 30, "closed": 40, "confirmed": 50, "loose": 60}
    cases = {}
    for name, seed in seeds.items():
        r = client.put(f"/v1/items/{name}", json={"media": [_media(seed)]}, headers=p)
        assert r.status_code == 200, r.text
        if name != "loose":
            cases[name] = client.post("/v1/reports", json=parent_report([name])).json()[
                "case_number"
            ]

    def decide(case: str, headers: dict[str, str], outcome: str) -> bool:
        body = {"outcome": outcome, "reasons": "Reviewed (a test's stand-in decision)."}
        if outcome == "violation":
            body["policy"] = "csam"
        r = client.post(f"/v1/cases/{case}/decisions", headers=headers, json=body)
        assert r.status_code == 201, r.text
        return bool(r.json()["effective"])

    decide(cases["closed"], spec_a, "no_violation")
    assert decide(cases["closed"], spec_b, "no_violation")
    assert decide(cases["confirmed"], spec_a, "violation")
    lines: list[object] = [
        {"item": {"id": f"u{k}", "media": [_media(100 + k)]}} for k in range(40)
    ]  # unrelated uploads around them
    for name, seed in seeds.items():
        lines.append({"item": {"id": f"near-{name}", "media": [_media(seed, flip=4)]}})
        lines.append({"item": {"id": f"re-{name}", "reposts": f"near-{name}"}})
    r = client.post("/v1/registry/batch", content=_ndjson(lines), headers={**p, **NDJSON})
    assert r.status_code == 200 and r.json()["rejected"] == [], r.text
    assert sorted(r.json()["cases"]) == sorted([cases["open"], cases["confirmed"]])
    seen = {}
    for name in seeds:
        for pid in (f"near-{name}", f"re-{name}"):
            seen[pid] = client.get(f"/v1/items/{pid}", headers=p).json()["visibility"]
    assert seen == {
        "near-open": "restricted",
        "re-open": "restricted",
        "near-closed": "visible",
        "re-closed": "visible",
        "near-confirmed": "removed",
        "re-confirmed": "removed",
        "near-loose": "visible",
        "re-loose": "visible",
    }
    with rt.sessions() as s:
        in_cases = set(
            s.scalars(select(Item.platform_id).join(CaseItem, CaseItem.item_id == Item.id)).all()
        )
    assert in_cases >= {"near-open", "re-open", "near-confirmed", "re-confirmed"}
    assert not in_cases & {"near-closed", "re-closed", "near-loose", "re-loose"}
    assert not any(pid.startswith("u") for pid in in_cases)
