"""Video through the API: banked, screened (copies, clips, others), registered and
found as a copy of a reported video; hostile files get their 4xx codes."""

from __future__ import annotations

from sqlalchemy import func, select

from takedown.store.models import BankVideoFrame, MediaVideoFrame, ScreeningMatch
from tests.cases.helpers import parent_report, platform_headers
from tests.media.videos import (
    audio_only,
    banked_video,
    huge_declared_video,
    other_video,
    slow_video,
    transcode,
)


def _bank_video(client, auth, video: bytes | None = None, **bank: object) -> dict:
    r = client.post("/v1/banks", headers=auth, json={"name": "videos", "source": "ncmec", **bank})
    assert r.status_code == 201, r.text
    r = client.post(
        "/v1/banks/videos/media",
        headers=auth,
        files={"file": ("v.mp4", video or banked_video(), "video/mp4")},
        data={"category": "stand-in"},
    )
    assert r.status_code == 201, r.text
    return r.json()


def _screen(client, auth, data: bytes) -> dict:
    r = client.post("/v1/screen", headers=auth, files={"file": ("u.mp4", data, "video/mp4")})
    assert r.status_code == 200, r.text
    return r.json()


def test_a_banked_video_is_found_in_copies_and_clips_not_in_others(client, auth, rt):
    added = _bank_video(client, auth, match_action="block")
    assert added["added"] == 3  # MD5, SHA-256 and the video's frame set
    assert {e["signal_type"] for e in added["entries"]} == {"vpdq", "md5", "sha256"}
    with rt.sessions() as s:
        # 40 frames 0.2 s apart, each also hashed from 2 centred crop windows
        assert s.scalar(select(func.count()).select_from(BankVideoFrame)) == 40 * 3

    same = _screen(client, auth, banked_video())
    assert same["verdict"] == "block" and same["media_type"] == "video"
    assert {m["signal_type"] for m in same["matches"]} == {"vpdq", "md5", "sha256"}
    [whole] = [m["video"] for m in same["matches"] if m["signal_type"] == "vpdq"]
    assert whole["upload_ranges"] == whole["banked_ranges"] == [{"start": 0.0, "end": 8.0}]

    copy = _screen(client, auth, transcode(banked_video(), size=(256, 192), crop=3, crf=35))
    [match] = copy["matches"]
    assert match["signal_type"] == "vpdq" and match["video"]["kind"] == "copy"
    assert match["video"]["banked_percent"] >= 80 and match["distance"] <= 31
    assert copy["video"]["duration"] == 8.0 and len(copy["video"]["frames"]) == 8

    clip = _screen(client, auth, transcode(banked_video(), start_s=2, end_s=6))
    [match] = clip["matches"]
    assert match["video"]["kind"] == "clip" and match["video"]["upload_percent"] == 100
    # Ranges run to the end of the last matched frame's sampling interval (1 s on the
    # upload); on the densely banked video (a frame every 0.2 s) the last matched frame
    # stands for as much as the upload frame that matched it: 4 s on both timelines.
    assert match["video"]["banked_ranges"] == [{"start": 2.0, "end": 6.0}]
    assert match["video"]["upload_ranges"] == [{"start": 0.0, "end": 4.0}]
    assert match["threshold"] == match["video"]["threshold"] == 31
    assert match["video"]["match_percent"] == 80 and match["video"]["upload_frames"] == 4
    assert match["video"]["upload_matched_frames"] == 4
    with rt.sessions() as s:
        kept = s.scalars(
            select(ScreeningMatch.video_match).where(ScreeningMatch.signal_type == "vpdq")
        ).all()
    assert any('"kind": "clip"' in (v or "") for v in kept)

    other = _screen(client, auth, other_video())
    assert other["verdict"] == "allow" and other["matches"] == []


def test_a_mirrored_copy_is_blocked_and_says_how_it_was_turned(client, auth):
    _bank_video(client, auth, match_action="block")
    mirrored = _screen(client, auth, transcode(banked_video(), flip=True, crf=30))
    assert mirrored["verdict"] == "block"
    [match] = mirrored["matches"]
    assert match["signal_type"] == "vpdq" and match["variant"] == "flip_left_right"
    assert match["video"]["variant"] == "flip_left_right" and match["video"]["kind"] == "copy"


def test_a_clip_cut_between_the_uploads_seconds_matches_the_densely_banked_video(client, auth):
    """The clip starts 2.5 s in: half a second off every 1-a-second sample, over footage
    that pans and zooms (30-110 bits from the nearest 1-a-second frame). Banked at 5
    frames a second, a banked frame is never more than 0.1 s from the clip's."""
    _bank_video(client, auth, slow_video(), match_action="block")
    clip = _screen(client, auth, transcode(slow_video(), start_s=2.5, end_s=7.5, crf=30))
    assert clip["verdict"] == "block"
    [match] = clip["matches"]
    assert match["video"]["kind"] == "clip" and match["video"]["upload_percent"] == 100
    assert match["video"]["upload_ranges"] == [{"start": 0.0, "end": 5.0}]
    [banked] = match["video"]["banked_ranges"]
    assert 2.2 <= banked["start"] <= 2.8 and 7.2 <= banked["end"] <= 7.8


def test_a_clip_ending_mid_second_reads_its_own_length_on_both_timelines(client, auth):
    """A 3.5 s clip: its last sampled frame (at 3 s) stands for the half second left,
    not a whole one, on the upload's timeline and on the banked video's."""
    _bank_video(client, auth, match_action="block")
    clip = _screen(client, auth, transcode(banked_video(), start_s=2, end_s=5.5))
    assert clip["video"]["duration"] == 3.5
    [match] = clip["matches"]
    assert match["video"]["kind"] == "clip" and match["video"]["upload_frames"] == 4
    assert match["video"]["upload_ranges"] == [{"start": 0.0, "end": 3.5}]
    assert match["video"]["banked_ranges"] == [{"start": 2.0, "end": 5.5}]


def test_a_copy_cropped_by_five_percent_matches_a_banked_crop_window(client, auth):
    """8 px off every edge (5 % of the width, 7 % of the height), scaled back: 62-102
    bits from every banked frame, 6-20 from their 6 % centred windows."""
    _bank_video(client, auth, slow_video(), match_action="block")
    cropped = _screen(client, auth, transcode(slow_video(), crop=8, size=(160, 120)))
    assert cropped["verdict"] == "block"
    assert cropped["matches"][0]["video"]["kind"] == "copy"


def test_the_video_rule_is_configurable_per_bank(client, auth):
    _bank_video(client, auth, match_action="review", video_match_percent=100)
    cropped = transcode(banked_video(), crop=3)
    assert _screen(client, auth, cropped)["verdict"] == "review"
    r = client.patch("/v1/banks/videos", headers=auth, json={"video_frame_threshold": 2})
    assert r.status_code == 200 and r.json()["video_frame_threshold"] == 2
    assert _screen(client, auth, cropped)["verdict"] == "allow"
    r = client.patch("/v1/banks/videos", headers=auth, json={"video_match_percent": 0})
    assert r.status_code == 422 and r.json()["code"] == "invalid_video_match_percent"


def test_a_frame_showing_a_banked_image_is_found(client, auth):
    import io

    import av

    from tests.conftest import encode

    with av.open(io.BytesIO(banked_video())) as src:
        still = next(src.decode(video=0)).to_ndarray(format="rgb24")
    client.post("/v1/banks", headers=auth, json={"name": "images", "match_action": "review"})
    r = client.post(
        "/v1/banks/images/media", headers=auth, files={"file": ("a.png", encode(still))}
    )
    assert r.status_code == 201, r.text
    result = _screen(client, auth, transcode(banked_video(), crf=30))
    assert result["verdict"] == "review"
    assert [m["variant"] for m in result["matches"]] == ["frame@0s"]


def test_a_copy_of_a_reported_video_joins_the_case_and_is_restricted(client, rt):
    p = platform_headers(rt)
    for item in ("orig", "copy", "unrelated"):
        assert client.put(f"/v1/items/{item}", json={"account_id": item}, headers=p).is_success
    r = client.post("/v1/items/orig/media", headers=p, files={"file": ("v.mp4", banked_video())})
    assert r.status_code == 200, r.text
    with rt.sessions() as s:  # the video itself is kept, encrypted, for review and evidence
        from sqlalchemy import select

        from takedown.store.models import Media

        blob_id = s.scalars(select(Media.blob_id).where(Media.media_type == "video")).one()
        assert rt.blobs.info(s, blob_id).content_type == "video/mp4"
        assert rt.blobs.get(s, blob_id) == banked_video()
    receipt = client.post("/v1/reports", json=parent_report(["orig"])).json()
    assert receipt["restricted_items"] == 1
    # A re-encoded, rescaled clip of it is uploaded elsewhere later.
    copy = transcode(banked_video(), size=(240, 180), start_s=1, end_s=6, crf=32)
    r = client.post("/v1/items/copy/media", headers=p, files={"file": ("c.mp4", copy)})
    assert r.status_code == 200, r.text
    assert r.json()["cases"] == [receipt["case_number"]]
    assert r.json()["visibility"] == "restricted"
    r = client.post(
        "/v1/items/unrelated/media", headers=p, files={"file": ("o.mp4", other_video())}
    )
    assert r.json()["cases"] == [] and r.json()["visibility"] == "visible"
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(MediaVideoFrame)) == 8 + 5 + 8


def test_hostile_videos_get_their_codes(client, auth, rt):
    rt.screening._video_limits = type(rt.settings.video_limits)(max_seconds=5)
    mp4 = banked_video()
    cases = [
        (mp4[: len(mp4) // 2], 422, "media_corrupt"),
        (b"\x00\x00\x00\x18ftypisom" + b"\x00" * 3000, 422, "media_corrupt"),
        (huge_declared_video(), 413, "media_too_many_pixels"),
        (audio_only(), 422, "video_no_stream"),
        (mp4, 413, "video_too_long"),
        (b"", 422, "media_empty"),
    ]
    for data, status, code in cases:
        r = client.post("/v1/screen", headers=auth, files={"file": ("x.mp4", data)})
        assert (r.status_code, r.json()["code"]) == (status, code), r.text


def test_a_file_of_no_accepted_type_is_told_the_video_formats_too(client, auth):
    """Every upload path that takes video names its containers beside the image formats
    when it refuses a file's type (`takedown hash` as well)."""
    client.post("/v1/banks", headers=auth, json={"name": "own"})
    heif = b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64
    pdf = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"
    uploads = [
        ("/v1/screen", pdf, "a PDF document"),
        ("/v1/banks/own/media", pdf, "a PDF document"),
        ("/v1/screen", heif, "a HEIF/AVIF image (not accepted)"),
    ]
    for path, data, seen in uploads:
        r = client.post(path, headers=auth, files={"file": ("x.bin", data)})
        assert (r.status_code, r.json()["code"]) == (415, "media_unsupported_type"), r.text
        message = r.json()["message"]
        assert message.startswith(f"This file looks like {seen};"), message
        assert "JPEG, PNG, GIF, WebP and BMP images" in message
        assert "MP4/MOV, Matroska/WebM, AVI and MPEG-TS videos" in message
    r = client.put(
        "/v1/items/post-1",
        headers=auth,
        json={"account_id": "acct-1"},
    )
    assert r.status_code == 200, r.text
    r = client.post("/v1/items/post-1/media", headers=auth, files={"file": ("x.pdf", pdf)})
    assert r.status_code == 415 and "videos are accepted" in r.json()["message"]


def test_disabling_a_banked_videos_frame_set_disables_its_digests_too(client, auth):
    added = _bank_video(client, auth, match_action="block")
    vpdq = next(e for e in added["entries"] if e["signal_type"] == "vpdq")
    r = client.patch(
        f"/v1/entries/{vpdq['id']}",
        headers=auth,
        json={"enabled": False, "reason": "false positive: stand-in clip"},
    )
    assert r.status_code == 200, r.text
    assert {e["signal_type"] for e in r.json()["siblings"]} == {"md5", "sha256"}
    same = _screen(client, auth, banked_video())
    assert same["verdict"] == "allow" and same["matches"] == []
    r = client.post(
        "/v1/banks/videos/media/enable",
        headers=auth,
        files={"file": ("v.mp4", banked_video(), "video/mp4")},
    )
    assert r.status_code == 200 and r.json()["changed"] == 3
    assert _screen(client, auth, banked_video())["verdict"] == "block"


def test_every_endpoint_that_takes_a_video_says_so(client):
    """The API reference names video wherever a video is accepted (issue #24)."""
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/screen", "/v1/banks/{bank}/media", "/v1/items/{item_id}/media"):
        post = paths[path]["post"]
        text = f"{post.get('summary', '')} {post.get('description', '')}".lower()
        assert "video" in text, path


def test_a_letterboxed_copy_is_blocked_by_the_picture_inside_its_bars(client, auth):
    import numpy as np

    from tests.media.videos import decode_frames, encode_video

    _bank_video(client, auth, match_action="block")
    boxed = []
    for picture in decode_frames(banked_video()):  # 320 x 240 inside a 320 x 320 frame
        frame = np.zeros((320, 320, 3), dtype=np.uint8)
        frame[40:280] = picture
        boxed.append(frame)
    copy = _screen(client, auth, encode_video(boxed, 10, crf=28))
    assert copy["verdict"] == "block"
    [match] = copy["matches"]
    assert match["video"]["variant"] == "without_borders" and match["video"]["kind"] == "copy"
