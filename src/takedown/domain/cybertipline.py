"""CyberTipline reports as NCMEC's XML, in the schema's element order. Pure: no I/O.

Why the order is code and not a dictionary: NCMEC validates each report against an
XSD whose types are ``xs:sequence``s, so an element in the wrong place fails the whole
report with code 4100. Each builder below appends children in the order the schema
lists them (docs/integrations/cybertipline.md repeats the list), and leaves out what
is unknown rather than sending empty elements.

Rules the schema, the law and the courts add:
- ``fileViewedByEsp`` is true only when a named person at the company opened the
  **whole** file (US v. Wilson, 9th Cir. 2021): :func:`viewed_in_full` decides it from
  the audit trail's ``media.viewed`` events, never from a hash match, and by default
  only from a view of *the reported account's own* copy (:class:`ViewedScope`).
- ``escalateToHighPriority`` is not a flag: NCMEC escalates on any text in it and reads
  the text as the reason. It is sent only with a reason a person recorded
  (:class:`EscalationReason`, :func:`escalation_text`), never ``true``/``false``.
- ``priorCTReports`` is a repeated element whose text is the earlier report's number.
- ``industryClassification`` and ``potentialMeme`` only on files whose relevance is
  ``Reported``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from xml.etree import ElementTree as ET

from takedown.domain.cases import FileAnnotation, IndustryClassification
from takedown.domain.reports import Category, ReporterRole
from takedown.errors import Conflict, InvalidRequest

SCHEMA_LOCATION = "https://report.cybertip.org/ispws/xsd"


class IncidentType(StrEnum):
    CHILD_PORNOGRAPHY = "Child Pornography (possession, manufacture, and distribution)"
    CHILD_SEX_TRAFFICKING = "Child Sex Trafficking"
    CHILD_SEX_TOURISM = "Child Sex Tourism"
    CHILD_SEXUAL_MOLESTATION = "Child Sexual Molestation"
    MISLEADING_DOMAIN_NAME = "Misleading Domain Name"
    MISLEADING_WORDS = "Misleading Words or Digital Images on the Internet"
    ONLINE_ENTICEMENT = "Online Enticement of Children for Sexual Acts"
    UNSOLICITED_OBSCENE = "Unsolicited Obscene Material Sent to a Child"


class ReportAnnotation(StrEnum):
    SEXTORTION = "sextortion"
    CSAM_SOLICITATION = "csamSolicitation"
    MINOR_TO_MINOR = "minorToMinorInteraction"
    SPAM = "spam"


class FileRelevance(StrEnum):
    REPORTED = "Reported"
    SUPPLEMENTAL = "Supplemental Reported"


class IpEvent(StrEnum):
    LOGIN = "Login"
    REGISTRATION = "Registration"
    PURCHASE = "Purchase"
    UPLOAD = "Upload"
    OTHER = "Other"
    UNKNOWN = "Unknown"


class EscalationReason(StrEnum):
    """Why a report asks NCMEC for high priority: a person's judgement, never a default."""

    IMMINENT_DANGER = "imminent_danger"
    CHILD_IDENTIFIABLE = "child_identifiable"
    ONGOING_ABUSE = "ongoing_abuse"


ESCALATION_SENTENCES: dict[EscalationReason, str] = {
    EscalationReason.IMMINENT_DANGER: "A child appears to be in imminent danger.",
    EscalationReason.CHILD_IDENTIFIABLE: "The child depicted appears to be identifiable.",
    EscalationReason.ONGOING_ABUSE: "The abuse or exploitation appears to be ongoing.",
}
ESCALATION_NOTE_MAX = 500


class ViewedScope(StrEnum):
    """Which full views make ``fileViewedByEsp`` true in one account's report.

    ``account`` (default): only a view of the file *as posted by that account* (one of
    its items), per United States v. Wilson (9th Cir. 2021) — the government's view
    exceeds the private search when nobody at the provider viewed that person's own
    file; a hash match or a view of someone else's identical copy is not enough.
    ``file``: any full view of the same bytes counts (some circuits, e.g. the 6th in
    United States v. Miller, 2020, accepted an earlier view of an identical file).
    Counsel chooses (``TAKEDOWN_NCMEC_VIEWED_SCOPE``)."""

    ACCOUNT = "account"
    FILE = "file"


REPORTABLE = frozenset({Category.CSAM, Category.MINOR_EXPLOITATION})

# The registry's IP event names (lowercase, as the platform sends them) as NCMEC's.
IP_EVENT_NAMES = {
    "registration": IpEvent.REGISTRATION,
    "login": IpEvent.LOGIN,
    "purchase": IpEvent.PURCHASE,
    "upload": IpEvent.UPLOAD,
    "other": IpEvent.OTHER,
}


def ip_event(name: str) -> IpEvent:
    return IP_EVENT_NAMES.get(name, IpEvent.UNKNOWN)


def publicly_available(when_found: Iterable[bool | None]) -> bool | None:
    """Was the file publicly available, from each reported item's visibility when it
    joined the case: true when any was public, false when all were known and none
    was, None (the element left out) when it is not known."""
    seen = list(when_found)
    if any(v is True for v in seen):
        return True
    if seen and all(v is False for v in seen):
        return False
    return None


@dataclass(frozen=True)
class Person:
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    email: str | None = None
    email_verified: bool | None = None
    age: int | None = None
    date_of_birth: date | None = None


@dataclass(frozen=True)
class IpCapture:
    ip_address: str
    event_name: IpEvent
    date_time: datetime | None = None
    port: int | None = None


@dataclass(frozen=True)
class Incident:
    incident_type: IncidentType
    platform: str | None
    escalate_to_high_priority: str | None  # the reason sentence; None: not escalated
    annotations: tuple[ReportAnnotation, ...]
    date_time: datetime
    date_time_description: str | None = None


@dataclass(frozen=True)
class WebPageIncident:
    urls: tuple[str, ...]
    additional_info: str | None = None
    third_party_hosted: bool = False


@dataclass(frozen=True)
class Reporter:
    reporting_person: Person  # email required
    contact_person: Person | None = None
    terms_of_service: str | None = None
    legal_url: str | None = None


@dataclass(frozen=True)
class ReportedUser:
    esp_identifier: str | None = None
    esp_service: str | None = None
    screen_name: str | None = None
    display_name: str | None = None
    profile_url: str | None = None
    ip_captures: tuple[IpCapture, ...] = ()
    prior_report_ids: tuple[str, ...] = ()
    temporarily_disabled: bool | None = None
    permanently_disabled: bool | None = None
    additional_info: str | None = None


@dataclass(frozen=True)
class Victim:
    person: Person | None = None
    esp_identifier: str | None = None
    screen_name: str | None = None
    additional_info: str | None = None
    prior_report_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Report:
    incident: Incident
    reporter: Reporter
    internet_details: tuple[WebPageIncident, ...] = ()
    reported_user: ReportedUser | None = None
    victims: tuple[Victim, ...] = ()
    additional_info: str | None = None


@dataclass(frozen=True)
class FileReport:
    file_name: str
    original_file_name: str | None
    uploaded_at: datetime | None
    location: str | None
    viewed_by_esp: bool
    publicly_available: bool | None
    relevance: FileRelevance = FileRelevance.REPORTED
    annotations: tuple[FileAnnotation, ...] = ()
    classification: IndustryClassification | None = None
    original_hash: str | None = None
    hash_type: str = "MD5"
    exif_viewed_by_esp: bool = False
    ip_captures: tuple[IpCapture, ...] = ()
    additional_info: str | None = None
    details: dict[str, str] = field(default_factory=dict)


# -- decisions the report depends on ---------------------------------------------------
def incident_type_for(categories: Iterable[Category]) -> IncidentType:
    """Apparent CSAM first; enticement (sextortion, grooming) when that is all there is,
    which is how a chat-only case without media gets reported."""
    cats = set(categories)
    if Category.CSAM in cats:
        return IncidentType.CHILD_PORNOGRAPHY
    if Category.MINOR_EXPLOITATION in cats:
        return IncidentType.ONLINE_ENTICEMENT
    raise Conflict(
        "Only child sexual abuse material and the sexual exploitation of minors are "
        "reported to the CyberTipline.",
        code="not_reportable",
    )


def annotations_for(categories: Iterable[Category]) -> tuple[ReportAnnotation, ...]:
    return (ReportAnnotation.SEXTORTION,) if Category.MINOR_EXPLOITATION in set(categories) else ()


def suggest_escalation(categories: Iterable[Category], roles: Iterable[ReporterRole]) -> bool:
    """A child may be at risk now: ongoing exploitation (sextortion, enticement), or the
    depicted person, a parent or the police came forward. Legal staff can override."""
    if Category.MINOR_EXPLOITATION in set(categories):
        return True
    urgent = {
        ReporterRole.PERSON_DEPICTED,
        ReporterRole.PARENT_GUARDIAN,
        ReporterRole.LAW_ENFORCEMENT,
    }
    return bool(urgent & set(roles))


def escalation_text(reason: EscalationReason | None, note: str | None = None) -> str | None:
    """The ``escalateToHighPriority`` text: the reason as a sentence, then the person's
    note. None (no element at all) without a reason: a suggestion is not a reason."""
    if reason is None:
        if note and note.strip():
            raise InvalidRequest(
                "An escalation note needs an escalation reason "
                f"({', '.join(r.value for r in EscalationReason)}).",
                code="escalation_reason_required",
            )
        return None
    text = ESCALATION_SENTENCES[reason]
    extra = " ".join((note or "").split())
    if len(extra) > ESCALATION_NOTE_MAX:
        raise InvalidRequest(
            f"The escalation note is at most {ESCALATION_NOTE_MAX} characters.",
            code="invalid_escalation_note",
        )
    return f"{text} {extra}" if extra else text


def viewed_in_full(
    views: Iterable[tuple[str, Mapping[str, object]]],
    scope: ViewedScope = ViewedScope.FILE,
    items: Iterable[str] = (),
) -> bool:
    """True when any ``media.viewed`` event (actor, details) is a full view by a named
    person: actor ``user:<username>`` and ``details["full"] is True``. Machines (API
    keys, ``system``) and partial views (a blurred preview, a thumbnail) never count.

    Under :attr:`ViewedScope.ACCOUNT` the view must also name (``details["item"]``) one
    of ``items``: the reported account's items carrying the file. A view that names no
    item (older events) is not attributable to anyone's copy and counts only under
    :attr:`ViewedScope.FILE`."""
    own = set(items)
    for actor, details in views:
        kind, _, name = actor.partition(":")
        if not (kind == "user" and name.strip() and details.get("full") is True):
            continue
        if scope is ViewedScope.FILE or details.get("item") in own:
            return True
    return False


def prior_reports(found: Iterable[tuple[datetime | None, str | None]]) -> tuple[str, ...]:
    """Earlier finished reports (finished at, NCMEC report id) named once each, oldest
    first; reports without a number are left out."""
    seen: dict[str, datetime] = {}
    floor = datetime.min.replace(tzinfo=UTC)
    for at, rid in found:
        rid = (rid or "").strip()
        if not rid:
            continue
        when = at if at is not None else floor
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if rid not in seen or when < seen[rid]:
            seen[rid] = when
    return tuple(sorted(seen, key=lambda r: (seen[r], r)))


def check_report(report: Report) -> None:
    if not (report.reporter.reporting_person.email or "").strip():
        raise Conflict(
            "A CyberTipline report needs the reporting person's email "
            "(TAKEDOWN_NCMEC_REPORTER_EMAIL).",
            code="ncmec_not_configured",
        )


def check_file(f: FileReport) -> None:
    if f.relevance is not FileRelevance.REPORTED and (
        f.classification is not None or FileAnnotation.POTENTIAL_MEME in f.annotations
    ):
        raise InvalidRequest(
            "Only files reported as relevant carry a classification or potentialMeme.",
            code="invalid_classification",
        )


# -- XML -------------------------------------------------------------------------------
def report_xml(report: Report) -> str:
    """The body of ``POST /submit``."""
    check_report(report)
    root = ET.Element(
        "report",
        {
            "xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance",
            "xsi:noNamespaceSchemaLocation": SCHEMA_LOCATION,
        },
    )
    _incident(root, report.incident)
    for web in report.internet_details:
        details = ET.SubElement(root, "internetDetails")
        page = ET.SubElement(
            details,
            "webPageIncident",
            {"thirdPartyHostedContent": _bool(web.third_party_hosted)},
        )
        for url in web.urls:
            _text(page, "url", url)
        _text(page, "additionalInfo", web.additional_info)
    _reporter(root, report.reporter)
    if report.reported_user is not None:
        _reported_user(root, report.reported_user)
    for victim in report.victims:
        _victim(root, victim)
    _text(root, "additionalInfo", report.additional_info)
    return _serialize(root)


def file_details_xml(report_id: str, file_id: str, f: FileReport) -> str:
    """The body of ``POST /fileinfo`` for one uploaded file."""
    check_file(f)
    root = ET.Element("fileDetails")
    _text(root, "reportId", report_id)
    _text(root, "fileId", file_id)
    _text(root, "fileName", f.file_name)
    _text(root, "originalFileName", f.original_file_name)
    _text(root, "uploadedToEspTimestamp", _time(f.uploaded_at))
    _text(root, "locationOfFile", f.location)
    _text(root, "fileViewedByEsp", _bool(f.viewed_by_esp))
    _text(root, "exifViewedByEsp", _bool(f.exif_viewed_by_esp))
    if f.publicly_available is not None:
        _text(root, "publiclyAvailable", _bool(f.publicly_available))
    _text(root, "fileRelevance", f.relevance.value)
    if f.annotations:
        notes = ET.SubElement(root, "fileAnnotations")
        for a in FileAnnotation:  # the schema's order, whatever the reviewer's
            if a in f.annotations:
                ET.SubElement(notes, a.value)
    if f.classification is not None:
        _text(root, "industryClassification", f.classification.value)
    if f.original_hash:
        h = ET.SubElement(root, "originalFileHash", {"hashType": f.hash_type})
        h.text = f.original_hash
    for ip in f.ip_captures:
        _ip(root, ip)
    for name, value in f.details.items():
        d = ET.SubElement(root, "details", {"type": name})
        d.text = value
    _text(root, "additionalInfo", f.additional_info)
    return _serialize(root)


def _incident(root: ET.Element, i: Incident) -> None:
    summary = ET.SubElement(root, "incidentSummary")
    _text(summary, "incidentType", i.incident_type.value)
    _text(summary, "platform", i.platform)
    _text(summary, "escalateToHighPriority", (i.escalate_to_high_priority or "").strip() or None)
    if i.annotations:
        notes = ET.SubElement(summary, "reportAnnotations")
        for a in ReportAnnotation:
            if a in i.annotations:
                ET.SubElement(notes, a.value)
    _text(summary, "incidentDateTime", _time(i.date_time))
    _text(summary, "incidentDateTimeDescription", i.date_time_description)


def _reporter(root: ET.Element, r: Reporter) -> None:
    el = ET.SubElement(root, "reporter")
    _person(el, "reportingPerson", r.reporting_person)
    if r.contact_person is not None:
        _person(el, "contactPerson", r.contact_person)
    _text(el, "termsOfService", r.terms_of_service)
    _text(el, "legalURL", r.legal_url)


def _reported_user(root: ET.Element, u: ReportedUser) -> None:
    el = ET.SubElement(root, "personOrUserReported")
    _text(el, "espIdentifier", u.esp_identifier)
    _text(el, "espService", u.esp_service)
    _text(el, "screenName", u.screen_name)
    _text(el, "displayName", u.display_name)
    _text(el, "profileUrl", u.profile_url)
    for ip in u.ip_captures:
        _ip(el, ip)
    _prior(el, u.prior_report_ids)
    if u.temporarily_disabled is not None:
        _text(el, "accountTemporarilyDisabled", _bool(u.temporarily_disabled))
    if u.permanently_disabled is not None:
        _text(el, "accountPermanentlyDisabled", _bool(u.permanently_disabled))
    _text(el, "additionalInfo", u.additional_info)


def _victim(root: ET.Element, v: Victim) -> None:
    el = ET.SubElement(root, "victim")
    if v.person is not None:
        _person(el, "victimPerson", v.person)
    _text(el, "espIdentifier", v.esp_identifier)
    _text(el, "screenName", v.screen_name)
    _prior(el, v.prior_report_ids)
    _text(el, "additionalInfo", v.additional_info)


def _prior(parent: ET.Element, report_ids: Iterable[str]) -> None:
    """``<priorCTReports>100001</priorCTReports>`` once per earlier report: the schema's
    repeated element holding the report number itself (no child element)."""
    for rid in report_ids:
        _text(parent, "priorCTReports", rid)


def _person(parent: ET.Element, tag: str, p: Person) -> None:
    el = ET.SubElement(parent, tag)
    _text(el, "firstName", p.first_name)
    _text(el, "lastName", p.last_name)
    _text(el, "phone", p.phone)
    if p.email:
        email = ET.SubElement(
            el, "email", {} if p.email_verified is None else {"verified": _bool(p.email_verified)}
        )
        email.text = p.email
    # (address: not kept) then age and dateOfBirth, in the schema's order.
    _text(el, "age", str(p.age) if p.age is not None else None)
    _text(el, "dateOfBirth", p.date_of_birth.isoformat() if p.date_of_birth else None)


def _ip(parent: ET.Element, ip: IpCapture) -> None:
    el = ET.SubElement(parent, "ipCaptureEvent")
    _text(el, "ipAddress", ip.ip_address)
    _text(el, "eventName", ip.event_name.value)
    _text(el, "dateTime", _time(ip.date_time))
    _text(el, "port", str(ip.port) if ip.port is not None else None)


def _text(parent: ET.Element, tag: str, value: str | None) -> None:
    if value is None or value == "":
        return
    ET.SubElement(parent, tag).text = value


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _time(value: datetime | None) -> str | None:
    """xs:dateTime with the zone (the statute asks for a time zone)."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _serialize(root: ET.Element) -> str:
    body = ET.tostring(root, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body
