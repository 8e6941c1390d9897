"""Refuse oversized request bodies before they are buffered.

Starlette spools uploads of any size to disk; this ASGI middleware stops a body at the
configured limit, whether or not the client sent Content-Length.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from takedown.api.errors import error_response
from takedown.errors import MediaTooLarge


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limit_for_path: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for_path = limit_for_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for_path(scope["path"])
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            response = error_response(
                413, "payload_too_large", f"The request body is larger than {limit} bytes."
            )
            await response(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise MediaTooLarge(
                        f"The request body is larger than {limit} bytes.",
                        code="payload_too_large",
                    )
            return message

        await self.app(scope, limited_receive, send)
