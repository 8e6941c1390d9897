"""Signed webhooks to the platform: how a request is signed and how a receiver checks it.

The signature is HMAC-SHA256 over ``"{timestamp}.{body}"`` with a secret shared with the
platform, sent as ``Takedown-Signature: t=<unix seconds>,v1=<hex>``. Signing the
timestamp with the body lets a receiver refuse replays: a captured request stops being
valid after the tolerance (5 minutes by default), and changing the timestamp breaks the
signature. Receivers should compare with a constant-time function, as :func:`verify`
does; docs/integrations/webhooks.md has a standalone receiver example.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import httpx

SIGNATURE_HEADER = "Takedown-Signature"
DEFAULT_TOLERANCE_S = 300


class SignatureError(Exception):
    """The request is not signed by the shared secret, or is too old (a replay)."""


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    ts = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def verify(
    secret: str,
    header: str | None,
    body: bytes,
    *,
    now: float | None = None,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> int:
    """Check a signature header; returns its timestamp or raises :class:`SignatureError`."""
    if not header:
        raise SignatureError("missing signature")
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        ts = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        raise SignatureError("malformed signature header") from None
    expected = sign(secret, body, ts).split("v1=", 1)[1]
    if not hmac.compare_digest(expected, given):
        raise SignatureError("signature does not match")
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_s:
        raise SignatureError("timestamp outside the tolerance (replay?)")
    return ts


class WebhookClient:
    """Posts one signed JSON body; any 2xx is the platform's acknowledgement (for a
    batch, :meth:`post_answer`, the answer may name the actions it accepted)."""

    def __init__(self, url: str, secret: str, *, timeout_s: float = 10.0) -> None:
        self._url = url
        self._secret = secret
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=False)

    def post(self, body: bytes, *, delivery_id: str, idempotency_key: str) -> int:
        """Returns the HTTP status; raises ``httpx.HTTPError`` when there is none."""
        return self._send(body, delivery_id, idempotency_key, {}).status_code

    def post_answer(
        self, body: bytes, *, delivery_id: str, idempotency_key: str, batch_size: int
    ) -> tuple[int, bytes]:
        """A batch of actions: returns the HTTP status and the answer's body (which may
        acknowledge only some of the actions); raises ``httpx.HTTPError`` when there is
        no answer."""
        extra = {"Takedown-Batch-Size": str(batch_size)}
        response = self._send(body, delivery_id, idempotency_key, extra)
        return response.status_code, response.content

    def _send(
        self, body: bytes, delivery_id: str, idempotency_key: str, extra: dict[str, str]
    ) -> httpx.Response:
        return self._client.post(
            self._url,
            content=body,
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(self._secret, body),
                "Takedown-Delivery": delivery_id,
                "Idempotency-Key": idempotency_key,
                **extra,
                "User-Agent": "Takedown-Webhooks/1",
            },
        )

    def close(self) -> None:
        self._client.close()
