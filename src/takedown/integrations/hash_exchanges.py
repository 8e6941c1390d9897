"""Hash-list exchanges through python-threatexchange's clients (never rewritten here):
NCMEC's hash sharing (``NCMECHashAPI``) and StopNCII (``StopNCIIAPI``). Each feed turns
the client's pages into :class:`~takedown.domain.exchanges.Page` objects with the
checkpoint to store with them.

What is adapted, and why (python-threatexchange 1.2.17):

- NCMEC: the client takes only its fixed hosts, so another base URL (a test server, a
  proxy) replaces ``_base_url``, to which its ``next`` links are relative. Its dates
  are local time marked "Z"; :class:`_NcmecClient` formats them in UTC. The exchange
  class's ``fetch_iter`` is not used: it stops 5 s before now (kept here), raises an
  ``AssertionError`` when a paged fetch resumes in the second it ended, and shrinks any
  multi-page range longer than 60 s, throwing its first page away (a thousand wasted
  pages at a million entries). The checkpoint here is the range and the next link.
- StopNCII: the exchange class's delta tests ``hashValue`` instead of ``hashStatus``, so
  Withdrawn and Deleted records would look like live ones; the client's records are
  read directly. ``for_collab`` has no place for the feedback key; the client is built
  here with it.

The library is imported when a feed is built, never at module import (``takedown
--help`` and the API's start stay light). ThreatExchange and TCAP: ``threatexchange_feed``
and ``tat_feed``; ``exchange_feeds.open_feed`` builds any of them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Generator, Iterator
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from takedown.domain.exchanges import (
    ExchangeType,
    NcmecCredentials,
    Page,
    StopNciiCredentials,
    UpstreamEntry,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

# Our signal types -> NCMEC's fingerprint types (the feedback endpoints' names).
_NCMEC_FINGERPRINTS = {"pdq": "PDQ", "md5": "MD5", "photodna": "PDNA", "tmk": "TMK_PDQF"}

# NCMEC's hash sharing ends a fetch this many seconds before now: later changes may
# still be written upstream, and come with the next sync.
NCMEC_LAG_S = 5
NCMEC_DEFAULT_URL = "https://report.cybertip.org/hashsharing"
STOPNCII_DEFAULT_URL = "https://api.stopncii.org/v1"


class FeedError(Exception):
    """The exchange refused the request or could not be reached after the client's
    retries. The message names the exchange and the HTTP status, never a secret."""

    def __init__(self, message: str, *, credentials: bool = False) -> None:
        super().__init__(message)
        self.credentials = credentials


def _utc(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ncmec_client(creds: NcmecCredentials, base_url: str) -> Any:
    from threatexchange.exchanges.clients.ncmec import hash_api

    class _NcmecClient(hash_api.NCMECHashAPI):
        """The library's client at any base URL, sending dates in UTC."""

        def get_entries(
            self, *, start_timestamp: int = 0, end_timestamp: int = 0, next_: str = ""
        ) -> hash_api.GetEntriesResponse:
            end = end_timestamp or int(time.time())
            xml = self._get(
                hash_api.NCMECEndpoint.entries,
                next_=next_,
                to=_utc(end),
                **{"from": _utc(start_timestamp)},
            )
            return hash_api.GetEntriesResponse.from_xml(hash_api._XMLWrapper(xml), end)

    client = _NcmecClient(creds.user, creds.password, hash_api.NCMECEnvironment.Industry)
    client._base_url = base_url.rstrip("/")
    return client


def _stopncii_client(creds: StopNciiCredentials, base_url: str) -> Any:
    from threatexchange.exchanges.clients.stopncii import api

    extra = {}
    if creds.feedback_key:
        extra[api.StopNCIIEndpoint.SubmitFeedback] = creds.feedback_key
        extra[api.StopNCIIEndpoint.SubmitHashes] = creds.feedback_key
    return api.StopNCIIAPI(
        creds.subscription_key,
        creds.fetch_key,
        additional_function_keys=extra,
        base_url_override=base_url.rstrip("/"),
    )


def _call(what: str, fn: Callable[[], Any]) -> Any:
    """Run a client call; its failures (after the client's own retries of 429 and 5xx)
    become a :class:`FeedError` saying what happened in a sentence."""
    import requests

    try:
        return fn()
    except FeedError:
        raise
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403):
            raise FeedError(
                f"{what} refused the credentials (HTTP {status}); check the credentials "
                "file or variable.",
                credentials=True,
            ) from None
        raise FeedError(f"{what} answered HTTP {status}.") from None
    except requests.exceptions.RetryError as exc:
        raise FeedError(f"{what} kept failing after retries ({_reason(exc)}).") from None
    except requests.RequestException as exc:
        raise FeedError(f"{what} could not be reached ({type(exc).__name__}).") from None
    except Exception as exc:  # noqa: BLE001 - a malformed answer the library could not parse
        raise FeedError(f"{what} sent an answer the client could not read: {exc!s:.200}") from None


def _reason(exc: Exception) -> str:
    text = str(exc)
    if "too many 429" in text:
        return "HTTP 429"
    for code in ("500", "502", "503", "504"):
        if f"too many {code}" in text:
            return f"HTTP {code}"
    return "retries exhausted"


class NcmecFeed:
    """NCMEC's hash sharing: entries in a time range, a thousand a page, paged by
    ``next`` links. Checkpoint: ``{"from": t}`` between syncs; mid-range ``{"from": t,
    "to": t2, "next": link}`` (a link is valid only with its own range).

    A long pull (more than ``offload_after`` entries still to come after a page, as its
    ``next`` link says) is continued by a child process from that page's checkpoint
    (integrations/feed_process.py): the client's XML parsing then overlaps with the
    writes instead of sharing one interpreter with them."""

    kind = ExchangeType.NCMEC
    offload_after = 50_000

    def __init__(
        self, creds: NcmecCredentials, base_url: str | None, *, offload: bool = True
    ) -> None:
        self._creds, self._base_url, self._offload = creds, base_url, offload
        self._client = _ncmec_client(creds, base_url or NCMEC_DEFAULT_URL)

    def pages(self, checkpoint: Mapping[str, Any], now: float | None = None) -> Iterator[Page]:
        here = self._pages(checkpoint, now)
        for page, remaining in here:
            yield page
            if page.done:
                return
            if self._offload and remaining >= self.offload_after:
                here.close()
                break
        else:
            return
        from takedown.integrations.feed_process import ChildFeedError, child_pages

        try:
            yield from child_pages(self.kind, self._creds, self._base_url, page.checkpoint, now)
        except ChildFeedError as exc:
            raise FeedError(str(exc), credentials=exc.credentials) from None

    def _pages(
        self, checkpoint: Mapping[str, Any], now: float | None
    ) -> Generator[tuple[Page, int], None, None]:
        """Each page, with how many entries its range still holds after it."""
        start = int(checkpoint.get("from", 0))
        link = str(checkpoint.get("next") or "")
        if link:
            end = int(checkpoint["to"])
        else:
            end = int(now if now is not None else time.time()) - NCMEC_LAG_S
            if end <= start:
                return
        pages = self._client.get_entries_iter(
            start_timestamp=start, end_timestamp=end, resume_paging_url=link
        )
        while True:
            response = _call("NCMEC", lambda: next(pages, None))
            if response is None:
                return
            entries: list[UpstreamEntry] = []
            removed: list[str] = []
            for u in response.updates:
                upstream_id = f"{u.member_id}-{u.id}"
                if u.deleted:
                    removed.append(upstream_id)
                    continue
                labels: dict[str, object] = {"member": u.member_id, "kind": u.entry_type.value}
                if u.classification:
                    labels["classification"] = u.classification
                entries.append(UpstreamEntry(upstream_id, tuple(u.fingerprints.items()), labels))
            done = not response.next
            cp: dict[str, object] = (
                {"from": end} if done else {"from": start, "to": end, "next": response.next}
            )
            info = None if done else response.get_next_info()
            yield Page(entries, removed, cp, done), (info.max - info.start + 1 if info else 0)
            if done:
                return

    def send_feedback(self, upstream_id: str, signal_type: str, value: str, positive: bool) -> None:
        """An upvote or a downvote on one fingerprint of a member's entry, through the
        client (a downvote takes NCMEC's only reason for the type, as the client does;
        with several, the client refuses and the feedback fails)."""
        from threatexchange.exchanges.clients.ncmec import hash_api

        member, _, entry = upstream_id.partition("-")
        kind = hash_api.FingerprintType(_NCMEC_FINGERPRINTS[signal_type])
        vote = hash_api.FeedbackType.upvote if positive else hash_api.FeedbackType.downvote
        _call(
            "NCMEC",
            partial(self._client.submit_feedback, int(member), entry, kind, vote),
        )

    def check(self) -> str:
        """Who NCMEC says we are (the credentials work)."""
        status = _call("NCMEC", self._client.status)
        return f"{status.esp_name} (ESP {status.esp_id})"


class StopNciiFeed:
    """StopNCII: hash records changed since a timestamp, paged by a token. Checkpoint:
    ``{"start": t}`` between syncs (the answer's ``nextSetTimestamp``), ``{"start": t,
    "next": token}`` mid-way. A record is the current state of one hash; Withdrawn or
    Deleted (``hashStatus``) removes it."""

    kind = ExchangeType.STOPNCII
    removed_states = frozenset({"Withdrawn", "Deleted"})

    def send_feedback(self, upstream_id: str, signal_type: str, value: str, positive: bool) -> None:
        """``Blocked`` (a confirmed match) or ``NotBlocked`` (no violation) on one hash,
        through the client's SubmitFeedback (needs the feedback key)."""
        from threatexchange.exchanges.clients.stopncii import api

        kind = api.StopNCIISignalType(upstream_id.partition(":")[0])
        state = (
            api.StopNCIICSPFeedbackValue.Blocked
            if positive
            else api.StopNCIICSPFeedbackValue.NotBlocked
        )
        _call("StopNCII", partial(self._client.submit_feedback, kind, value, state))

    def __init__(self, creds: StopNciiCredentials, base_url: str | None) -> None:
        self._client = _stopncii_client(creds, base_url or STOPNCII_DEFAULT_URL)

    def pages(self, checkpoint: Mapping[str, Any], now: float | None = None) -> Iterator[Page]:
        start = int(checkpoint.get("start", 10))  # StopNCIIAPI.DEFAULT_START_TIME
        token = str(checkpoint.get("next") or "")
        while True:
            response = _call(
                "StopNCII",
                partial(self._client.fetch_hashes, start_timestamp=start, next_page=token),
            )
            entries: list[UpstreamEntry] = []
            removed: list[str] = []
            for r in response.hashRecords:
                upstream_id = _record_id(r.signalType.value, r.hashValue)
                if r.hashStatus.value in self.removed_states:
                    removed.append(upstream_id)
                    continue
                labels: dict[str, object] = {
                    "status": r.hashStatus.value,
                    "cases": len(r.caseNumbers),
                }
                entries.append(
                    UpstreamEntry(upstream_id, ((r.signalType.value, r.hashValue),), labels)
                )
            more = bool(response.hasMoreRecords and response.nextPageToken)
            token = response.nextPageToken or ""
            cp: dict[str, object] = (
                {"start": start, "next": token}
                if more
                else {"start": int(response.nextSetTimestamp or start)}
            )
            yield Page(entries, removed, cp, not more)
            if not more:
                return


def _record_id(kind: str, value: str) -> str:
    """A StopNCII record's id: its type and hash (a record is one hash), a long value
    (a video's TMK, ~176,000 characters) by its SHA-256."""
    if len(value) <= 160:
        return f"{kind}:{value}"
    return f"{kind}:sha256:{hashlib.sha256(value.encode()).hexdigest()}"
