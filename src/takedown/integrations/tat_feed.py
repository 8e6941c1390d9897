"""Tech Against Terrorism's TCAP hash list through python-threatexchange's
``TATHashListAPI``: a JWT from ``POST token-auth/tcap/`` (username and password), then
``GET api/hash-list/v2/all?order=asc&after=<checkpoint>`` paged by ``next`` links; each
page's ``checkpoint`` ("updated_on,id" of its last record) resumes after it. A record
with ``deleted`` set removes the hash. TCAP's API takes no opinions: nothing is written
back (``NO_FEEDBACK``).

What is adapted, and why (python-threatexchange 1.2.17):

- The base URL is a class variable of the client; the instance's is set here.
- It logs in again for every page, with a POST its session never retries; here the
  token is asked for once per sync (again once if the list answers 401, an expired
  token), and a 429 or 5xx on the login is retried like its GETs (4 tries, backoff
  from 0.2 s). A refused login (HTTP 400/401/403) is reported as refused credentials.
- It appends the whole ``next`` link after ``…/all?`` (a URL inside the query string;
  a Django server happens to read its ``offset``, but not its ``limit``); here only the
  link's query is passed on.
- Its exchange class keeps an MD5 only for video file types; Takedown's MD5 is any
  file's, so every MD5 is taken. The record's id is the upstream id; the checkpoint is
  stored with each page (a resumed sync asks for what follows the last whole page).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from takedown.domain.exchanges import ExchangeType, Page, TatCredentials, UpstreamEntry
from takedown.integrations.hash_exchanges import FeedError, _call

TAT_DEFAULT_URL = "https://app.terrorismanalytics.org/"
_LOGIN_TRIES = 4


def _client(creds: TatCredentials, base_url: str) -> Any:
    import requests
    from threatexchange.exchanges.clients.techagainstterrorism import api

    class _Client(api.TATHashListAPI):
        """The library's client at any base URL, logging in once per sync."""

        token: str | None = None

        def get_auth_token(self, username: str, password: str) -> str | None:
            if self.token is not None:
                return self.token
            for attempt in range(_LOGIN_TRIES):
                try:
                    self.token = super().get_auth_token(username, password)
                    return self.token
                except requests.HTTPError as exc:
                    status = exc.response.status_code if exc.response is not None else None
                    if status in (400, 401, 403):
                        raise FeedError(
                            f"TCAP refused the username and password (HTTP {status}); "
                            "check the credentials file or variable.",
                            credentials=True,
                        ) from None
                    if status not in (429, 500, 502, 503, 504) or attempt == _LOGIN_TRIES - 1:
                        raise
                time.sleep(0.2 * 2**attempt)
            return None  # not reached

    client = _Client(creds.username, creds.password)
    client.BASE_URL = base_url.rstrip("/") + "/"  # type: ignore[misc]
    return client


class TatFeed:
    """TCAP's hash list. Checkpoint: ``{"after": "updated_on,id"}`` of the last record
    applied (none: from the start)."""

    kind = ExchangeType.TAT

    def __init__(self, creds: TatCredentials, base_url: str | None) -> None:
        self._client = _client(creds, base_url or TAT_DEFAULT_URL)

    def _fetch(self, query: str, after: str) -> Any:
        import requests

        try:
            return self._client.fetch_hashes(next_page=query, after=after)
        except requests.HTTPError as exc:
            expired = exc.response is not None and exc.response.status_code == 401
            if not expired or self._client.token is None:
                raise
            self._client.token = None  # log in again, once
            return self._client.fetch_hashes(next_page=query, after=after)

    def pages(self, checkpoint: Mapping[str, Any], now: float | None = None) -> Iterator[Page]:
        after = str(checkpoint.get("after") or "")
        stored = after
        query = ""
        while True:
            response = _call("TCAP", partial(self._fetch, query, after))
            entries: list[UpstreamEntry] = []
            removed: list[str] = []
            for r in response.results:
                upstream_id = str(r.id)
                if r.deleted:
                    removed.append(upstream_id)
                    continue
                ideology = getattr(r.ideology, "value", r.ideology)
                labels: dict[str, object] = {
                    "classification": ideology,
                    "file_type": r.file_type,
                    "algorithm": r.algorithm,
                    "updated": r.updated_on,
                    "created": str(r.created_on),
                }
                entries.append(UpstreamEntry(upstream_id, ((r.algorithm, r.hash_digest),), labels))
            stored = response.checkpoint or stored
            more = bool(response.next)
            yield Page(entries, removed, {"after": stored} if stored else {}, not more)
            if not more:
                return
            query = urlsplit(response.next).query

    def send_feedback(self, upstream_id: str, signal_type: str, value: str, positive: bool) -> None:
        raise FeedError("TCAP's API takes no opinions; nothing is sent to it.")
