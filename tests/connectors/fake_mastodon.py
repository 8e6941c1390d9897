"""A local server that speaks the part of Mastodon's documented API and webhooks the
connector uses (docs.joinmastodon.org: methods/reports, methods/admin/accounts,
methods/statuses, entities Status, Admin::Account, Report, Admin::Report; admin/webhooks;
api/rate-limits), so the connector is tested over real HTTP without a Mastodon.

- Every ``/api`` call needs ``Authorization: Bearer <token>`` (401 otherwise), answers
  with ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (an ISO
  8601 time), and 429 ``{"error": "Too many requests"}`` once the budget is spent.
- POST bodies are read as Rails reads them: form fields, ``name[]`` for lists.
- Every request is recorded (method, path, form fields) for the tests to compare.
- Webhooks are sent as Mastodon sends them: ``{"event", "created_at", "object"}``,
  ``Content-Type: application/json`` and ``X-Hub-Signature: sha256=<hex HMAC-SHA256>``.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import math
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import httpx

ACTIONS = {"none", "sensitive", "disable", "silence", "suspend"}


def iso(ts: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if ts is None else ts, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class Recorded:
    method: str
    path: str
    form: list[tuple[str, str]]
    status: int = 0

    @property
    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in self.form:
            if k.endswith("[]"):
                out.setdefault(k, []).append(v)
            else:
                out[k] = v
        return out


@dataclass
class FakeMastodon:
    token: str
    domain: str = "social.example"
    webhook_secret: str = "mastodon-webhook-secret-0123"
    rate_limit: int = 300
    window_s: float = 300.0
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    media: dict[str, bytes] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    # Set: every admin call is refused with this status (a token without the scope).
    refuse_admin: int | None = None
    # Set: a status lookup is refused with this status (a token without read:statuses).
    refuse_status_lookup: int | None = None

    def __post_init__(self) -> None:
        self._ids = itertools.count(110_000_000_000_000_001)
        self._lock = threading.Lock()
        self.remaining = self.rate_limit
        self.reset_at = time.time() + self.window_s
        self._refused_for = 0.0  # how long an exhausted budget refuses calls (exhaust)
        self.service = self.add_account("takedown", staff=True)
        handler = _handler(self)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def next_id(self) -> str:
        return str(next(self._ids))

    # -- the server's content ---------------------------------------------------------
    def add_account(self, username: str, *, domain: str | None = None, staff: bool = False):
        aid = self.next_id()
        self.accounts[aid] = {
            "id": aid,
            "username": username,
            "domain": domain,
            "email": None if domain else f"{username}@mail.example",
            "ip": None if domain else "203.0.113.7",
            "ips": [] if domain else [{"ip": "203.0.113.7", "used_at": iso()}],
            "suspended": False,
            "silenced": False,
            "sensitized": False,
            "disabled": False,
            "staff": staff,
        }
        return aid

    def account(self, aid: str) -> dict[str, Any]:
        """The Account entity (public)."""
        a = self.accounts[aid]
        acct = a["username"] + (f"@{a['domain']}" if a["domain"] else "")
        host = a["domain"] or self.domain
        return {
            "id": aid,
            "username": a["username"],
            "acct": acct,
            "display_name": a["username"].title(),
            "url": f"https://{host}/@{a['username']}",
            "uri": f"https://{host}/users/{a['username']}",
            "created_at": "2026-01-01T00:00:00.000Z",
            "locked": False,
            "bot": False,
            "group": False,
            "note": "",
            "followers_count": 0,
            "following_count": 0,
            "statuses_count": 1,
            "emojis": [],
            "fields": [],
        }

    def admin_account(self, aid: str) -> dict[str, Any]:
        """The Admin::Account entity."""
        a = self.accounts[aid]
        return {
            "id": aid,
            "username": a["username"],
            "domain": a["domain"],
            "created_at": "2026-01-01T00:00:00.000Z",
            "email": a["email"],
            "ip": a["ip"],
            "ips": a["ips"],
            "confirmed": a["domain"] is None,
            "suspended": a["suspended"],
            "silenced": a["silenced"],
            "sensitized": a["sensitized"],
            "disabled": a["disabled"],
            "approved": True,
            "locale": "en",
            "invite_request": None,
            "role": None,
            "account": self.account(aid),
        }

    def add_status(self, aid: str, image: bytes | None = None, **extra: Any) -> str:
        sid = self.next_id()
        a = self.accounts[aid]
        host = a["domain"] or self.domain
        attachments = []
        if image is not None:
            mid = self.next_id()
            path = f"/system/media_attachments/files/{mid}/original/{mid}.png"
            self.media[path] = image
            attachments.append(
                {
                    "id": mid,
                    "type": "image",
                    "url": self.url + path,
                    "preview_url": self.url + path,
                    "remote_url": None,
                    "meta": {},
                    "description": None,
                    "blurhash": None,
                }
            )
        self.statuses[sid] = {
            "id": sid,
            "uri": f"https://{host}/users/{a['username']}/statuses/{sid}",
            "url": f"https://{host}/@{a['username']}/{sid}",
            "created_at": iso(),
            "account_id": aid,
            "content": "<p>a post</p>",
            "visibility": "public",
            "sensitive": False,
            "spoiler_text": "",
            "in_reply_to_id": None,
            "in_reply_to_account_id": None,
            "reblog": None,
            "media_attachments": attachments,
            "mentions": [],
            "tags": [],
            "emojis": [],
            "card": None,
            "poll": None,
            "replies_count": 0,
            "reblogs_count": 0,
            "favourites_count": 0,
            "edited_at": None,
            "language": "en",
        } | extra
        return sid

    def status(self, sid: str) -> dict[str, Any]:
        s = {k: v for k, v in self.statuses[sid].items() if k != "account_id"}
        return s | {"account": self.account(self.statuses[sid]["account_id"])}

    def admin_report(self, rid: str) -> dict[str, Any]:
        """The Admin::Report entity (what report.created carries)."""
        r = self.reports[rid]
        return {
            "id": rid,
            "action_taken": r["action_taken"],
            "action_taken_at": None,
            "category": r["category"],
            "comment": r["comment"],
            "forwarded": r["forwarded"],
            "created_at": r["created_at"],
            "updated_at": r["created_at"],
            "account": self.admin_account(r["account_id"]),
            "target_account": self.admin_account(r["target_account_id"]),
            "assigned_account": None,
            "action_taken_by_account": None,
            "statuses": [self.status(s) for s in r["status_ids"]],
            "rules": [{"id": "1", "text": t} for t in r.get("rules", [])],
        }

    def add_report(
        self, reporter: str, target: str, status_ids: list[str], comment: str, **kw: Any
    ) -> str:
        rid = self.next_id()
        self.reports[rid] = {
            "id": rid,
            "account_id": reporter,
            "target_account_id": target,
            "status_ids": status_ids,
            "comment": comment,
            "category": kw.get("category", "other"),
            "forwarded": self.accounts[reporter]["domain"] is not None,
            "action_taken": False,
            "created_at": iso(),
            "rules": kw.get("rules", []),
        }
        return rid

    # -- webhooks -----------------------------------------------------------------------
    def webhook(self, url: str, event: str, obj: dict[str, Any], secret: str | None = None):
        body = json.dumps({"event": event, "created_at": iso(), "object": obj}).encode()
        mac = hmac.new((secret or self.webhook_secret).encode(), body, hashlib.sha256)
        return httpx.post(
            url,
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Hub-Signature": f"sha256={mac.hexdigest()}",
            },
            timeout=60,
        )

    # -- rate limit ---------------------------------------------------------------------
    def exhaust(self, seconds: float) -> None:
        """Spend the budget: the next call gets 429 whenever it comes, and so does every
        call until ``seconds`` after it (counted from that call, not from now: on a slow
        machine the next call may come later than a test expects). 0: a fresh budget."""
        with self._lock:
            if seconds <= 0:
                self.remaining, self.reset_at = self.rate_limit, time.time() + self.window_s
                return
            self.remaining = 0
            self.reset_at = math.inf
            self._refused_for = seconds

    def spend(self) -> tuple[bool, dict[str, str]]:
        with self._lock:
            now = time.time()
            if self.reset_at == math.inf:  # exhausted: refused from this call on
                self.reset_at = now + self._refused_for
            if now >= self.reset_at:
                self.remaining, self.reset_at = self.rate_limit, now + self.window_s
            allowed = self.remaining > 0
            if allowed:
                self.remaining -= 1
            return allowed, {
                "X-RateLimit-Limit": str(self.rate_limit),
                "X-RateLimit-Remaining": str(self.remaining),
                "X-RateLimit-Reset": iso(self.reset_at),
            }

    def calls(self, method: str, pattern: str) -> list[Recorded]:
        return [
            r
            for r in self.requests
            if r.method == method and re.fullmatch(pattern, r.path) and r.status < 400
        ]

    # -- the API ------------------------------------------------------------------------
    def answer(self, method: str, path: str, form: list[tuple[str, str]]):
        """(status, JSON) for one API call."""
        fields = Recorded(method, path, form).fields
        if self.refuse_admin and path.startswith("/api/v1/admin/"):
            return self.refuse_admin, {"error": "This action is not allowed"}
        if method == "GET" and path == "/api/v1/accounts/verify_credentials":
            return 200, self.account(self.service)
        m = re.fullmatch(r"/api/v1/statuses/(\d+)", path)
        if method == "GET" and m:
            sid = m.group(1)
            if self.refuse_status_lookup:
                return self.refuse_status_lookup, {
                    "error": "This action is outside the authorized scopes"
                }
            if sid not in self.statuses:
                return 404, {"error": "Record not found"}
            if self.accounts[self.statuses[sid]["account_id"]]["suspended"]:
                return 404, {"error": "Record not found"}
            return 200, self.status(sid)
        m = re.fullmatch(r"/api/v1/admin/accounts/(\d+)", path)
        if method == "GET" and m:
            if m.group(1) not in self.accounts:
                return 404, {"error": "Record not found"}
            return 200, self.admin_account(m.group(1))
        if method == "POST" and path == "/api/v1/reports":
            target = fields.get("account_id", "")
            if target not in self.accounts:
                return 404, {"error": "Record not found"}
            if fields.get("category", "other") not in {"spam", "legal", "violation", "other"}:
                return 422, {"error": "Validation failed: Category is not included in the list"}
            rid = self.add_report(
                self.service,
                target,
                fields.get("status_ids[]", []),
                fields.get("comment", ""),
                category=fields.get("category", "other"),
            )
            r = self.reports[rid]
            return 200, {
                "id": rid,
                "action_taken": False,
                "action_taken_at": None,
                "category": r["category"],
                "comment": r["comment"],
                "forwarded": fields.get("forward") == "1",
                "created_at": r["created_at"],
                "status_ids": r["status_ids"],
                "rule_ids": None,
                "target_account": self.account(target),
            }
        m = re.fullmatch(r"/api/v1/admin/accounts/(\d+)/action", path)
        if method == "POST" and m:
            aid = m.group(1)
            if aid not in self.accounts:
                return 404, {"error": "Record not found"}
            kind = fields.get("type")
            if kind not in ACTIONS:
                return 422, {"error": "Record invalid"}
            rid = fields.get("report_id")
            if rid is not None and rid not in self.reports:
                return 404, {"error": "Record not found"}
            a = self.accounts[aid]
            if kind == "sensitive":
                a["sensitized"] = True
            elif kind in ("disable", "silence"):
                a["disabled" if kind == "disable" else "silenced"] = True
            elif kind == "suspend":
                a["suspended"] = True
            # Resolves the given report, and for any action but none every open one.
            for r in self.reports.values():
                if r["id"] == rid or (kind != "none" and r["target_account_id"] == aid):
                    r["action_taken"] = True
            return 200, {}
        m = re.fullmatch(r"/api/v1/admin/accounts/(\d+)/(unsuspend|unsensitive|enable)", path)
        if method == "POST" and m:
            aid, what = m.groups()
            if aid not in self.accounts:
                return 404, {"error": "Record not found"}
            a = self.accounts[aid]
            if what == "unsuspend":
                if not a["suspended"]:
                    return 403, {"error": "This action is not allowed"}
                a["suspended"] = False
            elif what == "unsensitive":
                a["sensitized"] = False
            else:
                a["disabled"] = False
            return 200, self.admin_account(aid)
        return 404, {"error": "Not found"}


def _handler(fake: FakeMastodon) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            path = self.path.split("?", 1)[0].rstrip("/") or "/"
            if path in fake.media:
                self._send(200, fake.media[path], {"Content-Type": "image/png"})
                return
            form = parse_qsl(raw.decode(), keep_blank_values=True)
            record = Recorded(method, path, form)
            with fake._lock:
                fake.requests.append(record)
            if self.headers.get("Authorization") != f"Bearer {fake.token}":
                record.status = 401
                body = {"error": "The access token is invalid"}
                self._send(401, json.dumps(body).encode(), {"Content-Type": "application/json"})
                return
            allowed, limits = fake.spend()
            if not allowed:
                record.status = 429
                body = json.dumps({"error": "Too many requests"}).encode()
                self._send(429, body, {"Content-Type": "application/json", **limits})
                return
            with fake._lock:
                status, answer = fake.answer(method, path, form)
            record.status = status
            headers = {"Content-Type": "application/json; charset=utf-8", **limits}
            self._send(status, json.dumps(answer).encode(), headers)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

    return Handler
