"""A local server speaking NCMEC's hash-sharing API (v2) as python-threatexchange's
``NCMECHashAPI`` sends and parses it, for tests and the benchmark.

``GET /v2/status`` (who we are), ``GET /v2/entries?from=&to=`` (XML: ``images`` and
``videos`` with ``maxTimestamp``, ``image``/``video`` and ``deletedImage``/
``deletedVideo`` records, ``paging/next`` relative to the base URL with ``start``,
``size`` and ``max``), ``PUT /v2/entries/{esp}/{entry}/{type}/feedback``, ``GET
/v2/feedback/{type}/reasons``, ``POST /v2/entries`` (a member's own entries: an XML
``submission`` of ``image``/``video`` elements with ``id``, optional ``classification``
and ``fingerprints``; answered with the entries as a query lists them, under our member
id, and listed by the next ``GET /v2/entries``; an entry id sent again replaces the
entry; a document that is not XML, or an entry without an id or with a malformed or
unknown fingerprint, is a 400 with an ``error`` document; another content type a 415);
HTTP Basic auth. Times are UTC ``yyyy-MM-ddTHH:mm:ssZ``,
a range includes both ends. ``fail_next(status, n)`` answers the next n requests with
that status; ``hold_page`` blocks the answer of one page until released (to kill a
sync mid-way).
"""

from __future__ import annotations

import base64
import contextlib
import re
import threading
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from tests.exchanges.local_server import LocalServer, QuietHandler

USER, PASSWORD = "esp-user", "esp-pass-1"
MEMBER_ID = 42  # who these credentials are (GET /v2/status)
# The fingerprints a submission may carry here, and their form.
FINGERPRINTS = {
    "md5": re.compile(r"^[0-9a-f]{32}$"),
    "sha1": re.compile(r"^[0-9a-f]{40}$"),
    "pdq": re.compile(r"^[0-9a-f]{64}$"),
    "pdna": re.compile(r"^[A-Za-z0-9+/=,]{16,2000}$"),
}
NS = "https://hashsharing.ncmec.org/hashsharing/v2"
FMT = "%Y-%m-%dT%H:%M:%SZ"


def _ts(text: str) -> int:
    return int(datetime.strptime(text, FMT).replace(tzinfo=UTC).timestamp())


def _fmt(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime(FMT)


class NcmecHashServer(LocalServer):
    def __init__(self, page_size: int = 1000) -> None:
        self.page_size = page_size
        self.changes: list[tuple[int, str, str]] = []  # (ts, kind image|video, xml)
        self.requests: list[tuple[str, str]] = []
        self.feedback: list[tuple[str, bytes]] = []
        self.submissions: list[bytes] = []  # each POST /v2/entries taken, as sent
        # The next submission is taken, but its answer is lost on the way (a 504 from
        # a gateway): the client cannot know it was taken.
        self.lose_next_answer = False
        self._fail: list[tuple[int, str, str | None]] = []
        self._ranges: dict[tuple[int, int], list[int]] = {}
        self.hold_page: int | None = None  # 1-based start of a page to hold
        self.release = threading.Event()
        self.held = threading.Event()
        self.lock = threading.Lock()
        self._listen(self._handler())

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

    def fail_next(
        self, status: int, times: int = 1, message: str = "injected", method: str | None = None
    ) -> None:
        """Answer the next ``times`` requests (of ``method`` only, when given) with
        ``status`` and an error document saying ``message``."""
        self._fail.extend([(status, message, method)] * times)

    def _failure(self, method: str) -> tuple[int, str] | None:
        with self.lock:
            for i, (status, message, only) in enumerate(self._fail):
                if only is None or only == method:
                    del self._fail[i]
                    return status, message
        return None

    def own_entries(self) -> dict[str, str]:
        """Our member's entries as listed now: entry id -> its XML."""
        out: dict[str, str] = {}
        with self.lock:
            for _, _, xml in self.changes:
                if f'<member id="{MEMBER_ID}">' in xml:
                    entry = xml.split("<id>", 1)[1].split("</id>", 1)[0]
                    out[entry] = xml
        return out

    def submit(self, body: bytes) -> tuple[int, str]:
        """A member's submission: (status, answer)."""
        try:
            root = ET.fromstring(body)
        except ET.ParseError as exc:
            return 400, _error(f"The submission is not well-formed XML: {exc}.")
        if root.tag != f"{{{NS}}}submission":
            return 400, _error(f"Expected a submission element in {NS}.")
        listed: list[tuple[str, str]] = []
        now = int(time.time())
        for el in root:
            kind = el.tag.partition("}")[2]
            if kind not in ("image", "video"):
                return 400, _error(f"Unknown element {kind!r} in a submission.")
            entry = (el.findtext(f"{{{NS}}}id") or "").strip()
            if not entry or len(entry) > 100:
                return 400, _error("Every entry needs an id of 1 to 100 characters.")
            fps: dict[str, str] = {}
            for fp in el.find(f"{{{NS}}}fingerprints") or []:
                name, value = fp.tag.partition("}")[2], (fp.text or "").strip()
                if name not in FINGERPRINTS or not FINGERPRINTS[name].match(value):
                    return 400, _error(f"Invalid {name} fingerprint on entry {entry}.")
                fps[name] = value
            if not fps:
                return 400, _error(f"Entry {entry} has no fingerprint.")
            cls = el.findtext(f"{{{NS}}}classification")
            listed.append((kind, self._own(entry, fps, now, kind, cls)))
        if not listed:
            return 400, _error("The submission holds no entry.")
        self.submissions.append(body)
        parts = [f'<?xml version="1.0" encoding="UTF-8"?><submissionResult xmlns="{NS}">']
        for kind, tag in (("image", "images"), ("video", "videos")):
            rows = [xml for k, xml in listed if k == kind]
            if rows:
                parts.append(f'<{tag} count="{len(rows)}" maxTimestamp="{_fmt(now)}">')
                parts.extend(rows)
                parts.append(f"</{tag}>")
        parts.append("</submissionResult>")
        return 200, "".join(parts)

    def _own(self, entry: str, fps: dict[str, str], ts: int, kind: str, cls: str | None) -> str:
        mark = f'<member id="{MEMBER_ID}">'
        with self.lock:  # the same id again replaces the entry
            self.changes = [
                c for c in self.changes if not (mark in c[2] and f"<id>{entry}</id>" in c[2])
            ]
        self.add(MEMBER_ID, entry, fps, ts, kind=kind, classification=cls)
        return self.changes[-1][2]

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

        class Handler(QuietHandler):
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
                failure = server._failure(self.command)
                if failure is not None:
                    self._send(failure[0], _error(failure[1]))
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
                        f'<status xmlns="{NS}"><member id="{MEMBER_ID}">Test ESP</member></status>',
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

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if not self._common():
                    return
                if urlsplit(self.path).path != "/v2/entries":
                    self._send(404, "<error>not found</error>")
                    return
                if not (self.headers.get("Content-Type") or "").startswith("application/xml"):
                    self._send(415, _error("Submissions are application/xml."))
                    return
                status, answer = server.submit(body)
                if status == 200 and server.lose_next_answer:
                    server.lose_next_answer = False
                    status, answer = 504, _error("Gateway timeout.")
                self._send(status, answer)

        return Handler

    def stop(self) -> None:
        self.release.set()
        super().stop()


def _error(message: str) -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><error xmlns="{NS}">'
        f"<message>{escape(message)}</message></error>"
    )
