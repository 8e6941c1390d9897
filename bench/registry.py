"""Registry ingest rates: one request per item, POST /v1/registry/batch, takedown consume.

    .venv/bin/python bench/registry.py [--items 50000] [--postgres] [--single 1000]
        [--stream 20000]

A platform-like feed, made up here (no real material: hashes are random bits): accounts
(one new account line per ten items), originals with one media file each (SHA-256, MD5,
PDQ), reposts and quotes of earlier items, re-uploads of earlier media (same bytes),
views, and 1 % of items near-duplicates (a few PDQ bits changed) of banked media or of
a reported item's media. Before the feed: a restrict-on-match bank of 1,000 entries
and one reported item (a restrict-first case), so copies join cases and are restricted
as they come, as in production.

Measured in one process against the real app (in-process ASGI client), on SQLite or a
new PostgreSQL database (--postgres; created and dropped here):
- ``single``: ``PUT /v1/items/{id}`` (and ``PUT /v1/accounts``) one request per event;
- ``batch``: ``POST /v1/registry/batch``, 10,000 lines a request;
- ``stream``: the same events published to NATS JetStream (127.0.0.1:4222), applied by
  ``takedown consume``'s loop (``cli/consume.py``), from its first fetch to the last
  acknowledgement;
- with ``--viral N``, last: ``viral_copies``, N reposts of the reported item (and
  reposts of those) in batches, each joining its case and restricted as it comes; then
  the restrict-on-match bank learns the reported item's picture (a hotline knows it
  now), and ``batch_with_viral_case`` is a fresh feed of ``--items`` with that case of
  N + 1 copies live: 1 % of its items repost one of them (the feed's view counts then
  change some of the case's copies, as a viral item's keep changing) and 0.5 % are
  re-uploads of the picture (a few PDQ bits changed), which the bank matches.
Prints JSON and writes bench/results/registry-<database>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from takedown.api.app import create_app
from takedown.config import Settings
from takedown.memory import freeze_startup
from takedown.runtime import open_runtime
from takedown.store.blobs import new_key_text
from takedown.store.models import CaseItem, Item

RESULTS = Path(__file__).parent / "results"
NATS_URL = "nats://127.0.0.1:4222"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
LINES = 10_000


def _bits(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(n):0{n // 4}x}"


def _near(pdq: str, rng: random.Random, flips: int = 6) -> str:
    v = int(pdq, 16)
    for b in rng.sample(range(256), flips):
        v ^= 1 << b
    return f"{v:064x}"


class Feed:
    """Events of a platform-like feed; ``prefix`` keeps runs apart in one database."""

    def __init__(self, seed: int, banked: list[str], reported: list[str]) -> None:
        self.rng = random.Random(seed)
        self.banked = banked
        self.reported = reported

    def events(self, prefix: str, items: int) -> list[dict[str, Any]]:
        rng = self.rng
        out: list[dict[str, Any]] = []
        media: list[dict[str, Any]] = []
        ids: list[str] = []
        for k in range(items):
            if k % 10 == 0:
                out.append({"account": {"id": f"{prefix}acc{k // 10}", "handle": f"h{k}"}})
            item: dict[str, Any] = {
                "id": f"{prefix}{k}",
                "account_id": f"{prefix}acc{k // 10}",
                "url": f"https://social.example/{prefix}{k}",
                "monetized": rng.random() < 0.2,
                "view_count": rng.randrange(1000),
            }
            roll = rng.random()
            if roll < 0.01:  # a near-duplicate of banked or reported media
                source = rng.choice(self.banked if rng.random() < 0.5 else self.reported)
                item["media"] = [
                    {
                        "sha256": _bits(rng, 256),
                        "md5": _bits(rng, 128),
                        "pdq": _near(source, rng),
                        "pdq_quality": 90,
                    }
                ]
            elif roll < 0.25 and ids:
                item["reposts"] = rng.choice(ids)
            elif roll < 0.35 and ids:
                item["quotes"] = rng.choice(ids)
                if rng.random() < 0.5:
                    item["media"] = [self._media(rng, media)]
            elif roll < 0.44 and media:
                item["media"] = [rng.choice(media)]  # the same bytes again
            else:
                item["media"] = [self._media(rng, media)]
            ids.append(item["id"])
            out.append({"item": item})
            if rng.random() < 0.05:
                out.append({"views": {"item_id": item["id"], "view_count": 1000 + k}})
        return out

    @staticmethod
    def _media(rng: random.Random, media: list[dict[str, Any]]) -> dict[str, Any]:
        m = {
            "sha256": _bits(rng, 256),
            "md5": _bits(rng, 128),
            "pdq": _bits(rng, 256),
            "pdq_quality": 90,
        }
        media.append(m)
        return m


def viral_events(
    prefix: str, copies: int, original: str, rng: random.Random
) -> list[dict[str, Any]]:
    """``copies`` reposts of ``original``: 70 % of it, the others of an earlier repost
    (a cascade), one new account per ten."""
    out: list[dict[str, Any]] = []
    ids = [original]
    for k in range(copies):
        if k % 10 == 0:
            out.append({"account": {"id": f"{prefix}acc{k // 10}", "handle": f"v{k}"}})
        parent = original if rng.random() < 0.7 else rng.choice(ids)
        item = {"id": f"{prefix}{k}", "account_id": f"{prefix}acc{k // 10}", "reposts": parent}
        out.append({"item": {**item, "view_count": rng.randrange(100)}})
        ids.append(item["id"])
    return out


def reposting(
    events: list[dict[str, Any]], ids: list[str], picture: str, rng: random.Random
) -> None:
    """0.5 % of the feed's items become re-uploads of ``picture`` (a near-duplicate),
    1 % reposts of one of ``ids`` (without media)."""
    for e in events:
        item = e.get("item")
        if item is None:
            continue
        roll = rng.random()
        if roll < 0.015:
            item.pop("media", None)
            item.pop("quotes", None)
            item.pop("reposts", None)
        if roll < 0.005:
            media = {"sha256": _bits(rng, 256), "md5": _bits(rng, 128), "pdq_quality": 90}
            item["media"] = [{**media, "pdq": _near(picture, rng, 4)}]
        elif roll < 0.015:
            item["reposts"] = rng.choice(ids)


def _items(events: list[dict[str, Any]]) -> int:
    return sum(1 for e in events if "item" in e)


def _setup(client: TestClient, rt: Any, rng: random.Random) -> tuple[list[str], list[str]]:
    admin = {
        "Authorization": f"Bearer {rt.api_keys.create('bench-admin', ['admin'], actor='bench')[1]}"
    }
    r = client.post(
        "/v1/banks",
        headers=admin,
        json={
            "name": "bench",
            "source": "ncmec",
            "match_action": "block",
            "restrict_on_match": True,
        },
    )
    assert r.status_code == 201, r.text
    banked = [_bits(rng, 256) for _ in range(1000)]
    r = client.post(
        "/v1/banks/bench/entries",
        headers=admin,
        json={"entries": [{"signal_type": "pdq", "value": h, "quality": 90} for h in banked]},
    )
    assert r.status_code in (200, 201), r.text
    platform = {
        "Authorization": f"Bearer {rt.api_keys.create('bench', ['platform'], actor='bench')[1]}"
    }
    reported = [_bits(rng, 256) for _ in range(5)]
    for k, h in enumerate(reported):
        m = {"sha256": _bits(rng, 256), "md5": _bits(rng, 128), "pdq": h, "pdq_quality": 90}
        client.put(
            f"/v1/items/reported{k}",
            json={"account_id": "victimised", "media": [m]},
            headers=platform,
        )
    r = client.post(
        "/v1/reports",
        json={
            "category": "csam",
            "reporter_role": "parent_guardian",
            "item_ids": [f"reported{k}" for k in range(5)],
            "explanation": "These show my son; he was 13 (benchmark stand-in).",
            "good_faith": True,
        },
    )
    assert r.status_code == 201 and r.json()["restricted_items"] == 5, r.text
    return banked, reported, platform  # type: ignore[return-value]


def _single(client: TestClient, platform: dict[str, str], events: list[dict[str, Any]]) -> float:
    t0 = time.perf_counter()
    for e in events:
        if "account" in e:
            body = dict(e["account"])
            r = client.put(f"/v1/accounts/{body.pop('id')}", json=body, headers=platform)
        elif "item" in e:
            body = dict(e["item"])
            r = client.put(f"/v1/items/{body.pop('id')}", json=body, headers=platform)
        else:
            v = e["views"]
            r = client.post(
                f"/v1/items/{v['item_id']}/views",
                json={"view_count": v["view_count"]},
                headers=platform,
            )
        assert r.status_code == 200, r.text
    return time.perf_counter() - t0


def _batch(
    client: TestClient, platform: dict[str, str], events: list[dict[str, Any]]
) -> tuple[float, dict[str, int]]:
    headers = {**platform, "Content-Type": "application/x-ndjson"}
    totals = {"items_created": 0, "matched": 0, "rejected": 0}
    elapsed = 0.0
    cpu0 = time.process_time()
    for start in range(0, len(events), LINES):
        body = "\n".join(json.dumps(e) for e in events[start : start + LINES]).encode()
        t0 = time.perf_counter()
        r = client.post("/v1/registry/batch", content=body, headers=headers)
        elapsed += time.perf_counter() - t0
        assert r.status_code == 200, r.text
        out = r.json()
        totals["items_created"] += out["items_created"]
        totals["matched"] += out["matched"]
        totals["rejected"] += len(out["rejected"])
    # This process's CPU (the app, the client and, on SQLite, the database): on a
    # shared machine the wall clock also counts other processes' turns.
    totals["process_cpu_s"] = round(time.process_time() - cpu0, 2)  # type: ignore[assignment]
    return elapsed, totals


async def _publish(events: list[dict[str, Any]], stream: str, subject: str) -> float:
    import nats

    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    await js.add_stream(name=stream, subjects=[subject])
    base = subject[:-2]
    t0 = time.perf_counter()
    pending = []
    for k, e in enumerate(events):
        kind = next(iter(e))
        pending.append(
            js.publish(f"{base}.{kind}", json.dumps(e).encode(), headers={"Nats-Msg-Id": f"b{k}"})
        )
        if len(pending) == 500:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    elapsed = time.perf_counter() - t0
    await nc.close()
    return elapsed


async def _drop_stream(stream: str) -> None:
    import nats

    nc = await nats.connect(NATS_URL)
    await nc.jetstream().delete_stream(stream)
    await nc.close()


def _left_to_the_platform() -> None:
    """The feed just made is the platform's data, which a serving process never holds:
    like what the server made to start (``takedown.memory.freeze_startup``, as serving
    processes call it), left out of the garbage collector's walks, which in this one
    process would otherwise walk the feed's hundreds of thousands of objects too."""
    freeze_startup()


def _progress(what: str, figures: dict[str, Any]) -> None:
    print(what, json.dumps(figures), file=sys.stderr, flush=True)


def _batch_figures(
    events: list[dict[str, Any]], t: float, totals: dict[str, int]
) -> dict[str, Any]:
    return {
        "items": _items(events),
        "events": len(events),
        "lines_per_request": LINES,
        "seconds": round(t, 2),
        "items_per_s": round(_items(events) / t),
        "events_per_s": round(len(events) / t),
        **totals,
        # What one core does: the wall clock of a shared machine counts other
        # processes' turns too.
        "items_per_cpu_s": round(_items(events) / totals["process_cpu_s"]),
    }


def run(
    database_url: str | None, items: int, single: int, stream_items: int, viral: int = 0
) -> dict[str, Any]:
    from takedown.cli.consume import consume

    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        key = new_key_text() if database_url else None
        settings = Settings(data_dir=Path(tmp), database_url=database_url, master_key=key)
        rt = open_runtime(settings, create=True)
        client = TestClient(create_app(rt))
        rng = random.Random(7)
        banked, reported, platform = _setup(client, rt, rng)  # type: ignore[misc]
        feed = Feed(11, banked, reported)

        events = feed.events("s", single)
        _left_to_the_platform()
        t = _single(client, platform, events)
        result["single"] = {
            "items": _items(events),
            "events": len(events),
            "seconds": round(t, 2),
            "items_per_s": round(_items(events) / t),
        }
        _progress("single", result["single"])
        events = feed.events("b", items)
        _left_to_the_platform()
        t, totals = _batch(client, platform, events)
        result["batch"] = _batch_figures(events, t, totals)
        _progress("batch", result["batch"])
        replay = events[:LINES]  # the first request again: a replay
        t, totals = _batch(client, platform, replay)
        result["batch_replay"] = {
            "items": _items(replay),
            "events": len(replay),
            "seconds": round(t, 2),
            "items_per_s": round(_items(replay) / t),
            **totals,
            "items_per_cpu_s": round(_items(replay) / totals["process_cpu_s"]),
        }
        _progress("batch_replay", result["batch_replay"])
        if stream_items:
            events = feed.events("n", stream_items)
            _left_to_the_platform()
            name = uuid.uuid4().hex[:10]
            stream, subject = f"TD_BENCH_{name}", f"td.bench.{name}.>"
            s = settings.model_copy(
                update={
                    "nats_stream": stream,
                    "nats_subject": subject,
                    "nats_durable": f"bench-{name}",
                }
            )
            publish_s = asyncio.run(_publish(events, stream, subject))
            cpu0 = time.process_time()
            try:
                stats = asyncio.run(consume(rt, s, max_idle_s=2.0))
            finally:
                asyncio.run(_drop_stream(stream))
            assert stats.applied == len(events), stats.as_dict()
            result["stream"] = {
                "items": _items(events),
                "events": len(events),
                "batch": s.nats_batch,  # the setting's default
                "publish_s": round(publish_s, 2),
                "seconds": round(stats.seconds, 2),
                "items_per_s": round(_items(events) / stats.seconds),
                "events_per_s": round(len(events) / stats.seconds),
                "process_cpu_s_incl_2s_idle": round(time.process_time() - cpu0, 2),
            }
        with rt.sessions() as sess:
            result["items_in_cases"] = sess.scalar(select(func.count()).select_from(CaseItem))
        if viral:
            events = viral_events("v", viral, "reported0", random.Random(3))
            _left_to_the_platform()
            t, totals = _batch(client, platform, events)
            with rt.sessions() as sess:
                joined = sess.scalar(select(func.count()).select_from(CaseItem))
            assert joined - result["items_in_cases"] == viral, (joined, result["items_in_cases"])
            result["viral_copies"] = _batch_figures(events, t, totals)
            key = rt.api_keys.create("bench-hotline", ["admin"], actor="bench")[1]
            r = client.post(
                "/v1/banks/bench/entries",
                headers={"Authorization": f"Bearer {key}"},
                json={"entries": [{"signal_type": "pdq", "value": reported[0], "quality": 90}]},
            )
            assert r.status_code in (200, 201), r.text
            events = feed.events("w", items)
            reposting(events, [f"v{k}" for k in range(viral)], reported[0], random.Random(5))
            _left_to_the_platform()
            t, totals = _batch(client, platform, events)
            result["batch_with_viral_case"] = _batch_figures(events, t, totals)
            _progress("batch_with_viral_case", result["batch_with_viral_case"])
        with rt.sessions() as sess:
            result["items_in_cases"] = sess.scalar(select(func.count()).select_from(CaseItem))
            result["items_restricted"] = sess.scalar(
                select(func.count()).select_from(Item).where(Item.visibility != "visible")
            )
        rt.close()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=50_000, help="items in the batch run")
    ap.add_argument("--single", type=int, default=1_000, help="items sent one request each")
    ap.add_argument("--stream", type=int, default=20_000, help="items through NATS (0: skip)")
    ap.add_argument("--postgres", action="store_true", help="a new PostgreSQL database")
    ap.add_argument(
        "--viral", type=int, default=0, help="copies of a reported item, then a batch (0: skip)"
    )
    args = ap.parse_args()
    database_url = None
    name = f"takedown_bench_registry_{os.getpid()}"
    if args.postgres:
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        database_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    load_at_start = [round(x, 1) for x in os.getloadavg()]
    try:
        runs = run(database_url, args.items, args.single, args.stream, args.viral)
    finally:
        if args.postgres:
            import psycopg

            with psycopg.connect(
                "postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True
            ) as c:
                c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    database = "postgresql" if args.postgres else "sqlite"
    result = {
        "load_average_at_start": load_at_start,
        "benchmark": "registry ingest: one request per item, NDJSON batches, NATS JetStream",
        "database": database,
        "cpus": os.cpu_count(),
        "load_average_at_end": [round(x, 1) for x in os.getloadavg()],
        "feed": "accounts 1/10 items; 1 % near-duplicates of banked or reported media; "
        "~24 % reposts, ~10 % quotes, ~9 % re-uploads of the same bytes, 5 % views",
        **runs,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"registry-{database}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
