"""The report XML, built without I/O: element order, optional parts left out."""

from __future__ import annotations

from datetime import UTC, datetime
from xml.etree import ElementTree as ET

import pytest

from takedown.domain import cybertipline as ct
from takedown.domain.cases import FileAnnotation, IndustryClassification
from takedown.domain.reports import Category, ReporterRole
from takedown.errors import Conflict, InvalidRequest
from tests.legal.ncmec_server import check_sequence

WHEN = datetime(2026, 5, 1, 12, tzinfo=UTC)


def _report(**kw) -> ct.Report:
    base = dict(
        incident=ct.Incident(
            ct.IncidentType.ONLINE_ENTICEMENT,
            "Social",
            ct.escalation_text(ct.EscalationReason.ONGOING_ABUSE),
            (ct.ReportAnnotation.SEXTORTION,),
            WHEN,
        ),
        reporter=ct.Reporter(ct.Person("Lee", "Gal", email="legal@x.example")),
        reported_user=ct.ReportedUser(
            esp_identifier="acc",
            screen_name="poster",
            prior_report_ids=("111",),
            permanently_disabled=True,
        ),
        victims=(
            ct.Victim(ct.Person("Sam", email="sam@x.example"), additional_info="self-reported"),
        ),
    )
    base.update(kw)
    return ct.Report(**base)


def test_a_chat_only_enticement_report_follows_the_schema():
    xml = ct.report_xml(_report())
    root = ET.fromstring(xml)
    assert check_sequence(root) is None
    assert [e.tag for e in root] == [
        "incidentSummary",
        "reporter",
        "personOrUserReported",
        "victim",
    ]
    assert [e.tag for e in root.find("personOrUserReported")] == [
        "espIdentifier",
        "screenName",
        "priorCTReports",
        "accountPermanentlyDisabled",
    ]
    assert root.findtext("personOrUserReported/priorCTReports") == "111"  # the number itself
    assert root.findtext("incidentSummary/escalateToHighPriority") == (
        "The abuse or exploitation appears to be ongoing."
    )
    assert root.findtext("incidentSummary/reportAnnotations/sextortion") == ""  # empty element
    assert root.find("incidentSummary/reportAnnotations/sextortion") is not None
    assert root.findtext("incidentSummary/incidentDateTime") == "2026-05-01T12:00:00Z"


def test_reporter_email_is_required():
    with pytest.raises(Conflict) as err:
        ct.report_xml(_report(reporter=ct.Reporter(ct.Person("Lee"))))
    assert err.value.code == "ncmec_not_configured"


def test_file_details_in_order_and_classification_only_on_reported_files():
    f = ct.FileReport(
        "f.jpg",
        None,
        WHEN,
        "https://x.example/p/1",
        True,
        True,
        annotations=(FileAnnotation.GENERATIVE_AI, FileAnnotation.INFANT),
        classification=IndustryClassification.A1,
        original_hash="ab" * 16,
    )
    root = ET.fromstring(ct.file_details_xml("9", "f1", f))
    assert check_sequence(root) is None
    assert [a.tag for a in root.find("fileAnnotations")] == ["infant", "generativeAi"]
    with pytest.raises(InvalidRequest):
        ct.file_details_xml(
            "9",
            "f1",
            ct.FileReport(
                "f.jpg",
                None,
                None,
                None,
                False,
                None,
                relevance=ct.FileRelevance.SUPPLEMENTAL,
                classification=IndustryClassification.B1,
            ),
        )


def test_incident_type_and_escalation():
    assert (
        ct.incident_type_for({Category.CSAM, Category.MINOR_EXPLOITATION})
        is ct.IncidentType.CHILD_PORNOGRAPHY
    )
    with pytest.raises(Conflict):
        ct.incident_type_for({Category.NCII})
    assert ct.suggest_escalation({Category.CSAM}, {ReporterRole.PARENT_GUARDIAN})
    assert not ct.suggest_escalation({Category.CSAM}, {ReporterRole.USER})
    assert ct.suggest_escalation({Category.MINOR_EXPLOITATION}, set())
