"""A local server speaking NCMEC's hash-sharing API (v2) as python-threatexchange's
``NCMECHashAPI`` sends and parses it, for tests and the benchmark.

``GET /v2/status`` (who we are), ``GET /v2/entries?from=&to=`` (XML: ``images`` and
``videos`` with ``maxTimestamp``, ``image``/``video`` and ``deletedImage``/
``deletedVideo`` records, ``paging/next`` relative to the base URL with ``start``,
``size`` and ``max``), ``PUT /v2/entries/{esp}/{entry}/{type}/feedback``, ``GET
/v2/feedback/{type}/reasons``; HTTP Basic auth. Times are UTC ``yyyy-MM-ddTHH:mm:ssZ``,
a range includes both ends. ``fail_next(status, n)`` answers the next n requests with
that status; ``hold_page`` blocks the answer of one page until released (to kill a
sync mid-way).
"""

from __future__ import annotations

import base64
import contextlib
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

USER, PASSWORD = "esp-user", "esp-pass-1"
NS = "https://hashsharing.ncmec.org/hashsharing/v2"
FMT = "%Y-%m-%dT%H:%M:%SZ"


def _ts(text: str) -> int:
    return int(datetime.strptime(text, FMT).replace(tzinfo=UTC).timestamp())


def _fmt(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime(FMT)


class NcmecHashServer:
    def __init__(self, page_size: int = 1000) -> None:
        self.page_size = page_size
        self.changes: list[tuple[int, str, str]] = []  # (ts, kind image|video, xml)
        self.requests: list[tuple[str, str]] = []
        self.feedback: list[tuple[str, bytes]] = []
        self._fail: list[int] = []
        self._ranges: dict[tuple[int, int], list[int]] = {}
        self.hold_page: int | None = None  # 1-based start of a page to hold
        self.release = threading.Event()
        self.held = threading.Event()
        self.lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    # -- data ------------------------------------------------------------------------
    def add(
        self,
        member: int,
        entry: str,
        fingerprints: dict[str, str],
        ts: int,
        *,
        kind: str = "image",
        classification: str | None = "A1",
    ) -> None:
        fps = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in fingerprints.items())
        cls = f"<classification>{classification}</classification>" if classification else ""
        xml = (
            f'<{kind}><id>{entry}</id>{cls}<member id="{member}">Member {member}</member>'
            f"<fingerprints>{fps}</fingerprints></{kind}>"
        )
        with self.lock:
            self.changes.append((ts, kind, xml))
            self._ranges.clear()

    def delete(self, member: int, entry: str, ts: int, *, kind: str = "image") -> None:
        tag = "deleted" + kind.capitalize()
        xml = f'<{tag}><id>{entry}</id><member id="{member}">Member {member}</member></{tag}>'
        with self.lock:
            self.changes.append((ts, kind, xml))
            self._ranges.clear()

    def fail_next(self, status: int, times: int = 1) -> None:
        self._fail.extend([status] * times)

    # -- protocol ----------------------------------------------------------------------
    def _range(self, start: int, end: int) -> list[int]:
        with self.lock:
            key = (start, end)
            if key not in self._ranges:
                self._ranges[key] = [
                    i for i, (ts, _, _) in enumerate(self.changes) if start <= ts <= end
                ]
            return self._ranges[key]

    def entries(self, query: dict[str, list[str]]) -> str:
        start_ts, end_ts = _ts(query["from"][0]), _ts(query["to"][0])
        matching = self._range(start_ts, end_ts)
        first = int(query.get("start", ["1"])[0])
        size = int(query.get("size", [str(self.page_size)])[0])
        page = matching[first - 1 : first - 1 + size]
        if self.hold_page is not None and first == self.hold_page:
            self.held.set()
            self.release.wait(60)
        parts = [f'<?xml version="1.0" encoding="UTF-8"?><queryResult xmlns="{NS}">']
        for kind, tag in (("image", "images"), ("video", "videos")):
            rows = [self.changes[i] for i in page if self.changes[i][1] == kind]
            if rows:
                top = max(ts for ts, _, _ in rows)
                parts.append(f'<{tag} count="{len(rows)}" maxTimestamp="{_fmt(top)}">')
                parts.extend(xml for _, _, xml in rows)
                parts.append(f"</{tag}>")
        nxt = first + size
        if nxt <= len(matching):
            link = (
                f"/v2/entries?from={query['from'][0]}&to={query['to'][0]}"
                f"&start={nxt}&size={size}&max={len(matching)}"
            )
            parts.append(f"<paging><next>{escape(link)}</next></paging>")
        parts.append("</queryResult>")
        return "".join(parts)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)  # a client killed mid-request

            def _authorized(self) -> bool:
                want = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                return self.headers.get("Authorization") == f"Basic {want}"

            def _common(self) -> bool:
                server.requests.append((self.command, self.path))
                if server._fail:
                    self._send(server._fail.pop(0), "<error>injected</error>")
                    return False
                if not self._authorized():
                    self._send(401, "<error>unauthorized</error>")
                    return False
                return True

            def do_GET(self) -> None:  # noqa: N802
                if not self._common():
                    return
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                if parts.path == "/v2/status":
                    self._send(
                        200,
                        f'<status xmlns="{NS}"><member id="42">Test ESP</member></status>',
                    )
                elif parts.path == "/v2/entries":
                    self._send(200, server.entries(query))
                elif parts.path.startswith("/v2/feedback/") and parts.path.endswith("/reasons"):
                    self._send(
                        200,
                        f'<reasons xmlns="{NS}"><availableFeedbackReasons>'
                        '<reason guid="r-1" name="Not CSAM"/></availableFeedbackReasons>'
                        "</reasons>",
                    )
                else:
                    self._send(404, "<error>not found</error>")

            def do_PUT(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if not self._common():
                    return
                if self.path.startswith("/v2/entries/") and self.path.endswith("/feedback"):
                    server.feedback.append((self.path, body))
                    self._send(200, "")
                else:
                    self._send(404, "<error>not found</error>")

        return Handler

    def start(self) -> NcmecHashServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
