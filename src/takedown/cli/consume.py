"""``takedown consume``: registry events from NATS JetStream (docs/integrations/streams.md).

A durable pull consumer fetches up to ``TAKEDOWN_NATS_BATCH`` messages; each message is
one event, the same JSON object as a line of ``POST /v1/registry/batch``; the batch is
applied in one transaction by the same code as that endpoint
(``services/registry/batch.py``), with each message's id recorded in the same
transaction (``applied_messages``), and only then are the messages acknowledged. A
message redelivered after a crash between commit and acknowledgement is recognised by
its id and applies nothing. nats-py is imported when the command runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import typer

from takedown.cli.common import out, runtime, settings

if TYPE_CHECKING:
    from takedown.config import Settings
    from takedown.runtime import Runtime

ACTOR = "stream"


@dataclass
class ConsumeStats:
    messages: int = 0
    applied: int = 0
    duplicates: int = 0
    rejected: int = 0
    batches: int = 0
    seconds: float = 0.0
    cases: set[str] = field(default_factory=set)

    def as_dict(self) -> dict[str, object]:
        return {
            "messages": self.messages,
            "applied": self.applied,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "batches": self.batches,
            "seconds": round(self.seconds, 3),
            "cases": sorted(self.cases),
        }


def message_id(msg: Any, stream: str) -> str:
    """The publisher's ``Nats-Msg-Id`` (JetStream drops a second publish of it within
    the stream's duplicate window), else the stream and sequence: either way the same
    for every delivery of one message."""
    given = (msg.headers or {}).get("Nats-Msg-Id")
    ident = given or f"seq:{msg.metadata.sequence.stream}"
    return f"nats:{stream}:{ident}"[:200]


async def _subscribe(js: Any, s: Settings) -> Any:
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
    from nats.js.errors import NotFoundError

    try:
        await js.stream_info(s.nats_stream)
    except NotFoundError:
        await js.add_stream(name=s.nats_stream, subjects=[s.nats_subject])
    config = ConsumerConfig(
        durable_name=s.nats_durable,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=s.nats_ack_wait_s,
        max_ack_pending=max(2 * s.nats_batch, 1000),
        filter_subject=s.nats_subject,
    )
    return await js.pull_subscribe(
        s.nats_subject, durable=s.nats_durable, stream=s.nats_stream, config=config
    )


async def consume(
    rt: Runtime,
    s: Settings,
    *,
    max_idle_s: float | None = None,
    max_messages: int | None = None,
) -> ConsumeStats:
    """Apply events until stopped, or until nothing came for ``max_idle_s``, or after
    ``max_messages``."""
    import asyncio
    import logging

    import nats

    from takedown.api.limits import json_has_nul
    from takedown.api.routes.registry_batch import parse_bytes
    from takedown.errors import TakedownError
    from takedown.services.registry.batch import register_batch

    log = logging.getLogger("takedown.consume")
    stats = ConsumeStats()

    def parse(msgs: list[Any]) -> _Parsed:
        parsed = _Parsed(msgs)
        clean = not json_has_nul(b"\n".join(m.data for m in msgs))  # one scan
        for m in msgs:
            seq = int(m.metadata.sequence.stream)
            try:
                parsed.events.append((seq, parse_bytes(m.data, nul_checked=clean)))
                parsed.ids.append(message_id(m, s.nats_stream))
            except TakedownError as exc:
                parsed.refused.append((seq, exc.code, exc.message))
        return parsed

    nc = await nats.connect(s.nats_url, max_reconnect_attempts=-1)
    # The next fetch, under way while a batch is applied (the applying thread waits on
    # the database much of the time), and its messages parsed then when they come
    # first: they are applied after that batch commits, as they would be had they been
    # fetched then.
    fetching: asyncio.Future[Any] | None = None
    ahead: _Parsed | None = None
    try:
        sub = await _subscribe(nc.jetstream(), s)
        idle_since = time.monotonic()
        started: float | None = None
        while max_messages is None or stats.messages < max_messages:
            if ahead is not None:
                batch, ahead = ahead, None
            else:
                task = fetching or asyncio.ensure_future(sub.fetch(s.nats_batch, timeout=1.0))
                fetching = None
                batch = parse(await _fetched(task))
            if not batch.msgs:  # nothing came within the fetch's timeout
                if max_idle_s is not None and time.monotonic() - idle_since > max_idle_s:
                    break
                continue
            msgs = batch.msgs
            started = started or time.monotonic()
            applying = asyncio.ensure_future(
                asyncio.to_thread(
                    register_batch, rt.registry, batch.events, actor=ACTOR, message_ids=batch.ids
                )
            )
            if max_messages is None or stats.messages + len(msgs) < max_messages:
                fetching = asyncio.ensure_future(sub.fetch(s.nats_batch, timeout=1.0))
                await asyncio.wait({applying, fetching}, return_when=asyncio.FIRST_COMPLETED)
                if fetching.done() and not applying.done():
                    ahead = parse(await _fetched(fetching))
                    fetching = None
            try:
                result = await applying
            except Exception:
                log.exception("a batch of %s messages failed; redelivered later", len(msgs))
                await asyncio.gather(*(m.nak(delay=1) for m in msgs))
                # Fetched after it: redelivered after it.
                later = ahead.msgs if ahead is not None else []
                if fetching is not None:
                    later = await _fetched(fetching)
                fetching, ahead = None, None
                await asyncio.gather(*(m.nak(delay=1) for m in later))
                await asyncio.sleep(1)
                continue
            # Acknowledged only now that their transaction has committed.
            await asyncio.gather(*(m.ack() for m in msgs))
            for seq, code, message in batch.refused:
                log.warning("message %s refused: %s: %s", seq, code, message)
            for r in result.rejected:
                log.warning("message %s refused: %s: %s", r.line, r.code, r.message)
            stats.messages += len(msgs)
            stats.batches += 1
            stats.applied += result.accepted
            stats.duplicates += result.duplicates
            stats.rejected += len(batch.refused) + len(result.rejected)
            stats.cases |= result.cases
            stats.seconds = time.monotonic() - started
            idle_since = time.monotonic()
        # Fetched and not applied (none unless stopped early): back to the stream now.
        later = ahead.msgs if ahead is not None else []
        if fetching is not None:
            later = await _fetched(fetching)
        fetching, ahead = None, None
        await asyncio.gather(*(m.nak() for m in later))
        await nc.flush()
    finally:
        if fetching is not None:
            fetching.cancel()
        await nc.close()
    return stats


@dataclass
class _Parsed:
    """A fetch's messages, their events and ids, and those refused (sequence, code,
    message)."""

    msgs: list[Any]
    events: list[tuple[int, Any]] = field(default_factory=list)
    ids: list[str | None] = field(default_factory=list)
    refused: list[tuple[int, str, str]] = field(default_factory=list)


async def _fetched(task: Any) -> list[Any]:
    """The messages a fetch under way brings (none when it times out)."""
    import nats

    try:
        return list(await task)
    except (TimeoutError, nats.errors.TimeoutError):
        return []


def consume_cmd(
    idle_exit: Annotated[
        float | None,
        typer.Option(help="Stop after this many seconds without a message (default: run on)."),
    ] = None,
    max_messages: Annotated[int | None, typer.Option(help="Stop after this many messages.")] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the counts as one JSON object at the end.")
    ] = False,
) -> None:
    """Register accounts, items and views from NATS JetStream (TAKEDOWN_NATS_URL, …),
    through a durable pull consumer: each message applied once, acknowledged after its
    commit. Events and subjects: docs/integrations/streams.md."""
    import asyncio
    import json

    from takedown.memory import freeze_startup

    s = settings()
    rt = runtime(config=s)
    freeze_startup()  # takedown/memory.py
    try:
        stats = asyncio.run(consume(rt, s, max_idle_s=idle_exit, max_messages=max_messages))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    finally:
        rt.close()
    if json_out:
        print(json.dumps(stats.as_dict()))
    else:
        out.print(
            f"{stats.messages} messages: {stats.applied} applied, {stats.duplicates} "
            f"duplicates, {stats.rejected} refused"
        )
