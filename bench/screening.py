"""Hash-only screening throughput: requests per second through the real HTTP API.

    .venv/bin/python bench/screening.py [--n 100000] [--seconds 10] [--rounds 3]
                                        [--concurrency 16] [--workers 1]
                                        [--database-url URL]

Banks N random PDQ hashes (plus near-duplicate clusters so some queries match), starts
`takedown serve --workers W` in a subprocess (one SO_REUSEPORT socket per worker, the
access log off as in HMA's gunicorn set-up), and drives POST /v1/screen/hashes with
`wrk` when it is installed (Debian package `wrk`, installed here when running as root;
a C load generator that leaves the CPU to the server), else from this process with an
asyncio httpx client, which takes a core of its own and so understates the server.
Every answer is checked: a quarter of the queries are near-duplicates that must be
blocked, the rest random hashes that must be allowed (`wrong_answers`). `--rounds`
load runs; the median is the figure (this machine's speed varies by a fifth between
runs), every round is kept. Load generator and server share the machine's cores, as
in the HMA figures we compare with. Also measures the screening service in-process,
without HTTP.

Bank scale, in the same JSON: the N hashes are imported from a text file through
`takedown bank import` into the database of the running server (seconds, items/s), then
the seconds until every worker answers for the last imported hash; the serving workers
then write an index snapshot and move onto it, and each worker's memory is read
(resident total, private, file-backed and Pss, the proportional share of pages shared
between workers); then a `takedown index snapshot` and a restart (seconds from spawn
until searchable, memory with the snapshot mapped). Uploads: POST /v1/screen with
12 MP JPEG stand-ins (scikit-image photos, one banked, one not; every verdict is
checked). Prints JSON and writes bench/results/screening.json (screening-postgresql.json
with --database-url). The machine's load average is recorded next to each figure.

Baseline: HMA 2.0 measured on this kind of machine (ANCHORS.md): 213 req/s hash-only
lookup as shipped, 666 req/s with OMP_NUM_THREADS=1, 1M hashes, 2 gunicorn workers.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
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
from takedown.runtime import open_runtime
from takedown.services.banks.service import Provenance
from takedown.store.blobs import new_key_text

RESULTS = Path(__file__).parent / "results"


def _flip(value: int, k: int, rng: random.Random) -> int:
    for bit in rng.sample(range(256), k):
        value ^= 1 << bit
    return value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _populate(settings: Settings, rng: random.Random) -> tuple[str, bytes, bytes]:
    """An empty bank, an API key, and two stand-in photos: one banked, one not."""
    rt = open_runtime(settings)
    rt.banks.create_bank("bench", actor="bench", match_action="block")
    banked, other = _stand_in_jpeg("chelsea"), _stand_in_jpeg("coffee")
    rt.banks.add_media("bench", banked, Provenance(), actor="bench")
    _, key = rt.api_keys.create("bench", ["screen"], actor="bench")
    rt.close()
    return key, banked, other


def _write_list(path: Path, n: int, rng: random.Random) -> list[int]:
    """N random PDQ hashes (the first N/1000 are cluster centres) as a text hash list."""
    centres = [rng.getrandbits(256) for _ in range(max(1, n // 1000))]
    with path.open("w") as fh:
        fh.writelines(f"{v:064x}\n" for v in centres)
        fh.writelines(f"{rng.getrandbits(256):064x}\n" for _ in range(n - len(centres)))
    return centres


def _stand_in_jpeg(name: str) -> bytes:
    """A scikit-image stand-in photo upscaled to 12 MP, JPEG quality 90 (never real
    material)."""
    from PIL import Image
    from skimage import data

    with Image.fromarray(getattr(data, name)()) as photo:
        large = photo.convert("RGB").resize((4032, 3024), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    large.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _cli(env: dict[str, str], *args: str) -> float:
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "takedown.cli", *args],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - t


def _until_snapshot(data_dir: Path, hashes: int, limit_s: float = 300) -> float:
    """Seconds until a serving worker has written a snapshot of at least ``hashes``."""
    t = time.perf_counter()
    meta = data_dir / "bank-index" / "snapshot.json"
    while time.perf_counter() - t < limit_s:
        try:
            if json.loads(meta.read_text())["hashes"] >= hashes:
                return round(time.perf_counter() - t, 2)
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    raise RuntimeError("the serving workers wrote no snapshot")


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _rss(pid: int) -> dict[str, float]:
    """Resident memory of one process in MB: total, its anonymous (private) and
    file-backed parts (shared libraries, the mapped index snapshot), and its
    proportional share (Pss: pages shared by N processes count 1/N each)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
            fields[name] = round(int(value.split()[0]) / 1024, 1)
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            name, _, value = line.partition(":")
            if name == "Pss":
                fields["Pss"] = round(int(value.split()[0]) / 1024, 1)
    except OSError:
        pass
    return fields


def _workers(pid: int) -> list[int]:
    """The serving processes: the server's children (several workers) or itself."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parts = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(parts[1]) == pid:
            cmdline = (stat.parent / "cmdline").read_bytes()
            if b"resource_tracker" not in cmdline:
                children.append(int(stat.parent.name))
    # uvicorn's supervisor also starts a resource tracker, left out
    pids = children or [pid]
    return sorted(pids, key=lambda p: -_rss(p).get("VmRSS", 0))


def _start(env: dict[str, str], port: int, workers: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "takedown.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        # The server's log, shown if it does not come up (see _wait_healthy).
        stderr=open(Path(env["TAKEDOWN_DATA_DIR"]) / "server.log", "wb"),  # noqa: SIM115
    )


def _until_searchable(base: str, key: str, value: int, limit_s: float = 600) -> float:
    """Seconds until 20 answers in a row, each on a new connection (so any worker may
    answer), say the hash is blocked."""
    t = time.perf_counter()
    streak = 0
    body = {"pdq": f"{value:064x}", "pdq_quality": 100}
    headers = {"Authorization": f"Bearer {key}"}
    while streak < 20:
        if time.perf_counter() - t > limit_s:
            raise RuntimeError("the imported hashes never became searchable")
        try:
            r = httpx.post(base + "/v1/screen/hashes", json=body, headers=headers, timeout=30)
            ok = r.status_code == 200 and r.json()["verdict"] == "block"
        except httpx.HTTPError:
            ok = False
        streak = streak + 1 if ok else 0
        if not ok:
            time.sleep(0.05)
    return round(time.perf_counter() - t, 2)


_PHOTOS = {"image": "stand-ins: scikit-image chelsea (banked) and coffee (not), 4032x3024, q90"}


async def _drive_uploads(
    base: str, key: str, photos: list[tuple[bytes, str]], seconds: float, conc: int
) -> dict[str, float | int]:
    """POST /v1/screen with 12 MP JPEGs; each answer's verdict is checked."""
    latencies: list[float] = []
    errors = wrong = 0
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(
        base_url=base, timeout=60, headers={"Authorization": f"Bearer {key}"}
    ) as client:

        async def worker(offset: int) -> None:
            nonlocal errors, wrong
            i = offset
            while time.perf_counter() < deadline:
                data, expected = photos[i % len(photos)]
                t = time.perf_counter()
                r = await client.post("/v1/screen", files={"file": ("p.jpg", data, "image/jpeg")})
                latencies.append((time.perf_counter() - t) * 1000)
                if r.status_code != 200:
                    errors += 1
                elif r.json()["verdict"] != expected:
                    wrong += 1
                i += 1

        await asyncio.gather(*(worker(k) for k in range(conc)))
    return {
        "requests": len(latencies),
        "errors": errors,
        "wrong_answers": wrong,
        "per_s": round(len(latencies) / seconds, 1),
        "p50_ms": _pct(latencies, 50),
        "p99_ms": _pct(latencies, 99),
        "concurrency": conc,
        "load_generator": "python (httpx)",
        **_PHOTOS,
        "bytes": len(photos[0][0]),
    }


def _wait_healthy(base: str, log: Path | None = None) -> None:
    for _ in range(3000):
        try:
            if httpx.get(base + "/v1/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise RuntimeError("the server did not start\n" + tail)


def _expected(i: int) -> str:
    """The verdict query ``i`` must get: a quarter are near-duplicates of banked material
    (0-20 bits from a banked hash, the bank blocks within 31); the rest are random, and a
    random hash within 31 bits of a million others has a chance of about 1e-30."""
    return "block" if i % 4 == 0 else "allow"


def _queries(centres: list[int], rng: random.Random, count: int = 4096) -> list[dict]:
    out = []
    for i in range(count):
        if _expected(i) == "block":
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


# One load script for both endpoints: the bodies, and for each answer the verdict it
# must carry, found by the field that names what was screened (``pdq`` or ``md5``).
_WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "%(content_type)s"
wrk.headers["Authorization"] = "Bearer %(key)s"
local function read(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end
bodies = {%(bodies)s}
expected = {%(expected)s}
i = 0
checked = 0
wrong = 0
threads = {}
setup = function(thread)
  table.insert(threads, thread)
end
request = function()
  i = i + 1
  return wrk.format(nil, "%(path)s", nil, bodies[(i %% #bodies) + 1])
end
-- Every answer is checked: the verdict must be the one expected for what it names.
response = function(status, headers, body)
  if status == 200 then
    local named = string.match(body, '"%(field)s":"(%%x+)"')
    local verdict = string.match(body, '"verdict":"(%%a+)"')
    checked = checked + 1
    if named == nil or expected[named] ~= verdict then
      wrong = wrong + 1
    end
  end
end
done = function(summary, latency, requests)
  local c, w = 0, 0
  for _, t in ipairs(threads) do
    c = c + t:get("checked")
    w = w + t:get("wrong")
  end
  io.write(string.format("RESULT %%d %%d %%.3f %%.3f %%d %%d\\n", summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, c, w))
end
"""


def _ensure_wrk() -> bool:
    """wrk (Debian package) if it is here, or can be installed (root with apt-get)."""
    if shutil.which("wrk"):
        return True
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        # apt's progress goes to stderr: stdout carries only this benchmark's JSON.
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wrk"], env=env, check=False, stdout=sys.stderr
        )
    return shutil.which("wrk") is not None


def _run_wrk(base: str, script: str, seconds: float, conc: int) -> dict[str, float | int]:
    """Run wrk with a Lua script whose ``done`` prints the RESULT line below."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script)
    try:
        proc = subprocess.run(
            ["wrk", "-t1", f"-c{conc}", f"-d{int(seconds)}s", "-s", fh.name, base],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        os.unlink(fh.name)
    m = re.search(r"RESULT (\d+) (\d+) ([\d.]+) ([\d.]+) (\d+) (\d+)", proc.stdout)
    if not m:
        raise RuntimeError("wrk printed no result: " + proc.stdout + proc.stderr)
    requests = int(m[1])
    return {
        "requests": requests,
        "errors": int(m[2]),
        "checked": int(m[5]),
        "wrong_answers": int(m[6]),
        "req_per_s": round(requests / seconds, 1),
        "p50_ms": float(m[3]),
        "p99_ms": float(m[4]),
    }


def _drive_wrk(
    base: str, key: str, queries: list[dict], seconds: float, conc: int
) -> dict[str, float | int]:
    bodies = ",".join("'" + json.dumps(q) + "'" for q in queries)
    expected = ",".join(f'["{q["pdq"]}"]="{_expected(i)}"' for i, q in enumerate(queries))
    script = _WRK_SCRIPT % {
        "key": key,
        "content_type": "application/json",
        "path": "/v1/screen/hashes",
        "field": "pdq",
        "bodies": bodies,
        "expected": expected,
    }
    return _run_wrk(base, script, seconds, conc)


def _drive_wrk_uploads(
    base: str, key: str, photos: list[tuple[bytes, str]], seconds: float, conc: int, tmp: Path
) -> dict[str, float | int]:
    """POST /v1/screen with the photos as multipart bodies, from wrk; every answer's
    verdict is checked against the photo it names (by MD5)."""
    boundary = "takedown-bench-boundary"
    paths, expected = [], []
    for n, (data, verdict) in enumerate(photos):
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="p{n}.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'.encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        path = tmp / f"upload-{n}.bin"
        path.write_bytes(body)
        paths.append(f'read("{path}")')
        expected.append(f'["{hashlib.md5(data).hexdigest()}"]="{verdict}"')
    script = _WRK_SCRIPT % {
        "key": key,
        "content_type": f"multipart/form-data; boundary={boundary}",
        "path": "/v1/screen",
        "field": "md5",
        "bodies": ",".join(paths),
        "expected": ",".join(expected),
    }
    out = _run_wrk(base, script, seconds, conc)
    out["per_s"] = out.pop("req_per_s")
    return {
        **out,
        "concurrency": conc,
        "load_generator": "wrk",
        **_PHOTOS,
        "bytes": len(photos[0][0]),
    }


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


def _hash_only(
    base: str, key: str, queries: list[dict], args: argparse.Namespace, load: str
) -> dict[str, object]:
    """``--rounds`` runs (this machine's CPU speed varies by a fifth from one run to the
    next, see the notes); the median round is the figure, every round is kept."""
    rounds: list[dict[str, object]] = []
    for _ in range(args.rounds):
        if load == "wrk":
            rounds.append(dict(_drive_wrk(base, key, queries, args.seconds, args.concurrency)))
        else:
            lat, errors, blocks = asyncio.run(
                _drive(base, key, queries, args.seconds, args.concurrency)
            )
            rounds.append(
                {
                    "requests": len(lat),
                    "errors": errors,
                    "blocked": blocks,
                    "req_per_s": round(len(lat) / args.seconds, 1),
                    "p50_ms": _pct(lat, 50),
                    "p99_ms": _pct(lat, 99),
                }
            )
        rounds[-1]["load_average"] = _load_average()
    median = sorted(rounds, key=lambda r: float(r["req_per_s"]))[len(rounds) // 2]  # type: ignore[arg-type]
    return {**median, "rounds": rounds}


def _restart(
    env: dict[str, str], base: str, port: int, key: str, last: int, workers: int
) -> dict[str, object]:
    """A fresh start on the full bank: from a snapshot when the CLI writes one, else by
    replaying the database. Seconds from spawn until every worker answers, and RSS."""
    out: dict[str, object] = {}
    try:
        out["snapshot_write_s"] = round(_cli(env, "index", "snapshot"), 2)
    except subprocess.CalledProcessError:
        out["snapshot_write_s"] = None
    t = time.perf_counter()
    server = _start(env, port, workers)
    try:
        _wait_healthy(base)
        _until_searchable(base, key, last)
        out["start_to_searchable_s"] = round(time.perf_counter() - t, 2)
        out["load_average_at_restart"] = _load_average()
        out["worker_rss_mb_after_restart"] = [_rss(p) for p in _workers(server.pid)]
    finally:
        server.terminate()
        server.wait(timeout=30)
    return out


def _pct(values: list[float], p: int) -> float:
    if not values:
        return float("nan")
    return round(statistics.quantiles(values, n=100)[p - 1] if p < 100 else max(values), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3, help="hash-only load runs (median kept)")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--upload-concurrency", type=int, default=4)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--load", choices=["auto", "wrk", "python"], default="auto")
    args = ap.parse_args()
    rng = random.Random(42)
    scale: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        # Access log off, as in HMA's measured set-up (gunicorn logs no requests unless
        # told to); see TAKEDOWN_ACCESS_LOG in docs/operations.md.
        env = {**os.environ, "TAKEDOWN_DATA_DIR": tmp, "TAKEDOWN_ACCESS_LOG": "false"}
        # Serving workers write the index snapshot and move onto it (shared pages) soon
        # after the import rather than a minute later, in the middle of the load runs.
        env["TAKEDOWN_INDEX_SNAPSHOT_CHECK_SECONDS"] = "2"
        env["TAKEDOWN_INDEX_SNAPSHOT_ROWS"] = str(min(args.n, 100_000))  # small --n too
        if args.database_url:
            env["TAKEDOWN_DATABASE_URL"] = args.database_url
            # A new PostgreSQL database gets no key made for it: this run makes its own.
            env["TAKEDOWN_MASTER_KEY"] = new_key_text()
        settings = Settings(
            data_dir=Path(tmp),
            database_url=args.database_url,
            master_key=env.get("TAKEDOWN_MASTER_KEY"),
        )
        key, banked, other = _populate(settings, rng)
        hash_list = Path(tmp) / "bench-hashes.txt"
        centres = _write_list(hash_list, args.n, rng)
        queries = _queries(centres, rng)
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        server = _start(env, port, args.workers)
        try:
            _wait_healthy(base, Path(tmp) / "server.log")
            # Bank scale: import through the CLI into the running server's database,
            # then time until every worker answers for the last hash of the list.
            scale["load_average_before_import"] = _load_average()
            import_s = _cli(
                env, "bank", "import", "bench", str(hash_list), "--format", "text", "--type", "pdq"
            )
            last = int(hash_list.read_text()[-65:-1], 16)
            scale["import_s"] = round(import_s, 2)
            scale["import_per_s"] = round(args.n / import_s)
            scale["searchable_after_import_s"] = _until_searchable(base, key, last)
            scale["load_average_after"] = _load_average()
            asyncio.run(_drive(base, key, queries, 2.0, args.concurrency))  # warm-up
            scale["snapshot_by_workers_s"] = _until_snapshot(Path(tmp), args.n)
            time.sleep(5)  # every worker's next check moves it onto the snapshot
            scale["worker_rss_mb"] = [_rss(p) for p in _workers(server.pid)]
            load = args.load
            if load == "auto":
                load = "wrk" if _ensure_wrk() else "python"
            http = _hash_only(base, key, queries, args, load)
            http["load_average"] = _load_average()
            photos = [(banked, "block"), (other, "allow")]
            if load == "wrk":
                uploads = _drive_wrk_uploads(
                    base, key, photos, args.seconds, args.upload_concurrency, Path(tmp)
                )
            else:
                uploads = asyncio.run(
                    _drive_uploads(base, key, photos, args.seconds, args.upload_concurrency)
                )
            uploads["load_average"] = _load_average()
        finally:
            server.terminate()
            server.wait(timeout=30)
        scale.update(_restart(env, base, port, key, last, args.workers))
        in_proc = _in_process(settings, queries, min(args.seconds, 5.0))
    result = {
        "benchmark": "hash-only screening, POST /v1/screen/hashes",
        "n_hashes": args.n,
        "database": "postgresql" if args.database_url else "sqlite",
        "workers": args.workers,
        "concurrency": args.concurrency,
        "cores": os.cpu_count(),
        "load_generator": load,
        "access_log": False,
        "http": http,
        "in_process_service": in_proc,
        "bank_scale": scale,
        "uploads_12mp": uploads,
        "baseline_hma_2_0": {
            "raw_lookup_req_per_s_as_shipped": 213,
            "raw_lookup_req_per_s_omp1": 666,
            "uploads_12mp_per_s": 2.6,
            "import_items_per_s": 253,
            "index_build_s": 43,
            "worker_rss_mb": 803,
            "note": "ANCHORS.md, 1M hashes, 2 gunicorn workers, same kind of machine",
        },
        "goals": {
            "hash_only_req_per_s": 2000,
            "uploads_12mp_per_s": 40,
            "import_1m_s": 30,
            "searchable_s": 3,
            "worker_rss_mb": 300,
        },
    }
    RESULTS.mkdir(exist_ok=True)
    suffix = "-postgresql" if args.database_url else ""
    (RESULTS / f"screening{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
