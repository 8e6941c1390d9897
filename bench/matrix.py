"""What the Matrix connector costs and how fast it acts, against a real Synapse.

    PYTHONPATH=src:. .venv/bin/python bench/matrix.py [--uploads 40] [--reports 5]

Starts Takedown (`takedown serve`, SQLite) and Synapse (SQLite) twice: without the
module, then with `takedown.connectors.synapse.TakedownModule`. Each time a matrix-nio
client uploads the same N distinct 512×512 PNG stand-ins (one pixel differs) and the
upload's wall time is measured; with the module, every upload is screened by Takedown
first, so the difference is the screening's cost as a user feels it. Then, with the
module, `--reports` posts are reported by another user and the time until the file is
refused to that user is measured (report poll 0.5 s, Takedown's delivery poll 0.2 s: the
two intervals dominate; production defaults are 30 s and 2 s). Prints JSON and writes
bench/results/matrix.json.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

import httpx  # noqa: E402
import nio  # noqa: E402
import numpy as np  # noqa: E402
from tests.conftest import encode, standin_rgb  # noqa: E402
from tests.connectors.synapse_harness import (  # noqa: E402
    SERVER_NAME,
    USER_PASSWORD,
    Homeserver,
    running,
)

from takedown.config import Settings  # noqa: E402
from takedown.runtime import open_runtime  # noqa: E402

RESULTS = ROOT / "bench" / "results"
REPORTED = ["camera.png", "coffee.png", "chelsea.png", "rocket.jpg", "hubble_deep_field.jpg"]
REPORTED += ["brick.png", "coins.png", "horse.png", "moon.png", "retina.jpg"]


def _images(n: int) -> list[bytes]:
    base = standin_rgb("astronaut.png")  # a stand-in photo, 512×512
    out = []
    for i in range(n):
        img = base.copy()
        img[0, 0] = np.array([i % 256, i // 256, 7], dtype=np.uint8)
        out.append(encode(img))
    return out


async def _login(hs: Homeserver, user: str) -> Any:
    client = nio.AsyncClient(hs.url, f"@{user}:{SERVER_NAME}")
    await client.login(USER_PASSWORD)
    return client


async def _uploads(hs: Homeserver, images: list[bytes]) -> list[float]:
    client = await _login(hs, "uploader")
    times = []
    try:
        for i, data in enumerate(images):
            start = time.perf_counter()
            r, _ = await client.upload(
                io.BytesIO(data), content_type="image/png", filename=f"{i}.png", filesize=len(data)
            )
            times.append(time.perf_counter() - start)
            assert isinstance(r, nio.UploadResponse), r
    finally:
        await client.close()
    return times


def _screen_times(hs: Homeserver, images: list[bytes]) -> list[float]:
    times = []
    with httpx.Client(headers={"Authorization": f"Bearer {hs.platform_key}"}) as http:
        for data in images:
            start = time.perf_counter()
            r = http.post(f"{hs.takedown}/v1/screen", files={"file": ("x.png", data)})
            times.append(time.perf_counter() - start)
            assert r.status_code == 200, r.text
    return times


async def _report_to_quarantine(hs: Homeserver, images: list[bytes], reporter: str) -> list[float]:
    poster, other = await _login(hs, "uploader"), await _login(hs, "reporter")
    times: list[float] = []
    errors: list[str] = []
    try:
        room = await poster.room_create(invite=[reporter])
        await other.join(room.room_id)
        for i, data in enumerate(images):
            up, _ = await poster.upload(
                io.BytesIO(data), content_type="image/png", filename="r.png", filesize=len(data)
            )
            sent = await poster.room_send(
                room.room_id,
                "m.room.message",
                {"msgtype": "m.image", "body": f"{i}.png", "url": up.content_uri},
            )
            await asyncio.sleep(1.0)  # let the connector register the event first
            start = time.perf_counter()
            r = httpx.post(
                f"{hs.url}/_matrix/client/v3/rooms/{room.room_id}/report/{sent.event_id}",
                json={"reason": "csam"},
                headers={"Authorization": f"Bearer {other.access_token}"},
            )
            assert r.status_code == 200, r.text
            while True:
                got = await other.download(mxc=up.content_uri)
                if isinstance(got, nio.DownloadError) and got.status_code == "M_NOT_FOUND":
                    break  # what Synapse answers for quarantined media
                assert time.perf_counter() - start < 60, f"never quarantined: {got}"
                await asyncio.sleep(0.02)
            times.append(time.perf_counter() - start)
            errors.append(str(got.status_code))
    finally:
        await poster.close()
        await other.close()
    print("quarantined media answers:", sorted(set(errors)), file=sys.stderr)
    return times


def _summary(times: list[float]) -> dict[str, float]:
    ms = sorted(t * 1000 for t in times)
    return {
        "median_ms": round(statistics.median(ms), 1),
        "p95_ms": round(ms[max(0, int(len(ms) * 0.95) - 1)], 1),
        "mean_ms": round(statistics.fmean(ms), 1),
    }


def _run(tmp: Path, module: bool, images: list[bytes], reports: int) -> dict[str, Any]:
    database = tmp / "takedown.sqlite3"
    open_runtime(
        Settings(database_url=f"sqlite:///{database}", data_dir=tmp / "data"), migrate=True
    ).close()
    out: dict[str, Any] = {}
    with running(tmp, database, module=module) as hs:
        hs.register("uploader")
        reporter = hs.register("reporter")
        asyncio.run(_uploads(hs, images[:3]))  # warm-up
        out["upload"] = _summary(asyncio.run(_uploads(hs, images)))
        if module:
            out["takedown_screen_direct"] = _summary(_screen_times(hs, images))
            # Distinct photos (far apart in PDQ): a near copy of reported material is
            # restricted as soon as it is posted, which would not measure the report.
            stand_ins = [encode(standin_rgb(name)) for name in REPORTED[:reports]]
            seconds = asyncio.run(_report_to_quarantine(hs, stand_ins, reporter))
            out["report_to_quarantined_s"] = [round(s, 2) for s in seconds]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--uploads", type=int, default=40)
    ap.add_argument("--reports", type=int, default=5, help="at most 10")
    args = ap.parse_args()
    images = _images(args.uploads)
    result: dict[str, Any] = {
        "bench": "matrix",
        "uploads": args.uploads,
        "image_bytes_mean": int(statistics.fmean(len(i) for i in images)),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
        "settings": {"report_poll_seconds": 0.5, "TAKEDOWN_DELIVERY_POLL_SECONDS": 0.2},
    }
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        result["without_module"] = _run(Path(a), False, images, 0)
        result["with_module"] = _run(Path(b), True, images, args.reports)
    added = (
        result["with_module"]["upload"]["median_ms"]
        - result["without_module"]["upload"]["median_ms"]
    )
    result["screening_added_median_ms"] = round(added, 1)
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "matrix.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
