"""The EU DSA Transparency Database API: statements of reasons, one per request.

``POST {url}`` with a JSON statement and ``Authorization: Bearer <token>``. Only 201
means the statement was stored; anything else (a 4xx about a field, a 429, a 5xx, no
answer at all) means "not stored, try again" — the submitter keeps the row and retries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class DsaAnswer:
    status: int | None  # None: no HTTP answer (network error, timeout)
    body: str
    uuid: str | None = None

    @property
    def stored(self) -> bool:
        return self.status == 201


class DsaClient:
    def __init__(self, url: str, token: str, *, timeout_s: float = 30.0) -> None:
        self._url = url
        self._client = httpx.Client(
            timeout=timeout_s,
            follow_redirects=False,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": "Takedown-DSA/1",
            },
        )

    def submit(self, statement: dict[str, object]) -> DsaAnswer:
        try:
            response = self._client.post(self._url, json=statement)
        except httpx.HTTPError as exc:
            return DsaAnswer(None, f"{type(exc).__name__}: {exc}")
        uuid = None
        if response.status_code == 201:
            try:
                uuid = str(json.loads(response.text).get("uuid") or "") or None
            except (ValueError, AttributeError):
                uuid = None
        return DsaAnswer(response.status_code, response.text, uuid)

    def close(self) -> None:
        self._client.close()
