"""In-process metrics (Prometheus): what happens inside a serving process, counted where
it happens. Figures read from the database at scrape time live with the ``/metrics``
route (api/metrics.py).

With several worker processes (``takedown serve --workers N``) each process writes its
counters into files in ``PROMETHEUS_MULTIPROC_DIR`` (``takedown serve`` sets it to a
directory under the data directory and empties it at start) and a scrape, answered by
any worker, sums them over all workers (prometheus_client's multiprocess mode). The
variable must be set before this module is first imported in a worker; the supervisor
passes it in the workers' environment.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from prometheus_client import Counter, Histogram

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
MULTIPROC_DIRECTORY = "metrics"  # under the data directory

SCREENINGS = Counter(
    "takedown_screenings",
    "Screenings answered, by what was screened (hashes, image, video) and verdict.",
    ["kind", "verdict"],
)
SCREENING_SECONDS = Histogram(
    "takedown_screening_seconds",
    "Time to screen one request in the service: hashing the media (image, video) and "
    "searching the banks; the write of a matched screening is not included.",
    ["kind"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

DELIVERY_FAILURES = Counter(
    "takedown_outbox_delivery_failures",
    "Failed deliveries of the platform's actions (webhook refused, unreachable, timed "
    "out), by what followed: another attempt later (retry) or giving up (dead_letter).",
    ["outcome"],
)


_children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}


def observe_screening(kind: str, verdict: str, seconds: float) -> None:
    """Count one screening (on the upload path: the labelled children are looked up
    once, not at every call)."""
    pair = _children.get((kind, verdict))
    if pair is None:
        pair = _children[kind, verdict] = (
            SCREENINGS.labels(kind, verdict),
            SCREENING_SECONDS.labels(kind),
        )
    pair[0].inc()
    pair[1].observe(seconds)


def multiprocess_dir() -> str | None:
    """The directory of the workers' metric files, when several workers serve."""
    return os.environ.get(MULTIPROC_ENV) or None


def prepare_multiprocess_dir(data_dir: Path) -> Path:
    """An empty directory for the workers' metric files (the last run's are removed:
    counters start from zero with the server, as Prometheus expects of a restart)."""
    target = data_dir / MULTIPROC_DIRECTORY
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True, mode=0o700)
    return target
