"""Takedown for a Mastodon server: a small HTTP service between the two.

It uses only what any platform has: **Takedown's public HTTP API and webhooks**, and
**Mastodon's documented REST API and webhooks**. Nothing of Takedown's own code is
imported (import-linter holds that: ``pyproject.toml``, contract ``connectors``), so the
module could live in a package of its own and shows any platform how to integrate.

In (Mastodon → Takedown), at ``POST /webhooks/mastodon``, signed by Mastodon with
``X-Hub-Signature: sha256=<hex HMAC-SHA256 of the body>``:

- ``status.created`` / ``status.updated`` of a local account: the account and the post
  are registered (``PUT /v1/accounts/…``, ``PUT /v1/items/…``) and every image or video
  is screened (``POST /v1/screen``) and attached (``POST /v1/items/…/media``), which is
  where a banked file opens a case and Takedown restricts it.
- ``report.created``: a report of local posts becomes a Takedown report
  (``POST /v1/reports`` with the connector's key), the reporter's role mapped: a local
  user reports as ``user`` with the name and address Mastodon holds; a report forwarded
  by another server is filed in the configured role for that server's moderators.

Out (Takedown → Mastodon), at ``POST /webhooks/takedown``, signed with
``Takedown-Signature: t=…,v1=…`` (docs/integrations/webhooks.md): each action is done
through Mastodon's admin API. Mastodon has no endpoint for acting on one post of another
user, so an action on a post files a report as the service account
(``POST /api/v1/reports``) and acts on it
(``POST /api/v1/admin/accounts/:id/action`` with its ``report_id``).
docs/integrations/mastodon.md has the set-up and the whole mapping.

Rate limits: Mastodon's ``X-RateLimit-Remaining`` / ``X-RateLimit-Reset`` are followed
(the connector waits for the reset when the budget is spent, and after a 429); a wait
longer than ``max_rate_limit_wait_seconds`` answers 503 instead, and the sender (Mastodon
or Takedown) delivers again later, as both do.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import sqlite3
import threading
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger("takedown.connectors.mastodon")

SIGNATURE_TOLERANCE_S = 300  # a Takedown webhook older than this is a replay
STATUS_EVENTS = frozenset({"status.created", "status.updated"})
# Mastodon visibility → Takedown item visibility (who could see the post).
VISIBILITY = {
    "public": "public",
    "unlisted": "public",
    "private": "restricted",
    "direct": "private",
}
MEDIA_TYPES = frozenset({"image", "gifv", "video"})
REPORTER_ROLES = frozenset({"user", "trusted_flagger", "law_enforcement"})
DEFAULT_CATEGORIES: dict[str, tuple[str, ...]] = {
    "csam": ("csam", "child"),
    "ncii": ("intimate", "ncii"),
}
# The admin action for each Takedown account measure (account.suspend: the
# configured suspend_action).
ACCOUNT_ACTIONS = {"account.warn": "none", "account.terminate": "suspend"}
MAX_BODY = 2 * 1024 * 1024  # a webhook's body; Mastodon's largest are a few KB


# -- configuration -------------------------------------------------------------------
class ConfigError(Exception):
    """The configuration file is missing something or holds a wrong value."""


@dataclass(frozen=True)
class Config:
    takedown_url: str
    takedown_api_key: str
    takedown_webhook_secret: str
    mastodon_url: str
    mastodon_token: str
    mastodon_webhook_secret: str
    contact_email: str  # the operator's moderation address: for forwarded reports
    host: str = "127.0.0.1"
    port: int = 8790
    state_file: Path = Path("takedown-mastodon.sqlite3")
    id_prefix: str = "mastodon:"
    remote_reporter_role: str = "user"
    report_category: str = "other"  # the service account's reports: spam/violation/other
    send_email_notification: bool = True
    suspend_action: str = "suspend"  # or "disable" (login frozen, posts stay)
    # Below Takedown's webhook timeout (TAKEDOWN_WEBHOOK_TIMEOUT_S, default 10 s): a
    # longer wait is answered 503 and Takedown delivers the action again later.
    max_rate_limit_wait_seconds: float = 5.0
    max_media_bytes: int = 40 * 1024 * 1024
    timeout_seconds: float = 30.0
    categories: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(DEFAULT_CATEGORIES)
    )
    # Reports in these Mastodon categories stay with Mastodon's moderators unless their
    # text names a Takedown category (a spam report is not Takedown's work).
    leave_to_mastodon: tuple[str, ...] = ("spam",)

    @classmethod
    def load(cls, path: str | Path) -> Config:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"Cannot read {path}: {exc.strerror}.") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not TOML: {exc}.") from None
        return cls.from_mapping(raw, base=Path(path).parent)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], base: Path = Path(".")) -> Config:
        td, md, cn = (dict(raw.get(k) or {}) for k in ("takedown", "mastodon", "connector"))

        def secret(section: dict[str, Any], name: str, where: str) -> str:
            value = section.get(name)
            if value is None and section.get(name + "_file"):
                file = base / str(section[name + "_file"])
                try:
                    value = file.read_text(encoding="utf-8").strip()
                except OSError as exc:
                    raise ConfigError(f"Cannot read [{where}] {name}_file: {exc}.") from None
            if not value or not isinstance(value, str):
                raise ConfigError(f"[{where}] {name} (or {name}_file) is required.")
            return value

        for section, where in ((td, "takedown"), (md, "mastodon")):
            url = section.get("url")
            if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
                raise ConfigError(f"[{where}] url must be an http(s) address.")
        role = cn.get("remote_reporter_role", "user")
        if role not in REPORTER_ROLES:
            raise ConfigError(
                f"[connector] remote_reporter_role is one of {', '.join(sorted(REPORTER_ROLES))}."
            )
        if cn.get("suspend_action", "suspend") not in ("suspend", "disable"):
            raise ConfigError("[connector] suspend_action is suspend or disable.")
        email = cn.get("contact_email")
        if not isinstance(email, str) or "@" not in email:
            raise ConfigError("[connector] contact_email (the moderators' address) is required.")
        categories = {
            str(k): tuple(str(w).lower() for w in v)
            for k, v in (cn.get("categories") or DEFAULT_CATEGORIES).items()
        }
        state = Path(cn.get("state_file", "takedown-mastodon.sqlite3"))
        return cls(
            takedown_url=td["url"].rstrip("/"),
            takedown_api_key=secret(td, "api_key", "takedown"),
            takedown_webhook_secret=secret(td, "webhook_secret", "takedown"),
            mastodon_url=md["url"].rstrip("/"),
            mastodon_token=secret(md, "access_token", "mastodon"),
            mastodon_webhook_secret=secret(md, "webhook_secret", "mastodon"),
            contact_email=email,
            host=str(cn.get("host", "127.0.0.1")),
            port=int(cn.get("port", 8790)),
            state_file=state if state.is_absolute() else base / state,
            id_prefix=str(cn.get("id_prefix", "mastodon:")),
            remote_reporter_role=role,
            report_category=str(cn.get("report_category", "other")),
            send_email_notification=bool(cn.get("send_email_notification", True)),
            suspend_action=str(cn.get("suspend_action", "suspend")),
            max_rate_limit_wait_seconds=float(cn.get("max_rate_limit_wait_seconds", 5)),
            max_media_bytes=int(cn.get("max_media_bytes", 40 * 1024 * 1024)),
            timeout_seconds=float(cn.get("timeout_seconds", 30)),
            categories=categories,
            leave_to_mastodon=tuple(str(c) for c in cn.get("leave_to_mastodon", ["spam"])),
        )


# -- signatures ----------------------------------------------------------------------
def mastodon_signature(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature`` value Mastodon sends: ``sha256=`` and the hex HMAC-SHA256
    of the raw body, keyed with the webhook's secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def mastodon_signature_ok(secret: str, header: str | None, body: bytes) -> bool:
    return bool(header) and hmac.compare_digest(mastodon_signature(secret, body), header or "")


def takedown_signature_ok(
    secret: str, header: str | None, body: bytes, *, now: float | None = None
) -> bool:
    """``Takedown-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "{t}." + body>``, at
    most five minutes from this clock (docs/integrations/webhooks.md)."""
    try:
        parts = dict(p.split("=", 1) for p in (header or "").split(",") if "=" in p)
        ts, given = int(parts["t"]), parts["v1"]
    except (KeyError, ValueError):
        return False
    expected = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    current = time.time() if now is None else now
    return hmac.compare_digest(expected, given) and abs(current - ts) <= SIGNATURE_TOLERANCE_S


# -- errors --------------------------------------------------------------------------
class Unavailable(Exception):
    """A server the connector needs is unreachable or rate-limits it beyond the wait it
    accepts: the webhook is answered 503 and delivered again by its sender."""

    def __init__(self, message: str, retry_after: float = 30.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Refused(Exception):
    """A server refused a request for a reason waiting will not change (bad token,
    missing scope): answered 502 so the sender keeps the event and an operator sees it."""


# -- Mastodon's API, within its rate limits --------------------------------------------
def _reset_epoch(value: str | None) -> float | None:
    """``X-RateLimit-Reset`` is an ISO 8601 time (Mastodon); a number is taken as epoch
    seconds (what some servers send)."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class MastodonClient:
    """Mastodon's REST API with a Bearer token. Requests are form-encoded as Mastodon's
    own clients send them (lists as ``name[]``, booleans as ``1``/``0``, the same as
    Mastodon.py). The rate-limit headers of every answer are kept: when the budget is
    spent the next request waits for the reset, and a 429 is retried after it."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        max_wait: float,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.max_wait = max_wait
        self._sleep = sleep
        self._http = httpx.Client(
            timeout=timeout,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "takedown-mastodon"},
            transport=transport,
        )
        self._lock = threading.Lock()
        self.remaining: int | None = None
        self.reset_at: float | None = None
        self.waited: float = 0.0  # seconds slept for rate limits (for tests and logs)

    def close(self) -> None:
        self._http.close()

    def _wait(self, seconds: float) -> None:
        if seconds > self.max_wait:
            raise Unavailable(
                f"Mastodon's rate limit resets in {seconds:.0f} s, more than the "
                f"{self.max_wait:.0f} s this connector waits.",
                retry_after=seconds,
            )
        if seconds > 0:
            self.waited += seconds
            self._sleep(seconds)

    def _note(self, response: httpx.Response) -> None:
        remaining = response.headers.get("X-RateLimit-Remaining")
        if remaining is not None and remaining.strip().lstrip("-").isdigit():
            self.remaining = int(remaining)
        reset = _reset_epoch(response.headers.get("X-RateLimit-Reset"))
        if reset is not None:
            self.reset_at = reset

    def request(
        self, method: str, path: str, data: Mapping[str, Any] | None = None
    ) -> httpx.Response:
        url = path if path.startswith("http") else self.base_url + path
        form = urlencode(form_encode(data)).encode() if data is not None else None
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if form else None
        backoff = 1.0
        for _ in range(5):
            with self._lock:
                if self.remaining is not None and self.remaining <= 0 and self.reset_at:
                    self._wait(self.reset_at - time.time())
                    self.remaining = None
            try:
                response = self._http.request(method, url, content=form, headers=headers)
            except httpx.HTTPError as exc:
                raise Unavailable(f"Mastodon did not answer: {exc}.") from None
            self._note(response)
            if response.status_code != 429:
                return response
            reset = _reset_epoch(response.headers.get("X-RateLimit-Reset"))
            retry_after = response.headers.get("Retry-After", "")
            if reset is not None:
                wait = reset - time.time()
            elif retry_after.isdigit():
                wait = float(retry_after)
            else:
                wait, backoff = backoff, backoff * 2
            log.info("Mastodon rate limit reached on %s %s; waiting %.1f s", method, path, wait)
            self._wait(max(wait, 0.05))
            self.remaining = None
        raise Unavailable("Mastodon kept answering 429 Too Many Requests.")

    def call(self, method: str, path: str, data: Mapping[str, Any] | None = None) -> Any:
        """A request whose answer must be 2xx; its JSON (or None)."""
        response = self.request(method, path, data)
        if response.status_code >= 500:
            raise Unavailable(f"Mastodon answered {response.status_code} to {method} {path}.")
        if response.status_code >= 400:
            raise Refused(
                f"Mastodon refused {method} {path}: {response.status_code} {response.text[:200]}"
            )
        return response.json() if response.content else None

    def get_bytes(self, url: str, limit: int) -> bytes:
        """A media file (public: fetched without the token, it may be on another host)."""
        try:
            with httpx.stream("GET", url, timeout=self._http.timeout, follow_redirects=True) as r:
                if r.status_code != 200:
                    raise Refused(f"The media file {url} answered {r.status_code}.")
                chunks, size = [], 0
                for chunk in r.iter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise Refused(f"The media file {url} is over {limit} bytes.")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as exc:
            raise Unavailable(f"The media file {url} could not be fetched: {exc}.") from None


def form_encode(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Mastodon's form parameters: ``None`` left out, lists as ``name[]``, booleans as
    ``1``/``0`` (how Mastodon.py sends them)."""
    out: list[tuple[str, str]] = []
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            out.extend((f"{key}[]", str(v)) for v in value)
        elif isinstance(value, bool):
            out.append((key, "1" if value else "0"))
        else:
            out.append((key, str(value)))
    return out


# -- Takedown's API ------------------------------------------------------------------
class TakedownClient:
    def __init__(
        self, base_url: str, api_key: str, timeout: float = 30.0, transport: Any = None
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url,
            timeout=timeout,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "takedown-mastodon"},
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            response = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise Unavailable(f"Takedown did not answer: {exc}.") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise Unavailable(f"Takedown answered {response.status_code} to {method} {path}.")
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"message": response.text[:200]}
            raise Refused(
                f"Takedown refused {method} {path}: {problem.get('code')}: {problem.get('message')}"
            )
        return response.json() if response.content else None


# -- the connector's own state -------------------------------------------------------
class State:
    """What the connector must remember, in its own SQLite file: the Mastodon account of
    each registered post, the reports it filed (so a retried action files none twice),
    the Takedown actions already done (by idempotency key) and the accounts it marked
    sensitive for a restricted post."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        with self._lock:
            row = self._db.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO kv (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                (key, json.dumps(value)),
            )

    def close(self) -> None:
        self._db.close()


# -- the connector -------------------------------------------------------------------
class MastodonConnector:
    def __init__(
        self,
        config: Config,
        *,
        mastodon: MastodonClient | None = None,
        takedown: TakedownClient | None = None,
    ) -> None:
        self.config = config
        self.mastodon = mastodon or MastodonClient(
            config.mastodon_url,
            config.mastodon_token,
            max_wait=config.max_rate_limit_wait_seconds,
            timeout=config.timeout_seconds,
        )
        self.takedown = takedown or TakedownClient(
            config.takedown_url, config.takedown_api_key, config.timeout_seconds
        )
        self.state = State(config.state_file)
        self._service_account: str | None = None
        self._keys_lock = threading.Lock()
        self._key_locks: dict[str, list[Any]] = {}  # key → [lock, users]

    def close(self) -> None:
        self.mastodon.close()
        self.takedown.close()
        self.state.close()

    # ids: Takedown's item and account ids are Mastodon's, with a prefix
    def item_id(self, status_id: str) -> str:
        return f"{self.config.id_prefix}{status_id}"

    def account_id(self, mastodon_id: str) -> str:
        return f"{self.config.id_prefix}{mastodon_id}"

    def _unprefix(self, takedown_id: str) -> str:
        prefix = self.config.id_prefix
        return takedown_id[len(prefix) :] if takedown_id.startswith(prefix) else takedown_id

    def service_account(self) -> str:
        """The id of the account whose token the connector uses (its own reports are
        not turned back into Takedown reports)."""
        if self._service_account is None:
            me = self.mastodon.call("GET", "/api/v1/accounts/verify_credentials")
            self._service_account = str(me["id"])
        return self._service_account

    # -- Mastodon → Takedown ----------------------------------------------------------
    def handle_mastodon_event(self, event: Mapping[str, Any]) -> str:
        name = str(event.get("event", ""))
        obj = event.get("object")
        if not isinstance(obj, Mapping):
            return "ignored: no object"
        if name in STATUS_EVENTS:
            return self.register_status(obj)
        if name == "report.created":
            return self.file_report(obj)
        return f"ignored: {name}"

    @staticmethod
    def is_local(account: Mapping[str, Any]) -> bool:
        """A local account's ``acct`` is its bare username (``user@domain`` when remote);
        the admin form says ``domain: null``."""
        if "domain" in account and "acct" not in account:
            return account.get("domain") is None
        return "@" not in str(account.get("acct", "@"))

    def register_status(self, status: Mapping[str, Any]) -> str:
        account = status.get("account") or {}
        if status.get("reblog") or not self.is_local(account):
            return "ignored: not a local post"
        status_id, mastodon_account = str(status["id"]), str(account["id"])
        account_id = self.account_id(mastodon_account)
        item_id = self.item_id(status_id)
        self.register_account(mastodon_account, str(account.get("acct", "")))
        item: dict[str, Any] = {
            "account_id": account_id,
            "url": status.get("url") or status.get("uri"),
            "posted_at": status.get("created_at"),
        }
        if status.get("visibility") in VISIBILITY:
            item["visibility"] = VISIBILITY[str(status["visibility"])]
        if status.get("in_reply_to_id"):
            item["replies_to"] = self.item_id(str(status["in_reply_to_id"]))
        self.takedown.call("PUT", f"/v1/items/{item_id}", json=item)
        self.state.put(f"item:{item_id}", {"status": status_id, "account": mastodon_account})
        verdicts = []
        for media in status.get("media_attachments") or []:
            if media.get("type") not in MEDIA_TYPES or not media.get("url"):
                continue
            data = self.mastodon.get_bytes(str(media["url"]), self.config.max_media_bytes)
            name = urlsplit(str(media["url"])).path.rsplit("/", 1)[-1] or "media"
            screened = self.takedown.call(
                "POST",
                "/v1/screen",
                files={"file": (name, data)},
                data={"content_ref": item_id},
            )
            attached = self.takedown.call(
                "POST", f"/v1/items/{item_id}/media", files={"file": (name, data)}
            )
            verdicts.append(screened["verdict"])
            if attached.get("cases"):
                log.info("%s joined case(s) %s", item_id, ", ".join(attached["cases"]))
        return f"registered {item_id}" + (f" ({', '.join(verdicts)})" if verdicts else "")

    def register_account(self, mastodon_id: str, acct: str) -> None:
        """The account, with the addresses Mastodon saw it use (admin API; sent to NCMEC
        in a CyberTipline report) the first time the connector meets it."""
        body: dict[str, Any] = {"handle": "@" + acct if acct else None}
        if self.state.get(f"account:{mastodon_id}") is None:
            response = self.mastodon.request("GET", f"/api/v1/admin/accounts/{mastodon_id}")
            if response.status_code == 200:
                admin = response.json()
                body["ip_events"] = [
                    {"ip": ip["ip"], "event": "login", "at": ip.get("used_at")}
                    for ip in (admin.get("ips") or [])[:100]
                    if ip.get("ip")
                ]
                body["platform_status"] = "suspended" if admin.get("suspended") else "active"
        self.takedown.call("PUT", f"/v1/accounts/{self.account_id(mastodon_id)}", json=body)
        self.state.put(f"account:{mastodon_id}", {"acct": acct})

    def category_of(self, *texts: str) -> str | None:
        """The Takedown category the words name (configured keywords), or None."""
        words = " ".join(texts).lower()
        for category, keywords in self.config.categories.items():
            if any(k in words for k in keywords):
                return category
        return None

    def file_report(self, report: Mapping[str, Any]) -> str:
        """A Mastodon report (Admin::Report) as a Takedown report."""
        report_id = str(report["id"])
        if self.state.get(f"mreport:{report_id}"):
            return f"already filed: report {report_id}"
        reporter = report.get("account") or {}
        if str(reporter.get("id")) == self.service_account():
            return "ignored: the connector's own report"
        target = report.get("target_account") or {}
        if not self.is_local(target):
            return "ignored: a report of a remote account"
        rules = [str(r.get("text", "")) for r in report.get("rules") or []]
        comment = str(report.get("comment") or "").strip()
        mastodon_category = str(report.get("category") or "other")
        named = self.category_of(comment, *rules)
        if named is None and mastodon_category in self.config.leave_to_mastodon:
            return f"left to Mastodon's moderators: a {mastodon_category} report"
        category = named or "other"
        statuses = [s for s in report.get("statuses") or [] if self.is_local(s.get("account", {}))]
        for status in statuses:
            self.register_status(status)
        instance = urlsplit(self.config.mastodon_url).hostname or self.config.mastodon_url
        if reporter.get("domain") is None:
            role = "user"
            profile = reporter.get("account") or {}
            who = str(profile.get("display_name") or reporter.get("username") or "a user")
            name = who
            email = reporter.get("email") or self.config.contact_email
            origin = f"by @{reporter.get('username')}, a user of {instance}"
        else:
            role = self.config.remote_reporter_role
            domain = str(reporter["domain"])
            name = f"Moderators of {domain}"
            email = self.config.contact_email
            origin = f"forwarded by the server {domain}"
        explanation = f"Reported on Mastodon ({instance}) {origin}; Mastodon category: " + (
            mastodon_category
        )
        if rules:
            explanation += "; rules: " + "; ".join(rules)
        if comment:
            explanation += f'. The reporter wrote: "{comment}"'
        body: dict[str, Any] = {
            "category": category,
            "reporter_role": role,
            "explanation": explanation[:10_000],
            "reporter_name": name[:200],
            "reporter_email": email,
            "good_faith": True,
        }
        if statuses:
            body["item_ids"] = [self.item_id(str(s["id"])) for s in statuses]
        else:  # a report of the account alone: its profile is the place
            profile = target.get("account") or {}
            url = profile.get("url") or f"{self.config.mastodon_url}/@{target.get('username')}"
            body["urls"] = [url]
        receipt = self.takedown.call("POST", "/v1/reports", json=body)
        self.state.put(f"mreport:{report_id}", {"case": receipt["case_number"]})
        return f"filed as case {receipt['case_number']} ({category}, {role})"

    # -- Takedown → Mastodon ----------------------------------------------------------
    def handle_action(self, key: str, event: Mapping[str, Any]) -> str:
        """One Takedown action, done once per idempotency key (a redelivery that comes
        while the first is still being done waits for it)."""
        with self._keys_lock:
            entry = self._key_locks.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                return self._handle_action(key, event)
        finally:
            with self._keys_lock:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._key_locks[key]

    def _handle_action(self, key: str, event: Mapping[str, Any]) -> str:
        if self.state.get(f"done:{key}"):
            return "already done"
        topic = str(event.get("topic", ""))
        target = str((event.get("target") or {}).get("id", ""))
        action = event.get("action") or {}
        case = str(event.get("case") or action.get("case") or "")
        if topic in ("item.restrict", "item.remove"):
            done = self._act_on_post(key, topic, target, case, action)
        elif topic == "item.restore":
            done = self._restore_post(target)
        elif topic in ("account.warn", "account.suspend", "account.terminate"):
            done = self._measure_account(topic, target, case, action)
        elif topic == "account.reinstate":
            done = self._reinstate_account(target)
        else:  # item.demonetize: Mastodon has no monetization
            done = f"nothing to do on Mastodon for {topic}"
        self.state.put(f"done:{key}", {"topic": topic, "target": target, "result": done})
        return done

    def _post(self, item_id: str) -> tuple[str, str | None]:
        """The status id and its account's id (from the connector's record, else from
        Mastodon)."""
        known = self.state.get(f"item:{item_id}")
        status_id = self._unprefix(item_id)
        if known:
            return status_id, str(known["account"])
        response = self.mastodon.request("GET", f"/api/v1/statuses/{status_id}")
        if response.status_code == 404:  # deleted (or its account suspended)
            return status_id, None
        if response.status_code >= 500:
            raise Unavailable(f"Mastodon answered {response.status_code} to a status lookup.")
        if response.status_code >= 400:
            # A token without read:statuses is refused (403): not a missing post, so the
            # action is kept for retry rather than acknowledged undone.
            raise Refused(
                f"Mastodon refused GET /api/v1/statuses/{status_id}: "
                f"{response.status_code} {response.text[:200]}"
            )
        return status_id, str(response.json()["account"]["id"])

    def _statement(self, topic: str, case: str, action: Mapping[str, Any]) -> str:
        sor = action.get("statement_of_reasons") or {}
        what = {
            "item.restrict": "hidden while it is reviewed",
            "item.remove": "removed: a violation was confirmed",
            "account.warn": "a warning",
            "account.suspend": "the account is suspended",
            "account.terminate": "the account is closed",
        }.get(topic, topic)
        text = f"Takedown case {case}: {what}."
        if sor.get("facts"):
            text += f" {sor['facts']}"
        if sor.get("ground"):
            text += f" Ground: {sor['ground']}."
        if sor.get("redress"):
            text += f" Redress: {sor['redress']}"
        return text[:2000]

    def _report(self, key: str, account: str, status_id: str, comment: str) -> str:
        """A report as the service account (kept by idempotency key: a retried action
        reuses it)."""
        known = self.state.get(f"report:{key}")
        if known:
            return str(known)
        filed = self.mastodon.call(
            "POST",
            "/api/v1/reports",
            {
                "account_id": account,
                "status_ids": [status_id],
                "comment": comment[:1000],
                "category": self.config.report_category,
            },
        )
        self.state.put(f"report:{key}", str(filed["id"]))
        return str(filed["id"])

    def _act_on_post(
        self, key: str, topic: str, item_id: str, case: str, action: Mapping[str, Any]
    ) -> str:
        status_id, account = self._post(item_id)
        if account is None:
            return f"status {status_id} is gone from Mastodon"
        text = self._statement(topic, case, action)
        report = self._report(key, account, status_id, text)
        # "sensitive": every media file of the account goes behind a warning, and the
        # strike the user sees names the reported post. Mastodon's API deletes no post
        # of another user: a removal leaves a second report open for the moderators.
        self.mastodon.call(
            "POST",
            f"/api/v1/admin/accounts/{account}/action",
            {
                "type": "sensitive",
                "report_id": report,
                "text": text,
                "send_email_notification": self.config.send_email_notification,
            },
        )
        marked = set(self.state.get(f"sensitive:{account}") or [])
        marked.add(item_id)
        self.state.put(f"sensitive:{account}", sorted(marked))
        self.state.put(f"case:{case}:report", report)
        if topic == "item.remove":
            open_report = self._report(
                key + ":delete",
                account,
                status_id,
                f"Takedown case {case}: a violation was confirmed. Delete this post "
                "(Mastodon's API cannot delete another user's post).",
            )
            return f"report {report} acted on (sensitive); report {open_report} open to delete"
        return f"report {report} acted on (sensitive)"

    def _restore_post(self, item_id: str) -> str:
        _, account = self._post(item_id)
        if account is None:
            return "nothing to restore"
        marked = set(self.state.get(f"sensitive:{account}") or [])
        marked.discard(item_id)
        self.state.put(f"sensitive:{account}", sorted(marked))
        if marked:  # another of its posts is still restricted
            return f"account {account} stays sensitive for {len(marked)} other post(s)"
        self.mastodon.call("POST", f"/api/v1/admin/accounts/{account}/unsensitive")
        return f"account {account} no longer sensitive"

    def _measure_account(
        self, topic: str, account_id: str, case: str, action: Mapping[str, Any]
    ) -> str:
        account = self._unprefix(account_id)
        kind = ACCOUNT_ACTIONS.get(topic, self.config.suspend_action)
        params: dict[str, Any] = {
            "type": kind,
            "report_id": self.state.get(f"case:{case}:report"),
            "text": self._statement(topic, case, action),
            "send_email_notification": self.config.send_email_notification,
        }
        response = self.mastodon.request("POST", f"/api/v1/admin/accounts/{account}/action", params)
        if response.status_code == 404 and params["report_id"]:
            # The report is gone (deleted by a moderator): act without it.
            params["report_id"] = None
            response = self.mastodon.request(
                "POST", f"/api/v1/admin/accounts/{account}/action", params
            )
        if response.status_code == 404:
            return f"account {account} is gone from Mastodon"
        if response.status_code >= 400:
            raise Refused(f"Mastodon refused the {kind} action: {response.status_code}")
        return f"account {account}: {kind}"

    def _reinstate_account(self, account_id: str) -> str:
        account = self._unprefix(account_id)
        lift = "enable" if self.config.suspend_action == "disable" else "unsuspend"
        response = self.mastodon.request("POST", f"/api/v1/admin/accounts/{account}/{lift}")
        if response.status_code >= 400 and response.status_code not in (403, 404):
            raise Refused(f"Mastodon refused {lift}: {response.status_code}")
        return f"account {account}: {lift} ({response.status_code})"


# -- the HTTP service ------------------------------------------------------------------
def _problem(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


def create_app(connector: MastodonConnector) -> Starlette:
    config = connector.config

    def guarded(work: Callable[[], str]) -> Response:
        try:
            result = work()
        except Unavailable as exc:
            log.warning("deferred: %s", exc)
            return _problem(
                503, "upstream_unavailable", str(exc), **{"Retry-After": str(int(exc.retry_after))}
            )
        except Refused as exc:
            log.error("refused: %s", exc)
            return _problem(502, "upstream_refused", str(exc))
        log.info("%s", result)
        return JSONResponse({"result": result})

    async def read(request: Request) -> bytes | None:
        declared = request.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > MAX_BODY:
            return None
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return None
        return body

    def too_large() -> JSONResponse:
        return _problem(413, "payload_too_large", f"A webhook is at most {MAX_BODY} bytes.")

    def parse(body: bytes) -> Mapping[str, Any] | None:
        try:
            event = json.loads(body)
        except (UnicodeDecodeError, ValueError):
            return None
        return event if isinstance(event, dict) else None

    async def mastodon_hook(request: Request) -> Response:
        body = await read(request)
        if body is None:
            return too_large()
        if not mastodon_signature_ok(
            config.mastodon_webhook_secret, request.headers.get("X-Hub-Signature"), body
        ):
            return _problem(
                401, "bad_signature", "X-Hub-Signature is not the HMAC-SHA256 of this body."
            )
        event = parse(body)
        if event is None:
            return _problem(400, "bad_request", "The body is not a JSON object.")
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(guarded, lambda: connector.handle_mastodon_event(event))

    async def takedown_hook(request: Request) -> Response:
        body = await read(request)
        if body is None:
            return too_large()
        if not takedown_signature_ok(
            config.takedown_webhook_secret, request.headers.get("Takedown-Signature"), body
        ):
            return _problem(
                401,
                "bad_signature",
                "Takedown-Signature does not match this body, or is more than five minutes old.",
            )
        event = parse(body)
        if event is None:
            return _problem(400, "bad_request", "The body is not a JSON object.")
        from starlette.concurrency import run_in_threadpool

        if isinstance(event.get("actions"), list) and "batch" in event:
            return await run_in_threadpool(batch, event["actions"])
        key = request.headers.get("Idempotency-Key") or str(event.get("idempotency_key") or "")
        if not key:
            return _problem(400, "bad_request", "No Idempotency-Key.")
        return await run_in_threadpool(guarded, lambda: connector.handle_action(key, event))

    def batch(actions: list[Any]) -> Response:
        """A batch (TAKEDOWN_WEBHOOK_BATCH_MAX > 1): each action done in order, once per
        key; the answer names those done, and Takedown retries only the others."""
        accepted: list[str] = []
        rejected: list[dict[str, str]] = []
        for doc in actions:
            if not isinstance(doc, dict) or not doc.get("idempotency_key"):
                continue  # not an action: never acknowledged, so Takedown keeps it
            key, ident = str(doc["idempotency_key"]), str(doc.get("id") or doc["idempotency_key"])
            answer = guarded(functools.partial(connector.handle_action, key, doc))
            if answer.status_code < 300:
                accepted.append(ident)
            else:
                rejected.append({"id": ident, "error": bytes(answer.body).decode()[:300]})
        return JSONResponse({"accepted": accepted, "rejected": rejected})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/webhooks/mastodon", mastodon_hook, methods=["POST"]),
            Route("/webhooks/takedown", takedown_hook, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )


def serve(config_path: str | Path, host: str | None = None, port: int | None = None) -> None:
    """Run the connector until stopped (uvicorn)."""
    import uvicorn

    config = Config.load(config_path)
    connector = MastodonConnector(config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        uvicorn.run(
            create_app(connector),
            host=host or config.host,
            port=port or config.port,
            log_level="warning",
        )
    finally:
        connector.close()


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m takedown.connectors.mastodon",
        description="Takedown's connector for a Mastodon server.",
    )
    parser.add_argument("--config", required=True, help="The connector's TOML file.")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    args = parser.parse_args(argv)
    try:
        serve(args.config, args.host, args.port)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
