"""Compatibility with Meta's vPDQ: our frame hashes against the ``vpdq`` package's.

Run with ``.venv/bin/python bench/vpdq_compat.py`` from the repository root. It:

1. creates a throwaway virtual environment in a temporary directory and installs Meta's
   ``vpdq`` package from PyPI into it (it compiles against FFmpeg's development headers:
   Debian's ``libavcodec-dev libavformat-dev libavutil-dev libswscale-dev pkg-config``
   and, for vpdq 0.2.5, ``libavdevice-dev libavfilter-dev libswresample-dev``;
   installed with apt-get when missing and running as root). Takedown itself never needs
   these: they are for this check only;
2. generates stand-in videos (benign photos panned and zoomed, ``tests/media/videos.py``)
   in several sizes, frame rates, codecs and containers;
3. hashes each with Takedown (:func:`takedown.media.video.hash_video_bytes`, without the
   pruning that drops and collapses frames) and with ``vpdq.computeHash`` in the venv;
4. checks Meta's criterion: every frame of quality >= 80 is within 10 bits of vPDQ's hash
   for the same timestamp.

Prints JSON and writes ``bench/results/vpdq_compat.json``. Exits non-zero on a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# vpdq 0.2.5 also asks pkg-config for libavdevice and libavfilter (and libswresample).
APT_PACKAGES = [
    "libavcodec-dev",
    "libavformat-dev",
    "libavutil-dev",
    "libswscale-dev",
    "libavdevice-dev",
    "libavfilter-dev",
    "libswresample-dev",
]
MAX_BITS = 10
MIN_QUALITY = 80

VPDQ_SCRIPT = """
import json, sys, vpdq
out = {}
for path in sys.argv[1:]:
    out[path] = [
        {"frame_number": f.frame_number, "timestamp": f.timestamp, "pdq": f.hex,
         "quality": f.quality}
        for f in vpdq.computeHash(path)
    ]
print(json.dumps(out))
"""


def ensure_system_packages() -> None:
    missing = [
        p
        for p in [*APT_PACKAGES, "pkg-config"]
        if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0
    ]
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        sys.exit(f"vpdq needs these Debian packages: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)


def vpdq_venv(where: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    python = where / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "vpdq"], check=True, timeout=1200
    )
    return python


def make_videos(folder: Path) -> dict[str, Path]:
    from tests.media.videos import SCENES_A, SCENES_B, make_video

    specs = {
        "h264-320x240-10fps.mp4": dict(scenes=SCENES_A, size=(320, 240), fps=10),
        "h264-640x360-25fps.mp4": dict(scenes=SCENES_B, size=(640, 360), fps=25),
        "h264-1280x720-30fps.mp4": dict(scenes=SCENES_A, size=(1280, 720), fps=30),
        "h264-odd-322x182-24fps.mkv": dict(
            scenes=SCENES_B, size=(322, 182), fps=24, container="matroska"
        ),
        "mpeg4-480x360-15fps.avi": dict(
            scenes=SCENES_A, size=(480, 360), fps=15, codec="mpeg4", container="avi"
        ),
        "vp9-320x240-12fps.webm": dict(
            scenes=SCENES_B, size=(320, 240), fps=12, codec="libvpx-vp9", container="webm"
        ),
    }
    paths = {}
    for name, spec in specs.items():
        path = folder / name
        path.write_bytes(make_video(seconds_per_scene=2.0, **spec))  # type: ignore[arg-type]
        paths[name] = path
    return paths


def main() -> None:
    from takedown.media.video import hash_video_bytes
    from takedown.media.video_limits import VideoSampling
    from takedown.signals import pdq_distance

    ensure_system_packages()
    report: dict[str, object] = {"criterion": f"quality >= {MIN_QUALITY}: <= {MAX_BITS} bits"}
    with tempfile.TemporaryDirectory(prefix="vpdq-compat-") as tmp:
        python = vpdq_venv(Path(tmp) / "venv")
        version = subprocess.run(
            [str(python), "-m", "pip", "show", "vpdq"], capture_output=True, text=True
        ).stdout
        report["vpdq_version"] = next(
            (
                line.split(":", 1)[1].strip()
                for line in version.splitlines()
                if line.startswith("Version")
            ),
            "?",
        )
        videos = make_videos(Path(tmp))
        theirs = json.loads(
            subprocess.run(
                [str(python), "-c", VPDQ_SCRIPT, *map(str, videos.values())],
                check=True,
                capture_output=True,
                text=True,
                timeout=600,
            ).stdout
        )
        per_video = {}
        worst_all = 0
        failures = 0
        everything = VideoSampling(quality_floor=0)
        for name, path in videos.items():
            ours = hash_video_bytes(path.read_bytes(), sampling=everything)
            ref = {round(f["timestamp"], 2): f for f in theirs[str(path)]}
            distances = []
            unmatched = 0
            for f in ours.frames:
                r = ref.get(round(f.timestamp, 2))
                if r is None:
                    unmatched += 1
                    continue
                if f.quality >= MIN_QUALITY:
                    distances.append(pdq_distance(f.pdq, r["pdq"]))
            bad = sum(d > MAX_BITS for d in distances)
            failures += bad + unmatched
            worst_all = max([worst_all, *distances])
            per_video[name] = {
                "frames_ours": len(ours.frames),
                "frames_vpdq": len(theirs[str(path)]),
                "frames_compared": len(distances),
                "timestamps_without_vpdq_frame": unmatched,
                "median_bits": sorted(distances)[len(distances) // 2] if distances else None,
                "max_bits": max(distances) if distances else None,
                "over_limit": bad,
            }
        report["videos"] = per_video
        report["max_bits"] = worst_all
        report["passed"] = failures == 0
    text = json.dumps(report, indent=2)
    print(text)
    (ROOT / "bench" / "results" / "vpdq_compat.json").write_text(text + "\n")
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
