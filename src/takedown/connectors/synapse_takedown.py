"""The Synapse connector's parts that need no Synapse: settings, the webhook signature,
report categories, and blocking HTTP clients for Takedown's public API and Synapse's
admin API (the module runs them in Synapse's thread pool).

Only httpx and the standard library: this file is what any platform needs to copy.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

# Report reasons → Takedown categories: the first category whose keyword appears in the
# reason (case-insensitive) wins; in this order, so a report naming both a child and
# intimate imagery is handled as child sexual abuse.
DEFAULT_KEYWORDS: dict[str, tuple[str, ...]] = {
    "csam": ("csam", "child"),
    "ncii": ("intimate", "ncii"),
}
CATEGORIES = ("csam", "minor_sexual_exploitation", "ncii", "other")
MEDIA_MSGTYPES = frozenset({"m.image", "m.video", "m.file", "m.audio"})
SIGNATURE_TOLERANCE_S = 300


class ConfigError(ValueError):
    """A module setting in homeserver.yaml is missing or wrong."""


@dataclass(frozen=True)
class ConnectorConfig:
    takedown_url: str
    api_key: str
    webhook_secret: str
    admin_user: str
    homeserver_url: str
    admin_access_token: str | None = None
    admin_access_token_file: str | None = None
    # Reports of categories other than child safety need the notifier's contact (DSA
    # Art. 16): the operator's address stands for the Matrix user who reported. Without
    # it Takedown refuses those reports (intimate imagery included), so it is required.
    operator_email: str = ""
    report_poll_seconds: float = 30.0
    keywords: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_KEYWORDS))
    default_category: str = "other"
    redact_on_restrict: bool = True
    fail_closed: bool = False  # refuse uploads while Takedown cannot be reached
    timeout_s: float = 10.0

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> ConnectorConfig:
        def text(name: str, required: bool = True) -> str | None:
            value = raw.get(name)
            if value is None or value == "":
                if required:
                    raise ConfigError(f"takedown module: `{name}` is required.")
                return None
            if not isinstance(value, str):
                raise ConfigError(f"takedown module: `{name}` must be a string.")
            return value

        secret = text("webhook_secret") or ""
        if len(secret) < 16:
            raise ConfigError("takedown module: `webhook_secret` needs at least 16 characters.")
        token, token_file = (
            text("admin_access_token", False),
            text("admin_access_token_file", False),
        )
        if not token and not token_file:
            raise ConfigError(
                "takedown module: give `admin_access_token` (or `admin_access_token_file`)."
            )
        try:
            poll = float(raw.get("report_poll_seconds", 30))
            timeout = float(raw.get("timeout_seconds", 10))
        except (TypeError, ValueError):
            raise ConfigError("takedown module: seconds must be numbers.") from None
        if poll <= 0 or timeout <= 0:
            raise ConfigError("takedown module: seconds must be more than 0.")
        keywords = dict(DEFAULT_KEYWORDS)
        given = raw.get("report_keywords")
        if given is not None:
            if not isinstance(given, Mapping):
                raise ConfigError(
                    "takedown module: `report_keywords` maps a category to a list of words."
                )
            keywords = {}
            for category, words in given.items():
                if category not in CATEGORIES:
                    raise ConfigError(
                        f"takedown module: unknown category {category!r} in `report_keywords` "
                        f"(one of {', '.join(CATEGORIES)})."
                    )
                if isinstance(words, str) or not all(isinstance(w, str) for w in words):
                    raise ConfigError("takedown module: keywords are a list of words.")
                keywords[category] = tuple(w.lower() for w in words)

        def flag(name: str, default: bool) -> bool:
            value = raw.get(name, default)
            if not isinstance(value, bool):  # "false" in quotes would be true
                raise ConfigError(f"takedown module: `{name}` is true or false.")
            return value

        default = text("default_category", False) or "other"
        if default not in CATEGORIES:
            raise ConfigError(f"takedown module: unknown `default_category` {default!r}.")
        email = text("operator_email", False) or ""
        if "@" not in email:
            raise ConfigError(
                "takedown module: `operator_email` (your moderators' address) is required: "
                "Takedown files a report other than of child sexual abuse only with the "
                "notifier's contact, and it stands for the Matrix user who reported."
            )
        admin = text("admin_user") or ""
        if not admin.startswith("@") or ":" not in admin:
            raise ConfigError("takedown module: `admin_user` is a full user id, @name:server.")
        return cls(
            takedown_url=(text("takedown_url") or "").rstrip("/"),
            api_key=text("api_key") or "",
            webhook_secret=secret,
            admin_user=admin,
            homeserver_url=(text("homeserver_url") or "").rstrip("/"),
            admin_access_token=token,
            admin_access_token_file=token_file,
            report_poll_seconds=poll,
            keywords=keywords,
            default_category=default,
            operator_email=email,
            redact_on_restrict=flag("redact_on_restrict", True),
            fail_closed=flag("fail_closed", False),
            timeout_s=timeout,
        )

    def admin_token(self) -> str | None:
        """The admin's access token; None while its file is not written yet."""
        if self.admin_access_token:
            return self.admin_access_token
        assert self.admin_access_token_file
        try:
            return Path(self.admin_access_token_file).read_text().strip() or None
        except FileNotFoundError:
            return None


def is_upload(server_name: str | None, url_cache: bool, thumbnail: object) -> bool:
    """Whether Synapse's media spam check is looking at a user's upload: the check also
    runs for remote media (``server_name`` set), URL previews and thumbnails."""
    return server_name is None and not url_cache and thumbnail is None


def category_for(reason: str | None, keywords: Mapping[str, tuple[str, ...]], default: str) -> str:
    """The Takedown category of a Matrix report's free-text reason."""
    words = (reason or "").lower()
    for category, needles in keywords.items():
        if any(n and n in words for n in needles):
            return category
    return default


def signature_ok(
    secret: str,
    header: str,
    body: bytes,
    *,
    now: float | None = None,
    tolerance: int = SIGNATURE_TOLERANCE_S,
) -> bool:
    """Takedown's webhook signature (docs/integrations/webhooks.md): HMAC-SHA256 with the
    shared secret over ``"{t}.{raw body}"``, ``t`` within five minutes of our clock."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        ts, given = int(parts["t"]), parts["v1"]
    except (KeyError, ValueError):
        return False
    expected = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    current = time.time() if now is None else now
    return hmac.compare_digest(expected, given) and abs(current - ts) <= tolerance


def parse_mxc(uri: object) -> tuple[str, str] | None:
    """``mxc://server/media_id`` → (server, media_id)."""
    if not isinstance(uri, str) or not uri.startswith("mxc://"):
        return None
    server, _, media_id = uri[len("mxc://") :].partition("/")
    if not server or not media_id or "/" in media_id:
        return None
    return server, media_id


def event_media(content: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The media an event's content points at: the file and its thumbnail."""
    found = [parse_mxc(content.get("url"))]
    info = content.get("info")
    if isinstance(info, Mapping):
        found.append(parse_mxc(info.get("thumbnail_url")))
    return [m for m in dict.fromkeys(found) if m is not None]


class TakedownError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


def _q(value: str) -> str:
    return quote(value, safe="")


class TakedownClient:
    """Takedown's public HTTP API with the connector's own key (blocking)."""

    def __init__(self, config: ConnectorConfig, transport: httpx.BaseTransport | None = None):
        self._http = httpx.Client(
            base_url=config.takedown_url,
            headers={"Authorization": f"Bearer {config.api_key}"},
            timeout=config.timeout_s,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def _json(self, r: httpx.Response) -> dict[str, Any]:
        if r.status_code >= 400:
            try:
                body = r.json()
                code, message = str(body.get("code")), str(body.get("message"))
            except ValueError:
                code, message = "http_error", r.text[:200]
            raise TakedownError(r.status_code, code, message)
        return dict(r.json()) if r.content else {}

    def screen(self, data: bytes, content_ref: str) -> dict[str, Any]:
        r = self._http.post(
            "/v1/screen", files={"file": ("upload", data)}, data={"content_ref": content_ref}
        )
        return self._json(r)

    def put_account(self, account_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._json(self._http.put(f"/v1/accounts/{_q(account_id)}", json=dict(body)))

    def item_exists(self, item_id: str) -> bool:
        r = self._http.get(f"/v1/items/{_q(item_id)}")
        if r.status_code == 404:
            return False
        self._json(r)
        return True

    def put_item(self, item_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._json(self._http.put(f"/v1/items/{_q(item_id)}", json=dict(body)))

    def add_media(self, item_id: str, data: bytes, file_name: str) -> dict[str, Any]:
        r = self._http.post(f"/v1/items/{_q(item_id)}/media", files={"file": (file_name, data)})
        return self._json(r)

    def report(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._json(self._http.post("/v1/reports", json=dict(body)))


class SynapseAdminError(Exception):
    def __init__(self, status: int, errcode: str, message: str):
        super().__init__(f"{status} {errcode}: {message}")
        self.status, self.errcode = status, errcode


class SynapseAdmin:
    """Synapse's admin REST API (and the client media API) as the configured admin."""

    def __init__(self, config: ConnectorConfig, transport: httpx.BaseTransport | None = None):
        self._config = config
        self._http = httpx.Client(
            base_url=config.homeserver_url, timeout=config.timeout_s, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def ready(self) -> bool:
        return self._config.admin_token() is not None

    def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        token = self._config.admin_token()
        if token is None:
            raise SynapseAdminError(503, "M_UNKNOWN", "The admin access token file is missing.")
        headers = {"Authorization": f"Bearer {token}"}
        r = self._http.request(method, path, headers=headers, **kw)
        if r.status_code >= 400:
            try:
                body = r.json()
                errcode, message = str(body.get("errcode")), str(body.get("error"))
            except ValueError:
                errcode, message = "M_UNKNOWN", r.text[:200]
            raise SynapseAdminError(r.status_code, errcode, message)
        return r

    def event_reports(self, after_id: int, limit: int = 100) -> list[dict[str, Any]]:
        """Reports newer than ``after_id``, oldest first: read newest first, page by
        page, until a report already seen (Synapse has no "since" filter)."""
        found: list[dict[str, Any]] = []
        start = 0
        while True:
            r = self._call(
                "GET",
                "/_synapse/admin/v1/event_reports",
                params={"dir": "b", "from": start, "limit": limit},
            ).json()
            page = r.get("event_reports") or []
            new = [x for x in page if int(x["id"]) > after_id]
            found.extend(new)
            nxt = r.get("next_token")
            if nxt is None or len(new) < len(page) or not page:
                return sorted(found, key=lambda x: int(x["id"]))
            start = int(nxt)

    def fetch_event(self, event_id: str) -> dict[str, Any]:
        r = self._call("GET", f"/_synapse/admin/v1/fetch_event/{_q(event_id)}")
        return dict(r.json()["event"])

    def download(self, server: str, media_id: str) -> bytes:
        return self._call(
            "GET", f"/_matrix/client/v1/media/download/{_q(server)}/{_q(media_id)}"
        ).content

    def quarantine(self, server: str, media_id: str) -> None:
        self._call("POST", f"/_synapse/admin/v1/media/quarantine/{_q(server)}/{_q(media_id)}")

    def unquarantine(self, server: str, media_id: str) -> None:
        self._call("POST", f"/_synapse/admin/v1/media/unquarantine/{_q(server)}/{_q(media_id)}")

    def redact(self, sender: str, room_id: str, origin_ts: int, reason: str) -> None:
        """Redact the sender's events in the room sent at that millisecond (Synapse's
        admin API redacts a user's events by room and time; one event in practice), and
        wait for Synapse's background task to say it is done."""
        r = self._call(
            "POST",
            f"/_synapse/admin/v1/user/{_q(sender)}/redact",
            json={
                "rooms": [room_id],
                "reason": reason,
                "before_ts": origin_ts,
                "after_ts": origin_ts,
                "limit": 10,
            },
        )
        redact_id = _q(str(r.json()["redact_id"]))
        deadline = time.monotonic() + self._config.timeout_s
        while True:
            status = self._call("GET", f"/_synapse/admin/v1/user/redact_status/{redact_id}")
            body = status.json()
            if body.get("status") == "complete":
                if body.get("failed_redactions"):
                    raise SynapseAdminError(
                        502, "M_UNKNOWN", f"Redaction failed: {body['failed_redactions']}"
                    )
                return
            if body.get("status") == "failed" or time.monotonic() > deadline:
                raise SynapseAdminError(
                    502, "M_UNKNOWN", f"Redaction not done: {body.get('error') or body}"
                )
            time.sleep(0.05)

    def suspend(self, user_id: str, suspended: bool) -> None:
        self._call("PUT", f"/_synapse/admin/v1/suspend/{_q(user_id)}", json={"suspend": suspended})

    def deactivate(self, user_id: str) -> None:
        self._call("POST", f"/_synapse/admin/v1/deactivate/{_q(user_id)}", json={"erase": False})


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()
