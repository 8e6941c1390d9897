"""Time from a report to every copy restricted, for 2,224 and 100,000 copies.

    .venv/bin/python bench/restrict.py [--copies 2224 100000] [--database-url URL]

Builds the MISSION.md shape — one original by a flagged account, N-1 reposts of it by
other accounts — with bulk inserts (setting up 100,000 items through the registry one
by one would measure the registry, not the restriction), then files the parent's report
through the real HTTP app (in-process ASGI client) and measures the request: copy graph
walk, case, restriction of every copy, outbox rows, audit events, all in one
transaction. Verifies the result, prints JSON and writes bench/results/restrict.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select

from takedown.api.app import create_app
from takedown.config import Settings
from takedown.ids import new_id, utcnow
from takedown.runtime import open_runtime
from takedown.store.blobs import new_key_text
from takedown.store.models import Account, Item, OutboxMessage

RESULTS = Path(__file__).parent / "results"


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


def run(copies: int, database_url: str | None) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        # A new PostgreSQL database gets no key made for it: this run makes its own.
        key = new_key_text() if database_url else None
        rt = open_runtime(Settings(data_dir=Path(tmp), database_url=database_url, master_key=key))
        t0 = time.perf_counter()
        _populate(rt, copies)
        setup_s = time.perf_counter() - t0
        client = TestClient(create_app(rt))
        t0 = time.perf_counter()
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
        elapsed = time.perf_counter() - t0
        assert r.status_code == 201, r.text
        body = r.json()
        # A specialist confirms: every copy removed, media banked, accounts acted on.
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
        decide_s = time.perf_counter() - t0
        with rt.sessions() as s:  # after the decision every copy is removed
            visible = s.scalar(
                select(func.count()).select_from(Item).where(Item.visibility == "visible")
            )
            outbox = s.scalar(select(func.count()).select_from(OutboxMessage))
        rt.close()
    # copies restrict + copies remove + one suspension per posting account
    assert body["restricted_items"] == copies and visible == 0 and outbox == 3 * copies
    return {
        "copies": copies,
        "report_to_all_restricted_s": round(elapsed, 3),
        "decision_to_all_actions_planned_s": round(decide_s, 3),
        "per_copy_ms": round(elapsed * 1000 / copies, 4),
        "setup_s": round(setup_s, 1),
        "restricted": body["restricted_items"],
        "outbox_rows": outbox,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--copies", type=int, nargs="+", default=[2_224, 100_000])
    ap.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL URL of an EMPTY, migrated database (default: SQLite)",
    )
    args = ap.parse_args()
    if args.database_url:
        print(
            "PostgreSQL runs need an empty database per size; use SQLite or pass one "
            "size at a time.",
            file=sys.stderr,
        )
    runs = [run(n, args.database_url) for n in args.copies]
    result = {
        "benchmark": "report to every copy restricted (one request, one transaction)",
        "database": "postgresql" if args.database_url else "sqlite",
        "runs": runs,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "restrict.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
