"""The schema validator agrees with the protocol server, case by case.

A good report (and a good ``fileDetails``) built by the product, then a table of
mutations: each is checked by ``takedown.domain.cybertipline_schema`` and sent to the
local CyberTipline server over HTTP; the validator's verdict must be the server's (a
4100/4110 rejection or success) and the one the table expects. The server's tables and
the validator's are written apart (tests/legal/ncmec_server.py), so they can disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from xml.etree import ElementTree as ET

import pytest

from takedown.domain import cybertipline as ct
from takedown.domain import cybertipline_schema as schema
from takedown.domain.cases import FileAnnotation, IndustryClassification
from takedown.integrations.cybertipline import CyberTiplineClient
from tests.legal.ncmec_server import PASSWORD, USER, ncmec_server

WHEN = datetime(2026, 5, 1, 12, tzinfo=UTC)
Mutation = Callable[[ET.Element], None]


def good_report() -> str:
    return ct.report_xml(
        ct.Report(
            incident=ct.Incident(
                ct.IncidentType.CHILD_PORNOGRAPHY,
                "Social Example",
                ct.escalation_text(ct.EscalationReason.IMMINENT_DANGER, "Live stream tonight."),
                (ct.ReportAnnotation.SEXTORTION,),
                WHEN,
                "When the item was posted.",
            ),
            internet_details=(ct.WebPageIncident(("https://social.example/p/1",)),),
            reporter=ct.Reporter(
                ct.Person("Lee", "Gal", email="legal@platform.example", email_verified=True),
                contact_person=ct.Person("Sam", "Safe", phone="+1 555 0100"),
                terms_of_service="https://platform.example/terms",
                legal_url="https://platform.example/legal",
            ),
            reported_user=ct.ReportedUser(
                esp_identifier="acc-a",
                esp_service="Social Example",
                screen_name="poster_a",
                ip_captures=(ct.IpCapture("198.51.100.7", ct.IpEvent.UPLOAD, WHEN, 443),),
                prior_report_ids=("100001", "100002"),
                temporarily_disabled=True,
            ),
            victims=(ct.Victim(ct.Person("Alex"), prior_report_ids=("100003",)),),
            additional_info="Platform case 01CASE.",
        )
    )


def good_details(report_id: str, file_id: str) -> str:
    return ct.file_details_xml(
        report_id,
        file_id,
        ct.FileReport(
            "f.png",
            "holiday.png",
            WHEN,
            "https://social.example/p/1",
            True,
            False,
            annotations=(FileAnnotation.VIRAL,),
            classification=IndustryClassification.B2,
            original_hash="ab" * 16,
            ip_captures=(ct.IpCapture("198.51.100.7", ct.IpEvent.UPLOAD, WHEN),),
        ),
    )


# -- mutations ----------------------------------------------------------------------------
def remove(path: str) -> Mutation:
    def go(root: ET.Element) -> None:
        parent_path, _, tag = path.rpartition("/")
        parent = root.find(parent_path) if parent_path else root
        assert parent is not None and parent.find(tag) is not None, path
        parent.remove(parent.find(tag))  # type: ignore[arg-type]

    return go


def set_text(path: str, text: str) -> Mutation:
    def go(root: ET.Element) -> None:
        el = root.find(path)
        assert el is not None, path
        el.text = text

    return go


def set_attr(path: str, name: str, value: str) -> Mutation:
    def go(root: ET.Element) -> None:
        el = root.find(path)
        assert el is not None, path
        el.set(name, value)

    return go


def move_to_end(parent_path: str, tag: str) -> Mutation:
    """Take the first ``tag`` out of its place and append it last (out of order)."""

    def go(root: ET.Element) -> None:
        parent = root.find(parent_path) if parent_path else root
        assert parent is not None
        el = parent.find(tag)
        assert el is not None, tag
        parent.remove(el)
        parent.append(el)

    return go


def move_to_front(parent_path: str, tag: str) -> Mutation:
    def go(root: ET.Element) -> None:
        parent = root.find(parent_path) if parent_path else root
        assert parent is not None
        el = parent.find(tag)
        assert el is not None, tag
        parent.remove(el)
        parent.insert(0, el)

    return go


def add(parent_path: str, tag: str, text: str | None = None, index: int | None = None) -> Mutation:
    def go(root: ET.Element) -> None:
        parent = root.find(parent_path) if parent_path else root
        assert parent is not None
        el = ET.Element(tag)
        el.text = text
        parent.insert(len(parent) if index is None else index, el)

    return go


def old_prior_form(root: ET.Element) -> None:
    """What Takedown used to send: the number wrapped in a reportId element."""
    user = root.find("personOrUserReported")
    assert user is not None
    for el in user.findall("priorCTReports"):
        number = el.text
        el.text = None
        ET.SubElement(el, "reportId").text = number


def nothing(root: ET.Element) -> None:
    pass


P = "personOrUserReported"
REPORT_CASES: list[tuple[str, Mutation, bool]] = [
    ("the good report", nothing, True),
    ("no escalation at all", remove("incidentSummary/escalateToHighPriority"), True),
    (
        "minimal: only incidentSummary and reporter",
        lambda r: [r.remove(e) for e in list(r) if e.tag not in ("incidentSummary", "reporter")],
        True,
    ),
    ("xs:boolean 1", set_text(f"{P}/accountTemporarilyDisabled", "1"), True),
    (
        "dateTime with an offset",
        set_text("incidentSummary/incidentDateTime", "2026-05-01T14:00:00+02:00"),
        True,
    ),
    (
        "dateTime with fractions",
        set_text("incidentSummary/incidentDateTime", "2026-05-01T12:00:00.250Z"),
        True,
    ),
    ("a third prior report", add(P, "priorCTReports", "100009", index=6), True),
    ("missing incidentSummary", remove("incidentSummary"), False),
    ("missing incidentType", remove("incidentSummary/incidentType"), False),
    ("missing incidentDateTime", remove("incidentSummary/incidentDateTime"), False),
    ("missing reporter", remove("reporter"), False),
    ("missing the reporting person's email", remove("reporter/reportingPerson/email"), False),
    (
        "missing the url of a web page incident",
        remove("internetDetails/webPageIncident/url"),
        False,
    ),
    ("missing the ipAddress of an IP event", remove(f"{P}/ipCaptureEvent/ipAddress"), False),
    ("reporter before incidentSummary", move_to_front("", "reporter"), False),
    ("platform after incidentDateTime", move_to_end("incidentSummary", "platform"), False),
    ("screenName after priorCTReports", move_to_end(P, "screenName"), False),
    ("eventName before ipAddress", move_to_end(f"{P}/ipCaptureEvent", "ipAddress"), False),
    ("an unknown element", add("incidentSummary", "urgency", "high", index=2), False),
    (
        "incidentType not in the list",
        set_text("incidentSummary/incidentType", "Child Abuse"),
        False,
    ),
    ("eventName not in the list", set_text(f"{P}/ipCaptureEvent/eventName", "Logout"), False),
    ("a date, not a dateTime", set_text("incidentSummary/incidentDateTime", "2026-05-01"), False),
    ("month 13", set_text("incidentSummary/incidentDateTime", "2026-13-01T12:00:00Z"), False),
    ("a US-style date", set_text("incidentSummary/incidentDateTime", "05/01/2026 12:00"), False),
    ("an IP event's bad dateTime", set_text(f"{P}/ipCaptureEvent/dateTime", "yesterday"), False),
    ("boolean 'yes'", set_text(f"{P}/accountTemporarilyDisabled", "yes"), False),
    (
        "boolean attribute 'no'",
        set_attr("internetDetails/webPageIncident", "thirdPartyHostedContent", "no"),
        False,
    ),
    ("the old priorCTReports form", old_prior_form, False),
    ("a prior report that is no number", set_text(f"{P}/priorCTReports", "RPT-1"), False),
    ("an empty escalation", set_text("incidentSummary/escalateToHighPriority", ""), False),
    ("a blank escalation", set_text("incidentSummary/escalateToHighPriority", "   "), False),
]


def _apply(xml: str, mutate: Mutation) -> str:
    root = ET.fromstring(xml)
    mutate(root)
    return ET.tostring(root, encoding="unicode")


@pytest.fixture(scope="module")
def server() -> Iterator[CyberTiplineClient]:
    with ncmec_server() as (url, _state):
        client = CyberTiplineClient(url, USER, PASSWORD, timeout_s=10)
        yield client
        client.close()


@pytest.mark.parametrize(
    ("name", "mutate", "valid"), REPORT_CASES, ids=[c[0] for c in REPORT_CASES]
)
def test_the_validator_agrees_with_the_server_on_reports(server, name, mutate, valid):
    xml = _apply(good_report(), mutate)
    problem = schema.check_report_xml(xml)
    answer = server.submit(xml)
    assert answer.code is not None, answer.error
    server_accepts = answer.code == 0
    assert (problem is None) is valid, f"validator on {name}: {problem}"
    assert server_accepts is valid, f"server on {name}: {answer.description}"


def test_malformed_xml_is_refused_by_both(server):
    xml = good_report()[:-20]
    assert schema.check_report_xml(xml) is not None
    assert server.submit(xml).code == 4110


F = "ipCaptureEvent"
DETAILS_CASES: list[tuple[str, Mutation, bool]] = [
    ("the good details", nothing, True),
    ("minimal", lambda r: [r.remove(e) for e in list(r)[2:]], True),
    ("missing fileId", remove("fileId"), False),
    ("fileViewedByEsp after fileRelevance", move_to_end("", "fileViewedByEsp"), False),
    ("fileRelevance not in the list", set_text("fileRelevance", "Relevant"), False),
    ("industryClassification not in the list", set_text("industryClassification", "C1"), False),
    ("hashType not in the list", set_attr("originalFileHash", "hashType", "CRC32"), False),
    ("boolean 'TRUE'", set_text("fileViewedByEsp", "TRUE"), False),
    ("bad upload time", set_text("uploadedToEspTimestamp", "2026-05-01 12:00"), False),
    ("eventName not in the list", set_text(f"{F}/eventName", "Download"), False),
    ("an IP event without ipAddress", remove(f"{F}/ipAddress"), False),
    ("a classification with children", add("industryClassification", "A1", "x"), False),
]


@pytest.mark.parametrize(
    ("name", "mutate", "valid"), DETAILS_CASES, ids=[c[0] for c in DETAILS_CASES]
)
def test_the_validator_agrees_with_the_server_on_file_details(server, name, mutate, valid):
    opened = server.submit(good_report())
    assert opened.code == 0 and opened.report_id
    up = server.upload(opened.report_id, "f.png", b"stand-in bytes, not an image")
    assert up.code == 0 and up.file_id
    xml = _apply(good_details(opened.report_id, up.file_id), mutate)
    problem = schema.check_file_details_xml(xml)
    answer = server.fileinfo(xml)
    assert answer.code is not None, answer.error
    assert (problem is None) is valid, f"validator on {name}: {problem}"
    assert (answer.code == 0) is valid, f"server on {name}: {answer.description}"


def test_problems_name_the_element_and_the_rule():
    bad = _apply(good_report(), old_prior_form)
    problem = schema.check_report_xml(bad)
    assert problem is not None
    assert problem.path == "/report/personOrUserReported/priorCTReports"
    assert "simple content" in problem.rule and "reportId" in problem.rule
    problem = schema.check_report_xml(_apply(good_report(), move_to_front("", "reporter")))
    assert problem is not None and problem.path == "/report/incidentSummary"
    assert "out of order" in problem.rule
    missing = schema.check_report_xml(
        _apply(good_report(), remove("reporter/reportingPerson/email"))
    )
    assert str(missing) == "/report/reporter/reportingPerson/email: mandatory element missing"


def test_escalation_is_a_reason_or_nothing():
    assert ct.escalation_text(None) is None
    assert ct.escalation_text(
        ct.EscalationReason.CHILD_IDENTIFIABLE, "  In  the school photo "
    ) == ("The child depicted appears to be identifiable. In the school photo")
    with pytest.raises(Exception) as err:
        ct.escalation_text(None, "urgent")
    assert getattr(err.value, "code", None) == "escalation_reason_required"
    with pytest.raises(Exception) as err:
        ct.escalation_text(ct.EscalationReason.ONGOING_ABUSE, "x" * 501)
    assert getattr(err.value, "code", None) == "invalid_escalation_note"
    plain = ct.Incident(ct.IncidentType.CHILD_PORNOGRAPHY, None, None, (), WHEN)
    root = ET.fromstring(
        ct.report_xml(ct.Report(plain, ct.Reporter(ct.Person(email="l@x.example"))))
    )
    assert root.find("incidentSummary/escalateToHighPriority") is None  # never "false"


def test_prior_reports_once_each_oldest_first():
    t = [datetime(2026, m, 1, tzinfo=UTC) for m in (1, 2, 3)]
    assert ct.prior_reports(
        [(t[2], "300"), (t[0], "100"), (t[1], "200"), (t[2], "100"), (None, "")]
    ) == (
        "100",
        "200",
        "300",
    )
