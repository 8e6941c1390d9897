"""Submitting the platform's own confirmed hashes to exchanges that take them.

A sharer takes one :class:`ShareRequest` (one file: its signals, in our type names) and
answers a :class:`ShareReceipt` with the upstream id under which the exchange's own
pulls will list it, or raises :class:`ShareError` saying whether trying again may help.
``SHARERS`` maps an exchange type to its sharer. A sharer also withdraws what it
shared (``withdraw``) when the decision behind it is overturned.

NCMEC (``POST /v2/entries``): python-threatexchange 1.2.17's ``NCMECHashAPI`` has no
call that submits entries (it reads entries and votes on them; its ``_post`` sends no
XML content type and ``UpdateEntryResponse`` parses an answer nobody asks for), and no
other library does it, so the request is made here: the client's own session (HTTP
Basic auth, its base URL, which never retries a POST, hence the outbox) posts a
``submission`` document in NCMEC's v2 namespace, one ``image`` or ``video`` with our id
for it and its ``fingerprints``; the answer lists the entries as a query does
(``images``/``videos``, each with its ``member`` and ``id``) and is read with the
library's ``UpdateEntryResponse``. NCMEC lists an entry as member id + entry id, which
is the upstream id a sync of that exchange sees (``hash_exchanges.NcmecFeed``).
Withdrawing: neither the library nor NCMEC's public v2 overview has a call that
deletes a submitted entry; ``withdraw`` says so (a permanent failure naming NCMEC's
own process), see docs/integrations/exchanges.md.

ThreatExchange (``ThreatExchangeSharer``): the library's own
``ThreatExchangeAPI.upload_threat_descriptor``, one descriptor per signal (the Graph
API's ``POST /threat_descriptors`` with ``indicator``, ``type``, ``description``,
``share_level``, ``status`` and ``privacy_type`` ``HAS_PRIVACY_GROUP`` with the
exchange's privacy group as ``privacy_members``, and ``tags``; the client puts them in
the query string and in a form body alike). It never raises on an HTTP error: it
answers the Graph API's JSON, read here (``{"success": true, "id": ...}`` or
``{"error": {...}}``; a transient error or a throttle is retried by the outbox, an
``OAuthException`` is refused credentials, any other error a refusal). The upstream id
kept is the descriptor ids, comma-separated; the exchange's syncs list indicators, and
an indicator only our own app vouches for is recognised as ours
(``threatexchange_feed``). Withdrawing deletes each descriptor with the library's
``delete_threat_descriptor`` (``DELETE /{descriptor_id}``), which ThreatExchange's
reference documents for descriptors; an already deleted one counts as withdrawn.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from io import BytesIO
from typing import Any, Protocol

from takedown.domain.exchanges import (
    Credentials,
    ExchangeType,
    NcmecCredentials,
    ThreatExchangeCredentials,
)
from takedown.domain.sharing import upstream_name
from takedown.integrations.hash_exchanges import NCMEC_DEFAULT_URL, _ncmec_client

NCMEC_NS = "https://hashsharing.ncmec.org/hashsharing/v2"


@dataclass(frozen=True)
class ShareRequest:
    entry_id: str  # our id for the entry (the share's public id: the same on every retry)
    media_type: str  # image | video
    signals: Mapping[str, str]  # our signal type -> value, only types the exchange takes
    classification: str | None = None


@dataclass(frozen=True)
class ShareReceipt:
    upstream_id: str  # as the exchange's pulls name the entry


class ShareError(Exception):
    """The exchange did not take the entry. ``permanent``: it refused it (a 4xx other
    than 401, 403 and 429), trying again will not help; otherwise it may be retried.
    The message names the exchange and its answer, never a secret."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class Sharer(Protocol):
    def share(self, request: ShareRequest) -> ShareReceipt: ...

    def withdraw(self, upstream_id: str) -> None:
        """Take back what ``share`` sent (its receipt's upstream id); raises
        :class:`ShareError` as ``share`` does."""
        ...


class NcmecSharer:
    """NCMEC's hash sharing: ``POST {base}/v2/entries`` with a ``submission`` document."""

    kind = ExchangeType.NCMEC

    def __init__(self, creds: NcmecCredentials, base_url: str | None) -> None:
        self._client = _ncmec_client(creds, base_url or NCMEC_DEFAULT_URL)

    def share(self, request: ShareRequest) -> ShareReceipt:
        import requests

        client = self._client
        url = "/".join((client._base_url, client.VERSION, "entries"))
        body = submission_xml(request)
        try:
            with client._get_session() as session:
                response = session.post(
                    url,
                    data=body,
                    headers={"Content-Type": "application/xml; charset=utf-8"},
                )
        except requests.RequestException as exc:
            raise ShareError(
                f"NCMEC could not be reached ({type(exc).__name__}).", permanent=False
            ) from None
        status = response.status_code
        if status >= 300:
            raise _refused(status, response.content)
        return ShareReceipt(_upstream_id(response.content, request.entry_id))

    def withdraw(self, upstream_id: str) -> None:
        raise ShareError(
            f"NCMEC's hash sharing API offers no call to retract entry {upstream_id}: ask "
            "NCMEC to remove it (docs/integrations/exchanges.md, Withdrawing a share).",
            permanent=True,
        )


def submission_xml(request: ShareRequest) -> bytes:
    """NCMEC's submission document for one entry."""
    root = ET.Element("submission", {"xmlns": NCMEC_NS})
    entry = ET.SubElement(root, request.media_type)
    ET.SubElement(entry, "id").text = request.entry_id
    if request.classification:
        ET.SubElement(entry, "classification").text = request.classification
    fingerprints = ET.SubElement(entry, "fingerprints")
    for ours, value in request.signals.items():
        ET.SubElement(fingerprints, upstream_name(ExchangeType.NCMEC, ours)).text = value
    return b'<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root)


def _refused(status: int, content: bytes) -> ShareError:
    said = _error_text(content)
    if status in (401, 403):
        return ShareError(
            f"NCMEC refused the credentials (HTTP {status}); check the credentials file "
            "or variable.",
            permanent=False,
        )
    if status == 429 or status >= 500:
        return ShareError(f"NCMEC answered HTTP {status}{said}.", permanent=False)
    return ShareError(f"NCMEC refused the entry (HTTP {status}){said}.", permanent=True)


def _error_text(content: bytes) -> str:
    """NCMEC's own words about a refusal (its error document's text), shortened."""
    try:
        root = ET.fromstring(content)
        text = " ".join(t.strip() for t in root.itertext() if t.strip())
    except ET.ParseError:
        text = content.decode("utf-8", "replace").strip()
    return f": {text[:300]}" if text else ""


def _upstream_id(content: bytes, entry_id: str) -> str:
    """The member id and entry id NCMEC lists our entry under."""
    from threatexchange.exchanges.clients.ncmec import hash_api

    try:
        it = ET.iterparse(BytesIO(content))
        for _, el in it:  # namespaces add nothing here (as the library's own reads)
            el.tag = el.tag.partition("}")[2] or el.tag
        root: Any = it.root  # type: ignore[attr-defined]
        answer = hash_api.UpdateEntryResponse.from_xml(hash_api._XMLWrapper(root), int(time.time()))
    except Exception as exc:  # noqa: BLE001 - an answer the library could not read
        raise ShareError(
            f"NCMEC took the entry but its answer could not be read: {exc!s:.200}",
            permanent=False,
        ) from None
    for update in answer.updates:
        if update.id == entry_id:
            return f"{update.member_id}-{update.id}"
    raise ShareError("NCMEC's answer does not list the entry it was sent.", permanent=False)


# ThreatExchange's indicator types for our signals (a video's MD5 has its own).
TE_TYPES = {("image", "md5"): "HASH_MD5", ("video", "md5"): "HASH_VIDEO_MD5",
            ("image", "pdq"): "HASH_PDQ", ("video", "pdq"): "HASH_PDQ"}  # fmt: skip
TE_SHARE_LEVEL = "AMBER"  # TLP: members of the privacy group only
TE_TAG = "takedown_confirmed"
# Graph API error codes worth another try: unknown/transient, service, throttles.
_TE_TRANSIENT = frozenset({1, 2, 4, 17, 32, 341, 613})


class ThreatExchangeSharer:
    """ThreatExchange: one descriptor per signal in the exchange's privacy group."""

    kind = ExchangeType.THREATEXCHANGE

    def __init__(
        self, creds: ThreatExchangeCredentials, base_url: str | None, privacy_group: int | None
    ) -> None:
        from takedown.integrations.threatexchange_feed import TE_DEFAULT_URL, _client

        if privacy_group is None:
            raise ShareError("A ThreatExchange exchange needs its privacy group.", permanent=True)
        self._client = _client(creds, base_url or TE_DEFAULT_URL)
        self._group = privacy_group

    def share(self, request: ShareRequest) -> ShareReceipt:
        ids: list[str] = []
        for ours, value in request.signals.items():
            kind = TE_TYPES.get((request.media_type, ours))
            if kind is None:
                raise ShareError(f"ThreatExchange takes no {ours} of a {request.media_type}.",
                                 permanent=True)  # fmt: skip
            params = {
                "indicator": value,
                "type": kind,
                "description": f"Confirmed by the platform's review (share {request.entry_id}).",
                "share_level": TE_SHARE_LEVEL,
                "status": "MALICIOUS",
                "privacy_type": "HAS_PRIVACY_GROUP",
                "privacy_members": str(self._group),
                "tags": TE_TAG,
            }
            answer = self._call(
                partial(self._client.upload_threat_descriptor, params, False, False)
            )
            if isinstance(answer, dict) and answer.get("id") and "error" not in answer:
                ids.append(str(answer["id"]))
                continue
            raise _te_refused(answer, "the descriptor")
        return ShareReceipt(",".join(ids))

    def withdraw(self, upstream_id: str) -> None:
        for descriptor in (d for d in upstream_id.split(",") if d.strip()):
            answer = self._call(
                partial(self._client.delete_threat_descriptor, descriptor, False, False)
            )
            if isinstance(answer, dict) and answer.get("success"):
                continue
            err = answer.get("error") if isinstance(answer, dict) else None
            if isinstance(err, dict) and err.get("code") == 100:
                continue  # no such object (any more): already withdrawn
            raise _te_refused(answer, f"the deletion of descriptor {descriptor}")

    @staticmethod
    def _call(fn: Callable[[], Any]) -> Any:
        """The client's answer body (it answers ``[message, error, body]``)."""
        import requests

        try:
            out = fn()
        except requests.RequestException as exc:  # unreachable, or an answer not JSON
            raise ShareError(
                f"ThreatExchange could not be reached or answered no JSON ({type(exc).__name__}).",
                permanent=False,
            ) from None
        if isinstance(out, list) and len(out) == 3:
            if out[0]:  # the client's own check of the fields (a bug here)
                raise ShareError(f"ThreatExchange's client refused: {out[0]}", permanent=True)
            return out[2]
        return out


def _te_refused(answer: object, what: str) -> ShareError:
    err = answer.get("error") if isinstance(answer, dict) else None
    if not isinstance(err, dict):
        return ShareError(f"ThreatExchange did not take {what} (no id in its answer).",
                          permanent=False)  # fmt: skip
    kind, code = str(err.get("type", "")), err.get("code")
    said = str(err.get("message", ""))[:200]
    if kind == "OAuthException" and code in (102, 190):
        return ShareError(
            f"ThreatExchange refused the access token ({kind} {code}); check the "
            "credentials file or variable.",
            permanent=False,
        )
    transient = bool(err.get("is_transient")) or code in _TE_TRANSIENT
    return ShareError(
        f"ThreatExchange {'could not take' if transient else 'refused'} {what} "
        f"({kind} {code}: {said}).",
        permanent=not transient,
    )


SHARERS: dict[ExchangeType, Callable[[Any, str | None, int | None], Sharer]] = {
    ExchangeType.NCMEC: lambda creds, url, _group: NcmecSharer(creds, url),
    ExchangeType.THREATEXCHANGE: ThreatExchangeSharer,
}


def open_sharer(
    kind: ExchangeType, creds: Credentials, base_url: str | None, privacy_group: int | None = None
) -> Sharer:
    factory = SHARERS.get(kind)
    if factory is None:
        raise ShareError(f"{kind.value} takes no hashes from us.", permanent=True)
    return factory(creds, base_url, privacy_group)
