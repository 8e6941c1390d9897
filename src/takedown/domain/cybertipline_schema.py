"""NCMEC's report schema as rules, to check a report before it leaves. Pure: no I/O.

NCMEC validates every ``/submit`` body (``<report>``) and every ``/fileinfo`` body
(``<fileDetails>``) against its XSD and answers 4100 for the first violation; a
rejected report then waits for a person while the clock of 18 U.S.C. 2258A runs.
:func:`check_report_xml` and :func:`check_file_details_xml` apply the same rules here
first, so a report that would be refused never goes out and the legal queue says
which element broke which rule.

What is checked, per element type (the tables below, in the schema's order):
- the children form the type's ``xs:sequence``: no unknown element, none out of order,
  each mandatory one present (``minOccurs``), none repeated beyond ``maxOccurs``;
- a choice (``internetDetails``) holds exactly one of its alternatives;
- simple content: enumerations (incidentType, eventName, fileRelevance,
  industryClassification, hashType), ``xs:boolean`` (true/false/1/0),
  ``xs:dateTime`` (with a valid date and time; a zone is allowed, and Takedown always
  sends one), report numbers (digits), integers, non-empty text; flag elements are
  empty (or a boolean); an element of simple content has no child elements;
- known attributes: ``thirdPartyHostedContent``/``verified`` are booleans,
  ``hashType`` is an enumeration;
- the reporting person carries an email.

The tables are written from NCMEC's published element lists (docs/integrations/
cybertipline.md) and kept independent of the test suite's protocol server, so a
test can find the two disagreeing. Parts of the schema Takedown never sends
(``lawEnforcement``, addresses, device ids, other incident kinds…) are accepted as
they come (``ANY``) rather than half-modelled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from xml.etree import ElementTree as ET

UNBOUNDED = -1


@dataclass(frozen=True)
class Child:
    name: str
    type: str  # a key of COMPLEX, or a simple type below
    min: int = 0
    max: int = 1  # UNBOUNDED for a repeated element


@dataclass(frozen=True)
class Problem:
    """The first rule a document breaks: where (an element path) and what."""

    path: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}: {self.rule}"


# -- simple types -----------------------------------------------------------------------
STRING, BOOLEAN, DATETIME, DATE, INTEGER, REPORT_NUMBER, FLAG, ANY = (
    "string",
    "boolean",
    "dateTime",
    "date",
    "integer",
    "reportNumber",
    "flag",
    "any",
)

ENUMERATIONS: dict[str, frozenset[str]] = {
    "incidentType": frozenset(
        {
            "Child Pornography (possession, manufacture, and distribution)",
            "Child Sex Trafficking",
            "Child Sex Tourism",
            "Child Sexual Molestation",
            "Misleading Domain Name",
            "Misleading Words or Digital Images on the Internet",
            "Online Enticement of Children for Sexual Acts",
            "Unsolicited Obscene Material Sent to a Child",
        }
    ),
    "eventName": frozenset({"Login", "Registration", "Purchase", "Upload", "Other", "Unknown"}),
    "fileRelevance": frozenset({"Reported", "Supplemental Reported"}),
    "industryClassification": frozenset({"A1", "A2", "B1", "B2"}),
    "hashType": frozenset({"MD5", "SHA1", "SHA256"}),
}
ATTRIBUTES: dict[str, dict[str, str]] = {
    "webPageIncident": {"thirdPartyHostedContent": BOOLEAN},
    "email": {"verified": BOOLEAN},
    "originalFileHash": {"hashType": "enum:hashType"},
}

_DATETIME = re.compile(
    r"-?(\d{4,})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-](\d{2}):(\d{2}))?"
)
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(Z|[+-]\d{2}:\d{2})?")


def _person(email_min: int) -> tuple[Child, ...]:
    return (
        Child("firstName", STRING),
        Child("lastName", STRING),
        Child("phone", STRING, 0, UNBOUNDED),
        Child("email", STRING, email_min, UNBOUNDED),
        Child("address", ANY, 0, UNBOUNDED),
        Child("age", INTEGER),
        Child("dateOfBirth", DATE),
    )


def _ip_event() -> Child:
    return Child("ipCaptureEvent", "ipCaptureEvent", 0, UNBOUNDED)


# -- complex types: each an xs:sequence, in order ------------------------------------------
COMPLEX: dict[str, tuple[Child, ...]] = {
    "report": (
        Child("incidentSummary", "incidentSummary", 1),
        Child("internetDetails", "internetDetails", 0, UNBOUNDED),
        Child("lawEnforcement", ANY),
        Child("reporter", "reporter", 1),
        Child("personOrUserReported", "personOrUserReported"),
        Child("intendedRecipient", ANY, 0, UNBOUNDED),
        Child("victim", "victim", 0, UNBOUNDED),
        Child("additionalInfo", STRING),
    ),
    "incidentSummary": (
        Child("incidentType", "enum:incidentType", 1),
        Child("platform", STRING),
        Child("escalateToHighPriority", STRING),
        Child("reportAnnotations", "reportAnnotations"),
        Child("incidentDateTime", DATETIME, 1),
        Child("incidentDateTimeDescription", STRING),
    ),
    "reportAnnotations": (
        Child("sextortion", FLAG),
        Child("csamSolicitation", FLAG),
        Child("minorToMinorInteraction", FLAG),
        Child("spam", FLAG),
    ),
    "webPageIncident": (
        Child("url", STRING, 1, UNBOUNDED),
        Child("additionalInfo", STRING),
    ),
    "reporter": (
        Child("reportingPerson", "reportingPerson", 1),
        Child("contactPerson", "person"),
        Child("companyTemplate", STRING),
        Child("termsOfService", STRING),
        Child("legalURL", STRING),
    ),
    "reportingPerson": _person(email_min=1),
    "person": _person(email_min=0),
    "personOrUserReported": (
        Child("personOrUserReportedPerson", "person"),
        Child("espIdentifier", STRING),
        Child("espService", STRING),
        Child("compromisedAccount", BOOLEAN),
        Child("screenName", STRING),
        Child("displayName", STRING, 0, UNBOUNDED),
        Child("profileUrl", STRING, 0, UNBOUNDED),
        Child("profileBio", STRING),
        _ip_event(),
        Child("deviceId", ANY, 0, UNBOUNDED),
        Child("thirdPartyUserReported", BOOLEAN),
        Child("priorCTReports", REPORT_NUMBER, 0, UNBOUNDED),
        Child("groupIdentifier", STRING),
        Child("accountTemporarilyDisabled", BOOLEAN),
        Child("accountPermanentlyDisabled", BOOLEAN),
        Child("estimatedLocation", ANY),
        Child("allEmailsReported", BOOLEAN),
        Child("associatedAccount", ANY, 0, UNBOUNDED),
        Child("additionalInfo", STRING),
    ),
    "victim": (
        Child("victimPerson", "person"),
        Child("espIdentifier", STRING),
        Child("espService", STRING),
        Child("screenName", STRING),
        Child("displayName", STRING, 0, UNBOUNDED),
        Child("profileUrl", STRING, 0, UNBOUNDED),
        _ip_event(),
        Child("deviceId", ANY, 0, UNBOUNDED),
        Child("schoolName", STRING),
        Child("priorCTReports", REPORT_NUMBER, 0, UNBOUNDED),
        Child("estimatedLocation", ANY),
        Child("additionalInfo", STRING),
    ),
    "ipCaptureEvent": (
        Child("ipAddress", STRING, 1),
        Child("eventName", "enum:eventName"),
        Child("dateTime", DATETIME),
        Child("possibleProxy", BOOLEAN),
        Child("port", INTEGER),
    ),
    "fileDetails": (
        Child("reportId", REPORT_NUMBER, 1),
        Child("fileId", STRING, 1),
        Child("fileName", STRING),
        Child("originalFileName", STRING),
        Child("uploadedToEspTimestamp", DATETIME),
        Child("locationOfFile", STRING),
        Child("fileViewedByEsp", BOOLEAN),
        Child("exifViewedByEsp", BOOLEAN),
        Child("publiclyAvailable", BOOLEAN),
        Child("fileRelevance", "enum:fileRelevance"),
        Child("fileAnnotations", "fileAnnotations"),
        Child("industryClassification", "enum:industryClassification"),
        Child("originalFileHash", STRING, 0, UNBOUNDED),
        _ip_event(),
        Child("deviceId", ANY, 0, UNBOUNDED),
        Child("details", STRING, 0, UNBOUNDED),
        Child("additionalInfo", STRING),
    ),
    "fileAnnotations": tuple(
        Child(name, FLAG)
        for name in (
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
        )
    ),
}
# An xs:choice: exactly one of these, and only webPageIncident is modelled in depth.
CHOICES: dict[str, dict[str, str]] = {
    "internetDetails": {
        "webPageIncident": "webPageIncident",
        "emailIncident": ANY,
        "newsgroupIncident": ANY,
        "chatImIncident": ANY,
        "onlineGamingIncident": ANY,
        "cellPhoneIncident": ANY,
        "nonInternetIncident": ANY,
        "peer2peerIncident": ANY,
    }
}


# -- checking ---------------------------------------------------------------------------
def check_report_xml(xml: str | bytes) -> Problem | None:
    """The first schema rule a ``<report>`` breaks, or None when it is valid."""
    return _check_document(xml, "report")


def check_file_details_xml(xml: str | bytes) -> Problem | None:
    """The first schema rule a ``<fileDetails>`` breaks, or None when it is valid."""
    return _check_document(xml, "fileDetails")


def _check_document(xml: str | bytes, root_name: str) -> Problem | None:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as err:
        return Problem("/", f"not well-formed XML ({err})")
    if root.tag != root_name:
        return Problem(f"/{root.tag}", f"the document element must be {root_name}")
    return _check(root, root_name, f"/{root_name}")


def _check(el: ET.Element, type_name: str, path: str) -> Problem | None:
    if type_name == ANY:
        return None
    attrs = ATTRIBUTES.get(el.tag, {})
    for attr, value in el.attrib.items():
        if attr in attrs:
            problem = _simple(value, attrs[attr], f"{path}/@{attr}")
            if problem:
                return problem
    if type_name in CHOICES:
        return _choice(el, CHOICES[type_name], path)
    if type_name in COMPLEX:
        return _sequence(el, COMPLEX[type_name], path)
    if len(el):
        return Problem(path, f"has simple content; child element {el[0].tag} is not allowed")
    return _simple(el.text or "", type_name, path)


def _sequence(el: ET.Element, children: tuple[Child, ...], path: str) -> Problem | None:
    if (el.text or "").strip():
        return Problem(path, "holds elements, not text")
    index = {c.name: i for i, c in enumerate(children)}
    counts = [0] * len(children)
    last = -1
    for child in el:
        pos = index.get(child.tag)
        if pos is None:
            return Problem(f"{path}/{child.tag}", f"is not an element of {el.tag}")
        if pos < last:
            after = children[last].name
            return Problem(
                f"{path}/{child.tag}", f"out of order: must come before {after} (xs:sequence)"
            )
        last = pos
        counts[pos] += 1
        spec = children[pos]
        if spec.max != UNBOUNDED and counts[pos] > spec.max:
            return Problem(f"{path}/{child.tag}", f"at most {spec.max} allowed")
        problem = _check(child, spec.type, f"{path}/{child.tag}")
        if problem:
            return problem
    for spec, count in zip(children, counts, strict=True):
        if count < spec.min:
            return Problem(f"{path}/{spec.name}", "mandatory element missing")
    return None


def _choice(el: ET.Element, options: dict[str, str], path: str) -> Problem | None:
    if len(el) != 1:
        return Problem(path, f"must hold exactly one of {', '.join(options)}")
    child = el[0]
    if child.tag not in options:
        return Problem(f"{path}/{child.tag}", f"is not an element of {el.tag}")
    return _check(child, options[child.tag], f"{path}/{child.tag}")


def _simple(text: str, type_name: str, path: str) -> Problem | None:
    value = text.strip()
    if type_name.startswith("enum:"):
        allowed = ENUMERATIONS[type_name.removeprefix("enum:")]
        if text not in allowed:
            return Problem(path, f"{text[:60]!r} is not one of the schema's values")
        return None
    if type_name == STRING:
        return None if value else Problem(path, "empty: leave the element out instead")
    if type_name == FLAG:
        ok = value in ("", "true", "false", "1", "0")
        return None if ok else Problem(path, "a flag element is empty")
    if type_name == BOOLEAN:
        ok = value in ("true", "false", "1", "0")
        return None if ok else Problem(path, f"{text[:20]!r} is not an xs:boolean")
    if type_name == INTEGER:
        ok = re.fullmatch(r"[+-]?\d+", value) is not None
        return None if ok else Problem(path, f"{text[:20]!r} is not an integer")
    if type_name == REPORT_NUMBER:
        ok = re.fullmatch(r"\d{1,19}", value) is not None
        return None if ok else Problem(path, f"{text[:30]!r} is not a report number")
    if type_name == DATETIME:
        return None if _is_datetime(value) else Problem(path, f"{text[:40]!r} is no xs:dateTime")
    if type_name == DATE:
        return None if _is_date(value) else Problem(path, f"{text[:40]!r} is no xs:date")
    raise AssertionError(f"unknown simple type {type_name}")


def _is_datetime(value: str) -> bool:
    m = _DATETIME.fullmatch(value)
    if m is None:
        return False
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    if m.group(8) and m.group(8) != "Z" and (int(m.group(9)) > 14 or int(m.group(10)) > 59):
        return False
    if hour == 24 and minute == 0 and second == 0 and not m.group(7):
        hour = 0  # xs:dateTime allows 24:00:00 for the end of a day
    try:
        datetime(year, month, day, hour, minute, second)
    except ValueError:
        return False
    return True


def _is_date(value: str) -> bool:
    m = _DATE.fullmatch(value)
    if m is None:
        return False
    try:
        date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return False
    return True
