"""What a person depicted or a parent gives about the victim, and their consent to it
going to NCMEC: asked by the public form and the reports API, stored with the report,
and refused when it may not be sent."""

from __future__ import annotations

from datetime import date

from fastapi.testclient import TestClient
from sqlalchemy import select

from takedown.runtime import Runtime
from takedown.store.models import Report
from takedown.web import ratelimit
from tests.cases.helpers import parent_report, user_headers


def _stored(rt: Runtime) -> list[Report]:
    with rt.sessions() as s:
        return list(s.scalars(select(Report).order_by(Report.id)))


def test_the_api_keeps_victim_details_only_with_consent(rt: Runtime, client: TestClient):
    given = {
        "victim_first_name": "Sam",
        "victim_email": "sam@example.org",
        "victim_date_of_birth": "2012-05-04",
    }
    refused = [
        (parent_report(["x1"], **given), "victim_consent_required"),
        (
            parent_report(["x1"], reporter_role="user", victim_consent=True, **given),
            "victim_details_not_accepted",
        ),
        (
            parent_report(["x1"], victim_consent=True, victim_email="not-an-email"),
            "invalid_victim_details",
        ),
        (
            parent_report(["x1"], victim_consent=True, victim_phone="call me maybe"),
            "invalid_victim_details",
        ),
        (
            parent_report(["x1"], victim_consent=True, victim_date_of_birth="2999-01-01"),
            "invalid_victim_details",
        ),
        (parent_report(["x1"], victim_consent=True, victim_age=300), "invalid_request"),
    ]
    for body, code in refused:
        r = client.post("/v1/reports", json=body)
        assert r.status_code == 422 and r.json()["code"] == code, (body, r.text)
    assert _stored(rt) == []  # nothing kept of a refused report
    r = client.post("/v1/reports", json=parent_report(["x1"], victim_consent=True, **given))
    assert r.status_code == 201, r.text
    (report,) = _stored(rt)
    assert report.victim_consent is True
    assert (report.victim_first_name, report.victim_email) == ("Sam", "sam@example.org")
    assert report.victim_date_of_birth == date(2012, 5, 4)
    assert report.victim_last_name is None and report.victim_age is None
    # Legal staff see what would go to NCMEC before drafting; a moderator only the consent.
    case = r.json()["case_number"]
    legal = user_headers(rt, "lex", "legal")
    moderator = user_headers(rt, "mo", "moderator")
    (seen,) = client.get(f"/v1/cases/{case}", headers=legal).json()["reports"]
    assert seen["victim_consent"] is True
    assert seen["victim"] == {
        "first_name": "Sam",
        "email": "sam@example.org",
        "date_of_birth": "2012-05-04",
    }
    (seen,) = client.get(f"/v1/cases/{case}", headers=moderator).json()["reports"]
    assert seen["victim_consent"] is True and seen["victim"] is None


def test_the_form_asks_for_consent_and_says_what_is_shared(rt: Runtime, client: TestClient):
    ratelimit.reset()
    page = client.get("/report").text
    assert "National Center for Missing &amp; Exploited Children" in page
    assert "only included if you agree" in page and 'name="victim_consent"' in page
    form = {
        "category": "csam",
        "reporter_role": "parent_guardian",
        "urls": "https://social.example/p/v1",
        "explanation": "My daughter, 12, in a video shared without her knowledge.",
        "good_faith": "yes",
        "victim_first_name": "Alex",
        "victim_age": "12",
        "victim_phone": "+44 20 7946 0000",
    }
    r = client.post("/report", data=form)  # details, but no consent: asked again
    assert r.status_code == 422
    assert 'href="#victim_consent"' in r.text and 'value="Alex"' in r.text  # input kept
    r = client.post("/report", data={**form, "victim_consent": "yes", "victim_age": "twelve"})
    assert r.status_code == 422 and 'href="#victim_age"' in r.text
    r = client.post("/report", data={**form, "victim_consent": "yes"})
    assert r.status_code == 200, r.text
    (report,) = _stored(rt)
    assert report.channel == "web" and report.victim_consent is True
    assert (report.victim_first_name, report.victim_age) == ("Alex", 12)
    assert report.victim_phone == "+44 20 7946 0000"
    ratelimit.reset()


def test_the_console_shows_legal_staff_what_goes_to_ncmec(rt: Runtime, client: TestClient):
    from tests.console.helpers import sign_in

    given = {"victim_consent": True, "victim_first_name": "Sam", "victim_age": 13}
    consented = client.post("/v1/reports", json=parent_report(["c1"], **given)).json()
    refused = client.post("/v1/reports", json=parent_report(["c2"])).json()
    sign_in(client, "legal")
    page = client.get(f"/console/cases/{consented['case_number']}").text
    assert "Victim details for NCMEC (given with consent)" in page
    assert "first name: Sam" in page and "age: 13" in page
    page = client.get(f"/console/cases/{refused['case_number']}").text
    assert "No consent to share the victim's details with NCMEC" in page
    sign_in(client, "mod")
    page = client.get(f"/console/cases/{consented['case_number']}").text
    assert "first name: Sam" not in page  # moderators never see them
