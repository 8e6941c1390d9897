"""An exchange's own threshold and action beyond image PDQ (issue 19, item 3): for its
video signals (StopNCII's VideoMD5 and VideoTMK; a vPDQ list's frame rule) and in
retroactive matching, so an exchange set to review or record never blocks or
restricts by video or by a retroactive match either. Through the HTTP API against the
local StopNCII-protocol server, on both database backends; stand-in videos made of
benign photos only."""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace

import pytest
from sqlalchemy import select

from takedown.ids import utcnow
from takedown.media.video import hash_video_bytes
from takedown.media.video_limits import DEFAULT_SAMPLING, VideoLimits
from takedown.store.models import BankEntry, Exchange, ExchangeEntry
from tests.cases.helpers import platform_headers
from tests.exchanges.stopncii_server import FETCH_KEY, SUBSCRIPTION_KEY
from tests.exchanges.test_pull import creds_file, pdq, stopncii  # noqa: F401


def _flip(value: str, bits: int) -> str:
    return f"{int(value, 16) ^ ((1 << bits) - 1):064x}"


@pytest.fixture(scope="module")
def video() -> bytes:
    from tests.media.videos import SCENES_A, make_video

    return make_video(SCENES_A[:2], 2.5, fps=10, size=(160, 120))


def _exchange(client, auth, tmp_path, url: str, bank: str, **policy: object) -> None:
    body = {
        "name": "stopncii",
        "type": "stopncii",
        "bank": bank,
        "base_url": url,
        "credentials_file": creds_file(tmp_path, f"{FETCH_KEY},{SUBSCRIPTION_KEY}"),
        **policy,
    }
    r = client.post("/v1/exchanges", headers=auth, json=body)
    assert r.status_code == 201, r.text


def _bank(client, auth, name: str, **extra: object) -> None:
    body = {"name": name, "source": "stopncii", "match_action": "block", **extra}
    r = client.post("/v1/banks", headers=auth, json=body)
    assert r.status_code == 201, r.text


def _policy(client, auth, **policy: object) -> None:
    r = client.put("/v1/exchanges/stopncii/policy", headers=auth, json=policy)
    assert r.status_code == 200, r.text


def test_video_md5_and_tmk_take_the_exchange_action(
    rt,
    client,
    auth,
    tmp_path,
    stopncii,  # noqa: F811
    video,
):
    from takedown.media.tmk import tmk_available

    if not tmk_available():
        pytest.skip("tmkpy is not installed: TMK is stored, not matched")
    tmk = hash_video_bytes(video, VideoLimits(), replace(DEFAULT_SAMPLING, tmk=True)).tmk
    assert tmk
    now = int(time.time())
    stopncii.put("VideoMD5", hashlib.md5(video).hexdigest(), "Active", now - 3600)
    stopncii.put("VideoTMK", tmk, "Active", now - 3500)
    _bank(client, auth, "ncii", restrict_on_match=True)
    _exchange(client, auth, tmp_path, stopncii.url, "ncii", action="review")
    assert client.post("/v1/exchanges/stopncii/sync", headers=auth).status_code == 200

    def screen() -> dict:
        r = client.post("/v1/screen", files={"file": ("v.mp4", video)}, headers=auth)
        assert r.status_code == 200, r.text
        return r.json()

    seen = screen()
    assert seen["verdict"] == "review", seen
    assert {(m["signal_type"], m["action"]) for m in seen["matches"]} == {
        ("md5", "review"),
        ("tmk", "review"),
    }
    # The platform registers the video: a case for a person, nothing restricted (the
    # bank would restrict at once; the exchange says review).
    p = platform_headers(rt)
    assert client.put("/v1/items/v1", json={"account_id": "a1"}, headers=p).status_code == 200
    r = client.post("/v1/items/v1/media", headers=p, files={"file": ("v.mp4", video)})
    assert r.status_code == 200, r.text
    assert r.json()["verdict"] == "review" and r.json()["visibility"] == "visible"
    assert len(r.json()["cases"]) == 1

    _policy(client, auth, action="record")
    assert screen()["verdict"] == "allow"
    _policy(client, auth, action=None)  # back to the bank's: block, and restricted
    assert screen()["verdict"] == "block"
    assert client.put("/v1/items/v2", json={"account_id": "a2"}, headers=p).status_code == 200
    r = client.post("/v1/items/v2/media", headers=p, files={"file": ("v.mp4", video)})
    assert r.json()["verdict"] == "block" and r.json()["visibility"] == "restricted"


def test_a_vpdq_list_holds_banked_videos_frames_to_its_threshold(
    rt,
    client,
    auth,
    tmp_path,
    stopncii,  # noqa: F811
    video,
):
    """A list carrying vPDQ (ThreatExchange's lists do; not pulled here yet): its own
    threshold holds the frames of the banked videos it carries."""
    from tests.media.videos import transcode

    _bank(client, auth, "lists")
    _exchange(client, auth, tmp_path, stopncii.url, "lists")
    r = client.post(
        "/v1/banks/lists/media", headers=auth, files={"file": ("b.mp4", video, "video/mp4")}
    )
    assert r.status_code == 201, r.text
    vpdq = next(e["id"] for e in r.json()["entries"] if e["signal_type"] == "vpdq")
    with rt.sessions.begin() as s:  # the list's upstream entry for it, as a pull keeps it
        now = utcnow()
        s.add(
            ExchangeEntry(
                exchange_id=s.scalar(select(Exchange.id).where(Exchange.name == "stopncii")),
                upstream_id="upstream-vpdq-1",
                signal_type="vpdq",
                entry_id=s.scalar(select(BankEntry.id).where(BankEntry.public_id == vpdq)),
                labels="{}",
                first_seen_at=now,
                last_seen_at=now,
            )
        )
    copy = transcode(video, crf=32)  # other bytes: only the frame rule finds it

    def screen() -> dict:
        r = client.post("/v1/screen", files={"file": ("c.mp4", copy)}, headers=auth)
        assert r.status_code == 200, r.text
        return r.json()

    found = screen()
    assert found["verdict"] == "block" and found["matches"][0]["signal_type"] == "vpdq"
    _policy(client, auth, threshold=0)  # only identical frames count for this list
    assert screen()["verdict"] == "allow"
    _policy(client, auth, threshold=None, action="review")
    assert screen()["verdict"] == "review"


def test_retroactive_matching_takes_the_exchange_threshold_and_action(
    rt,
    client,
    auth,
    tmp_path,
    stopncii,  # noqa: F811
):
    # Four listed pictures (far apart), each with one registered upload near it.
    base = int(time.time()) - 3600
    stopncii.put("ImagePDQ", pdq(1), "Active", base)
    stopncii.put("ImagePDQ", pdq(2), "Active", base + 1)
    _bank(client, auth, "ncii", restrict_on_match=True)
    _exchange(client, auth, tmp_path, stopncii.url, "ncii", threshold=8, action="review")
    p = platform_headers(rt)

    def register(item: str, listed: str, bits: int) -> None:
        media = {"sha256": hashlib.sha256(item.encode()).hexdigest(),
                 "pdq": _flip(listed, bits), "pdq_quality": 90}  # fmt: skip
        r = client.put(f"/v1/items/{item}", json={"account_id": item, "media": [media]}, headers=p)
        assert r.status_code == 200 and r.json()["cases"] == [], r.text

    def item(name: str) -> dict:
        return client.get(f"/v1/items/{name}", headers=p).json()

    def in_cases(name: str) -> int:
        listed = client.get("/v1/cases", headers=auth).json()
        rows = listed["cases"] if isinstance(listed, dict) else listed
        n = 0
        for c in rows:
            detail = client.get(f"/v1/cases/{c['id']}", headers=auth).json()
            n += any(x["item_id"] == name for x in detail["copies"])
        return n

    def sync_and_scan() -> None:
        assert client.post("/v1/exchanges/stopncii/sync", headers=auth).status_code == 200
        rt.retroscan.run_pending()

    # Registered before the list came: 4 bits from one (within the exchange's 8), 12
    # from the other (within the bank's 31 only).
    register("aa", pdq(1), 4)
    register("bb", pdq(2), 12)
    sync_and_scan()
    [job] = client.get("/v1/banks/ncii/retroscans", headers=auth).json()
    assert job["state"] == "done" and job["matches"] == 1  # bb: past the exchange's 8
    assert item("aa")["visibility"] == "visible" and in_cases("aa") == 1  # review: a case
    assert item("bb")["visibility"] == "visible" and in_cases("bb") == 0

    # Set to record: a retroactive match is kept, no case, nothing restricted.
    _policy(client, auth, threshold=8, action="record")
    register("cc", pdq(3), 3)
    stopncii.put("ImagePDQ", pdq(3), "Active", base + 2)
    sync_and_scan()
    assert item("cc")["visibility"] == "visible" and in_cases("cc") == 0

    # The bank's own policy again (block, restrict on match): restricted at once.
    _policy(client, auth, threshold=None, action=None)
    register("dd", pdq(4), 2)
    stopncii.put("ImagePDQ", pdq(4), "Active", base + 3)
    sync_and_scan()
    assert item("dd")["visibility"] == "restricted" and in_cases("dd") == 1
    # A rescan of the whole bank: bb is within the bank's 31 now (cc's pair was acted
    # on when it was found, under record: not again).
    r = client.post("/v1/banks/ncii/retroscans", headers=auth)
    assert r.status_code in (200, 201, 202), r.text
    rt.retroscan.run_pending()
    assert item("bb")["visibility"] == "restricted"
    assert item("cc")["visibility"] == "visible"
