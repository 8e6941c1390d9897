"""The content registry: idempotent events, screening, copies that appear later."""

from __future__ import annotations

from sqlalchemy import func, select

from takedown.runtime import Runtime
from takedown.store.models import AuditEvent, ItemViews, OutboxMessage
from tests.cases.helpers import parent_report, platform_headers, user_headers

ITEM = {
    "account_id": "acc-1",
    "url": "https://social.example/p/1",
    "monetized": True,
    "view_count": 5,
    "media": [{"sha256": "ab" * 32, "md5": "cd" * 16, "pdq": "f0" * 32, "pdq_quality": 90}],
}


def _count(rt: Runtime, model) -> int:
    with rt.sessions() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def test_the_same_event_twice_changes_nothing(rt: Runtime, client):
    p = platform_headers(rt)
    first = client.put("/v1/items/i1", json=ITEM, headers=p)
    assert first.status_code == 200 and first.json()["created"] is True
    events, views = _count(rt, AuditEvent), _count(rt, ItemViews)
    again = client.put("/v1/items/i1", json=ITEM, headers=p)
    assert again.json()["created"] is False and again.json()["changed"] is False
    assert (_count(rt, AuditEvent), _count(rt, ItemViews)) == (events, views)
    acc = client.put("/v1/accounts/acc-1", json={"handle": "a"}, headers=p)
    events = _count(rt, AuditEvent)
    assert client.put("/v1/accounts/acc-1", json={"handle": "a"}, headers=p).json() == acc.json()
    assert _count(rt, AuditEvent) == events


def test_registry_errors(rt: Runtime, client):
    p = platform_headers(rt)
    r = client.put("/v1/accounts/a", json={"status": "sleeping"}, headers=p)
    assert r.status_code == 422 and r.json()["code"] == "invalid_status"
    r = client.post("/v1/items/nope/views", json={"view_count": 3}, headers=p)
    assert r.status_code == 404 and r.json()["code"] == "item_not_found"
    r = client.put("/v1/items/x", json={"media": [{"sha256": "zz"}]}, headers=p)
    assert r.status_code == 422 and r.json()["code"] == "invalid_hash"
    r = client.put("/v1/items/x", json={"url": "u" * 2001}, headers=p)
    assert r.status_code == 422
    from takedown.errors import InvalidRequest, NotFound
    from takedown.services.registry.service import _text

    try:
        _text("x" * 300, "handle")
    except InvalidRequest as exc:
        assert exc.code == "field_too_long"
    try:
        rt.registry._account(rt.sessions(), "missing", create=False, actor="t")
    except NotFound as exc:
        assert exc.code == "account_not_found"


def test_a_bank_match_marked_restrict_first_opens_a_restricted_case(rt: Runtime, client, auth):
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
    client.post(
        "/v1/banks/ncmec/entries",
        headers=auth,
        json={"entries": [{"signal_type": "md5", "value": "cd" * 16}]},
    )
    r = client.put("/v1/items/i1", json=ITEM, headers=p).json()
    assert r["verdict"] == "block" and r["matched_banks"] == ["ncmec"]
    assert r["visibility"] == "restricted" and len(r["cases"]) == 1
    spec = user_headers(rt, "spec", "child_safety_specialist")
    case = client.get(f"/v1/cases/{r['cases'][0]}", headers=spec).json()
    assert any(f["name"] == "hash_match" for f in case["priority_factors"])
    assert case["state"] == "restricted"


def test_an_item_registered_later_at_a_reported_url_joins_and_is_restricted(rt, client):
    p = platform_headers(rt)
    receipt = client.post(
        "/v1/reports", json=parent_report([], urls=["https://social.example/p/1"])
    ).json()
    assert receipt["restricted_items"] == 0 and receipt["status"] == "received"
    r = client.put("/v1/items/i1", json=ITEM, headers=p).json()
    assert r["cases"] == [receipt["case_number"]] and r["visibility"] == "restricted"
    # …and a repost of it, registered after, too.
    r = client.put("/v1/items/i2", json={"account_id": "acc-2", "reposts": "i1"}, headers=p)
    assert r.json()["visibility"] == "restricted"
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(OutboxMessage)) == 2
    status = client.post(
        "/v1/reports/status",
        json={"case_number": receipt["case_number"], "token": receipt["status_token"]},
    ).json()
    assert status["status"] == "content_restricted" and status["content_restricted"]


def test_views_are_recorded_and_raise_priority(rt: Runtime, client):
    p = platform_headers(rt)
    client.put("/v1/items/i1", json=ITEM, headers=p)
    receipt = client.post("/v1/reports", json=parent_report(["i1"])).json()
    spec = user_headers(rt, "spec", "child_safety_specialist")
    before = client.get(f"/v1/cases/{receipt['case_number']}", headers=spec).json()
    r = client.post("/v1/items/i1/views", json={"view_count": 50_000}, headers=p)
    assert r.json()["changed"] is True
    after = client.get(f"/v1/cases/{receipt['case_number']}", headers=spec).json()
    assert after["priority"] > before["priority"]
    assert after["views_since_first_report"] == 50_000 - 5


def test_reported_intimate_imagery_stops_earning_while_under_review(rt: Runtime, client):
    p = platform_headers(rt)
    client.put("/v1/items/i1", json=ITEM, headers=p)
    r = client.post(
        "/v1/reports",
        json={
            "category": "ncii",
            "reporter_role": "user",
            "item_ids": ["i1"],
            "explanation": "Shared without consent.",
            "good_faith": True,
            "reporter_name": "Ann",
            "reporter_email": "ann@example.org",
        },
    ).json()
    assert r["restricted_items"] == 0
    item = client.get("/v1/items/i1", headers=p).json()
    assert item["visibility"] == "visible" and item["monetization_paused"] is True
    with rt.sessions() as s:
        topics = list(s.scalars(select(OutboxMessage.topic)))
    assert topics == ["item.demonetize"]
    mod = user_headers(rt, "mod", "moderator")
    client.post(
        f"/v1/cases/{r['case_number']}/decisions",
        headers=mod,
        json={"outcome": "no_violation", "reasons": "Not intimate imagery at all."},
    )
    assert client.get("/v1/items/i1", headers=p).json()["monetization_paused"] is False


def test_attached_file_is_kept_encrypted_once(rt: Runtime, client):
    from takedown.store.models import Blob, Media
    from tests.conftest import standin_bytes

    photo = standin_bytes("coffee.png")  # a stand-in photo
    p = platform_headers(rt)
    for item in ("f1", "f2"):  # the same bytes on two items: stored once
        assert client.put(f"/v1/items/{item}", json={"account_id": "a"}, headers=p).is_success
        r = client.post(f"/v1/items/{item}/media", headers=p, files={"file": ("x.png", photo)})
        assert r.status_code == 200, r.text
    with rt.sessions() as s:
        media = s.scalars(select(Media)).one()
        assert media.blob_id is not None
        blob = rt.blobs.info(s, media.blob_id)
        assert (blob.content_type, blob.size, blob.kind) == ("image/png", len(photo), "media")
        assert rt.blobs.get(s, media.blob_id) == photo
        assert _count(rt, Blob) == 1


def test_views_an_hour_ago_follow_each_items_samples(rt: Runtime):
    """A case's views an hour ago, per item: its last sample by then; for an item
    posted within the hour, nothing; for an older item first seen since, its first
    sample; for an item never sampled, nothing (one set-based query)."""
    from datetime import timedelta

    from sqlalchemy import delete, insert, select

    from takedown.domain.reports import ReportInput
    from takedown.ids import utcnow
    from takedown.services.registry.service import ItemInput
    from takedown.store.models import Case, Item

    now = utcnow()
    rt.registry.upsert_item(ItemInput("orig", posted_at=now - timedelta(days=2)), actor="t")
    rt.registry.upsert_item(ItemInput("new", reposts="orig", posted_at=now), actor="t")
    rt.registry.upsert_item(
        ItemInput("old", reposts="orig", posted_at=now - timedelta(days=3)), actor="t"
    )
    rt.registry.upsert_item(ItemInput("none", reposts="orig"), actor="t")
    rt.cases.submit_report(
        ReportInput(
            category="csam",
            reporter_role="user",
            item_ids=["orig"],
            explanation="abuse material",
            good_faith=True,
        ),
        channel="api",
    )
    with rt.sessions.begin() as s:
        ids = dict(s.execute(select(Item.platform_id, Item.id)).all())
        s.execute(delete(ItemViews))
        s.execute(
            insert(ItemViews),
            [
                {"item_id": ids["orig"], "at": now - timedelta(hours=3), "view_count": 100},
                {"item_id": ids["orig"], "at": now - timedelta(hours=2), "view_count": 300},
                {"item_id": ids["orig"], "at": now - timedelta(minutes=5), "view_count": 900},
                {"item_id": ids["new"], "at": now - timedelta(minutes=5), "view_count": 40},
                {"item_id": ids["old"], "at": now - timedelta(minutes=30), "view_count": 70},
                {"item_id": ids["old"], "at": now - timedelta(minutes=3), "view_count": 90},
            ],
        )
    with rt.sessions() as s:
        case = s.scalars(select(Case)).one()
        assert rt.cases._figures(s, case, now).views_hour_ago == 300 + 0 + 70 + 0
