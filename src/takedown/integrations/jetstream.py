"""Publishing to NATS JetStream from synchronous code (a delivery worker's thread).

The client (``nats-py``) is asynchronous; a :class:`JetStreamPublisher` owns an event
loop and a connection, made on first use and again after a failure, and is used from
one thread at a time. ``publish_all`` sends a batch concurrently on the one connection
(so the server stores the messages in the order given) and waits for every
acknowledgement.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any


class JetStreamPublisher:
    def __init__(
        self, url: str, stream: str, subjects: Sequence[str], *, timeout_s: float = 10.0
    ) -> None:
        self._url = url
        self._stream = stream
        self._subjects = list(subjects)
        self._timeout_s = timeout_s
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
        js = await self._connect()
        acks = await asyncio.gather(
            *(js.publish(subj, body, headers=dict(h)) for subj, body, h in messages),
            return_exceptions=True,
        )
        out: list[str | None] = []
        for ack in acks:
            if isinstance(ack, BaseException):
                out.append(f"{ack.__class__.__name__}: {ack}"[:1000])
            else:
                out.append(None)
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
