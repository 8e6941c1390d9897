"""Retroactive matching on Spark: 10,000,000 warehouse rows against 100,000 new bank
entries, with local[1] and local[2] (how the job scales with cores).

    .venv/bin/python bench/retroscan_spark.py [--rows 10000000] [--entries 100000]
        [--masters local[1],local[2]]

The dataset is generated here: Parquet ``(item_id, account_id, signal_type, signal)``,
hive-partitioned by day (20 days), random PDQ hashes plus 2,000 near copies of
entries at 0..40 bits. The job is ``integrations/spark.scan_parquet`` (the same per-row
rule as the database worker). Prints JSON and writes
bench/results/retroscan-spark.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def dataset(path: Path, rows: int, entries: np.ndarray, planted: int) -> None:
    import pyarrow as pa
    import pyarrow.dataset as ds

    rng = np.random.default_rng(21)
    days = 20
    per = rows // days
    picks = rng.choice(rows, size=planted, replace=False)
    bits = np.unpackbits(entries[rng.integers(0, entries.shape[0], size=planted)], axis=1)
    for k in range(planted):
        bits[k, rng.choice(256, size=int(rng.integers(0, 41)), replace=False)] ^= 1
    near = dict(zip(picks.tolist(), np.packbits(bits, axis=1), strict=True))
    for day in range(days):
        start = day * per
        hashes = rng.integers(0, 256, size=(per, 32), dtype=np.uint8)
        for n in range(start, start + per):
            if n in near:
                hashes[n - start] = near[n]
        text = hashes.tobytes().hex()
        signals = [text[i * 64 : (i + 1) * 64] for i in range(per)]
        table = pa.table(
            {
                "item_id": [f"item-{n}" for n in range(start, start + per)],
                "account_id": [f"acct-{n % 100_000}" for n in range(start, start + per)],
                "signal_type": ["pdq"] * per,
                "signal": signals,
                "day": [f"2026-11-{day + 1:02d}"] * per,
            }
        )
        ds.write_dataset(
            table,
            path,
            format="parquet",
            partitioning=ds.partitioning(pa.schema([("day", pa.string())]), flavor="hive"),
            existing_data_behavior="overwrite_or_ignore",
            basename_template=f"part-{day}-{{i}}.parquet",
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--masters", default="local[1],local[2]")
    args = parser.parse_args()
    from takedown.integrations.spark import scan_parquet, session
    from takedown.matching.retro import ScanIndex

    rng = np.random.default_rng(20)
    entries = rng.integers(0, 256, size=(args.entries, 32), dtype=np.uint8)
    text = entries.tobytes().hex()
    index = ScanIndex.build(
        ((i + 1, f"e{i + 1}", "pdq", text[i * 64 : (i + 1) * 64]) for i in range(args.entries)),
        31,
    )
    out: dict[str, object] = {"rows": args.rows, "entries": args.entries, "radius": 31}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hashes"
        t = time.perf_counter()
        dataset(path, args.rows, entries, 2_000)
        out["generate_s"] = round(time.perf_counter() - t, 1)
        out["parquet_mb"] = round(sum(f.stat().st_size for f in path.rglob("*.parquet")) / 1e6, 1)
        runs = []
        for master in args.masters.split(","):
            spark = session(master)
            # The JVM and the Python workers are started by a first small job.
            spark.range(4).count()
            t = time.perf_counter()
            found = scan_parquet(index, str(path), str(Path(tmp) / "m.ndjson"), spark=spark)
            took = time.perf_counter() - t
            runs.append(
                {
                    "master": master,
                    "scan_s": round(took, 1),
                    "rows_per_s": round(args.rows / took),
                    "matches": found,
                }
            )
            print(json.dumps(runs[-1]), flush=True)
            spark.stop()
        out["runs"] = runs
        out["cores"] = os.cpu_count()
    print(json.dumps(out))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "retroscan-spark.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
