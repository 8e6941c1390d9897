"""Hash-only screening throughput: requests per second through the real HTTP API.

    .venv/bin/python bench/screening.py [--n 100000] [--seconds 10] [--concurrency 16]
                                        [--workers 1] [--database-url URL]

Banks N random PDQ hashes (plus near-duplicate clusters so some queries match), starts
`takedown serve` in a subprocess, and drives POST /v1/screen/hashes with `wrk` when it
is installed (Debian package `wrk`; a C load generator that leaves the CPU to the
server) or else from this process with an asyncio httpx client, which takes a core of
its own and so understates the server. Load generator and server share the machine's
cores, as in the HMA figures we compare with. Also measures the screening service
in-process, without HTTP, to show where the time goes. Prints JSON and writes
bench/results/screening.json.

Baseline: HMA 2.0 measured on this kind of machine (ANCHORS.md): 213 req/s hash-only
lookup as shipped, 666 req/s with OMP_NUM_THREADS=1, 1M hashes, 2 gunicorn workers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from takedown.config import Settings
from takedown.domain.hashlists import HashRecord
from takedown.runtime import open_runtime

RESULTS = Path(__file__).parent / "results"


def _flip(value: int, k: int, rng: random.Random) -> int:
    for bit in rng.sample(range(256), k):
        value ^= 1 << bit
    return value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _populate(settings: Settings, n: int, rng: random.Random) -> tuple[str, list[int]]:
    rt = open_runtime(settings)
    rt.banks.create_bank("bench", actor="bench", match_action="block")
    centres = [rng.getrandbits(256) for _ in range(max(1, n // 1000))]
    t0 = time.perf_counter()
    chunk = 50_000
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        values = [rng.getrandbits(256) for _ in range(size)]
        if start == 0:
            values[: len(centres)] = centres
        rt.banks.add_hashes(
            "bench", [HashRecord("pdq", f"{v:064x}") for v in values], actor="bench"
        )
    load_s = time.perf_counter() - t0
    _, key = rt.api_keys.create("bench", ["screen"], actor="bench")
    rt.close()
    print(f"banked {n} hashes in {load_s:.1f}s", file=sys.stderr)
    return key, centres


def _queries(centres: list[int], rng: random.Random, count: int = 4096) -> list[dict]:
    out = []
    for i in range(count):
        if i % 4 == 0:  # a quarter are near-duplicates of banked material
            value = _flip(rng.choice(centres), rng.randint(0, 20), rng)
        else:
            value = rng.getrandbits(256)
        out.append({"pdq": f"{value:064x}", "pdq_quality": 100})
    return out


async def _drive(
    base: str, key: str, queries: list[dict], seconds: float, conc: int
) -> tuple[list[float], int, int]:
    latencies: list[float] = []
    errors = 0
    blocks = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(
        base_url=base, limits=limits, timeout=30, headers={"Authorization": f"Bearer {key}"}
    ) as client:

        async def worker(offset: int) -> None:
            nonlocal errors, blocks
            i = offset
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                r = await client.post("/v1/screen/hashes", json=queries[i % len(queries)])
                latencies.append((time.perf_counter() - t) * 1000)
                if r.status_code != 200:
                    errors += 1
                elif r.json()["verdict"] == "block":
                    blocks += 1
                i += conc

        await asyncio.gather(*(worker(k) for k in range(conc)))
    return latencies, errors, blocks


_WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
bodies = {%(bodies)s}
i = 0
request = function()
  i = i + 1
  return wrk.format(nil, "/v1/screen/hashes", nil, bodies[(i %% #bodies) + 1])
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %%d %%d %%.3f %%.3f\\n", summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def _drive_wrk(
    base: str, key: str, queries: list[dict], seconds: float, conc: int
) -> tuple[int, int, float, float]:
    bodies = ",".join("'" + json.dumps(q) + "'" for q in queries)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(_WRK_SCRIPT % {"key": key, "bodies": bodies})
    try:
        proc = subprocess.run(
            ["wrk", "-t1", f"-c{conc}", f"-d{int(seconds)}s", "-s", fh.name, base],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        os.unlink(fh.name)
    m = re.search(r"RESULT (\d+) (\d+) ([\d.]+) ([\d.]+)", proc.stdout)
    if not m:
        raise RuntimeError("wrk printed no result: " + proc.stdout + proc.stderr)
    return int(m[1]), int(m[2]), float(m[3]), float(m[4])


def _in_process(settings: Settings, queries: list[dict], seconds: float) -> dict:
    rt = open_runtime(settings, migrate=False)
    rt.screening.screen_hashes(actor="bench", **queries[0])  # loads the index
    times = []
    deadline = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        rt.screening.screen_hashes(actor="bench", **queries[i % len(queries)])
        times.append((time.perf_counter() - t) * 1000)
        i += 1
    rt.close()
    return {
        "per_s": round(len(times) / seconds, 1),
        "p50_ms": _pct(times, 50),
        "p99_ms": _pct(times, 99),
    }


def _pct(values: list[float], p: int) -> float:
    if not values:
        return float("nan")
    return round(statistics.quantiles(values, n=100)[p - 1] if p < 100 else max(values), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--load", choices=["auto", "wrk", "python"], default="auto")
    args = ap.parse_args()
    rng = random.Random(42)
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "TAKEDOWN_DATA_DIR": tmp}
        if args.database_url:
            env["TAKEDOWN_DATABASE_URL"] = args.database_url
        settings = Settings(data_dir=Path(tmp), database_url=args.database_url)
        key, centres = _populate(settings, args.n, rng)
        queries = _queries(centres, rng)
        in_proc = _in_process(settings, queries, min(args.seconds, 5.0))
        port = _free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "takedown.cli",
                "serve",
                "--port",
                str(port),
                "--workers",
                str(args.workers),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    if httpx.get(base + "/v1/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            asyncio.run(_drive(base, key, queries, 2.0, args.concurrency))  # warm-up
            load = args.load
            if load == "auto":
                load = "wrk" if shutil.which("wrk") else "python"
            if load == "wrk":
                count, errors, p50, p99 = _drive_wrk(
                    base, key, queries, args.seconds, args.concurrency
                )
                http = {
                    "requests": count,
                    "errors": errors,
                    "req_per_s": round(count / args.seconds, 1),
                    "p50_ms": p50,
                    "p99_ms": p99,
                }
            else:
                lat, errors, blocks = asyncio.run(
                    _drive(base, key, queries, args.seconds, args.concurrency)
                )
                http = {
                    "requests": len(lat),
                    "errors": errors,
                    "blocked": blocks,
                    "req_per_s": round(len(lat) / args.seconds, 1),
                    "p50_ms": _pct(lat, 50),
                    "p99_ms": _pct(lat, 99),
                }
        finally:
            server.terminate()
            server.wait(timeout=30)
    result = {
        "benchmark": "hash-only screening, POST /v1/screen/hashes",
        "n_hashes": args.n,
        "database": "postgresql" if args.database_url else "sqlite",
        "workers": args.workers,
        "concurrency": args.concurrency,
        "cores": os.cpu_count(),
        "load_generator": load,
        "http": http,
        "in_process_service": in_proc,
        "baseline_hma_2_0": {
            "raw_lookup_req_per_s_as_shipped": 213,
            "raw_lookup_req_per_s_omp1": 666,
            "note": "ANCHORS.md, 1M hashes, 2 gunicorn workers, same kind of machine",
        },
    }
    RESULTS.mkdir(exist_ok=True)
    suffix = (
        ""
        if args.workers == 1 and not args.database_url
        else (f"-{result['database']}-w{args.workers}")
    )
    (RESULTS / f"screening{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
