"""A local server speaking Meta's ThreatExchange Graph API as python-threatexchange's
``ThreatExchangeAPI`` sends and parses it (base ``/v26.0``):

- ``GET /{privacy_group}/threat_updates/?access_token=&start_time=&limit=&fields=``:
  ``{"data": [...], "paging": {"next": <absolute URL with every parameter>}}``, each
  update ``id, indicator, type, last_updated, should_delete`` and, when live,
  ``descriptors: {"data": [{id, owner: {id}, status, tags: {"data": [{id, text}]},
  reactions: [{key, value: "app,app"}]}]}``; oldest first, ``start_time`` inclusive.
- ``GET /{indicator_id}?fields=descriptors&access_token=``: the indicator's descriptors.
- ``POST /{descriptor_id}/?access_token=&reactions=KEY``: ``{"success": true}``.

A wrong token is HTTP 400 ``OAuthException`` code 190, as the Graph API answers it;
``fail_next(status, n)`` answers the next n requests (``fail_next_post``: POSTs) with
that status and a Graph API error body."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.exchanges.local_server import JsonHandler, LocalServer

APP_ID = 1234567890  # our app
OTHER_APP = 9876543210  # the app that shares the hashes
TOKEN = f"{APP_ID}|stand-in-app-secret-0123456789"
GROUP = 303030303


class ThreatExchangeServer(LocalServer):
    def __init__(self, page_size: int = 3) -> None:
        self.indicators: dict[int, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.reactions: list[tuple[int, str]] = []  # (descriptor id, reaction) received
        self.page_size = page_size
        self.lock = threading.Lock()
        self._fail: list[int] = []
        self._fail_posts: list[int] = []
        self._next_id = 5000
        self.hold_after: int | None = None  # the n-th threat_updates request waits
        self.held = threading.Event()
        self.release = threading.Event()
        self._listen(self._handler(), "/v26.0")

    # -- the data ------------------------------------------------------------------
    def put(
        self,
        indicator_id: int,
        kind: str,
        value: str,
        ts: int,
        *,
        status: str = "MALICIOUS",
        tags: tuple[str, ...] = ("gifct",),
        owner: int = OTHER_APP,
    ) -> None:
        """An indicator shared by ``owner`` with one descriptor (added, or replaced)."""
        with self.lock:
            self._next_id += 1
            self.indicators[indicator_id] = {
                "id": str(indicator_id),
                "indicator": value,
                "type": kind,
                "last_updated": ts,
                "should_delete": False,
                "descriptors": [
                    {
                        "id": str(indicator_id * 10 + 1),
                        "owner": owner,
                        "status": status,
                        "tags": list(tags),
                        "reactions": {},
                    }
                ],
            }

    def delete(self, indicator_id: int, ts: int) -> None:
        """The indicator is no longer in the group: a tombstone (no descriptors)."""
        with self.lock:
            row = self.indicators[indicator_id]
            row.update(should_delete=True, last_updated=ts, descriptors=[])

    def fail_next(self, status: int, times: int = 1) -> None:
        self._fail.extend([status] * times)

    def fail_next_post(self, status: int, times: int = 1) -> None:
        self._fail_posts.extend([status] * times)

    def _update_json(self, row: dict[str, Any]) -> dict[str, Any]:
        out = {k: row[k] for k in ("id", "indicator", "type", "should_delete")}
        out["last_updated"] = str(row["last_updated"])  # the Graph API's numbers as text
        if not row["should_delete"]:
            out["descriptors"] = {"data": [self._descriptor_json(d) for d in row["descriptors"]]}
        return out

    @staticmethod
    def _descriptor_json(d: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": d["id"],
            "owner": {"id": str(d["owner"])},
            "status": d["status"],
            "tags": {"data": [{"id": str(900 + i), "text": t} for i, t in enumerate(d["tags"])]},
            "reactions": [
                {"key": k, "value": ",".join(sorted(v))} for k, v in d["reactions"].items()
            ],
        }

    def threat_updates(self, group: int, query: dict[str, str]) -> dict[str, Any]:
        start = int(query.get("start_time") or 0)
        limit = min(int(query.get("limit") or 100), self.page_size)
        offset = int(query.get("after") or 0)
        with self.lock:
            rows = sorted(
                (r for r in self.indicators.values() if int(r["last_updated"]) >= start),
                key=lambda r: (int(r["last_updated"]), int(r["id"])),
            )
            page = [self._update_json(r) for r in rows[offset : offset + limit]]
        out: dict[str, Any] = {"data": page}
        if offset + limit < len(rows):
            params = {k: v for k, v in query.items() if k != "after"}
            params["after"] = str(offset + limit)
            out["paging"] = {
                "cursors": {"after": str(offset + limit)},
                "next": f"{self.url}/{group}/threat_updates/?{urlencode(params)}",
            }
        return out

    def _descriptor(self, descriptor_id: int) -> dict[str, Any] | None:
        for row in self.indicators.values():
            for d in row["descriptors"]:
                if int(d["id"]) == descriptor_id:
                    return d
        return None

    # -- HTTP ------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(JsonHandler):
            def _error(self, status: int, kind: str, code: int, message: str) -> None:
                self._send(status, {"error": {"message": message, "type": kind, "code": code}})

            def _common(self) -> dict[str, str] | None:
                server.requests.append((self.command, self.path))
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                if self.command == "POST":
                    length = int(self.headers.get("Content-Length") or 0)
                    body = self.rfile.read(length).decode()
                    query.update({k: v[-1] for k, v in parse_qs(body).items()})
                fails = server._fail_posts if self.command == "POST" else []
                if server._fail or fails:
                    status = (fails or server._fail).pop(0)
                    self._error(status, "FacebookApiException", 2, "Service unavailable")
                    return None
                if query.get("access_token") != TOKEN:
                    self._error(400, "OAuthException", 190, "Invalid OAuth access token.")
                    return None
                return query

            def do_GET(self) -> None:  # noqa: N802
                query = self._common()
                if query is None:
                    return
                path = urlsplit(self.path).path.removeprefix("/v26.0").strip("/").split("/")
                if len(path) == 2 and path[1] == "threat_updates":
                    if int(path[0]) != GROUP:
                        self._error(400, "GraphMethodException", 100, "Unsupported get request.")
                        return
                    if server.hold_after is not None:
                        n = sum(1 for _, p in server.requests if "threat_updates" in p)
                        if n == server.hold_after:
                            server.held.set()
                            server.release.wait(120)
                    self._send(200, server.threat_updates(int(path[0]), query))
                    return
                if len(path) == 1 and query.get("fields") == "descriptors":
                    row = server.indicators.get(int(path[0]))
                    if row is None:
                        self._error(400, "GraphMethodException", 100, "Unsupported get request.")
                        return
                    data = [server._descriptor_json(d) for d in row["descriptors"]]
                    self._send(200, {"descriptors": {"data": data}, "id": row["id"]})
                    return
                self._error(404, "GraphMethodException", 803, "Unknown path.")

            def do_POST(self) -> None:  # noqa: N802
                query = self._common()
                if query is None:
                    return
                path = urlsplit(self.path).path.removeprefix("/v26.0").strip("/").split("/")
                with server.lock:
                    d = server._descriptor(int(path[0])) if len(path) == 1 else None
                    if d is None or "reactions" not in query:
                        self._error(400, "GraphMethodException", 100, "Unsupported post request.")
                        return
                    reaction = query["reactions"]
                    d["reactions"].setdefault(reaction, set()).add(str(APP_ID))
                    server.reactions.append((int(path[0]), reaction))
                self._send(200, {"success": True})

        return Handler

    def stop(self) -> None:
        self.release.set()
        super().stop()
