"""Actions delivered per second to a local receiver over real HTTP.

    .venv/bin/python bench/delivery.py [--actions 2000] [--workers 1]

Queues N restrict actions (one report over an original and its reposts), starts a
local receiver that checks every signature and answers 204, and drains the outbox with
the delivery workers. Prints JSON and writes bench/results/delivery.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.services.test_delivery import SECRET, Receiver  # noqa: E402

from takedown.config import Settings  # noqa: E402
from takedown.domain.reports import ReportInput  # noqa: E402
from takedown.ids import new_id, utcnow  # noqa: E402
from takedown.integrations.webhooks import WebhookClient  # noqa: E402
from takedown.runtime import open_runtime  # noqa: E402
from takedown.runtime.workers import DeliveryWorker  # noqa: E402
from takedown.services.outbound.delivery import DeliveryDispatcher  # noqa: E402
from takedown.store.models import Item  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--actions", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rt = open_runtime(Settings(data_dir=Path(tmp)))
        now = utcnow()
        with rt.sessions.begin() as s:
            s.execute(
                insert(Item),
                [
                    {
                        "public_id": new_id(),
                        "platform_id": "orig",
                        "registered_at": now,
                        "updated_at": now,
                    }
                ]
                + [
                    {
                        "public_id": new_id(),
                        "platform_id": f"r{i}",
                        "reposts_platform_id": "orig",
                        "registered_at": now,
                        "updated_at": now,
                    }
                    for i in range(1, args.actions)
                ],
            )
        t0 = time.perf_counter()
        rt.cases.submit_report(
            ReportInput(
                category="csam",
                reporter_role="user",
                item_ids=["orig"],
                explanation="abuse material",
                good_faith=True,
            ),
            channel="api",
        )
        plan_s = time.perf_counter() - t0
        receiver = Receiver()
        workers = [
            DeliveryWorker(
                DeliveryDispatcher(rt.sessions, WebhookClient(receiver.url, SECRET)),
                interval_s=0.01,
            )
            for _ in range(args.workers)
        ]
        t0 = time.perf_counter()
        for w in workers:
            w.start()
        while len(receiver.executed) < args.actions and time.perf_counter() - t0 < 600:
            time.sleep(0.01)
        elapsed = time.perf_counter() - t0
        for w in workers:
            w.stop()
        receiver.close()
        rt.close()
    result = {
        "benchmark": "signed webhook delivery to a local receiver (SQLite)",
        "actions": args.actions,
        "workers": args.workers,
        "delivered": len(receiver.executed),
        "bad_signatures": receiver.bad_signatures,
        "seconds": round(elapsed, 2),
        "actions_per_s": round(len(receiver.executed) / elapsed, 1),
        "plan_actions_s": round(plan_s, 3),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "delivery.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
