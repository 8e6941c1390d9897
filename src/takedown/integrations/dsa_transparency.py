"""The EU DSA Transparency Database API: statements of reasons.

``POST …/api/v1/statement`` takes one statement, ``POST …/api/v1/statements`` takes
``{"statements": [...]}`` with 1 to 100 (the documented limit); both with
``Authorization: Bearer <token>`` and JSON. What the answers mean (API documentation,
https://transparency.dsa.ec.europa.eu/page/api-documentation, and the database's source):

- **201**: stored. One statement comes back with its ``uuid``; a batch comes back as
  ``{"statements": [...]}``, each with its ``puid`` and ``uuid``, in the order sent.
- **422**: refused, nothing stored. ``{"message": ..., "errors": {field: [msg, ...]}}``
  for one statement; for a batch the errors are keyed by position,
  ``{"errors": {"statement_0": {field: [...]}, ...}}``, and NONE of the batch is stored.
  A puid already in the database is also a 422 (``errors.puid``; ``existing`` for one,
  ``errors.existing_puids`` for a batch): that statement *is* stored.
- **401**: the token is wrong. Other 4xx: our request is wrong.
- **429** (rate limit), **408**, 5xx or no answer: not stored, try again later.

``classify`` turns an answer into one of those outcomes; the submitter decides what to
do with it (services/legal/dsa.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import httpx

RETRYABLE = frozenset({408, 429})  # and every 5xx, and no answer at all


@dataclass(frozen=True)
class DsaAnswer:
    status: int | None  # None: no HTTP answer (network error, timeout)
    body: str
    uuid: str | None = None
    # per puid sent: the database's uuid (stored), or None when it was not
    stored_puids: dict[str, str | None] = field(default_factory=dict)

    @property
    def stored(self) -> bool:
        return self.status == 201

    @property
    def retryable(self) -> bool:
        """Not stored, and worth sending again as it is."""
        return self.status is None or self.status in RETRYABLE or self.status >= 500

    @property
    def refused(self) -> bool:
        """A 4xx that sending again unchanged will not cure."""
        return self.status is not None and 400 <= self.status < 500 and not self.retryable

    def json(self) -> object:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def field_errors(self) -> dict[str, list[str]]:
        """``errors`` of a 422 for one statement: field -> messages."""
        data = self.json()
        errors = data.get("errors") if isinstance(data, dict) else None
        if not isinstance(errors, dict):
            message = data.get("message") if isinstance(data, dict) else None
            return {"_": [str(message or self.body[:500] or f"HTTP {self.status}")]}
        return {str(k): _messages(v) for k, v in errors.items()}

    def batch_errors(self) -> dict[int, dict[str, list[str]]]:
        """``errors`` of a 422 for a batch: position -> field -> messages."""
        data = self.json()
        errors = data.get("errors") if isinstance(data, dict) else None
        out: dict[int, dict[str, list[str]]] = {}
        if isinstance(errors, dict):
            for key, value in errors.items():
                if str(key).startswith("statement_") and str(key)[10:].isdigit():
                    fields = value if isinstance(value, dict) else {"_": value}
                    out[int(str(key)[10:])] = {str(k): _messages(v) for k, v in fields.items()}
        return out

    def existing_puids(self) -> set[str]:
        """Puids the database says it already has (a 422 about ``puid``)."""
        data = self.json()
        if not isinstance(data, dict):
            return set()
        errors = data.get("errors")
        found: set[str] = set()
        if isinstance(errors, dict) and isinstance(errors.get("existing_puids"), list):
            found |= {str(p) for p in errors["existing_puids"]}
        existing = data.get("existing")
        if isinstance(existing, dict) and existing.get("puid"):
            found.add(str(existing["puid"]))
        return found


def _messages(value: object) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def batch_url(url: str) -> str | None:
    """The batch endpoint beside a single-statement one (``…/statement`` →
    ``…/statements``); None when the URL does not end like that."""
    base = url.rstrip("/")
    return base + "s" if base.endswith("/statement") else None


class DsaClient:
    def __init__(self, url: str, token: str, *, timeout_s: float = 30.0) -> None:
        self._url = url
        self.batch_url = batch_url(url)
        self._client = httpx.Client(
            timeout=timeout_s,
            follow_redirects=False,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": "Takedown-DSA/2",
            },
        )

    def _post(self, url: str, body: object) -> httpx.Response | DsaAnswer:
        try:
            return self._client.post(url, json=body)
        except httpx.HTTPError as exc:
            return DsaAnswer(None, f"{type(exc).__name__}: {exc}")

    def submit(self, statement: dict[str, object]) -> DsaAnswer:
        response = self._post(self._url, statement)
        if isinstance(response, DsaAnswer):
            return response
        uuid = None
        if response.status_code == 201:
            try:
                uuid = str(json.loads(response.text).get("uuid") or "") or None
            except (ValueError, AttributeError):
                uuid = None
        puid = str(statement.get("puid", ""))
        stored = {puid: uuid} if response.status_code == 201 else {}
        return DsaAnswer(response.status_code, response.text, uuid, stored)

    def submit_many(self, statements: list[dict[str, object]]) -> DsaAnswer:
        """Up to ``BATCH_MAX`` statements in one call (all stored, or none)."""
        assert self.batch_url is not None
        response = self._post(self.batch_url, {"statements": statements})
        if isinstance(response, DsaAnswer):
            return response
        stored: dict[str, str | None] = {}
        if response.status_code == 201:
            try:
                answered = json.loads(response.text).get("statements") or []
            except (ValueError, AttributeError):
                answered = []
            for sent, got in zip(statements, answered, strict=False):
                if isinstance(got, dict):
                    uuid = str(got["uuid"]) if got.get("uuid") else None
                    stored[str(got.get("puid") or sent["puid"])] = uuid
            for sent in statements:  # a 201 means every one is stored
                stored.setdefault(str(sent["puid"]), None)
        return DsaAnswer(response.status_code, response.text, None, stored)

    def close(self) -> None:
        self._client.close()
