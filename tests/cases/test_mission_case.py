"""The case in MISSION.md, played end to end with stand-in media.

A 13-year-old's video resurfaces, posted by an account already flagged for sharing
abuse material, reposted 2,223 times while its views grow. His parent reports it. The
stand-in for the video is a benign photo from the scikit-image wheel (a cat); there is
no abuse material anywhere in this project.
"""

from __future__ import annotations

import io

from PIL import Image
from sqlalchemy import func, select

from takedown.runtime import Runtime
from takedown.services.registry.batch import register_batch
from takedown.services.registry.service import AccountInput, ItemInput, MediaInput
from takedown.store.models import Account, CaseItem, Item, OutboxMessage
from tests.cases.helpers import parent_report, platform_headers, user_headers
from tests.conftest import standin_bytes

REPOSTS = 2_223


def _status(client, receipt: dict) -> dict:
    r = client.post(
        "/v1/reports/status",
        json={"case_number": receipt["case_number"], "token": receipt["status_token"]},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    text = str(body)
    assert "moderator" not in text and "spec" not in text  # never who reviewed
    return body


def _items(rt: Runtime, visibility: str) -> int:
    with rt.sessions() as s:
        return (
            s.scalar(select(func.count()).select_from(Item).where(Item.visibility == visibility))
            or 0
        )


def test_the_mission_case(rt: Runtime, client):
    platform = platform_headers(rt)
    moderator = user_headers(rt, "mod-a", "moderator")
    other_moderator = user_headers(rt, "mod-b", "moderator")
    specialist = user_headers(rt, "spec-a", "child_safety_specialist")

    # The platform registers the original, by an account already flagged, through the
    # HTTP API with the media's bytes hashed here…
    r = client.put("/v1/accounts/trafficker-1", json={"flagged": True}, headers=platform)
    assert r.status_code == 200
    r = client.put(
        "/v1/items/video-1",
        headers=platform,
        json={
            "account_id": "trafficker-1",
            "url": "https://social.example/p/video-1",
            "monetized": True,
            "view_count": 1_000,
        },
    )
    assert r.status_code == 200, r.text
    video = standin_bytes("chelsea.png")
    r = client.post(
        "/v1/items/video-1/media", headers=platform, files={"file": ("video-1.png", video)}
    )
    assert r.status_code == 200 and r.json()["verdict"] == "allow"
    # …and its 2,223 reposts by other accounts (through the batch registration, as a
    # platform's backfill sends them: one transaction a chunk, not 2,223 of them).
    reposts = [
        ItemInput(
            platform_id=f"repost-{i}",
            account_id=f"user-{i}",
            reposts="video-1",
            url=f"https://social.example/p/repost-{i}",
            monetized=True,
            view_count=10,
        )
        for i in range(REPOSTS)
    ]
    done = register_batch(rt.registry, list(enumerate(reposts, 1)), actor="apikey:platform")
    assert done.accepted == REPOSTS and done.rejected == []
    rt.registry.upsert_account(AccountInput("user-0", handle="someone"), actor="t")
    # Views keep growing.
    for views in (20_000, 90_000, 167_000):
        assert (
            client.post(
                "/v1/items/video-1/views", json={"view_count": views}, headers=platform
            ).status_code
            == 200
        )

    # The parent reports it, without giving a name (optional for child sexual abuse).
    r = client.post("/v1/reports", json=parent_report(["video-1"]))
    assert r.status_code == 201, r.text
    receipt = r.json()
    # Within that one request every copy is restricted and demonetized.
    assert receipt["restricted_items"] == REPOSTS + 1
    assert receipt["status"] == "content_restricted"
    assert _items(rt, "restricted") == REPOSTS + 1 and _items(rt, "visible") == 0
    with rt.sessions() as s:
        assert (
            s.scalar(
                select(func.count()).select_from(Item).where(Item.monetization_paused.is_(False))
            )
            == 0
        )
        assert (
            s.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.topic == "item.restrict")
            )
            == REPOSTS + 1
        )
    assert _status(client, receipt)["content_restricted"] is True

    case_id = receipt["case_number"]
    case = client.get(f"/v1/cases/{case_id}", headers=moderator).json()
    assert case["copies_total"] == REPOSTS + 1 and case["total_views"] >= 167_000
    factors = {f["name"] for f in case["priority_factors"]}
    assert {"severity", "minor_involved", "reporter", "account_history", "reach"} <= factors
    assert case["clocks"][0]["name"] == "decision" and case["clocks"][0]["state"] == "on_time"
    assert client.get("/v1/cases", headers=moderator).json()[0]["id"] == case_id

    # One moderator's mistaken "no violation" does not lift the restriction.
    r = client.post(
        f"/v1/cases/{case_id}/decisions",
        headers=moderator,
        json={"outcome": "no_violation", "reasons": "Looks like an adult to me."},
    )
    assert r.status_code == 201 and r.json()["effective"] is False
    assert _items(rt, "restricted") == REPOSTS + 1
    assert _status(client, receipt)["status"] == "under_review"
    # Neither the same person nor a non-specialist can make it stick.
    r = client.post(
        f"/v1/cases/{case_id}/decisions",
        headers=moderator,
        json={"outcome": "no_violation", "reasons": "Still looks like an adult."},
    )
    assert r.status_code == 409 and r.json()["code"] == "same_reviewer"
    r = client.post(
        f"/v1/cases/{case_id}/decisions",
        headers=other_moderator,
        json={"outcome": "no_violation", "reasons": "I agree with my colleague."},
    )
    assert r.status_code == 403 and r.json()["code"] == "specialist_required"
    assert _items(rt, "restricted") == REPOSTS + 1

    # The specialist's second review overrules it: the violation is confirmed on all copies.
    r = client.post(
        f"/v1/cases/{case_id}/decisions",
        headers=specialist,
        json={
            "outcome": "violation",
            "policy": "csam",
            "reasons": "The person depicted is a minor; this is child sexual abuse material.",
        },
    )
    assert r.status_code == 201 and r.json()["effective"] is True
    assert _items(rt, "removed") == REPOSTS + 1
    status = _status(client, receipt)
    assert status["status"] == "decided" and status["decision"]["outcome"] == "violation"
    assert "minor" in status["decision"]["reasons"]
    assert [e["event"] for e in status["timeline"]] == ["received", "content_restricted", "decided"]

    # A re-encoded re-upload of the same media is caught and joins the case.
    img = Image.open(io.BytesIO(video)).convert("RGB")
    buf = io.BytesIO()
    img.resize((img.width * 2 // 3, img.height * 2 // 3)).save(buf, "JPEG", quality=55)
    r = client.put("/v1/items/reupload-1", json={"account_id": "new-account"}, headers=platform)
    assert r.json()["cases"] == []
    r = client.post(
        "/v1/items/reupload-1/media", headers=platform, files={"file": ("re.jpg", buf.getvalue())}
    )
    assert r.status_code == 200, r.text
    assert r.json()["cases"] == [case_id] and r.json()["visibility"] == "removed"
    case = client.get(f"/v1/cases/{case_id}", headers=specialist).json()
    assert case["copies_total"] == REPOSTS + 2
    with rt.sessions() as s:
        reason, distance = s.execute(
            select(CaseItem.reason, CaseItem.distance)
            .join(Item, Item.id == CaseItem.item_id)
            .where(Item.platform_id == "reupload-1")
        ).one()
    assert reason == "pdq" and 0 < distance <= 31  # a near-duplicate, not the same bytes

    # The posting accounts are suspended (minor safety), the platform is told, and the
    # flagged account's other items are queued for checking.
    r = client.put(
        "/v1/items/other-by-trafficker", json={"account_id": "trafficker-1"}, headers=platform
    )
    with rt.sessions() as s:
        assert (
            s.scalar(select(Account.status).where(Account.platform_id == "trafficker-1"))
            == "suspended"
        )
        measures = dict(
            s.execute(
                select(OutboxMessage.topic, func.count())
                .where(OutboxMessage.target_type == "account")
                .group_by(OutboxMessage.topic)
            ).all()
        )
    # The uploader and the re-uploader are suspended (minor safety); each of the 2,223
    # reposters gets a strike and a warning, not a suspension (docs/operations.md).
    assert measures == {"account.suspend": 2, "account.warn": REPOSTS}
    account = client.get("/v1/accounts/new-account", headers=platform).json()
    assert account["status"] == "suspended" and account["strikes"] == 1
    assert account["measures"][0]["part"] == "reuploader"
    assert account["suspended_by"] == [case_id]
    reposter = client.get("/v1/accounts/user-7", headers=platform).json()
    assert reposter["status"] == "active" and reposter["strikes"] == 1
    assert [(m["part"], m["measure"]) for m in reposter["measures"]] == [("reposter", "warn")]

    # Re-uploads are blocked at upload: the media went into the platform's own bank…
    admin = user_headers(rt, "root", "admin")
    body = client.post(
        "/v1/screen", files={"file": ("re.jpg", buf.getvalue())}, headers=platform
    ).json()
    assert body["verdict"] == "block" and body["matches"][0]["bank"] == "own-confirmed"
    assert body["matches"][0]["source_id"] == case_id
    # …and disabling those entries (a false positive) lets such uploads through again.
    entries = client.get("/v1/banks/own-confirmed/entries", headers=admin).json()["entries"]
    for e in entries:
        client.patch(
            f"/v1/entries/{e['id']}",
            headers=admin,
            json={"enabled": False, "reason": "false positive (test)"},
        )
    body = client.post(
        "/v1/screen", files={"file": ("re.jpg", buf.getvalue())}, headers=platform
    ).json()
    assert body["verdict"] == "allow"


def test_an_unfounded_report_is_lifted_only_by_a_specialist(rt: Runtime, client):
    platform = platform_headers(rt)
    moderator = user_headers(rt, "mod-a", "moderator")
    specialist = user_headers(rt, "spec-a", "child_safety_specialist")
    media = MediaInput(sha256="ab" * 32)
    rt.registry.upsert_item(ItemInput("cat-1", account_id="cat-owner", media=[media]), actor="t")
    rt.registry.upsert_item(ItemInput("cat-2", account_id="other", reposts="cat-1"), actor="t")
    r = client.post(
        "/v1/reports",
        json={
            "category": "csam",
            "reporter_role": "user",
            "item_ids": ["cat-1"],
            "explanation": "I think this is abusive.",
            "good_faith": True,
        },
    )
    receipt = r.json()
    assert receipt["restricted_items"] == 2
    case_id = receipt["case_number"]
    r = client.post(
        f"/v1/cases/{case_id}/decisions",
        headers=moderator,
        json={"outcome": "no_violation", "reasons": "A photo of a cat; nothing abusive."},
    )
    assert r.json()["effective"] is False and _items(rt, "restricted") == 2
    r = client.post(
        f"/v1/cases/{case_id}/decisions",
        headers=specialist,
        json={"outcome": "no_violation", "reasons": "Confirmed: a photo of a cat, no person."},
    )
    assert r.json()["effective"] is True
    assert _items(rt, "visible") == 2 and _items(rt, "restricted") == 0
    with rt.sessions() as s:
        restored = s.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.topic == "item.restore")
        )
    assert restored == 2
    status = _status(client, receipt)
    assert status["decision"]["outcome"] == "no_violation"
    assert status["content_restricted"] is False
    r = client.get("/v1/items/cat-2", headers=platform)
    assert r.json()["monetization_paused"] is False
