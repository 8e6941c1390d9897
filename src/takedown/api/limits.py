"""Refuse what no endpoint should read, before an endpoint reads it.

One ASGI middleware in front of the whole application (the API and the pages):

- **Body size.** A body is counted as it arrives and refused at its limit (413
  ``payload_too_large``), whether the client declared its length or sent it in chunks,
  so a huge body is never read whole. The limit (:func:`body_limit`): the public
  endpoints (reports, status, sign-in), the pages' forms and any request without
  credentials get :data:`PUBLIC_BODY_LIMIT`; imports get ``TAKEDOWN_MAX_IMPORT_BYTES``;
  everything else the media limit plus room for the multipart envelope. (Starlette
  spools uploads of any size to disk; this is what stops them.)
- **NUL characters** (U+0000). PostgreSQL cannot store them in text and no field here
  has a use for them, so they are refused everywhere with 422 ``invalid_character``:
  here in the path, the query and any body that is not multipart (a NUL byte, ``%00``,
  or the JSON escape ``\\u0000``), scanned as the body streams; the text fields of
  multipart forms where those are read (``api.schemas.FormText``, the pages' form
  readers); ``POST /v1/screen/hashes`` in ``api/fast_screen.py``.
- **``Cache-Control: no-store``** on every ``/v1`` answer: cases, reports, reporters'
  identities and status tokens are never kept by a browser or a proxy.

A body refused part-way raises in the endpoint that reads it; whatever that endpoint
answers, the client gets the 413 or 422 (an endpoint that answers with that same
status itself, such as the report form's page, keeps its own answer).
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from takedown.api.errors import error_response
from takedown.errors import InvalidCharacter, MediaTooLarge, TakedownError

# Reports (a hash report of 20 files with all their signals is ~200 KB), status, appeals,
# sign-in, the public pages' forms, the console's forms, and whatever is sent without
# credentials (it is refused once read, so it need not be read).
PUBLIC_BODY_LIMIT = 1024 * 1024
PUBLIC_PATHS = frozenset(
    {
        "/v1/reports",
        "/v1/reports/status",
        "/v1/reports/appeal",
        "/v1/reports/withdraw",
        "/v1/auth/token",
    }
)
NO_STORE = (b"cache-control", b"no-store")

# An escaped NUL in JSON: "\u0000" after an even number of other backslashes (an odd
# number before the "u" in all; "\\u0000" is a backslash and the text "u0000").
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_NUL_BYTE_OR_PERCENT = re.compile(rb"\x00|%00")


def body_limit(path: str, has_credentials: bool, *, media_limit: int, import_limit: int) -> int:
    if not has_credentials or path in PUBLIC_PATHS:
        return PUBLIC_BODY_LIMIT
    if path.endswith("/import"):
        return import_limit
    return media_limit


def nul_refused(where: str) -> InvalidCharacter:
    return InvalidCharacter(
        f"The {where} contains a NUL character (U+0000), which is never accepted.",
        code="invalid_character",
    )


def json_has_nul(data: bytes) -> bool:
    """A NUL byte, or a NUL written as a JSON escape, anywhere in ``data``."""
    # The regular expression only where an escaped NUL may be: it looks behind at every
    # position (measured: 80 ms for a 10,000-line NDJSON body; the substring test, 1 ms).
    if b"\x00" in data:
        return True
    return b"\\u0000" in data and _JSON_NUL.search(data) is not None


class NulScanner:
    """Finds a NUL in a body read in chunks: a NUL byte; in a URL-encoded form ``%00``;
    in anything else (JSON, JSON lines, CSV) the JSON escape ``\\u0000``. Carries over
    the end of each chunk that a match could begin with."""

    def __init__(self, form_encoded: bool) -> None:
        self._form = form_encoded
        self._carry = b""

    def feed(self, chunk: bytes) -> bool:
        data = self._carry + chunk
        if self._form:
            self._carry = data[-2:]
            return _NUL_BYTE_OR_PERCENT.search(data) is not None
        if json_has_nul(data):
            return True
        self._carry = _escape_tail(data)
        return False


def _escape_tail(data: bytes) -> bytes:
    """The end of ``data`` that the next chunk could complete into an escaped NUL: a run
    of backslashes (only its parity matters) and what follows it of ``u000``."""
    last = data.rfind(b"\\", max(0, len(data) - 5))
    if last < 0:
        return b""
    rest = data[last + 1 :]
    if rest and not (rest[:1] == b"u" and rest[1:].strip(b"0") == b""):
        return b""
    head = data[: last + 1]
    run = len(head) - len(head.rstrip(b"\\"))
    return (b"\\" if run % 2 else b"\\\\") + rest


class RequestGuard:
    def __init__(self, app: ASGIApp, *, media_limit: int, import_limit: int) -> None:
        self.app = app
        self.media_limit = media_limit
        self.import_limit = import_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = dict(scope.get("headers") or [])
        query: bytes = scope.get("query_string", b"")
        if "\x00" in path:
            await _refuse(nul_refused("address"), scope, receive, send)
            return
        if b"\x00" in query or b"%00" in query:
            await _refuse(nul_refused("query"), scope, receive, send)
            return
        limit = body_limit(
            path,
            b"authorization" in headers,
            media_limit=self.media_limit,
            import_limit=self.import_limit,
        )
        too_large = MediaTooLarge(
            f"The request body is larger than {limit} bytes.", code="payload_too_large"
        )
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(too_large, scope, receive, send)
            return
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        scanner = (
            None
            if content_type.startswith(b"multipart/")
            else NulScanner(content_type == b"application/x-www-form-urlencoded")
        )
        seen = 0
        refused: TakedownError | None = None
        started = replaced = False
        api = path.startswith("/v1/")

        async def guarded_receive() -> Message:
            nonlocal seen, refused
            if refused is not None:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                seen += len(chunk)
                if seen > limit:
                    refused = too_large
                elif scanner is not None and scanner.feed(chunk):
                    refused = nul_refused("request body")
                if refused is not None:
                    raise refused
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started, replaced
            if message["type"] == "http.response.start":
                if refused is not None and message["status"] != refused.status:
                    # The endpoint answered what it made of the exception (FastAPI: "400,
                    # error parsing the body"); the client gets the reason instead.
                    replaced = True
                    await _refuse(refused, scope, receive, send)
                    return
                started = True
                answer_headers = list(message.get("headers", []))
                if api and not any(k.lower() == b"cache-control" for k, _ in answer_headers):
                    message = {**message, "headers": [*answer_headers, NO_STORE]}
            elif replaced:
                return
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            if refused is None or started or replaced:
                raise
            await _refuse(refused, scope, receive, send)


async def _refuse(exc: TakedownError, scope: Scope, receive: Receive, send: Send) -> None:
    response = error_response(exc.status, exc.code, exc.message)
    if scope["path"].startswith("/v1/"):
        response.headers["Cache-Control"] = "no-store"
    await response(scope, receive, send)
