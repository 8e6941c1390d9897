"""A local server speaking Tech Against Terrorism's TCAP hash-list API as
python-threatexchange's ``TATHashListAPI`` sends and parses it:

- ``POST /token-auth/tcap/`` (form: username, password, resend): ``{"token", "user"}``,
  HTTP 400 ``non_field_errors`` for wrong credentials (Django REST framework's answer).
- ``GET /api/hash-list/v2/all?order=asc&after=<updated_on,id>&limit=&offset=`` with
  ``Authorization: Bearer <token>``: ``{"count", "next", "previous", "checkpoint",
  "results": [{hash_digest, algorithm, ideology, file_type, deleted, updated_on,
  created_on, id}]}``; ``next`` an absolute URL (limit-offset paging), ``checkpoint``
  the last record of the page. A repeated parameter counts by its last value (Django's
  ``QueryDict.get``). Records newer than ``after`` by (updated_on, id), oldest first.

``fail_next(status, n)`` answers the next n requests (``fail_next_get``: list requests)
with that status; with
``token_uses`` set, a token expires (401) after answering that many list requests."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.exchanges.local_server import JsonHandler, LocalServer

USER, PASSWORD = "tcap-user", "tcap-password-1"


class TatServer(LocalServer):
    def __init__(self, page_size: int = 3) -> None:
        self.records: dict[int, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.page_size = page_size
        self.logins = 0
        self.lock = threading.Lock()
        self._fail: list[int] = []
        self._fail_gets: list[int] = []
        self._tokens: dict[str, int] = {}  # token -> list requests it answered
        self.token_uses: int | None = None  # a token expires after this many
        self._listen(self._handler(), "/")

    def put(
        self,
        record_id: int,
        algorithm: str,
        digest: str,
        ts: float,
        *,
        ideology: str = "far-right",
        file_type: str = "jpg",
        deleted: bool = False,
    ) -> None:
        with self.lock:
            self.records[record_id] = {
                "hash_digest": digest,
                "algorithm": algorithm,
                "ideology": ideology,
                "file_type": file_type,
                "deleted": deleted,
                "updated_on": ts,
                "created_on": "2026-01-02T03:04:05Z",
                "id": record_id,
            }

    def delete(self, record_id: int, ts: float) -> None:
        with self.lock:
            self.records[record_id].update(deleted=True, updated_on=ts)

    def fail_next(self, status: int, times: int = 1) -> None:
        self._fail.extend([status] * times)

    def fail_next_get(self, status: int, times: int = 1) -> None:
        self._fail_gets.extend([status] * times)

    def hash_list(self, query: dict[str, str]) -> dict[str, object]:
        after = query.get("after") or ""
        limit = min(int(query.get("limit") or self.page_size), self.page_size)
        offset = int(query.get("offset") or 0)
        with self.lock:
            rows = sorted(self.records.values(), key=lambda r: (r["updated_on"], r["id"]))
        if after:
            ts, _, last = after.partition(",")
            mark = (float(ts), int(last))
            rows = [r for r in rows if (float(r["updated_on"]), int(r["id"])) > mark]
        page = rows[offset : offset + limit]
        base = f"{self.url}api/hash-list/v2/all"

        def link(at: int) -> str:
            query = {"after": after, "limit": limit, "offset": at, "order": "asc"}
            return f"{base}?{urlencode(query)}"

        return {
            "count": len(rows),
            "next": link(offset + limit) if offset + limit < len(rows) else None,
            "previous": link(max(0, offset - limit)) if offset else None,
            "checkpoint": f"{page[-1]['updated_on']},{page[-1]['id']}" if page else "",
            "results": page,
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(JsonHandler):
            def _failing(self) -> bool:
                server.requests.append((self.command, self.path))
                fails = server._fail_gets if self.command == "GET" else []
                if server._fail or fails:
                    self._send((fails or server._fail).pop(0), {"detail": "injected"})
                    return True
                return False

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if self._failing():
                    return
                if self.path != "/token-auth/tcap/":
                    self._send(404, {"detail": "Not found."})
                    return
                if (form.get("username"), form.get("password")) != (USER, PASSWORD):
                    self._send(
                        400, {"non_field_errors": ["Unable to log in with provided credentials."]}
                    )
                    return
                with server.lock:
                    server.logins += 1
                    token = f"jwt-{server.logins}"
                    server._tokens[token] = 0
                self._send(200, {"token": token, "user": {"username": USER}})

            def do_GET(self) -> None:  # noqa: N802
                if self._failing():
                    return
                parts = urlsplit(self.path)
                if parts.path != "/api/hash-list/v2/all":
                    self._send(404, {"detail": "Not found."})
                    return
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                uses = server._tokens.get(token)
                if uses is None or (server.token_uses is not None and uses >= server.token_uses):
                    self._send(401, {"detail": "Given token not valid for any token type"})
                    return
                server._tokens[token] = uses + 1
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                self._send(200, server.hash_list(query))

        return Handler
