"""From a report to every copy restricted, and to the platform holding every restriction.

    .venv/bin/python bench/restrict.py [--copies 3159 100000] [--sinks webhook jetstream]
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

Builds the MISSION.md shape — one original by a flagged account, N-1 reposts of it by
other accounts — with bulk inserts (setting up 100,000 items through the registry one
by one would measure the registry, not the restriction). One delivery worker runs as
``takedown serve`` runs it (``TAKEDOWN_WEBHOOK_BATCH_MAX`` 500, polling every
``TAKEDOWN_DELIVERY_POLL_SECONDS``), sending to a local receiver over real HTTP, in
its own process, that checks every signature (``webhook``), or publishing to the NATS
JetStream server at 127.0.0.1:4222 that a pull consumer reads in its own process
(``jetstream``). Then the parent's report goes through the real HTTP app (in-process
ASGI client), and the run measures:

- ``report_to_all_restricted_s``: the report request — copy-graph walk, case,
  restriction of every copy, outbox rows, audit events, one transaction;
- ``report_to_last_action_received_s``: until the receiver (or the stream's consumer)
  holds the restrict action of every copy;
- ``report_cpu_s``, ``cpu_s_report_to_received``: this process's CPU seconds over the
  same spans (the machine's load stretches wall time, much less CPU time).

With ``--database-url`` (a server URL) each run gets a new, empty PostgreSQL database,
dropped afterwards. ``--decide`` also times the specialist's confirming decision.
Prints JSON and writes bench/results/restrict-<backend>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._pg import drop_postgres, fresh_postgres  # noqa: E402
from tests.services.test_delivery import SECRET  # noqa: E402

from takedown.api.app import create_app  # noqa: E402
from takedown.config import Settings  # noqa: E402
from takedown.ids import new_id, utcnow  # noqa: E402
from takedown.integrations.jetstream import JetStreamPublisher  # noqa: E402
from takedown.integrations.webhooks import WebhookClient  # noqa: E402
from takedown.runtime import open_runtime  # noqa: E402
from takedown.runtime.workers import DeliveryWorker  # noqa: E402
from takedown.services.outbound.delivery import DeliveryDispatcher  # noqa: E402
from takedown.services.outbound.sinks import JetStreamSink  # noqa: E402
from takedown.store.blobs import new_key_text  # noqa: E402
from takedown.store.models import Account, Item, OutboxMessage  # noqa: E402

RESULTS = Path(__file__).parent / "results"
NATS_URL = "nats://127.0.0.1:4222"


def _populate(rt, copies: int) -> None:  # type: ignore[no-untyped-def]
    now = utcnow()
    with rt.sessions.begin() as s:
        s.execute(
            insert(Account),
            [
                {
                    "public_id": new_id(),
                    "platform_id": f"acc-{i}",
                    "flagged": i == 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(copies)
            ],
        )
        ids = dict(s.execute(select(Account.platform_id, Account.id)).all())
        rows = [
            {
                "public_id": new_id(),
                "platform_id": "video-1",
                "account_id": ids["acc-0"],
                "url": "https://social.example/p/video-1",
                "monetized": True,
                "view_count": 167_000,
                "registered_at": now,
                "updated_at": now,
            }
        ]
        rows += [
            {
                "public_id": new_id(),
                "platform_id": f"repost-{i}",
                "account_id": ids[f"acc-{i}"],
                "reposts_platform_id": "video-1",
                "monetized": True,
                "view_count": 75,
                "registered_at": now,
                "updated_at": now,
            }
            for i in range(1, copies)
        ]
        for start in range(0, len(rows), 10_000):
            s.execute(insert(Item), rows[start : start + 10_000])


RECEIVER = """
import sys, time
sys.path.insert(0, {root!r})
from tests.services.test_delivery_batches import BatchReceiver
want = int(sys.argv[1])
r = BatchReceiver()
print(r.url, flush=True)
got = 0
while True:
    with r.lock:  # counting only when enough actions came: the count is O(actions)
        if len(r.executed) >= want:
            got = sum(1 for a in r.executed.values() if a["topic"] == "item.restrict")
    if got >= want:
        print("done", time.time(), len(r.batches), r.bad, flush=True)
        break
    time.sleep(0.002)
time.sleep(0.5)
"""


class ReceiverProcess:
    """The platform's receiver in its own process (as it would be: not sharing the
    worker's interpreter), checking every signature; notes when it holds ``want``
    restrict actions."""

    def __init__(self, want: int) -> None:
        import subprocess

        code = RECEIVER.format(root=str(Path(__file__).resolve().parents[1]))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, str(want)], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        self.done_at: float | None = None
        self.requests = 0
        self.bad = 0
        threading.Thread(target=self._wait, daemon=True).start()

    def _wait(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if line and line[0] == "done":
            self.requests, self.bad = int(line[2]), int(line[3])
            self.done_at = float(line[1])

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


STREAM_READER = """
import asyncio, json, sys, time
import nats
from nats.js.api import AckPolicy, ConsumerConfig

async def main(stream, subject, want):
    nc = await nats.connect({nats_url!r})
    js = nc.jetstream()
    print("ready", flush=True)
    while True:  # the sink creates the stream on its first publish
        try:
            sub = await js.pull_subscribe(
                subject + ".>",
                stream=stream,
                # a reader that only counts: no acknowledgements to wait for
                config=ConsumerConfig(ack_policy=AckPolicy.NONE),
            )
            break
        except Exception:  # not there yet
            await asyncio.sleep(0.01)
    restricted = set()
    while len(restricted) < want:
        try:
            msgs = await sub.fetch(2000, timeout=0.2)
        except TimeoutError:
            continue
        for m in msgs:
            doc = json.loads(m.data)
            if doc["topic"] == "item.restrict":
                restricted.add(doc["target"]["id"])
    print("done", time.time(), flush=True)
    await js.delete_stream(stream)
    await nc.close()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


class StreamReader:
    """The platform's stream consumer in its own process (as it would be: not sharing
    the worker's interpreter), a JetStream pull consumer noting when it has read
    ``want`` restrict actions."""

    def __init__(self, stream: str, subject: str, want: int) -> None:
        import subprocess

        code = STREAM_READER.format(nats_url=NATS_URL)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, stream, subject, str(want)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"
        self.done_at: float | None = None
        self.thread = threading.Thread(target=self._wait, daemon=True)
        self.thread.start()

    def _wait(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if line and line[0] == "done":
            self.done_at = float(line[1])

    def close(self) -> None:
        try:
            self.proc.wait(10)  # it deletes its stream
        except Exception:  # noqa: BLE001 - a reader that did not finish
            self.proc.kill()
            self.proc.wait()


def run(
    copies: int,
    sink: str,
    server_url: str | None,
    *,
    batch_max: int = 500,
    poll_s: float = 0.5,
    decide: bool = False,
) -> dict[str, object]:
    database_url, db_name = fresh_postgres(server_url) if server_url else (None, "")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return _run(copies, sink, database_url, Path(tmp), batch_max, poll_s, decide)
    finally:
        if server_url:
            drop_postgres(server_url, db_name)


def _run(  # noqa: PLR0913
    copies: int,
    sink: str,
    database_url: str | None,
    tmp: Path,
    batch_max: int,
    poll_s: float,
    decide: bool,
) -> dict[str, object]:
    # A new PostgreSQL database gets no key made for it: this run makes its own.
    key = new_key_text() if database_url else None
    rt = open_runtime(Settings(data_dir=tmp, database_url=database_url, master_key=key))
    t0 = time.perf_counter()
    _populate(rt, copies)
    setup_s = time.perf_counter() - t0
    receiver: ReceiverProcess | None = None
    reader: StreamReader | None = None
    if sink == "webhook":
        receiver = ReceiverProcess(copies)
        dispatcher = DeliveryDispatcher(
            rt.sessions, WebhookClient(receiver.url, SECRET), batch_max=batch_max
        )
    else:
        tag = uuid.uuid4().hex[:8]
        stream, subject = f"TDBENCH_{tag}", f"tdbench.{tag}"
        publisher = JetStreamPublisher(NATS_URL, stream, [f"{subject}.>"])
        dispatcher = DeliveryDispatcher(
            rt.sessions, JetStreamSink(publisher, subject), batch_max=batch_max
        )
        reader = StreamReader(stream, subject, copies)
    worker = DeliveryWorker(dispatcher, interval_s=poll_s).start()  # as serve sizes it
    client = TestClient(create_app(rt))
    time.sleep(1)  # the worker idles, as it would when the report comes
    t0 = time.perf_counter()
    wall0 = time.time()
    cpu0 = time.process_time()  # this process: the app and the worker
    r = client.post(
        "/v1/reports",
        json={
            "category": "csam",
            "reporter_role": "parent_guardian",
            "item_ids": ["video-1"],
            "explanation": "This video shows my son; he was 13.",
            "good_faith": True,
        },
    )
    restricted_s = time.perf_counter() - t0
    report_cpu_s = time.process_time() - cpu0
    assert r.status_code == 201, r.text
    body = r.json()
    deadline = time.monotonic() + 600
    source = receiver or reader
    assert source is not None
    while time.monotonic() < deadline and source.done_at is None:
        time.sleep(0.005)
    cpu_to_received_s = time.process_time() - cpu0
    worker.stop()
    if sink != "webhook":
        publisher.close()
    assert source.done_at is not None, "not every restriction arrived"
    delivered_s = source.done_at - wall0
    requests = receiver.requests if receiver else None
    bad = receiver.bad if receiver else 0
    if receiver:
        receiver.close()
    if reader:
        reader.close()
    out: dict[str, object] = {
        "copies": copies,
        "sink": sink,
        "report_to_all_restricted_s": round(restricted_s, 3),
        "report_to_last_action_received_s": round(delivered_s, 3),
        "actions_per_s_after_report": round(copies / (delivered_s - restricted_s), 1),
        "webhook_requests": requests,
        "bad_signatures": bad,
        "setup_s": round(setup_s, 1),
        # CPU seconds of the benchmark's process (app, delivery worker;
        # not the receiver's or the stream reader's): what the load does not stretch.
        "report_cpu_s": round(report_cpu_s, 2),
        "cpu_s_report_to_received": round(cpu_to_received_s, 2),
        "restricted": body["restricted_items"],
    }
    assert body["restricted_items"] == copies and bad == 0
    if decide:
        from takedown.domain.access import Principal
        from takedown.domain.cases import UserRole

        specialist = Principal(
            "user", "bench-specialist", "bench", frozenset(), UserRole.CHILD_SAFETY_SPECIALIST
        )
        t0 = time.perf_counter()
        rt.cases.decide(
            body["case_number"],
            outcome="violation",
            policy="csam",
            reasons="Confirmed on review (benchmark).",
            principal=specialist,
        )
        out["decision_to_all_actions_planned_s"] = round(time.perf_counter() - t0, 3)
        with rt.sessions() as s:
            out["outbox_rows"] = s.scalar(select(func.count()).select_from(OutboxMessage))
            visible = s.scalar(
                select(func.count()).select_from(Item).where(Item.visibility == "visible")
            )
        assert visible == 0
    rt.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--copies", type=int, nargs="+", default=[3_159, 100_000])
    ap.add_argument("--sinks", nargs="+", default=["webhook", "jetstream"])
    ap.add_argument("--batch-max", type=int, default=500)
    ap.add_argument("--poll-seconds", type=float, default=0.5)
    ap.add_argument("--decide", action="store_true")
    ap.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL server URL; each run creates and drops its own database (default: SQLite)",
    )
    args = ap.parse_args()
    runs = [
        run(
            n,
            sink,
            args.database_url,
            batch_max=args.batch_max,
            poll_s=args.poll_seconds,
            decide=args.decide,
        )
        for n in args.copies
        for sink in args.sinks
    ]
    backend = "postgresql" if args.database_url else "sqlite"
    result = {
        "benchmark": "report to every copy restricted, and to the platform holding every "
        "restriction (one delivery worker)",
        "database": backend,
        "webhook_batch_max": args.batch_max,
        "delivery_poll_seconds": args.poll_seconds,
        "cores": os.cpu_count(),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "runs": runs,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"restrict-{backend}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
