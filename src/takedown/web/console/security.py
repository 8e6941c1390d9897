"""The console's session cookie, CSRF tokens and signed media links.

The session cookie carries a user token (``tdu_…``, the same one ``POST /v1/auth/token``
issues: it expires, is stored only as a SHA-256, and is revoked at sign-out). It is
HttpOnly (no script reads it), SameSite=Strict (no other site's page can make the
browser send it) and Secure when the console is served over HTTPS.

CSRF: every form carries a token derived from the session token with HMAC-SHA256, and
every POST is refused without it (``csrf_failed``). A page on another site cannot read
the session token, so it cannot compute the CSRF token either; nothing needs storing.
The sign-in form, before there is a session, uses a random token in a short-lived
cookie of its own (double submit).

Media links: ``/console/m/<token>``, where the token names the case, the media, the
purpose, blurred or full, and an expiry, signed with a key derived from the session
token. Nobody can guess one, and a link copied out of a page works only in the session
that received it, and only for a few minutes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import Response

from takedown.config import Settings
from takedown.errors import Forbidden, NotFound

SESSION_COOKIE = "takedown_console"
LOGIN_COOKIE = "takedown_console_login"
COOKIE_PATH = "/console"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"

# script-src 'self': the console's one script file, and no inline script at all (an
# injected <script> in a report's text could not run even if it escaped escaping).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "media-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",  # every console page shows case data
}
# Media: never cached anywhere, never rendered as a document, never embedded elsewhere.
MEDIA_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Content-Disposition": "inline",
}


def _derive(session_token: str, purpose: bytes) -> bytes:
    return hmac.new(session_token.encode(), purpose, hashlib.sha256).digest()


def csrf_token(session_token: str) -> str:
    return base64.urlsafe_b64encode(_derive(session_token, b"takedown-console-csrf")).decode()


def check_csrf(expected: str, given: str | None) -> None:
    if not given or not hmac.compare_digest(expected.encode(), given.encode()):
        raise Forbidden(
            "This form was not sent from a page of your console session (missing or wrong "
            "CSRF token). Reload the page and try again.",
            code="csrf_failed",
        )


def new_login_token() -> str:
    return secrets.token_urlsafe(24)


def secure_cookies(settings: Settings, request: Request) -> bool:
    if settings.console_cookie_secure is not None:
        return settings.console_cookie_secure
    return request.url.scheme == "https"


def set_cookie(
    response: Response, name: str, value: str, *, secure: bool, max_age: int | None = None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        secure=secure,
        httponly=True,
        samesite="strict",
    )


def clear_cookie(response: Response, name: str, *, secure: bool) -> None:
    response.delete_cookie(name, path=COOKIE_PATH, secure=secure, httponly=True, samesite="strict")


# -- signed media links ----------------------------------------------------------------------
@dataclass(frozen=True)
class MediaLink:
    case_id: str
    media_id: str
    purpose: str
    full: bool
    expires: int  # unix seconds
    item: str = ""  # the item whose copy is shown ("" when not said)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_media_link(session_token: str, link: MediaLink) -> str:
    payload = (
        f"{link.case_id}|{link.media_id}|{link.purpose}|{int(link.full)}|{link.expires}|{link.item}"
    )
    mac = hmac.new(
        _derive(session_token, b"takedown-console-media"), payload.encode(), hashlib.sha256
    ).digest()
    return f"{_b64(payload.encode())}.{_b64(mac)}"


def read_media_link(session_token: str, token: str, now: float | None = None) -> MediaLink:
    """The link's contents, if this session signed it and it has not expired. Every
    failure is the same 404: a link is either good here or it is nothing."""
    gone = NotFound(
        "This media link is not valid (expired, or from another session).",
        code="media_link_invalid",
    )
    try:
        body, mac = token.split(".", 1)
        payload = _unb64(body)
        given = _unb64(mac)
    except (ValueError, TypeError):
        raise gone from None
    key = _derive(session_token, b"takedown-console-media")
    if not hmac.compare_digest(hmac.new(key, payload, hashlib.sha256).digest(), given):
        raise gone
    try:
        case_id, media_id, purpose, full, expires, item = payload.decode().split("|", 5)
        link = MediaLink(case_id, media_id, purpose, full == "1", int(expires), item)
    except (ValueError, UnicodeDecodeError):
        raise gone from None
    if link.expires < (time.time() if now is None else now):
        raise gone
    return link
