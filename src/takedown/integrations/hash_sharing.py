"""Submitting the platform's own confirmed hashes to exchanges that take them.

A sharer takes one :class:`ShareRequest` (one file: its signals, in our type names) and
answers a :class:`ShareReceipt` with the upstream id under which the exchange's own
pulls will list it, or raises :class:`ShareError` saying whether trying again may help.
``SHARERS`` maps an exchange type to its sharer; ThreatExchange is one more entry.

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
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from io import BytesIO
from typing import Any, Protocol

from takedown.domain.exchanges import Credentials, ExchangeType, NcmecCredentials
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


SHARERS: dict[ExchangeType, Callable[[Any, str | None], Sharer]] = {
    ExchangeType.NCMEC: NcmecSharer,
}


def open_sharer(kind: ExchangeType, creds: Credentials, base_url: str | None) -> Sharer:
    factory = SHARERS.get(kind)
    if factory is None:
        raise ShareError(f"{kind.value} takes no hashes from us.", permanent=True)
    return factory(creds, base_url)
