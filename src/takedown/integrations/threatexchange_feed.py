"""Meta's ThreatExchange (which also carries GIFCT's hash list) through
python-threatexchange's Graph API client (``ThreatExchangeAPI``) and its exchange's
reading of an indicator (``FBThreatExchangeIndicatorRecord``): the privacy group's
``threat_updates``, paged by the Graph API's ``paging.next`` links; reactions on the
descriptors of an indicator for opinions.

What is adapted, and why (python-threatexchange 1.2.17):

- The client's GETs go through a bare ``requests.get`` (its own comment asks "Typo?
  session.get?"), so its session's retries of 429 and 5xx never apply; here they go
  through that session. The base URL is the client's own ``endpoint_override``.
- The exchange class's ``fetch_iter`` is not used: it asserts on an empty page and
  keeps neither the indicator's id (needed to find its descriptors for a reaction) nor
  the raw update. The same request (its fields, a hundred-odd indicators a page) and
  the class's own reading of each update are used instead. The checkpoint is the
  highest ``last_updated`` applied (as the library's); a page resumed at it is fetched
  again from that second, which is harmless (each update is an indicator's whole state).
  The ``next`` links carry the access token, so they are never stored.
- A deletion is ``should_delete`` (or an update without descriptors, the library's
  rule); an indicator whose every visible descriptor says ``NON_MALICIOUS`` (or whose
  descriptors are all invisible) is removed here too: nobody vouches for it any more.
- Reactions (``react_to_threat_descriptor``) answer Graph API errors as JSON without
  raising; the answer is read here. Invalid tokens are HTTP 400 ``OAuthException``,
  reported as refused credentials.
- An indicator whose every descriptor our own app owns is our own share
  (``hash_sharing.ThreatExchangeSharer``): labelled ``own``, so the sync recognises it
  instead of pulling it into the exchange's bank.
- The access token travels in every URL (the Graph API's way): urllib3's log lines of
  URLs get it masked, and no error here repeats a URL.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Any

from takedown.domain.exchanges import ExchangeType, Page, ThreatExchangeCredentials, UpstreamEntry
from takedown.integrations.hash_exchanges import FeedError, _call

TE_DEFAULT_URL = "https://graph.facebook.com/v26.0"
PAGE_SIZE = 500  # indicators asked for a page (the server may send fewer)
AGREE, DISAGREE = "HELPFUL", "DISAGREE_WITH_TAGS"  # the reactions the library reads back
_TOKEN_IN_URL = re.compile(r"(access_token=)[^&\s\"']+")


class _MaskTokens(logging.Filter):
    """urllib3 logs request URLs (debug lines, retry warnings): the token is masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "access_token=" in text:
            record.msg, record.args = _TOKEN_IN_URL.sub(r"\1***", text), ()
        return True


_MASK = _MaskTokens()


def _mask_urllib3_logs() -> None:
    for name in ("urllib3.connectionpool", "urllib3.util.retry"):
        logger = logging.getLogger(name)
        if _MASK not in logger.filters:
            logger.addFilter(_MASK)


def _client(creds: ThreatExchangeCredentials, base_url: str) -> Any:
    from threatexchange.exchanges.clients.fb_threatexchange import api

    class _Client(api.ThreatExchangeAPI):
        """The library's client, its GETs through its own retrying session."""

        def get_json_from_url(
            self, url: str, params: Any = None, *, json_obj_hook: Callable[..., Any] | None = None
        ) -> Any:
            with self._get_session() as session:
                response = session.get(url, params=params or {})
                response.raise_for_status()
                return response.json(object_hook=json_obj_hook)

    _mask_urllib3_logs()
    return _Client(creds.api_token, endpoint_override=base_url.rstrip("/"))


def _graph_error(answer: object) -> tuple[str, object, str] | None:
    if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
        err = answer["error"]
        return str(err.get("type", "")), err.get("code"), str(err.get("message", ""))[:200]
    return None


def _refused(status: object, kind: str, code: object) -> FeedError:
    return FeedError(
        f"ThreatExchange refused the access token (HTTP {status}, {kind} {code}); check "
        "the credentials file or variable.",
        credentials=True,
    )


def _te(fn: Callable[[], Any]) -> Any:
    """A client call; the Graph API's ``OAuthException`` (HTTP 400) is refused
    credentials, the rest as for every exchange."""
    import requests

    def checked() -> Any:
        try:
            return fn()
        except requests.HTTPError as exc:
            response = exc.response
            if response is not None:
                try:
                    err = _graph_error(response.json())
                except ValueError:
                    err = None
                if err and err[0] == "OAuthException":
                    raise _refused(response.status_code, err[0], err[1]) from None
            raise

    return _call("ThreatExchange", checked)


class ThreatExchangeFeed:
    """One privacy group's ``threat_updates``. Checkpoint: ``{"update_time": t}``, the
    highest ``last_updated`` applied (none: from the start)."""

    kind = ExchangeType.THREATEXCHANGE

    def __init__(
        self, creds: ThreatExchangeCredentials, base_url: str | None, privacy_group: int | None
    ) -> None:
        if privacy_group is None:
            raise FeedError("A ThreatExchange exchange needs its privacy group.")
        self._client = _client(creds, base_url or TE_DEFAULT_URL)
        self._group = privacy_group
        self._app_id = creds.app_id

    def pages(self, checkpoint: Mapping[str, Any], now: float | None = None) -> Iterator[Page]:
        from threatexchange.exchanges.clients.fb_threatexchange.threat_updates import (
            ThreatUpdateJSON,
        )
        from threatexchange.exchanges.impl.fb_threatexchange_api import (
            FBThreatExchangeIndicatorRecord,
        )

        start = int(checkpoint.get("update_time") or 0)
        fields = ("id", *FBThreatExchangeIndicatorRecord.te_threat_updates_fields())
        cursor = self._client.get_threat_updates(
            self._group,
            start_time=start or None,
            page_size=PAGE_SIZE,
            fields=fields,
            decode_fn=ThreatUpdateJSON,
        )
        highest = start
        while not cursor.done:
            batch = _te(cursor.next)
            entries: list[UpstreamEntry] = []
            removed: list[str] = []
            for update in batch:
                highest = max(highest, update.time)
                upstream_id = str(update.id)
                record = FBThreatExchangeIndicatorRecord.from_threatexchange_json(
                    self._app_id, update
                )
                if _only_ours(update, self._app_id):
                    # Our own share (integrations/hash_sharing.py): never pulled back in.
                    signals = ((update.threat_type, update.indicator),)
                    entries.append(UpstreamEntry(upstream_id, signals, {"own": True}))
                    continue
                labels = _labels(update, record)
                if labels is None:
                    removed.append(upstream_id)
                    continue
                entries.append(
                    UpstreamEntry(upstream_id, ((update.threat_type, update.indicator),), labels)
                )
            cp: dict[str, object] = {"update_time": highest} if highest else {}
            yield Page(entries, removed, cp, cursor.done)

    def send_feedback(self, upstream_id: str, signal_type: str, value: str, positive: bool) -> None:
        """``HELPFUL`` (a confirmed match) or ``DISAGREE_WITH_TAGS`` (no violation) on
        every descriptor of the indicator that another app owns, as the library reads
        them back into opinions. Reactions are a set per app: sending one again (a
        retry after a partial failure) changes nothing."""
        descriptors = _te(
            partial(self._client.get_threat_descriptors_from_indicator, int(upstream_id))
        )
        reaction = AGREE if positive else DISAGREE
        for d in descriptors:
            owner = (d.get("owner") or {}).get("id")
            if owner is not None and int(owner) == self._app_id:
                continue  # our own descriptor: nothing to react to
            descriptor = int(d["id"])
            answer = _te(partial(self._client.react_to_threat_descriptor, descriptor, reaction))
            body = answer[2] if isinstance(answer, list) and len(answer) == 3 else answer
            if isinstance(body, dict) and body.get("success"):
                continue
            err = _graph_error(body)
            if err and err[0] == "OAuthException":
                raise _refused("4xx", err[0], err[1])
            detail = f"{err[0]} {err[1]}: {err[2]}" if err else "no success in the answer"
            raise FeedError(f"ThreatExchange did not take the reaction ({detail}).")


def _only_ours(update: Any, app_id: int) -> bool:
    """A live indicator whose every visible descriptor our own app owns."""
    if update.should_delete:
        return False
    data = (update.raw_json.get("descriptors") or {}).get("data") or []
    owners = {int(d["owner"]["id"]) for d in data if "owner" in d}
    return owners == {app_id} and all(d.get("status") != "NON_MALICIOUS" for d in data)


def _labels(update: Any, record: Any) -> dict[str, object] | None:
    """Provenance of a live indicator (its type, tags, the apps vouching for it, its
    opinions, when upstream last changed it), or None when it is removed: deleted,
    no visible descriptor, or every descriptor says it is not malicious."""
    from threatexchange.exchanges.fetch_state import SignalOpinionCategory as Category

    if record is None:
        return None
    opinions = record.get_as_opinions()
    if all(o.category is Category.NEGATIVE_CLASS for o in opinions):
        return None
    tags = sorted({t for o in opinions for t in o.tags})
    # Hashable values only (tuples are written as JSON lists).
    return {
        "type": update.threat_type,
        "tags": tuple(tags[:50]),
        "owners": tuple(sorted(o.owner_app_id for o in opinions)[:50]),
        "positive": sum(o.category is Category.POSITIVE_CLASS for o in opinions),
        "negative": sum(o.category is Category.NEGATIVE_CLASS for o in opinions),
        "updated": update.time,
    }
