"""Publishing to NATS JetStream from synchronous code (a delivery worker's thread).

The client (``nats-py``) is asynchronous; a :class:`JetStreamPublisher` owns an event
loop and a connection, made on first use and again after a failure, and is used from
one thread at a time. ``publish_all`` sends a batch on the one connection (so the
server stores the messages in the order given) without waiting for each
acknowledgement before the next message, at most ``in_flight`` unacknowledged, and
then waits for every acknowledgement.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping, Sequence
from typing import Any


class JetStreamPublisher:
    def __init__(
        self,
        url: str,
        stream: str,
        subjects: Sequence[str],
        *,
        timeout_s: float = 10.0,
        in_flight: int = 1000,
    ) -> None:
        self._url = url
        self._stream = stream
        self._subjects = list(subjects)
        self._timeout_s = timeout_s
        self._in_flight = in_flight  # messages published and not yet acknowledged
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nc: Any = None
        self._js: Any = None

    def publish_all(
        self, messages: Sequence[tuple[str, bytes, Mapping[str, str]]]
    ) -> list[str | None]:
        """Publish (subject, body, headers) in order; per message None once JetStream
        stored it (or already had it: a duplicate message id), else why not. Raises when
        the server cannot be reached at all."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        try:
            out = self._loop.run_until_complete(self._publish_all(messages))
        except Exception:
            self._drop()
            raise
        if messages and all(x is not None for x in out):
            self._drop()  # nothing stored: connect afresh next time
        return out

    async def _connect(self) -> Any:
        if self._js is None:
            import nats  # the client is only imported where a stream sink is configured
            from nats.js.errors import BadRequestError

            # No reconnecting inside a call: a server that is down fails the call, the
            # actions stay pending, and the next round connects afresh.
            self._nc = await asyncio.wait_for(
                nats.connect(
                    self._url,
                    connect_timeout=self._timeout_s,
                    allow_reconnect=False,
                    max_reconnect_attempts=0,
                ),
                self._timeout_s * 2,
            )
            js = self._nc.jetstream(timeout=self._timeout_s)
            try:
                await js.stream_info(self._stream)
            except Exception:  # noqa: BLE001 - not there yet: create it
                # (BadRequest: another worker created it meanwhile)
                with contextlib.suppress(BadRequestError):
                    await js.add_stream(name=self._stream, subjects=self._subjects)
            self._js = js
        return self._js

    async def _publish_all(
        self, messages: Sequence[tuple[str, bytes, Mapping[str, str]]]
    ) -> list[str | None]:
        """Publish without waiting for each acknowledgement in turn: every message goes
        out with its own reply subject under one inbox, at most ``in_flight`` awaiting
        their acknowledgement; what is not acknowledged within the timeout is reported
        as not stored (sent again later: the message id makes JetStream drop it if it
        was stored after all)."""
        await self._connect()
        nc = self._nc
        n = len(messages)
        out: list[str | None] = ["no acknowledgement from JetStream in time"] * n
        if not n:
            return out
        answered = [False] * n
        left = n
        done = asyncio.Event()
        window = asyncio.Semaphore(self._in_flight)

        async def on_ack(msg: Any) -> None:
            nonlocal left
            try:
                i = int(msg.subject.rsplit(".", 1)[1])
            except ValueError:
                return
            if not 0 <= i < n or answered[i]:
                return
            answered[i] = True
            out[i] = _ack_error(msg)
            window.release()
            left -= 1
            if not left:
                done.set()

        inbox = nc.new_inbox()
        sub = await nc.subscribe(f"{inbox}.*", cb=on_ack)

        async def send() -> None:
            for i, (subject, body, headers) in enumerate(messages):
                await window.acquire()
                await nc.publish(subject, body, reply=f"{inbox}.{i}", headers=dict(headers))
            await nc.flush(self._timeout_s)
            await done.wait()

        try:
            await asyncio.wait_for(send(), self._timeout_s + n / 1000)
        except TimeoutError:
            pass  # the unanswered ones stay "not stored"
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return out

    def _drop(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and self._loop is not None:
            with contextlib.suppress(Exception):  # closing a broken connection
                self._loop.run_until_complete(nc.close())

    def close(self) -> None:
        self._drop()
        if self._loop is not None:
            self._loop.close()
            self._loop = None


def _ack_error(msg: Any) -> str | None:
    """None when the answer is JetStream's acknowledgement that it stored the message
    (or already had it: a duplicate message id), else why not."""
    data = msg.data
    if data.startswith(b'{"stream":') and b'"error"' not in data:
        # JetStream's acknowledgement, {"stream":…,"seq":…[,"duplicate":true]}: no
        # parsing of each of 100,000 of them (what carries an error is parsed below).
        return None
    headers = getattr(msg, "headers", None) or {}
    if not data:
        status = headers.get("Status", "")
        return f"no stream stored it (status {status or 'none'})"
    try:
        doc = json.loads(data)
    except ValueError:
        return "unreadable acknowledgement"
    if isinstance(doc, dict) and "stream" in doc and "error" not in doc:
        return None
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, dict):
        return f"JetStream error {err.get('code')}: {err.get('description')}"[:1000]
    return "unexpected acknowledgement"[:1000]
