"""A local server speaking StopNCII's API as python-threatexchange's ``StopNCIIAPI``
sends and parses it: ``GET /v1/FetchHashes?startTimestamp=&pageSize=&nextPageToken=``
(JSON: ``count``, ``nextPageToken``, ``nextSetTimestamp``, ``hasMoreRecords``,
``hashRecords`` with ``hashStatus`` and ``caseNumbers``), ``POST /v1/SubmitFeedback``;
``x-functions-key`` per endpoint and ``Ocp-Apim-Subscription-Key`` on all. A record is
the current state of one hash (the newest write replaces the older one).
``fail_next(status, n)`` answers the next n requests with that status."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from tests.exchanges.local_server import JsonHandler, LocalServer

FETCH_KEY, SUBSCRIPTION_KEY, FEEDBACK_KEY = "fetch-key-1", "sub-key-1", "feedback-key-1"


class StopNciiServer(LocalServer):
    def __init__(self) -> None:
        self.records: dict[tuple[str, str], dict[str, object]] = {}
        self.requests: list[tuple[str, str]] = []
        self.feedback: list[dict[str, object]] = []
        self._fail: list[int] = []
        self.max_page = 800  # the server's own cap on pageSize
        self.lock = threading.Lock()
        self._listen(self._handler(), "/v1")

    def put(self, signal_type: str, value: str, status: str, ts: int, cases: int = 1) -> None:
        with self.lock:
            self.records[(signal_type, value)] = {
                "lastModtimestamp": ts,
                "signalType": signal_type,
                "hashValue": value,
                "hashStatus": status,
                "caseNumbers": {f"case-{i}": status for i in range(cases)},
                "CSPFeedbacks": [],
            }

    def fail_next(self, status: int, times: int = 1) -> None:
        self._fail.extend([status] * times)

    def fetch(self, query: dict[str, list[str]]) -> dict[str, object]:
        start = int(query["startTimestamp"][0])
        size = min(int(query.get("pageSize", ["800"])[0]), self.max_page)
        offset = int(query.get("nextPageToken", ["0"])[0] or 0)
        with self.lock:
            rows = sorted(
                (r for r in self.records.values() if int(r["lastModtimestamp"]) >= start),  # type: ignore[call-overload]
                key=lambda r: (r["lastModtimestamp"], r["hashValue"]),
            )
        page = rows[offset : offset + size]
        more = offset + size < len(rows)
        top = max((int(r["lastModtimestamp"]) for r in rows), default=start)  # type: ignore[call-overload]
        return {
            "count": len(page),
            "nextPageToken": str(offset + size) if more else None,
            "nextSetTimestamp": top + 1 if rows else start,
            "hasMoreRecords": more,
            "hashRecords": page,
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(JsonHandler):
            def _common(self, key: str) -> bool:
                server.requests.append((self.command, self.path))
                if server._fail:
                    self._send(server._fail.pop(0), {"error": "injected"})
                    return False
                if (
                    self.headers.get("Ocp-Apim-Subscription-Key") != SUBSCRIPTION_KEY
                    or self.headers.get("x-functions-key") != key
                ):
                    self._send(401, {"error": "unauthorized"})
                    return False
                return True

            def do_GET(self) -> None:  # noqa: N802
                parts = urlsplit(self.path)
                if parts.path != "/v1/FetchHashes":
                    self._send(404, {"error": "not found"})
                    return
                if self._common(FETCH_KEY):
                    self._send(200, server.fetch(parse_qs(parts.query)))

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path != "/v1/SubmitFeedback":
                    self._send(404, {"error": "not found"})
                    return
                if self._common(FEEDBACK_KEY):
                    server.feedback.append(body)
                    self._send(200, {"count": body.get("count", 0)})

        return Handler
