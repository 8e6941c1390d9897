"""Benchmark: video hashing speed, in seconds of video per second of wall time.

Run with ``.venv/bin/python bench/video_hashing.py`` (from the repository root, with
``src`` on the path). The videos are *stand-ins*: panning and zooming windows over
benign photos from the scikit-image / scikit-learn / matplotlib wheels (see
``tests/media/videos.py``), encoded with H.264 at 30 fps, 720p and 1080p. Nothing real is
ever used and nothing is downloaded.

Measured with :func:`takedown.media.video.hash_video_bytes`, i.e. the product's path:
a forked decoding child, every frame decoded, one full-frame PDQ a second, MD5 and
SHA-256. The median of three runs per size. Results are printed as JSON and written to
``bench/results/video_hashing.json``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SECONDS = 20
FPS = 30
SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}
RUNS = 3


def main() -> None:
    import av
    from tests.media.videos import SCENES_A, SCENES_B, make_video

    from takedown.media.video import hash_video_bytes
    from takedown.media.video_limits import VideoLimits

    scenes = (*SCENES_A, *SCENES_B)
    results: dict[str, object] = {}
    limits = VideoLimits(max_bytes=2**31 - 1)
    for name, size in SIZES.items():
        data = make_video(scenes, SECONDS / len(scenes), FPS, size, crf=23)
        hash_video_bytes(data, limits)  # warm the fork server
        times = []
        for _ in range(RUNS):
            started = time.perf_counter()
            signals = hash_video_bytes(data, limits)
            times.append(time.perf_counter() - started)
        wall = statistics.median(times)
        results[name] = {
            "width": size[0],
            "height": size[1],
            "fps": FPS,
            "video_seconds": signals.duration,
            "bytes": len(data),
            "frames_decoded": signals.frames_decoded,
            "frames_hashed": signals.frames_hashed,
            "wall_seconds_median": round(wall, 3),
            "video_seconds_per_wall_second": round(signals.duration / wall, 2),
        }
    report = {
        "benchmark": "video_hashing",
        "codec": "h264 (libx264, CRF 23)",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "pyav": av.__version__,
        "results": results,
    }
    text = json.dumps(report, indent=2)
    print(text)
    out = ROOT / "bench" / "results" / "video_hashing.json"
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
