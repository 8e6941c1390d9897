"""``POST /v1/screen/hashes`` served without the framework: the upload path's hot call.

Why: a hash-only screening is an in-memory search of well under a millisecond, and the
framework around it (routing through every route, dependency resolution, content-type
parsing, JSON decoding into Python objects and then validating them, six middleware
layers) cost more than the screening itself -- measured with py-spy on this 2-core
machine, about half of a worker's time. The application hands that one request to
this handler before the framework sees it (``TakedownAPI.__call__`` in api/app.py),
and it answers with the same model (``ScreenHashesIn``, validated straight from the
JSON bytes by pydantic-core), the same authentication and permission check, the same
service call and the same errors as the FastAPI route in routes/screen.py, which stays
the documented definition of the endpoint (OpenAPI) and serves it when this fast path
is not installed. The tests run the same requests against both (tests/api/test_fast_screen.py).

Anything but a POST to exactly that path goes to the application untouched.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError
from starlette.types import Message, Receive, Scope, Send

from takedown.api.auth import authenticate, check_permission
from takedown.api.errors import error_response, validation_problem
from takedown.api.limits import NO_STORE, json_has_nul, nul_refused
from takedown.api.routes.screen import screen_hashes_body, serialize
from takedown.api.schemas import ScreenHashesIn
from takedown.domain.access import Permission
from takedown.errors import (
    InvalidRequest,
    MediaTooLarge,
    TakedownError,
    Unauthenticated,
)
from takedown.runtime import Runtime

log = logging.getLogger("takedown.api")

PATH = "/v1/screen/hashes"
MAX_BODY = 64 * 1024  # 8 PDQs, two digests and a 500-character reference fit many times


class FastScreenHashes:
    """An ASGI app for that one request (see :meth:`handles`)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    @staticmethod
    def handles(scope: Scope) -> bool:
        return scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "POST"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            status, body = await self._handle(scope, receive)
        except TakedownError as exc:
            response = error_response(exc.status, exc.code, exc.message, details=exc.details)
            response.headers["Cache-Control"] = "no-store"
            await response(scope, receive, send)
            return
        except Exception:  # a bug: logged, and the same answer as the app's own
            log.exception("unhandled error")
            response = error_response(
                500, "internal_error", "Something went wrong on our side; it has been logged."
            )
            response.headers["Cache-Control"] = "no-store"
            await response(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    NO_STORE,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _handle(self, scope: Scope, receive: Receive) -> tuple[int, bytes]:
        headers = dict(scope["headers"])
        principal = authenticate(self.rt, _bearer(headers.get(b"authorization")))
        check_permission(principal, Permission.SCREEN)
        raw = await _read_body(receive)
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if content_type and content_type != b"application/json":
            raise InvalidRequest(
                "Send the hashes as JSON (Content-Type: application/json).",
                code="invalid_request",
            )
        if json_has_nul(raw):  # as api/limits.py refuses it for every other request
            raise nul_refused("request body")
        try:
            body = ScreenHashesIn.model_validate_json(raw)
        except ValidationError as exc:
            message, problems = validation_problem(exc.errors())
            raise InvalidRequest(message, errors=problems) from exc
        result = await screen_hashes_body(self.rt, principal.actor, body)
        return 200, serialize(result)


def _bearer(value: bytes | None) -> str:
    scheme, _, credentials = (value or b"").decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise Unauthenticated(
            "Send an API key or token as 'Authorization: Bearer <key>'.", code="unauthenticated"
        )
    return credentials.strip()


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise TakedownError("The client went away.", code="bad_request")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise MediaTooLarge(
                f"The request body is larger than {MAX_BODY} bytes.", code="payload_too_large"
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
