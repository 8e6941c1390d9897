"""API keys for platforms and tools: created by an operator, shown once, stored hashed,
each limited to the scopes it needs."""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from takedown.domain.access import SCOPE_PERMISSIONS, Principal, permissions_for_scopes
from takedown.errors import InvalidRequest, NotFound, Unauthenticated
from takedown.ids import utcnow
from takedown.services.audit.chain import record
from takedown.store.db import unit_of_work
from takedown.store.models import ApiKey

log = logging.getLogger(__name__)

KEY_PREFIX = "tdk_"
_LAST_USED_EVERY_S = 60.0  # write last_used_at at most once a minute per key


@dataclass(frozen=True)
class ApiKeyView:
    id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    created_by: str
    last_used_at: datetime | None
    revoked_at: datetime | None


def parse_scopes(values: list[str]) -> frozenset[str]:
    if not values:
        raise InvalidRequest("Give an API key at least one scope.", code="invalid_scope")
    scopes = set()
    for v in values:
        scope = v.strip().lower()
        if scope not in SCOPE_PERMISSIONS:
            allowed = ", ".join(SCOPE_PERMISSIONS)
            raise InvalidRequest(f"Unknown scope {v[:40]!r}; use: {allowed}.", code="invalid_scope")
        scopes.add(scope)
    return frozenset(scopes)


_CACHE_MAX = 10_000  # valid keys remembered; a platform has a handful


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeyService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        cache_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        # A key found valid is trusted for ``cache_s`` without asking the database
        # again: screening sits in the upload path and this lookup was a third of a
        # request's time. A key revoked here is forgotten at once; one revoked by
        # another process stops working there within ``cache_s``.
        self._cache_s = cache_s
        self._clock = clock
        self._valid: dict[str, tuple[Principal, int, float]] = {}
        self._last_used: dict[int, float] = {}
        self._lock = threading.Lock()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="apikey-touch")

    def create(self, name: str, scopes: list[str], *, actor: str) -> tuple[ApiKeyView, str]:
        """Returns the key's view and the secret, which is never shown again."""
        name = name.strip()
        if not 1 <= len(name) <= 100:
            raise InvalidRequest("An API key name is 1 to 100 characters.", code="invalid_name")
        parsed = parse_scopes(scopes)
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        row = ApiKey(
            name=name,
            key_hash=_digest(secret),
            prefix=secret[:12],
            scopes=",".join(sorted(parsed)),
            created_by=actor,
        )
        with unit_of_work(self._sessions) as s:
            s.add(row)
            s.flush()
            record(
                s,
                actor,
                "apikey.created",
                "apikey",
                row.public_id,
                {"name": name, "scopes": sorted(parsed)},
            )
            return _view(row), secret

    def authenticate(self, secret: str) -> Principal:
        if not secret.startswith(KEY_PREFIX):
            raise Unauthenticated("That is not a Takedown API key.", code="invalid_api_key")
        digest = _digest(secret)
        now = self._clock()
        cached = self._valid.get(digest)
        if cached is not None and cached[2] > now:
            principal, row_id, _ = cached
        else:
            with unit_of_work(self._sessions, write=False) as s:
                row = s.scalars(select(ApiKey).where(ApiKey.key_hash == digest)).first()
                if row is None or row.revoked_at is not None:
                    raise Unauthenticated("Unknown or revoked API key.", code="invalid_api_key")
                principal = Principal(
                    "apikey",
                    row.public_id,
                    row.name,
                    permissions_for_scopes(parse_scopes(row.scopes.split(","))),
                )
                row_id = row.id
            if self._cache_s > 0:
                if len(self._valid) >= _CACHE_MAX:
                    self._valid.clear()
                self._valid[digest] = (principal, row_id, now + self._cache_s)
        self._touch(row_id)
        return principal

    def _touch(self, row_id: int) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last_used.get(row_id, -1e9) < _LAST_USED_EVERY_S:
                return
            self._last_used[row_id] = now
        # Written in the background: authentication runs on the event loop and must
        # never wait for the database's write lock for a bookkeeping field.
        self._writer.submit(self._write_last_used, row_id, utcnow())

    def _write_last_used(self, row_id: int, when: datetime) -> None:
        try:
            with unit_of_work(self._sessions) as s:
                s.execute(update(ApiKey).where(ApiKey.id == row_id).values(last_used_at=when))
        except Exception:  # noqa: BLE001 - bookkeeping; never fails a request
            log.warning("could not record last use of API key %s", row_id, exc_info=True)

    def close(self) -> None:
        """Finish pending bookkeeping writes (called when the runtime closes)."""
        self._writer.shutdown(wait=True)

    def list(self) -> list[ApiKeyView]:
        with unit_of_work(self._sessions, write=False) as s:
            return [
                _view(r) for r in s.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id))
            ]

    def revoke(self, key_id: str, *, actor: str = "operator") -> ApiKeyView:
        with unit_of_work(self._sessions) as s:
            row = s.scalars(select(ApiKey).where(ApiKey.public_id == key_id)).first()
            if row is None:
                raise NotFound(f"No API key with id {key_id[:40]!r}.", code="api_key_not_found")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                record(s, actor, "apikey.revoked", "apikey", row.public_id, {})
            view, digest = _view(row), row.key_hash
        self._valid.pop(digest, None)  # after commit: nothing can cache it again here
        return view


def _view(row: ApiKey) -> ApiKeyView:
    return ApiKeyView(
        id=row.public_id,
        name=row.name,
        prefix=row.prefix,
        scopes=row.scopes.split(","),
        created_at=row.created_at,
        created_by=row.created_by,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )
