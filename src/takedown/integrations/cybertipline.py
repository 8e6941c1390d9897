"""NCMEC's CyberTipline Reporting API: one small client per step of the workflow.

    GET  /status                       are the credentials and the service OK?
    POST /submit    report XML          opens a report  -> reportId
    POST /upload    multipart id, file  one file        -> fileId, hash
    POST /fileinfo  <fileDetails> XML   describes the file
    POST /finish    id                  closes the report (no change after this)
    POST /retract   id                  withdraws an unfinished report

Every call answers XML carrying a ``responseCode`` (0 success; 1000 server error; 2000
authentication required; 3000/3100 not authorised; 4100 validation failed; 4110
malformed XML; 5001 no such report; 5101 already retracted; 5102 already finished).
The client does not decide what a code means for the filing: it returns an
:class:`Exchange` with the exact request and the raw answer, and the service
(``services/legal/cybertipline.py``) stores it and chooses to retry, stop or carry on.

HTTP Basic auth; the **test** environment unless the operator chose production.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.etree import ElementTree as ET

import httpx

SUCCESS = 0
SERVER_ERROR = 1000
AUTH_REQUIRED = 2000
NOT_AUTHORISED = (3000, 3100)
VALIDATION_FAILED = 4100
MALFORMED_XML = 4110
NO_SUCH_REPORT = 5001
ALREADY_RETRACTED = 5101
ALREADY_FINISHED = 5102


@dataclass(frozen=True)
class Exchange:
    """One request and its answer. ``code`` is NCMEC's responseCode, or None when no
    parseable answer came (network error, timeout, HTML error page)."""

    step: str
    request: str  # exactly what was sent (for uploads: the form fields, not the bytes)
    http_status: int | None
    response: str | None
    code: int | None
    description: str | None = None
    report_id: str | None = None
    file_id: str | None = None
    hash: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.code == SUCCESS

    @property
    def retryable(self) -> bool:
        """No answer, a server error, or an HTTP 5xx: try again later."""
        if self.code is None:
            return True
        return self.code == SERVER_ERROR or ((self.http_status or 0) >= 500 and not self.ok)


def parse_response(text: str) -> dict[str, str]:
    """The leaf elements of an answer (``responseCode``, ``reportId``, ``fileId``,
    ``hash``…) by name; the first of each wins."""
    root = ET.fromstring(text)  # noqa: S314 - NCMEC's answer over TLS; no entities used
    out: dict[str, str] = {}
    for el in root.iter():
        if len(el) == 0 and el.text is not None:
            out.setdefault(el.tag, el.text.strip())
    return out


class CyberTiplineClient:
    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        timeout_s: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            auth=httpx.BasicAuth(username, password),
            timeout=timeout_s,
            follow_redirects=False,
            headers={"User-Agent": "Takedown-CyberTipline/1"},
        )

    def close(self) -> None:
        self._client.close()

    def status(self) -> Exchange:
        return self._call("status", "GET", "/status", "")

    def submit(self, report_xml: str) -> Exchange:
        return self._call(
            "submit",
            "POST",
            "/submit",
            report_xml,
            content=report_xml.encode("utf-8"),
            headers={"Content-Type": "text/xml; charset=utf-8"},
        )

    def upload(self, report_id: str, file_name: str, data: bytes) -> Exchange:
        described = f"id={report_id}; file={file_name} ({len(data)} bytes)"
        return self._call(
            "upload",
            "POST",
            "/upload",
            described,
            data={"id": report_id},
            files={"file": (file_name, data, "application/octet-stream")},
        )

    def fileinfo(self, details_xml: str) -> Exchange:
        return self._call(
            "fileinfo",
            "POST",
            "/fileinfo",
            details_xml,
            content=details_xml.encode("utf-8"),
            headers={"Content-Type": "text/xml; charset=utf-8"},
        )

    def finish(self, report_id: str) -> Exchange:
        return self._call("finish", "POST", "/finish", f"id={report_id}", data={"id": report_id})

    def retract(self, report_id: str) -> Exchange:
        return self._call("retract", "POST", "/retract", f"id={report_id}", data={"id": report_id})

    def _call(
        self, step: str, method: str, path: str, described: str, **kwargs: object
    ) -> Exchange:
        try:
            response = self._client.request(method, self.base_url + path, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            return Exchange(step, described, None, None, None, error=f"{type(exc).__name__}: {exc}")
        text = response.text
        try:
            fields = parse_response(text)
            code: int | None = int(fields["responseCode"])
        except (ET.ParseError, KeyError, ValueError):
            return Exchange(
                step,
                described,
                response.status_code,
                text,
                None,
                error=f"HTTP {response.status_code} without a CyberTipline answer",
            )
        return Exchange(
            step,
            described,
            response.status_code,
            text,
            code,
            description=fields.get("responseDescription"),
            report_id=fields.get("reportId"),
            file_id=fields.get("fileId"),
            hash=fields.get("hash"),
        )
