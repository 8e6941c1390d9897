"""Retroactive matching beyond one machine: a PySpark job over a platform's warehouse.

Large platforms keep their media hashes in a warehouse, not in Takedown's database: a
Parquet dataset of ``(item_id, account_id, signal_type, signal)`` rows, partitioned as
they keep it (by signal type, by day...). :func:`scan_parquet` broadcasts a bank's scan
index (``matching/retro.ScanIndex``: numpy arrays and dicts, pickled once) to the
executors and runs :func:`takedown.matching.retro.match_signals` -- the same function as
the database worker, the one place of the rule -- on each Arrow batch of each
partition (``mapInArrow``). The matches come back to the driver (there are few) and
are written as NDJSON, one ``{"entry_id", "item_id", "account_id", "signal_type",
"distance"}`` a line, which ``takedown retroscan BANK --ingest FILE`` acts on.

PySpark and pyarrow are the optional extra ``takedown[spark]`` and imported only here,
inside the functions. On a cluster: ``spark-submit`` with the Takedown wheel in
``--py-files`` (or installed on the executors), see docs/retroactive-matching.md.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from takedown.matching.retro import ScanIndex, match_signals

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SCHEMA = "item_id string, account_id string, signal_type string, signal string"
# Optional: a PDQ's quality (0-100). Where the dataset has it, a PDQ below the bank's
# quality floor is not matched, as at upload and in the database worker.
QUALITY = "quality"
MATCH_SCHEMA = (
    "entry_id string, item_id string, account_id string, signal_type string, distance int"
)


def session(master: str = "local[*]", app_name: str = "takedown-retroscan") -> SparkSession:
    """A Spark session whose Python workers run this interpreter (and see this
    ``sys.path``): local mode in tests and benchmarks; on a cluster, spark-submit's."""
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "200000")
    )
    if master.startswith("local"):
        # Workers on this machine: this interpreter, this sys.path, no web UI. On a
        # cluster the executors' Python comes from spark-submit's settings instead.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        path = os.pathsep.join(p for p in sys.path if p)
        builder = (
            builder.config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "4")
            .config("spark.executorEnv.PYTHONPATH", path)
            .config("spark.driver.memory", "2g")
        )
    return builder.getOrCreate()


def match_batches(index: ScanIndex, batches: Iterable[Any]) -> Iterator[Any]:
    """The per-partition function: Arrow record batches of the warehouse's rows in,
    batches of matches out (:data:`MATCH_SCHEMA`)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for batch in batches:
        if batch.num_rows == 0:
            continue
        types = pc.utf8_lower(batch.column("signal_type")).to_pylist()
        values = pc.utf8_lower(batch.column("signal")).to_pylist()
        names = batch.schema.names
        qualities = batch.column(QUALITY).to_pylist() if QUALITY in names else None
        found = match_signals(index, range(batch.num_rows), types, values, qualities)
        if not found:
            continue
        rows = sorted(found.items())
        taken = pa.array([r for (_, r), _ in rows], type=pa.int64())
        yield pa.RecordBatch.from_pydict(
            {
                "entry_id": [index.names[e] for (e, _), _ in rows],
                "item_id": batch.column("item_id").take(taken),
                "account_id": batch.column("account_id").take(taken),
                "signal_type": [types[r] for (_, r), _ in rows],
                "distance": pa.array([d for _, d in rows], type=pa.int32()),
            }
        )


def scan_parquet(
    index: ScanIndex,
    media: str,
    output: str,
    *,
    master: str = "local[*]",
    spark: SparkSession | None = None,
) -> int:
    """Scan the Parquet dataset at ``media`` against ``index``; write the matches to
    ``output`` as NDJSON (one line per (entry, item), its smallest distance); returns
    how many."""
    spark = spark or session(master)
    broadcast = spark.sparkContext.broadcast(index)

    def per_partition(batches: Iterable[Any]) -> Iterator[Any]:
        return match_batches(broadcast.value, batches)

    frame = spark.read.parquet(media)
    columns = ["item_id", "account_id", "signal_type", "signal"]
    frame = frame.select(*columns, *([QUALITY] if QUALITY in frame.columns else []))
    found = frame.mapInArrow(per_partition, MATCH_SCHEMA)
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for row in found.collect():  # few rows; toLocalIterator would run partitions one by one
        key = (row["entry_id"], row["item_id"])
        if key not in best or row["distance"] < best[key]["distance"]:
            best[key] = row.asDict()
    with open(output, "w", encoding="utf-8") as f:
        for key in sorted(best):
            f.write(json.dumps(best[key], sort_keys=True) + "\n")
    broadcast.unpersist()
    return len(best)


def write_registry_parquet(
    chunks: Iterable[list[tuple[str, str | None, str, str, int | None]]], output: str
) -> int:
    """Write (item_id, account_id, signal_type, signal, quality) rows as a Parquet
    dataset at ``output``, partitioned by signal type (hive layout:
    ``signal_type=pdq/...``); ``quality`` is a PDQ's (null for other types)."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    schema = pa.schema(
        [
            ("item_id", pa.string()),
            ("account_id", pa.string()),
            ("signal_type", pa.string()),
            ("signal", pa.string()),
            (QUALITY, pa.int32()),
        ]
    )
    total = 0

    def batches() -> Iterator[Any]:
        nonlocal total
        for chunk in chunks:
            total += len(chunk)
            columns = [[row[k] for row in chunk] for k in range(5)]
            yield pa.RecordBatch.from_arrays(
                [pa.array(c, f.type) for c, f in zip(columns, schema, strict=True)],
                schema=schema,
            )

    ds.write_dataset(
        batches(),
        output,
        schema=schema,
        format="parquet",
        partitioning=ds.partitioning(pa.schema([("signal_type", pa.string())]), flavor="hive"),
        existing_data_behavior="delete_matching",
    )
    return total
