"""A local server speaking Meta's ThreatExchange Graph API as python-threatexchange's
``ThreatExchangeAPI`` sends and parses it (base ``/v26.0``):

- ``GET /{privacy_group}/threat_updates/?access_token=&start_time=&limit=&fields=``:
  ``{"data": [...], "paging": {"next": <absolute URL with every parameter>}}``, each
  update ``id, indicator, type, last_updated, should_delete`` and, when live,
  ``descriptors: {"data": [{id, owner: {id}, status, tags: {"data": [{id, text}]},
  reactions: [{key, value: "app,app"}]}]}``; oldest first, ``start_time`` inclusive.
- ``GET /{indicator_id}?fields=descriptors&access_token=``: the indicator's descriptors.
- ``POST /{descriptor_id}/?access_token=&reactions=KEY``: ``{"success": true}``.
- ``POST /threat_descriptors/?access_token=&indicator=&type=&...`` (the fields in the
  query string and again as a form body, as the library sends them): a descriptor of
  our app in the privacy group, validated as the Graph API does (``indicator``,
  ``type``, ``description``, ``share_level``, ``status``, ``privacy_type`` required;
  ``HAS_PRIVACY_GROUP`` needs ``privacy_members`` naming a group the app may use, and a
  share level ``AMBER`` or ``RED``, as ThreatExchange's reference says);
  ``{"success": true, "id": descriptor}``. One descriptor per app and indicator: a
  second submission updates it. The indicator is then in the group's threat_updates.
- ``DELETE /{descriptor_id}?access_token=``: only the owner's; ``{"success": true}``;
  the indicator's update then lists it without that descriptor (a tombstone when it
  was the last).

A wrong token is HTTP 400 ``OAuthException`` code 190, as the Graph API answers it;
``fail_next(status, n)`` answers the next n requests (``fail_next_post``: POSTs) with
that status and a Graph API error body."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.exchanges.local_server import JsonHandler, LocalServer

APP_ID = 1234567890  # our app
OTHER_APP = 9876543210  # the app that shares the hashes
TOKEN = f"{APP_ID}|stand-in-app-secret-0123456789"
GROUP = 303030303
TYPES = frozenset({"HASH_PDQ", "HASH_MD5", "HASH_VIDEO_MD5", "HASH_SHA256", "HASH_TMK"})
STATUSES = frozenset({"MALICIOUS", "NON_MALICIOUS", "SUSPICIOUS", "UNKNOWN"})


def _err(kind: str, code: int, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": code}}


class ThreatExchangeServer(LocalServer):
    def __init__(self, page_size: int = 3) -> None:
        self.indicators: dict[int, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.reactions: list[tuple[int, str]] = []  # (descriptor id, reaction) received
        self.submissions: list[dict[str, str]] = []  # each descriptor taken, as sent
        self.deletions: list[int] = []  # descriptor ids deleted
        self.lose_next_answer = False  # take the next submission, then answer a 502
        self.group_closed = False  # the group no longer takes our app's descriptors
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

    def submit(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """A descriptor submitted by our app: validated, stored, its id answered."""
        required = ("indicator", "type", "description", "share_level", "status", "privacy_type")
        missing = [f for f in required if not form.get(f)]
        if missing:
            return 400, _err("GraphMethodException", 100, f"Missing field {missing[0]}")
        if form["type"] not in TYPES or form["status"] not in STATUSES:
            return 400, _err("GraphMethodException", 100, "Invalid type or status")
        if form["share_level"] not in ("AMBER", "RED"):  # (GREEN/WHITE need VISIBLE)
            return 400, _err("GraphMethodException", 100, "Invalid share_level")
        if (
            form["privacy_type"] != "HAS_PRIVACY_GROUP"
            or form.get("privacy_members") != str(GROUP)
            or self.group_closed
        ):
            return 400, _err("OAuthException", 10, "Privacy group not usable by this app")
        now = int(time.time())
        with self.lock:
            row = next(
                (r for r in self.indicators.values()
                 if r["indicator"] == form["indicator"] and r["type"] == form["type"]),
                None,
            )  # fmt: skip
            if row is None:
                self._next_id += 1
                ind = 700000 + self._next_id
                row = self.indicators[ind] = {
                    "id": str(ind), "indicator": form["indicator"], "type": form["type"],
                    "last_updated": now, "should_delete": False, "descriptors": [],
                }  # fmt: skip
            mine = next((d for d in row["descriptors"] if d["owner"] == APP_ID), None)
            if mine is None:
                self._next_id += 1
                mine = {"id": str(800000 + self._next_id), "owner": APP_ID, "reactions": {}}
                row["descriptors"].append(mine)
            mine.update(
                status=form["status"], tags=[t for t in form.get("tags", "").split(",") if t]
            )
            row.update(last_updated=now, should_delete=False)
            self.submissions.append(dict(form))
            return 200, {"success": True, "id": mine["id"]}

    def delete_descriptor(self, descriptor_id: int) -> tuple[int, dict[str, Any]]:
        with self.lock:
            for row in self.indicators.values():
                for d in row["descriptors"]:
                    if int(d["id"]) != descriptor_id:
                        continue
                    if d["owner"] != APP_ID:
                        return 400, _err("OAuthException", 10, "Not the descriptor's owner")
                    row["descriptors"].remove(d)
                    row["last_updated"] = int(time.time())
                    row["should_delete"] = not row["descriptors"]
                    self.deletions.append(descriptor_id)
                    return 200, {"success": True}
        return 400, _err("GraphMethodException", 100, "Unsupported delete request.")

    def own_descriptors(self) -> dict[str, str]:
        """indicator value -> our descriptor's id, for what is live."""
        with self.lock:
            return {
                r["indicator"]: d["id"]
                for r in self.indicators.values()
                for d in r["descriptors"]
                if d["owner"] == APP_ID
            }

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
                self.form: dict[str, str] = {}
                if self.command == "POST":
                    length = int(self.headers.get("Content-Length") or 0)
                    body = self.rfile.read(length).decode()
                    self.form = {k: v[-1] for k, v in parse_qs(body).items()}
                    query.update(self.form)
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
                if path == ["threat_descriptors"]:
                    # The library sends the fields twice: in the URL and as a form
                    # body; both must say the same.
                    in_url = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
                    in_url.pop("access_token", None)
                    if in_url != self.form:
                        self._error(400, "GraphMethodException", 100, "URL and body differ.")
                        return
                    status, body = server.submit(query)
                    if status == 200 and server.lose_next_answer:
                        server.lose_next_answer = False
                        self._send(502, {"error": {"message": "Bad gateway", "code": 2,
                                                   "type": "FacebookApiException"}})  # fmt: skip
                        return
                    self._send(status, body)
                    return
                with server.lock:
                    d = server._descriptor(int(path[0])) if len(path) == 1 else None
                    if d is None or "reactions" not in query:
                        self._error(400, "GraphMethodException", 100, "Unsupported post request.")
                        return
                    reaction = query["reactions"]
                    d["reactions"].setdefault(reaction, set()).add(str(APP_ID))
                    server.reactions.append((int(path[0]), reaction))
                self._send(200, {"success": True})

            def do_DELETE(self) -> None:  # noqa: N802
                query = self._common()
                if query is None:
                    return
                path = urlsplit(self.path).path.removeprefix("/v26.0").strip("/").split("/")
                if len(path) != 1 or not path[0].isdigit():
                    self._error(400, "GraphMethodException", 100, "Unsupported delete request.")
                    return
                self._send(*server.delete_descriptor(int(path[0])))

        return Handler

    def stop(self) -> None:
        self.release.set()
        super().stop()
