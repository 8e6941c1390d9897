"""Hash-list exchanges: a first sync of a large NCMEC list and an incremental one.

    .venv/bin/python bench/exchanges.py [--n 1000000] [--changes 10000] [--workers 2]
                                        [--database-url URL]

Starts a local server speaking NCMEC's hash-sharing protocol (tests/exchanges/
ncmec_hash_server.py: XML pages of 1,000 entries, ``next`` links) holding N entries, each
with a PDQ and an MD5 (stand-in values, random), and `takedown serve --workers W` on a
fresh database with an empty bank. Then, timed from outside through the CLI:

- first sync: `takedown exchange sync` of the whole list (python-threatexchange's NCMEC
  client, one transaction per page with its checkpoint), then the seconds until every
  worker blocks the last entry's PDQ (20 answers in a row on new connections);
  The CPU seconds of the sync command (with the child process that fetches a long
  pull's pages) are reported beside the wall time: on this shared machine the wall time
  depends on what else runs; on PostgreSQL (a server on this machine) also the CPU
  seconds of the backends serving the sync's connections (``postgres_cpu_s``);
- incremental sync: CHANGES changes upstream (half new entries, half deletions of
  existing ones), `takedown exchange sync` again, then the seconds until the last new
  PDQ is blocked everywhere and a deleted one is allowed. End to end is the sum.

With --database-url (a PostgreSQL server) the run gets a database of its own, created
on that server and dropped afterwards (the database the URL names is not written to).

Prints JSON and writes bench/results/exchanges.json (exchanges-postgresql.json with
--database-url), with the machine's load average.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine
from sqlalchemy import text as sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._pg import drop_postgres, fresh_postgres  # noqa: E402
from tests.exchanges.ncmec_hash_server import PASSWORD, USER, NcmecHashServer  # noqa: E402

from takedown.config import Settings  # noqa: E402
from takedown.runtime import open_runtime  # noqa: E402
from takedown.store.blobs import new_key_text  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children_cpu() -> float:
    """CPU seconds of the waited-for child processes so far (a `takedown exchange sync`
    with the process that fetches its pages): the work, whatever the machine's load."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _cli(env: dict[str, str], *args: str) -> tuple[float, str]:
    t = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "takedown.cli", *args],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"takedown {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - t, done.stdout


SYNC_APP = "takedown-bench-sync"  # the sync command's connections' application_name


class _BackendCpu:
    """CPU seconds of the PostgreSQL backends serving connections named ``SYNC_APP``
    (libpq's PGAPPNAME, set for the sync command only), read from /proc/<pid>/stat while
    they run (a server on this machine): PostgreSQL's share of the sync, which the
    command's own CPU seconds leave out. Polled every 0.1 s; a backend's last tenth of a
    second may be missed. None when the server's processes cannot be read."""

    def __init__(self, database_url: str | None) -> None:
        self._url = database_url
        self._last: dict[int, float] = {}
        self._readable = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> _BackendCpu:
        if self._url:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def seconds(self) -> float | None:
        if not self._url or not self._readable:
            return None
        return round(sum(self._last.values()), 1)

    def _poll(self) -> None:
        assert self._url is not None
        engine = create_engine(self._url, isolation_level="AUTOCOMMIT")
        question = sql("SELECT pid FROM pg_stat_activity WHERE application_name = :name")
        tick = os.sysconf("SC_CLK_TCK")
        try:
            with engine.connect() as c:
                while not self._stop.wait(0.1):
                    for pid in c.execute(question, {"name": SYNC_APP}).scalars():
                        try:
                            with open(f"/proc/{pid}/stat") as fh:
                                fields = fh.read().rsplit(")", 1)[1].split()
                        except FileNotFoundError:  # ended since
                            continue
                        except OSError:
                            self._readable = False
                            return
                        self._last[pid] = (int(fields[11]) + int(fields[12])) / tick
        finally:
            engine.dispose()


def _until(base: str, key: str, pdq: str, verdict: str, limit_s: float = 300) -> float:
    """Seconds until 20 answers in a row, each on a new connection (any worker), give
    ``verdict`` for ``pdq``."""
    t = time.perf_counter()
    streak = 0
    body = {"pdq": pdq, "pdq_quality": 100}
    headers = {"Authorization": f"Bearer {key}"}
    while streak < 20:
        if time.perf_counter() - t > limit_s:
            raise RuntimeError(f"{pdq} never became {verdict}")
        try:
            r = httpx.post(base + "/v1/screen/hashes", json=body, headers=headers, timeout=30)
            ok = r.status_code == 200 and r.json()["verdict"] == verdict
        except httpx.HTTPError:
            ok = False
        streak = streak + 1 if ok else 0
        if not ok:
            time.sleep(0.02)
    return round(time.perf_counter() - t, 2)


def _wait_healthy(base: str, log: Path) -> None:
    for _ in range(600):
        try:
            if httpx.get(base + "/v1/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not start: " + log.read_text()[-2000:])


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--changes", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--database-url", default=None)
    args = ap.parse_args()
    rng = random.Random(19)
    server = NcmecHashServer(page_size=1000).start()
    # The local server's own share: CPU seconds spent building its answers.
    answers = server.entries
    server_cpu = [0.0]

    def timed_entries(query: dict[str, list[str]]) -> str:
        t = time.thread_time()
        try:
            return answers(query)
        finally:
            server_cpu[0] += time.thread_time() - t

    server.entries = timed_entries  # type: ignore[method-assign]
    base_ts = int(time.time()) - 30 * 86400
    pdqs: list[str] = []
    for i in range(args.n):
        pdq = f"{rng.getrandbits(256):064x}"
        pdqs.append(pdq)
        # Spread over 30 days, a second apart at most, as a list grows.
        server.add(
            1 + i % 7,
            f"e{i}",
            {"md5": f"{rng.getrandbits(128):032x}", "pdq": pdq},
            base_ts + i * 30 * 86400 // max(args.n, 1),
        )
    out: dict[str, object] = {
        "n_entries": args.n,
        "signals_per_entry": 2,
        "workers": args.workers,
        "backend": "postgresql" if args.database_url else "sqlite",
    }
    database_url, db_name = fresh_postgres(args.database_url) if args.database_url else (None, "")
    try:
        _run(args, rng, server, server_cpu, pdqs, out, database_url)
    finally:
        server.stop()
        _write(out, args)
        if args.database_url:
            drop_postgres(args.database_url, db_name)
    print(json.dumps(out, indent=2))


def _run(  # noqa: PLR0913
    args: argparse.Namespace,
    rng: random.Random,
    server: NcmecHashServer,
    server_cpu: list[float],
    pdqs: list[str],
    out: dict[str, object],
    database_url: str | None,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "TAKEDOWN_DATA_DIR": tmp, "TAKEDOWN_ACCESS_LOG": "false"}
        env["PYTHONPATH"] = os.pathsep.join(
            [str(Path(__file__).resolve().parents[1] / "src"), env.get("PYTHONPATH", "")]
        )
        if database_url:
            env["TAKEDOWN_DATABASE_URL"] = database_url
            env["TAKEDOWN_MASTER_KEY"] = new_key_text()
        sync_env = {**env, "PGAPPNAME": SYNC_APP}  # see _BackendCpu
        settings = Settings(
            data_dir=Path(tmp),
            database_url=database_url,
            master_key=env.get("TAKEDOWN_MASTER_KEY"),
        )
        creds = Path(tmp) / "ncmec.creds"
        creds.write_text(f"{USER}:{PASSWORD}\n")
        rt = open_runtime(settings)
        rt.banks.create_bank("ncmec", actor="bench", source="ncmec", match_action="block")
        rt.exchanges.add(
            "ncmec-bench",
            type="ncmec",
            bank="ncmec",
            actor="bench",
            base_url=server.url,
            credentials_file=str(creds),
        )
        _, key = rt.api_keys.create("bench", ["screen"], actor="bench")
        rt.close()
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        log = Path(tmp) / "server.log"
        serve = subprocess.Popen(
            [sys.executable, "-m", "takedown.cli", "serve", "--port", str(port)]
            + ["--workers", str(args.workers)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb"),
        )
        try:
            _wait_healthy(base, log)
            out["load_average_before"] = _load_average()
            cpu = _children_cpu()
            with _BackendCpu(database_url) as backends:
                sync_s, text = _cli(sync_env, "exchange", "sync", "ncmec-bench", "--json")
            cpu = _children_cpu() - cpu
            first = json.loads(text)
            out["first_sync"] = {
                "seconds": round(sync_s, 2),
                "cpu_s": round(cpu, 1),
                "postgres_cpu_s": backends.seconds(),
                "pages": first["pages"],
                "bank_entries_added": first["added"],
                "entries_per_s": round(args.n / sync_s),
                "searchable_by_every_worker_after_s": _until(base, key, pdqs[-1], "block"),
                "requests": sum(1 for m, p in server.requests if "/v2/entries" in p),
                "server_cpu_s": round(server_cpu[0], 1),
                "load_average_after": _load_average(),
            }
            # Incremental: half new entries, half deletions, all written after the
            # checkpoint (NCMEC stops 5 s before now: wait those out).
            time.sleep(6)
            now = int(time.time()) - 6
            half = args.changes // 2
            new_pdqs = []
            for i in range(half):
                pdq = f"{rng.getrandbits(256):064x}"
                new_pdqs.append(pdq)
                server.add(9, f"n{i}", {"md5": f"{rng.getrandbits(128):032x}", "pdq": pdq}, now)
            deleted = rng.sample(range(args.n), half)
            for i in deleted:
                server.delete(1 + i % 7, f"e{i}", now)
            time.sleep(6)
            t = time.perf_counter()
            cpu = _children_cpu()
            try:
                with _BackendCpu(database_url) as backends:
                    inc_s, text = _cli(sync_env, "exchange", "sync", "ncmec-bench", "--json")
            except RuntimeError as exc:
                out["incremental_sync"] = {"error": str(exc)}
                raise
            inc = json.loads(text)
            searchable = _until(base, key, new_pdqs[-1], "block")
            allowed = _until(base, key, pdqs[deleted[-1]], "allow")
            out["incremental_sync"] = {
                "changes": args.changes,
                "added": inc["added"],
                "disabled": inc["disabled"],
                "sync_s": round(inc_s, 2),
                "sync_cpu_s": round(_children_cpu() - cpu, 1),
                "sync_postgres_cpu_s": backends.seconds(),
                "new_entry_blocked_everywhere_after_s": searchable,
                "deleted_entry_allowed_everywhere_after_s": allowed,
                "end_to_end_s": round(time.perf_counter() - t, 2),
                "load_average_after": _load_average(),
            }
        finally:
            serve.terminate()
            serve.wait(30)


def _write(out: dict[str, object], args: argparse.Namespace) -> None:
    out["targets"] = {"first_sync_s": 90, "searchable_s": 3, "incremental_end_to_end_s": 5}
    RESULTS.mkdir(exist_ok=True)
    name = "exchanges-postgresql.json" if args.database_url else "exchanges.json"
    if args.n == 1_000_000:
        (RESULTS / name).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
