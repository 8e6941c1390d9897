"""The Mastodon connector over real HTTP: posts screened per second, and the time from a
banked post's webhook to Mastodon's admin action.

    .venv/bin/python bench/mastodon.py [--posts 60] [--banked 10] [--concurrency 4]

A Takedown server (``takedown serve``, SQLite, one worker), the connector process and
the local Mastodon of tests/connectors/fake_mastodon.py. Each post carries one
synthetic 256x256 PNG (noise: a stand-in, never real material). Phase 1 sends
``status.created`` for new posts (screened, registered, attached; verdict allow) from
``--concurrency`` senders; phase 2 posts the banked stand-in and waits for the
``sensitive`` action (Takedown's delivery poll set to 0.2 s). Prints JSON and writes
bench/results/mastodon.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import standin_bytes  # noqa: E402
from tests.connectors.fake_mastodon import FakeMastodon  # noqa: E402

from takedown.config import Settings  # noqa: E402
from takedown.runtime import open_runtime  # noqa: E402

RESULTS = Path(__file__).parent / "results"
TOKEN = "bench-service-token-0123456789"
SECRET = "bench-webhook-secret-0123456789"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_up(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def _noise_png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--posts", type=int, default=60)
    ap.add_argument("--banked", type=int, default=10)
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        rt = open_runtime(Settings(data_dir=data))
        try:
            _, platform_key = rt.api_keys.create("mastodon", ["platform"], actor="bench")
            _, admin_key = rt.api_keys.create("admin", ["admin"], actor="bench")
        finally:
            rt.close()
        fake = FakeMastodon(TOKEN, rate_limit=100_000)
        cport = _port()
        tport = _port()
        env = {
            **os.environ,
            "TAKEDOWN_DATA_DIR": str(data),
            "TAKEDOWN_ACCESS_LOG": "false",
            "TAKEDOWN_WEBHOOK_URL": f"http://127.0.0.1:{cport}/webhooks/takedown",
            "TAKEDOWN_WEBHOOK_SECRET": SECRET,
            "TAKEDOWN_DELIVERY_POLL_SECONDS": "0.2",
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "takedown.cli", "serve", "--workers", "1"]
            + ["--port", str(tport)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        config = Path(tmp) / "mastodon.toml"
        config.write_text(
            f'[takedown]\nurl = "http://127.0.0.1:{tport}"\napi_key = "{platform_key}"\n'
            f'webhook_secret = "{SECRET}"\n[mastodon]\nurl = "{fake.url}"\n'
            f'access_token = "{TOKEN}"\nwebhook_secret = "{fake.webhook_secret}"\n'
            f'[connector]\nport = {cport}\ncontact_email = "mods@social.example"\n',
            encoding="utf-8",
        )
        connector = subprocess.Popen(
            [sys.executable, "-m", "takedown.cli", "connector", "mastodon"]
            + ["--config", str(config)],
            env=os.environ.copy(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{tport}"
        hook = f"http://127.0.0.1:{cport}/webhooks/mastodon"
        admin = {"Authorization": f"Bearer {admin_key}"}
        try:
            _wait_up(base + "/v1/health")
            _wait_up(f"http://127.0.0.1:{cport}/health")
            httpx.post(
                base + "/v1/banks",
                json={"name": "known", "match_action": "block", "restrict_on_match": True},
                headers=admin,
            ).raise_for_status()
            banked = standin_bytes("chelsea.png")
            httpx.post(
                base + "/v1/banks/known/media",
                files={"file": ("standin.png", banked)},
                headers=admin,
                timeout=60,
            ).raise_for_status()

            # Phase 1: new posts, each with its own image.
            account = fake.add_account("poster")
            posts = [fake.add_status(account, _noise_png(i)) for i in range(args.posts)]

            def send(sid: str) -> float:
                started = time.perf_counter()
                r = fake.webhook(hook, "status.created", fake.status(sid))
                assert r.status_code == 200, r.text
                return time.perf_counter() - started

            send(posts[0])  # warm-up (first screening loads the index)
            started = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                latencies = list(pool.map(send, posts[1:]))
            elapsed = time.perf_counter() - started

            # Phase 2: banked posts, until the admin action.
            to_action: list[float] = []
            for i in range(args.banked):
                who = fake.add_account(f"banked{i}")
                sid = fake.add_status(who, banked)
                t0 = time.perf_counter()
                fake.webhook(hook, "status.created", fake.status(sid))
                path = f"/api/v1/admin/accounts/{who}/action"
                while not fake.calls("POST", path):
                    time.sleep(0.005)
                    if time.perf_counter() - t0 > 60:
                        raise SystemExit("no admin action within 60 s")
                to_action.append(time.perf_counter() - t0)
        finally:
            for p in (connector, server):
                p.send_signal(signal.SIGTERM)
            for p in (connector, server):
                p.wait(timeout=60)
            fake.close()
    result = {
        "benchmark": "Mastodon connector: status.created webhooks to Takedown, banked post "
        "to admin action (SQLite, one Takedown worker, local fake Mastodon)",
        "posts": len(latencies),
        "concurrency": args.concurrency,
        "image": "256x256 PNG (synthetic noise)",
        "posts_per_s": round(len(latencies) / elapsed, 1),
        "webhook_ms_p50": _pct(latencies, 0.5),
        "webhook_ms_p95": _pct(latencies, 0.95),
        "banked_posts": len(to_action),
        "delivery_poll_s": 0.2,
        "banked_to_action_ms_p50": _pct(to_action, 0.5),
        "banked_to_action_ms_max": round(max(to_action) * 1000, 1),
        "banked_to_action_ms_mean": round(statistics.mean(to_action) * 1000, 1),
        "cpu_count": os.cpu_count(),
        "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mastodon.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
