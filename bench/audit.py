"""What the audit hash chain costs: record_many of 100,000 events, single events, verify.

    .venv/bin/python bench/audit.py [--events 100000] [--postgres-admin-url URL]

Measures, on SQLite (and on PostgreSQL in a scratch database when an admin URL is
given): one transaction that records N events with ``record_many`` (chained: one HMAC
each, bulk insert, a checkpoint) against the same N rows inserted as before the chain
(plain bulk insert, no hashes); the commit latency of small transactions that record
one event (lock, head read, checkpoint check); and ``takedown audit verify`` over
everything. Prints JSON and writes bench/results/audit.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, func, insert, select, text

from takedown.config import Settings
from takedown.ids import utcnow
from takedown.runtime import open_runtime
from takedown.services.audit.chain import record, record_many
from takedown.store.blobs import new_key_text
from takedown.store.db import unit_of_work
from takedown.store.models import AuditEvent

RESULTS = Path(__file__).parent / "results"


def run(events: int, database_url: str | None, data_dir: Path) -> dict[str, object]:
    # A new PostgreSQL database gets no key made for it: this run makes its own.
    key = new_key_text() if database_url else None
    rt = open_runtime(Settings(data_dir=data_dir, database_url=database_url, master_key=key))
    ids = [f"repost-{i}" for i in range(events)]
    details = {"case": "01JCASE0000000000000000000"}
    # As before the chain: the same rows bulk-inserted without hashes (verify counts
    # them as written "before the chain"; the chained events follow them).
    t0 = time.perf_counter()
    with unit_of_work(rt.sessions) as s:
        now, text_details = utcnow(), json.dumps(details)
        rows = [
            {
                "id": i + 1,
                "at": now,
                "actor": "user:bench",
                "action": "item.restricted",
                "object_type": "item",
                "object_id": oid,
                "details": text_details,
            }
            for i, oid in enumerate(ids)
        ]
        for start in range(0, len(rows), 5000):
            s.execute(insert(AuditEvent), rows[start : start + 5000])
    plain_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    with unit_of_work(rt.sessions) as s:
        record_many(s, "user:bench", "item.restricted", "item", ids, details)
    chained_s = time.perf_counter() - t0

    singles = 200
    t0 = time.perf_counter()
    for i in range(singles):
        with unit_of_work(rt.sessions) as s:
            record(s, "user:bench", "case.viewed", "case", f"c{i}", {"purpose": "bench"})
    single_ms = (time.perf_counter() - t0) * 1000 / singles

    t0 = time.perf_counter()
    report = rt.audit.verify()
    verify_s = time.perf_counter() - t0
    with rt.sessions() as s:
        total = s.scalar(select(func.count()).select_from(AuditEvent))
    rt.close()
    assert report.ok, report.problems
    assert report.events_checked == events + singles and total == 2 * events + singles
    return {
        "database": "postgresql" if database_url else "sqlite",
        "events": events,
        "record_many_chained_s": round(chained_s, 3),
        "record_many_chained_us_per_event": round(chained_s * 1e6 / events, 2),
        "bulk_insert_unchained_s": round(plain_s, 3),
        "chain_overhead_s": round(chained_s - plain_s, 3),
        "single_event_transaction_ms": round(single_ms, 3),
        "verify_s": round(verify_s, 3),
        "verify_events_per_s": round((events + singles) / verify_s),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument(
        "--postgres-admin-url",
        default=None,
        help="e.g. postgresql+psycopg://postgres@127.0.0.1:5432/postgres: also run on a "
        "scratch database created and dropped here",
    )
    args = ap.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        runs.append(run(args.events, None, Path(tmp) / "sqlite"))
        if args.postgres_admin_url:
            admin = create_engine(args.postgres_admin_url, isolation_level="AUTOCOMMIT")
            name = f"takedown_bench_{uuid.uuid4().hex[:8]}"
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                url = admin.url.set(database=name).render_as_string(hide_password=False)
                runs.append(run(args.events, url, Path(tmp) / "pg"))
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                admin.dispose()
    result = {
        "benchmark": "audit hash chain: write and verify cost",
        "cpus": os.cpu_count(),
        "load_average_1m_after": round(os.getloadavg()[0], 2),  # shared machines: context
        "runs": runs,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "audit.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
