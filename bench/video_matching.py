"""Benchmark: which altered copies of a banked video are found, false matches on
unrelated videos, and screening time per minute of video.

Run with ``.venv/bin/python bench/video_matching.py`` (from the repository root, with
``src`` on the path; ``--quick`` for a shorter run). The videos are *stand-ins*: windows
panning and zooming over benign photos from the scikit-image / scikit-learn /
matplotlib wheels (``tests/media/videos.py``). Nothing real is used, nothing is
downloaded.

Everything goes through the product: a runtime on a throwaway SQLite database, the video
banked with ``BankService.add_media`` (dense sampling, as configured) and every variant
screened with ``ScreeningService.screen_media`` -- the decoding child, the frame hashes
and their 8 rotations/flips, the shared index and the per-bank video rule. Each variant
of the banked video is made from its decoded frames and re-encoded with H.264 (CRF 28),
as a re-upload through another app would be. Unrelated videos (other photos, other
motion) are screened against the same bank: every match among them is a false match.

Results are printed as JSON and written to ``bench/results/video_matching.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FPS = 15
SIZE = (640, 360)
BANKED_SCENES = ("astronaut", "chelsea", "coffee", "motorcycle_right", "rocket", "camera")
UNRELATED = (
    ("china", "grace_hopper", "hubble_deep_field", "coins"),
    ("ihc", "flower", "clock_motion", "motorcycle_left"),
    ("brick", "grass", "gravel", "cell"),
    ("moon", "retina", "china", "coins"),
    ("flower", "hubble_deep_field", "ihc", "grace_hopper"),
)

Frames = list[np.ndarray]


def _crop(c: float) -> Callable[[np.ndarray], np.ndarray]:
    def apply(p: np.ndarray) -> np.ndarray:
        h, w = p.shape[:2]
        y, x = int(h * c), int(w * c)
        return np.ascontiguousarray(p[y : h - y, x : w - x])

    return apply


def _letterbox(p: np.ndarray) -> np.ndarray:
    """The 16:9 picture shrunk into a 4:3 frame with black bars above and below."""
    h, w = p.shape[:2]
    out_h = w * 3 // 4
    out = np.zeros((out_h, w, 3), dtype=np.uint8)
    top = (out_h - h) // 2
    out[top : top + h] = p
    return out


def _pillarbox(p: np.ndarray) -> np.ndarray:
    """Black bars left and right (a 16:9 picture shown inside a wider frame)."""
    h, w = p.shape[:2]
    pad = w // 8
    out = np.zeros((h, w + 2 * pad, 3), dtype=np.uint8)
    out[:, pad : pad + w] = p
    return out


def _picture_in_picture(background: Frames) -> Callable[[np.ndarray, int], np.ndarray]:
    def apply(p: np.ndarray, i: int) -> np.ndarray:
        from PIL import Image

        out = background[i % len(background)].copy()
        h, w = p.shape[:2]
        small = np.asarray(Image.fromarray(p).resize((w // 2, h // 2)))
        out[h // 8 : h // 8 + h // 2, w // 3 : w // 3 + w // 2] = small
        return out

    return apply


def _text(p: np.ndarray) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.fromarray(p)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=p.shape[0] // 8)
    draw.rectangle((0, p.shape[0] * 3 // 4, p.shape[1], p.shape[0]), fill=(20, 20, 20))
    draw.text((10, p.shape[0] * 3 // 4 + 4), "stand-in caption, repost", font=font, fill="white")
    draw.text((10, 10), "@someone", font=font, fill="yellow")
    return np.asarray(image)


def _resize(frames: Frames, size: tuple[int, int]) -> Frames:
    import av

    return [
        av.VideoFrame.from_ndarray(p, format="rgb24")
        .reformat(width=size[0], height=size[1])
        .to_ndarray(format="rgb24")
        for p in frames
    ]


def _even(p: np.ndarray) -> np.ndarray:
    h, w = p.shape[:2]
    return np.ascontiguousarray(p[: h - h % 2, : w - w % 2])


def variants(frames: Frames, background: Frames) -> dict[str, Frames]:
    """Altered copies of the banked video's decoded frames."""
    second = FPS
    pip = _picture_in_picture(background)
    return {
        "reencoded": frames,
        "rescaled_480x270": _resize(frames, (480, 270)),
        "clip_on_the_second": frames[5 * second : 15 * second],
        "clip_half_second_off": frames[5 * second + second // 2 : 15 * second + second // 2],
        "clip_5s_quarter_second_off": frames[9 * second + second // 4 : 14 * second + second // 4],
        "mirrored": [np.ascontiguousarray(p[:, ::-1]) for p in frames],
        "rotated_90": [np.ascontiguousarray(np.rot90(p)) for p in frames],
        "upside_down": [np.ascontiguousarray(p[::-1, ::-1]) for p in frames],
        "crop_3pct": [_crop(0.03)(p) for p in frames],
        "crop_5pct": [_crop(0.05)(p) for p in frames],
        "crop_10pct": [_crop(0.10)(p) for p in frames],
        "letterboxed": [_letterbox(p) for p in frames],
        "pillarboxed": [_pillarbox(p) for p in frames],
        "picture_in_picture": [pip(p, i) for i, p in enumerate(frames)],
        "overlaid_text": [_text(p) for p in frames],
    }


def encode(frames: Frames) -> bytes:
    from tests.media.videos import encode_video

    return encode_video([_even(p) for p in frames], FPS, crf=28)


def _match_summary(result: object) -> dict[str, object]:
    matches = [m for m in result.matches if m.signal_type == "vpdq"]  # type: ignore[attr-defined]
    if not matches:
        return {"found": False}
    m = matches[0]
    video = m.video or {}
    return {
        "found": True,
        "kind": video.get("kind"),
        "variant": video.get("variant"),
        "upload_percent": video.get("upload_percent"),
        "banked_percent": video.get("banked_percent"),
        "distance": m.distance,
    }


def _variant_cost(rt: object, data: bytes) -> dict[str, float]:
    """The price of searching every frame in its 8 rotations/flips: the search and
    judgement of one upload with and without the 7 extra variants (the decoding,
    which dominates, is the same either way), median of 20."""
    import statistics
    from dataclasses import replace

    from takedown.media.video import hash_video_bytes
    from takedown.services.screening.matcher import QuerySignals

    started = time.perf_counter()
    video = hash_video_bytes(data)
    hashing = time.perf_counter() - started
    matcher = rt.screening._matcher  # type: ignore[attr-defined]
    plain = tuple(replace(f, variants=()) for f in video.frames)
    timings: dict[str, float] = {}
    for name, frames in (("original_only", plain), ("eight_variants", video.frames)):
        query = QuerySignals(md5=video.md5, sha256=video.sha256, video_frames=frames)
        matcher.check(query, {})  # warm
        runs = []
        for _ in range(20):
            t = time.perf_counter()
            matcher.check(query, {})
            runs.append(time.perf_counter() - t)
        timings[f"{name}_match_ms"] = round(1000 * statistics.median(runs), 2)
    timings["hashing_ms"] = round(1000 * hashing, 1)
    timings["screening_ratio"] = round(
        (hashing * 1000 + timings["eight_variants_match_ms"])
        / (hashing * 1000 + timings["original_only_match_ms"]),
        3,
    )
    return timings


def _tmk_report(
    banked: bytes, made: dict[str, bytes], others: dict[str, bytes]
) -> dict[str, object]:
    """TMK+PDQF of each video against the banked one's (Meta's scores via tmkpy; a match
    needs level 1 and level 2 >= 0.7), beside vPDQ on the same variants."""
    import base64

    from takedown.media import tmk
    from takedown.media.video import hash_video_bytes
    from takedown.media.video_limits import VideoSampling

    if not tmk.tmk_available():
        return {"available": False}
    sampling = VideoSampling(tmk=True)

    def vectors(data: bytes) -> tmk.TmkVectors:
        text = hash_video_bytes(data, sampling=sampling).tmk
        assert text is not None
        return tmk.parse_tmk(base64.b64decode(text))

    reference = vectors(banked)
    out: dict[str, object] = {"available": True}
    false_matches = 0
    for name, data in {**made, **others}.items():
        score = tmk.compare(reference, vectors(data))
        found = bool(score and score.matches)
        false_matches += found and name.startswith("unrelated")
        out[name] = {
            "found": found,
            "level1": round(score.level1, 3) if score else None,
            "level2": round(score.level2, 3) if score else None,
        }
    out["false_matches"] = false_matches
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0, help="banked video length")
    parser.add_argument("--quick", action="store_true", help="a 12 s video, 2 unrelated")
    args = parser.parse_args()
    seconds = 12.0 if args.quick else args.seconds
    unrelated = UNRELATED[:2] if args.quick else UNRELATED

    from tests.media.videos import decode_frames, make_video

    from takedown.config import Settings
    from takedown.runtime import open_runtime
    from takedown.services.banks.service import Provenance

    per_scene = seconds / len(BANKED_SCENES)
    banked = make_video(BANKED_SCENES, per_scene, FPS, SIZE, crf=23)
    frames = decode_frames(banked)
    background = decode_frames(make_video(UNRELATED[0], per_scene, FPS, SIZE, crf=23))
    made = {name: encode(f) for name, f in variants(frames, background).items()}
    others = {
        f"unrelated_{i}": make_video(scenes, seconds / len(scenes), FPS, SIZE, crf=28)
        for i, scenes in enumerate(unrelated)
    }

    report: dict[str, object] = {
        "banked_video": {"seconds": seconds, "fps": FPS, "size": list(SIZE)},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp) / "now")
        rt = open_runtime(settings)
        try:
            rt.banks.create_bank("bench", actor="bench", match_action="block")
            started = time.perf_counter()
            rt.banks.add_media("bench", banked, Provenance(), actor="bench")
            report["bank_seconds"] = round(time.perf_counter() - started, 2)
            report["bank_frames_per_second"] = 1 / settings.video_bank_seconds_per_hash
            report["bank_crop_windows"] = settings.video_bank_crop_windows
            rt.screening.screen_media(made["reencoded"], actor="bench")  # warm up
            found: dict[str, object] = {}
            total_video_s, total_wall_s = 0.0, 0.0
            for name, data in made.items():
                started = time.perf_counter()
                result = rt.screening.screen_media(data, actor="bench", content_ref=name)
                wall = time.perf_counter() - started
                duration = result.video.duration if result.video else 0.0
                total_video_s += duration
                total_wall_s += wall
                found[name] = {**_match_summary(result), "seconds": round(wall, 2)}
            false_matches = 0
            for name, data in others.items():
                started = time.perf_counter()
                result = rt.screening.screen_media(data, actor="bench", content_ref=name)
                summary = _match_summary(result)
                false_matches += bool(summary["found"])
                found[name] = {**summary, "seconds": round(time.perf_counter() - started, 2)}
            report["variants"] = found
            report["eight_variants_cost"] = _variant_cost(rt, made["reencoded"])
            report["false_matches"] = {"unrelated_videos": len(others), "matched": false_matches}
            report["screening_wall_seconds_per_video_minute"] = round(
                60 * total_wall_s / total_video_s, 2
            )
        finally:
            rt.close()
        # The same with the banked video sampled as the upload is (1 a second, no crop
        # windows): what dense banking and the windows add.
        sparse = Settings(
            data_dir=Path(tmp) / "sparse",
            video_bank_seconds_per_hash=1.0,
            video_bank_crop_windows="",
        )
        rt = open_runtime(sparse)
        try:
            rt.banks.create_bank("bench", actor="bench", match_action="block")
            rt.banks.add_media("bench", banked, Provenance(), actor="bench")
            report["banked_at_1fps_without_windows"] = {
                name: _match_summary(rt.screening.screen_media(data, actor="bench"))["found"]
                for name, data in {**made, **others}.items()
            }
        finally:
            rt.close()
    report["tmk"] = _tmk_report(banked, made, others)
    out = json.dumps(report, indent=2)
    print(out)
    if not args.quick:
        path = ROOT / "bench" / "results" / "video_matching.json"
        path.write_text(out + "\n")


if __name__ == "__main__":
    _ = io  # the stand-in helpers encode in memory
    main()
