"""A local CyberTipline server that speaks NCMEC's documented protocol, for tests.

Endpoints /status, /submit, /upload, /fileinfo, /finish, /retract under /ispws; HTTP
Basic auth; XML answers with NCMEC's response codes. It validates report and
fileDetails XML against the schema (as listed in REQUIREMENTS.md and in clients
generated from NCMEC's XSD): the element sequences, mandatory elements, enumerations,
xs:boolean and xs:dateTime values, simple-content elements (``priorCTReports`` is a
repeated element holding the report number, ``escalateToHighPriority`` the reason's
text) — an unknown element, one out of order or a bad value is a 4100, unparseable
XML a 4110, like the real service. The tables here are the test's own reading of the
schema, kept apart from ``takedown.domain.cybertipline_schema``. ``fail_next`` injects
failures per step (an HTTP status with code 1000, or a given response code),
``expire(report_id)`` drops an open report.
"""

from __future__ import annotations

import base64
import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs
from xml.etree import ElementTree as ET

USER, PASSWORD = "esp-test", "test-password-1"

SEQUENCES: dict[str, list[str]] = {
    "report": [
        "incidentSummary",
        "internetDetails",
        "lawEnforcement",
        "reporter",
        "personOrUserReported",
        "intendedRecipient",
        "victim",
        "additionalInfo",
    ],
    "incidentSummary": [
        "incidentType",
        "platform",
        "escalateToHighPriority",
        "reportAnnotations",
        "incidentDateTime",
        "incidentDateTimeDescription",
    ],
    "reportAnnotations": ["sextortion", "csamSolicitation", "minorToMinorInteraction", "spam"],
    "internetDetails": ["webPageIncident", "chatImIncident"],
    "webPageIncident": ["url", "additionalInfo"],
    "reporter": [
        "reportingPerson",
        "contactPerson",
        "companyTemplate",
        "termsOfService",
        "legalURL",
    ],
    "reportingPerson": ["firstName", "lastName", "phone", "email", "address", "age", "dateOfBirth"],
    "victimPerson": ["firstName", "lastName", "phone", "email", "address", "age", "dateOfBirth"],
    "contactPerson": ["firstName", "lastName", "phone", "email", "address", "age", "dateOfBirth"],
    "personOrUserReportedPerson": [
        "firstName",
        "lastName",
        "phone",
        "email",
        "address",
        "age",
        "dateOfBirth",
    ],
    "personOrUserReported": [
        "personOrUserReportedPerson",
        "espIdentifier",
        "espService",
        "compromisedAccount",
        "screenName",
        "displayName",
        "profileUrl",
        "profileBio",
        "ipCaptureEvent",
        "deviceId",
        "thirdPartyUserReported",
        "priorCTReports",
        "groupIdentifier",
        "accountTemporarilyDisabled",
        "accountPermanentlyDisabled",
        "estimatedLocation",
        "allEmailsReported",
        "associatedAccount",
        "additionalInfo",
    ],
    "ipCaptureEvent": ["ipAddress", "eventName", "dateTime", "possibleProxy", "port"],
    "victim": [
        "victimPerson",
        "espIdentifier",
        "espService",
        "screenName",
        "displayName",
        "profileUrl",
        "ipCaptureEvent",
        "deviceId",
        "schoolName",
        "priorCTReports",
        "estimatedLocation",
        "additionalInfo",
    ],
    "fileDetails": [
        "reportId",
        "fileId",
        "fileName",
        "originalFileName",
        "uploadedToEspTimestamp",
        "locationOfFile",
        "fileViewedByEsp",
        "exifViewedByEsp",
        "publiclyAvailable",
        "fileRelevance",
        "fileAnnotations",
        "industryClassification",
        "originalFileHash",
        "ipCaptureEvent",
        "deviceId",
        "details",
        "additionalInfo",
    ],
    "fileAnnotations": [
        "animeDrawingVirtualHentai",
        "potentialMeme",
        "viral",
        "possibleSelfProduction",
        "physicalHarm",
        "violenceGore",
        "bestiality",
        "liveStreaming",
        "infant",
        "generativeAi",
    ],
}
REQUIRED = {
    "report": ["incidentSummary", "reporter"],
    "incidentSummary": ["incidentType", "incidentDateTime"],
    "reporter": ["reportingPerson"],
    "reportingPerson": ["email"],
    "webPageIncident": ["url"],
    "ipCaptureEvent": ["ipAddress"],
    "fileDetails": ["reportId", "fileId"],
}
# Elements whose content the server does not model (accepted as they come).
OPAQUE = {
    "lawEnforcement",
    "intendedRecipient",
    "address",
    "deviceId",
    "estimatedLocation",
    "associatedAccount",
    "chatImIncident",
}
BOOLEAN = {
    "fileViewedByEsp",
    "exifViewedByEsp",
    "publiclyAvailable",
    "compromisedAccount",
    "thirdPartyUserReported",
    "accountTemporarilyDisabled",
    "accountPermanentlyDisabled",
    "allEmailsReported",
    "possibleProxy",
}
XS_BOOLEAN = ("true", "false", "1", "0")
DATETIME = {"incidentDateTime", "uploadedToEspTimestamp", "dateTime"}
REPORT_NUMBER = {"priorCTReports", "reportId"}  # NCMEC report ids are numbers
NOT_EMPTY = {"escalateToHighPriority", "incidentType", "url", "email", "ipAddress", "fileId"}
ENUMS: dict[str, set[str]] = {
    "incidentType": {
        "Child Pornography (possession, manufacture, and distribution)",
        "Child Sex Trafficking",
        "Child Sex Tourism",
        "Child Sexual Molestation",
        "Misleading Domain Name",
        "Misleading Words or Digital Images on the Internet",
        "Online Enticement of Children for Sexual Acts",
        "Unsolicited Obscene Material Sent to a Child",
    },
    "eventName": {"Login", "Registration", "Purchase", "Upload", "Other", "Unknown"},
    "fileRelevance": {"Reported", "Supplemental Reported"},
    "industryClassification": {"A1", "A2", "B1", "B2"},
}
ATTRIBUTE_VALUES: dict[tuple[str, str], tuple[str, ...]] = {
    ("webPageIncident", "thirdPartyHostedContent"): XS_BOOLEAN,
    ("email", "verified"): XS_BOOLEAN,
    ("originalFileHash", "hashType"): ("MD5", "SHA1", "SHA256"),
}


def _xs_datetime(text: str) -> bool:
    from datetime import datetime

    body = text[:-1] if text.endswith("Z") else text
    if len(body) > 19 and body[-6] in "+-" and body[-3] == ":":
        body = body[:-6]  # a numeric zone
    try:
        datetime.strptime(body.split(".")[0], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return False
    return "." not in body or body.rsplit(".", 1)[1].isdigit()


def check_value(el: ET.Element) -> str | None:
    """The simple-content rules of one element (its text and attributes)."""
    text = el.text or ""
    for (tag, attr), allowed in ATTRIBUTE_VALUES.items():
        if el.tag == tag and attr in el.attrib and el.attrib[attr] not in allowed:
            return f"{attr} of {el.tag} is not valid"
    if el.tag in SEQUENCES or el.tag in OPAQUE or el.tag == "internetDetails":
        return None
    if len(el):
        return f"{el.tag} has simple content, not {el[0].tag}"
    if el.tag in ENUMS and text not in ENUMS[el.tag]:
        return f"{el.tag} value {text[:60]!r} is not allowed"
    if el.tag in BOOLEAN and text.strip() not in XS_BOOLEAN:
        return f"{el.tag} is not a boolean"
    if el.tag in DATETIME and not _xs_datetime(text.strip()):
        return f"{el.tag} is not an xs:dateTime"
    if el.tag in REPORT_NUMBER and not text.strip().isdigit():
        return f"{el.tag} is not a report number"
    if el.tag in NOT_EMPTY and not text.strip():
        return f"{el.tag} is empty"
    return None


def check_sequence(el: ET.Element) -> str | None:
    """None when ``el`` and its descendants follow the schema; else the problem."""
    if el.tag in OPAQUE:
        return None
    order = SEQUENCES.get(el.tag)
    if order is not None:
        last = -1
        for child in el:
            if child.tag not in order:
                return f"unexpected element {child.tag} in {el.tag}"
            pos = order.index(child.tag)
            if pos < last:
                return f"{child.tag} out of order in {el.tag}"
            last = pos
        for need in REQUIRED.get(el.tag, []):
            if el.find(need) is None:
                return f"{el.tag} lacks {need}"
    problem = check_value(el)
    if problem:
        return problem
    for child in el:
        problem = check_sequence(child)
        if problem:
            return problem
    return None


class NcmecState:
    def __init__(self) -> None:
        self.ids = itertools.count(4_000_001)
        self.reports: dict[str, dict[str, object]] = {}
        self.requests: list[tuple[str, bytes]] = []
        self.fail_next: dict[str, list[int]] = {}  # step -> HTTP statuses or codes ≥ 1000
        self.lock = threading.Lock()

    def expire(self, report_id: str) -> None:
        self.reports.pop(report_id, None)

    def finished(self) -> list[dict[str, object]]:
        return [r for r in self.reports.values() if r["state"] == "finished"]


def _answer(code: int, description: str, **fields: str) -> bytes:
    extra = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items())
    return (
        '<?xml version="1.0" encoding="UTF-8"?><reportResponse>'
        f"<responseCode>{code}</responseCode><responseDescription>{description}"
        f"</responseDescription>{extra}</reportResponse>"
    ).encode()


class _Handler(BaseHTTPRequestHandler):
    state: NcmecState

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, http: int, body: bytes) -> None:
        self.send_response(http)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _authorised(self) -> bool:
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self._send(401, _answer(2000, "Authentication Required"))
            return False
        return True

    def do_GET(self) -> None:  # noqa: N802
        if not self._authorised():
            return
        if self.path == "/ispws/status":
            self._send(200, _answer(0, f"Remote User : {USER}"))
        else:
            self._send(404, b"not found")

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        step = self.path.removeprefix("/ispws/")
        with self.state.lock:
            self.state.requests.append((step, body))
        if not self._authorised():
            return
        queued = self.state.fail_next.get(step)
        if queued:
            forced = queued.pop(0)
            if forced < 1000:
                self._send(forced, b"<html>Service Unavailable</html>")
            else:
                self._send(200, _answer(forced, "forced by the test"))
            return
        with self.state.lock:
            http, answer = getattr(self, "_" + step)(body)
        self._send(http, answer)

    def _form(self, body: bytes) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(body.decode()).items()}

    def _report(self, report_id: str) -> dict[str, object] | None:
        return self.state.reports.get(report_id)

    def _submit(self, body: bytes) -> tuple[int, bytes]:
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            return 200, _answer(4110, "Malformed XML")
        if root.tag != "report":
            return 200, _answer(4100, "Validation Failed: root is not report")
        problem = check_sequence(root)
        if problem:
            return 200, _answer(4100, f"Validation Failed: {problem}")
        rid = str(next(self.state.ids))
        self.state.reports[rid] = {"state": "open", "xml": body, "files": {}, "fileinfo": []}
        return 200, _answer(0, "Success", reportId=rid)

    def _upload(self, body: bytes) -> tuple[int, bytes]:
        head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
        msg = BytesParser(policy=HTTP).parsebytes(head + body)
        fields: dict[str, bytes] = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields[str(name)] = part.get_payload(decode=True) or b""
        rid = fields.get("id", b"").decode()
        report = self._report(rid)
        if report is None:
            return 200, _answer(5001, "Report does not exist")
        if report["state"] != "open":
            return 200, _answer(5102 if report["state"] == "finished" else 5101, "Closed")
        if "file" not in fields:
            return 200, _answer(4100, "Validation Failed: no file")
        import hashlib

        fid = f"f{len(report['files']) + 1}-{rid}"  # type: ignore[arg-type]
        report["files"][fid] = fields["file"]  # type: ignore[index]
        return 200, _answer(
            0, "Success", reportId=rid, fileId=fid, hash=hashlib.md5(fields["file"]).hexdigest()
        )

    def _fileinfo(self, body: bytes) -> tuple[int, bytes]:
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            return 200, _answer(4110, "Malformed XML")
        problem = check_sequence(root) if root.tag == "fileDetails" else "root is not fileDetails"
        if problem:
            return 200, _answer(4100, f"Validation Failed: {problem}")
        report = self._report(root.findtext("reportId") or "")
        if report is None:
            return 200, _answer(5001, "Report does not exist")
        if root.findtext("fileId") not in report["files"]:  # type: ignore[operator]
            return 200, _answer(4100, "Validation Failed: unknown fileId")
        report["fileinfo"].append(body)  # type: ignore[attr-defined]
        return 200, _answer(0, "Success")

    def _finish(self, body: bytes) -> tuple[int, bytes]:
        rid = self._form(body).get("id", "")
        report = self._report(rid)
        if report is None:
            return 200, _answer(5001, "Report does not exist")
        if report["state"] == "finished":
            return 200, _answer(5102, "Report already finished")
        if report["state"] == "retracted":
            return 200, _answer(5101, "Report already retracted")
        report["state"] = "finished"
        return 200, _answer(0, "Success", reportId=rid)

    def _retract(self, body: bytes) -> tuple[int, bytes]:
        rid = self._form(body).get("id", "")
        report = self._report(rid)
        if report is None:
            return 200, _answer(5001, "Report does not exist")
        if report["state"] == "finished":
            return 200, _answer(5102, "Report already finished")
        if report["state"] == "retracted":
            return 200, _answer(5101, "Report already retracted")
        report["state"] = "retracted"
        return 200, _answer(0, "Success")


@contextmanager
def ncmec_server() -> Iterator[tuple[str, NcmecState]]:
    state = NcmecState()
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/ispws", state
    finally:
        server.shutdown()
        server.server_close()
