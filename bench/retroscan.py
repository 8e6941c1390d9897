"""Retroactive matching at scale: 10,000,000 stored media hashes against 100,000 new
bank entries, on one machine, with recall checked against brute force on a sample.

    .venv/bin/python bench/retroscan.py [--media 10000000] [--entries 100000]
        [--threads 2] [--radius 31] [--db-media 100000] [--skip-core]
        [--postgres-admin-url URL]

Core scan: the stored hashes are a numpy array generated here (random PDQ hashes, plus
near copies of entries at 0..40 bits, so some fall inside the radius and some outside),
streamed in chunks of 1,000,000 past the entries' index (``matching/retro.py``) by
``--threads`` threads (the kernel releases the GIL). Recall and precision: every
planted copy plus 2,000 random rows compared with all entries by brute force.

End to end in the database (``--db-media``): that many registered media with their 8
dihedral PDQ variants (so 8x as many hashes) in a new SQLite database, a job over
``--entries // 10`` new entries run by ``RetroscanService`` (chunks read from the
database, matches acted on).

The same scale on Spark (local[1] and local[2]): bench/retroscan_spark.py.

Prints JSON and writes bench/results/retroscan.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from takedown.matching.retro import EntryIndex, brute_force, scan

RESULTS = Path(__file__).parent / "results"
CHUNK = 1_000_000


def synthetic(media: int, entries: int, planted: int, seed: int = 20) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ehashes = rng.integers(0, 256, size=(entries, 32), dtype=np.uint8)
    stored = rng.integers(0, 256, size=(media, 32), dtype=np.uint8)
    rows = rng.choice(media, size=planted, replace=False)
    sources = rng.integers(0, entries, size=planted)
    bits = np.unpackbits(ehashes[sources], axis=1)
    for k in range(planted):
        flip = rng.choice(256, size=int(rng.integers(0, 41)), replace=False)
        bits[k, flip] ^= 1
    stored[rows] = np.packbits(bits, axis=1)
    return {"entries": ehashes, "stored": stored, "planted_rows": np.sort(rows)}


def core(media: int, entries: int, threads: int, radius: int) -> dict[str, object]:
    started = time.perf_counter()
    data = synthetic(media, entries, planted=2_000)
    generated_s = time.perf_counter() - started
    ids = np.arange(1, entries + 1, dtype=np.int64)
    t = time.perf_counter()
    index = EntryIndex.build(ids, data["entries"], radius)
    build_s = time.perf_counter() - t
    scan(index, data["stored"][:10])  # compiled or loaded from numba's cache
    stored = data["stored"]

    def one(start: int) -> set[tuple[int, int]]:
        q, e, _ = scan(index, stored[start : start + CHUNK])
        return {(int(a) + start, int(b)) for a, b in zip(q.tolist(), e.tolist(), strict=True)}

    t = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        found: set[tuple[int, int]] = set().union(*pool.map(one, range(0, media, CHUNK)))
    scan_s = time.perf_counter() - t
    rng = np.random.default_rng(3)
    sample = np.unique(
        np.concatenate([data["planted_rows"], rng.choice(media, size=2_000, replace=False)])
    )
    t = time.perf_counter()
    truth = {
        (int(sample[q]), e) for q, e in brute_force(ids, data["entries"], stored[sample], radius)
    }
    brute_s = time.perf_counter() - t
    sampled = set(sample.tolist())
    got = {(q, e) for q, e in found if q in sampled}
    return {
        "media_hashes": media,
        "entries": entries,
        "radius": radius,
        "threads": threads,
        "cores": os.cpu_count(),
        "generate_s": round(generated_s, 1),
        "index_build_s": round(build_s, 3),
        "scan_s": round(scan_s, 2),
        "hashes_per_s": round(media / scan_s),
        "pairs_found": len(found),
        "sample_rows": int(sample.shape[0]),
        "sample_true_pairs": len(truth),
        "recall": round(len(got & truth) / max(1, len(truth)), 6),
        "precision": round(len(got & truth) / max(1, len(got)), 6),
        "brute_force_sample_s": round(brute_s, 1),
    }


def end_to_end(
    media: int, entries: int, radius: int, database_url: str | None = None
) -> dict[str, object]:
    """The database worker: registered media rows (8 variants each) read in chunks."""
    from sqlalchemy import insert

    from takedown.config import Settings
    from takedown.domain.hashlists import HashRecord
    from takedown.runtime import open_runtime
    from takedown.store.blobs import new_key_text
    from takedown.store.db import unit_of_work
    from takedown.store.models import Media, RetroscanJob

    rng = np.random.default_rng(5)
    with tempfile.TemporaryDirectory() as tmp:
        rt = open_runtime(
            Settings(
                data_dir=Path(tmp),
                database_url=database_url or f"sqlite:///{tmp}/b.sqlite3",
                master_key=new_key_text() if database_url else None,
            )
        )
        variants = rng.integers(0, 256, size=(media, 8, 32), dtype=np.uint8)
        hexes = variants.reshape(media, 256).tobytes().hex()
        rows = []
        for m in range(media):
            text = hexes[m * 512 : (m + 1) * 512]
            parts = [text[i * 64 : (i + 1) * 64] for i in range(8)]
            rows.append(
                {
                    "public_id": f"m{m:025d}",
                    "sha256": f"{m:064x}",
                    "md5": f"{m:032x}",
                    "pdq": parts[0],
                    "pdq_quality": 100,
                    "pdq_dihedral": ",".join(parts),
                    "media_type": "image",
                }
            )
        with unit_of_work(rt.sessions) as s:
            s.execute(insert(Media), rows)
        rt.banks.create_bank("bench", actor="bench", source="ncmec")
        picks = rng.choice(media, size=min(entries // 100, media), replace=False)
        near = [parts for parts in (rows[int(p)]["pdq"] for p in picks)]
        fresh = rng.integers(0, 256, size=(entries - len(near), 32), dtype=np.uint8)
        values = near + [fresh[i].tobytes().hex() for i in range(fresh.shape[0])]
        records = [HashRecord("pdq", v, None, None, None, None, None) for v in values]
        rt.banks.add_hashes("bench", records, actor="bench")
        with unit_of_work(rt.sessions, write=False) as s:
            from sqlalchemy import select

            job_id = s.scalar(select(RetroscanJob.id))
        assert job_id is not None
        # Matching only: the cases the planted copies would open are not the figure.
        rt.retroscan._act = lambda s, fresh: []  # type: ignore[method-assign]
        rt.retroscan._claim()
        t = time.perf_counter()
        rt.retroscan.run_job(job_id)
        run_s = time.perf_counter() - t
        [job] = rt.retroscan.list_jobs("bench")
        rt.close()
    return {
        "database": "postgresql" if database_url else "sqlite",
        "media": media,
        "media_hashes": media * 8,
        "entries": entries,
        "chunk": 50_000,
        "run_s": round(run_s, 2),
        "media_hashes_per_s": round(media * 8 / run_s),
        "matches": job.matches,
        "planted": len(near),
        "state": job.state,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--media", type=int, default=10_000_000)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--radius", type=int, default=31)
    parser.add_argument("--db-media", type=int, default=100_000)
    parser.add_argument(
        "--db-entries",
        type=int,
        default=None,
        help="entries of the end-to-end run (default: --entries / 10); a run of 10 million "
        "hashes or more (--db-media 1250000) is kept apart as database_10m_hashes",
    )
    parser.add_argument("--skip-core", action="store_true")
    parser.add_argument(
        "--postgres-admin-url",
        default=None,
        help="e.g. postgresql+psycopg://postgres@127.0.0.1:5432/postgres: the end-to-end "
        "run also on a scratch database created and dropped here",
    )
    args = parser.parse_args()
    out: dict[str, object] = {}
    if not args.skip_core:
        out["core"] = core(args.media, args.entries, args.threads, args.radius)
        print(json.dumps(out["core"]), flush=True)
    db_entries = args.db_entries or args.entries // 10
    db_key = "database_10m_hashes" if args.db_media * 8 >= 10_000_000 else "database"
    if args.db_media:
        out[db_key] = end_to_end(args.db_media, db_entries, args.radius)
        print(json.dumps(out[db_key]), flush=True)
    if args.db_media and args.postgres_admin_url:
        from sqlalchemy import create_engine, text

        admin = create_engine(args.postgres_admin_url, isolation_level="AUTOCOMMIT")
        name = f"takedown_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            url = admin.url.set(database=name).render_as_string(hide_password=False)
            out[db_key + "_postgresql"] = end_to_end(args.db_media, db_entries, args.radius, url)
            print(json.dumps(out[db_key + "_postgresql"]), flush=True)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    out["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    previous = RESULTS / "retroscan.json"
    if args.skip_core and previous.exists():  # keep the core figure of the last full run
        out = {**json.loads(previous.read_text()), **out}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "retroscan.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
