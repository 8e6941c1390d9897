"""The public report and status pages, through the real app on both databases.

Everything here is made up: example.com-style addresses, invented item ids and text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from takedown.runtime import Runtime
from takedown.services.registry.service import ItemInput
from takedown.web import ratelimit
from tests.cases.helpers import user_headers

SCRIPT = "<script>alert(1)</script>"
POST_URL = "https://social.example/p/clip-1"


@pytest.fixture(autouse=True)
def _fresh_rate_limit() -> Iterator[None]:
    """Each test starts with no submissions counted (the limiter is per process)."""
    ratelimit.reset()
    yield
    ratelimit.reset()


def parent_csam(**extra: str) -> dict[str, str]:
    """A parent's report about their child, with no name and no email (DSA Art. 16)."""
    form = {
        "category": "csam",
        "reporter_role": "parent_guardian",
        "urls": POST_URL,
        "explanation": "A video of my son at 13, made when he was blackmailed.",
        "good_faith": "yes",
    }
    form.update(extra)
    return form


def register_post(rt: Runtime, item_id: str = "clip-1", url: str = POST_URL) -> None:
    """The platform has told Takedown about the post, so a report can restrict it."""
    rt.registry.upsert_item(
        ItemInput(item_id, account_id="acct-1", url=url, view_count=10), actor="test"
    )


class Controls(HTMLParser):
    """Collects form controls, labels, fieldsets and legends of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[dict[str, str | None]] = []
        self.label_for: set[str] = set()
        self.fieldsets = 0
        self.legends = 0
        self.scripts = 0
        self.html_lang: str | None = None
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.append(str(a["id"]))
        if tag == "html":
            self.html_lang = a.get("lang")
        elif tag in ("input", "textarea", "select") and a.get("type") != "hidden":
            self.controls.append(a)
        elif tag == "label" and a.get("for"):
            self.label_for.add(str(a["for"]))
        elif tag == "fieldset":
            self.fieldsets += 1
        elif tag == "legend":
            self.legends += 1
        elif tag == "script":
            self.scripts += 1


def parse(html: str) -> Controls:
    page = Controls()
    page.feed(html)
    return page


def credentials(html: str) -> tuple[str, str]:
    case = re.search(r'id="case-number"[^>]*>([^<]+)<', html)
    token = re.search(r'id="status-token"[^>]*>([^<]+)<', html)
    assert case and token, "the receipt must show the case number and the token"
    return case.group(1), token.group(1)


# -- the form ------------------------------------------------------------------------------
def test_form_renders_with_a_label_for_every_control(client: TestClient) -> None:
    r = client.get("/report")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    page = parse(r.text)
    assert page.html_lang == "en"
    # One script: the optional in-browser hashing, an external module from this server.
    assert page.scripts == 1
    assert '<script type="module" src="/assets/js/report-form.js"></script>' in r.text
    assert page.fieldsets >= 5 and page.legends == page.fieldsets
    # The image picker has no name, so a browser can never include the file in the form.
    picker = [c for c in page.controls if c.get("type") == "file"]
    assert len(picker) == 1 and "name" not in picker[0] and picker[0]["id"] == "hash-file"
    names = {c["name"] for c in page.controls if c.get("type") != "file"}
    assert names == {
        "category",
        "reporter_role",
        "urls",
        "item_ids",
        "explanation",
        "reporter_name",
        "reporter_email",
        "contact",
        "signature",
        "good_faith",
        "not_consensual",
        "authorised_for_depicted",
        "victim_consent",
        "victim_first_name",
        "victim_last_name",
        "victim_age",
        "victim_date_of_birth",
        "victim_email",
        "victim_phone",
    }
    for control in page.controls:
        assert control.get("id") in page.label_for, f"no <label> for {control}"
    assert len(page.ids) == len(set(page.ids)), "ids must be unique"
    roles = {c["value"] for c in page.controls if c.get("name") == "reporter_role"}
    assert roles == {"person_depicted", "parent_guardian", "user"}  # others use the API
    categories = {c["value"] for c in page.controls if c.get("name") == "category"}
    assert categories == {"csam", "minor_sexual_exploitation", "ncii", "other"}
    # The plain-language notice the TAKE IT DOWN Act asks for, and no CAPTCHA.
    text = r.text
    assert 'id="how-it-works"' in text and "48 hours" in text
    assert "hide the content" in text and "at once" in text
    assert "optional if you are" in text  # name/email optional for child abuse reports
    assert "captcha" not in text.lower()
    assert "/report#how-it-works" in text  # reachable from every page's footer
    css = client.get("/assets/public.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert ":focus-visible" in css.text


def test_parent_reports_csam_without_name_or_email(client: TestClient, rt: Runtime) -> None:
    register_post(rt)
    r = client.post("/report", data=parent_csam())
    assert r.status_code == 200, r.text
    case_number, token = credentials(r.text)
    assert len(token) >= 24
    assert "only time we show the" in r.text and "never send it by email" in r.text
    assert 'href="/status"' in r.text
    assert "hidden 1 item" in r.text  # restricted at once: a minor-safety report
    assert r.headers["cache-control"] == "no-store"
    # The service stored it as a web report.
    view = rt.cases.public_status(case_number, token)
    assert view.content_restricted


def test_the_token_works_on_the_status_page(client: TestClient, rt: Runtime) -> None:
    register_post(rt)
    case_number, token = credentials(client.post("/report", data=parent_csam()).text)
    assert client.get("/status").status_code == 200
    r = client.post("/status", data={"case_number": case_number, "token": token})
    assert r.status_code == 200
    assert "We have restricted the content you reported" in r.text
    assert re.search(r'id="content-restricted">\s*Yes', r.text)
    assert "Report received" in r.text and "Content hidden from the public" in r.text
    assert r.headers["cache-control"] == "no-store"
    # Nothing about the reporter, the explanation or the platform's internals.
    assert "blackmailed" not in r.text and "acct-1" not in r.text


@pytest.mark.parametrize(
    "case_number, token",
    [
        ("right", "wrong-token"),
        ("01NOSUCHCASE0000000000000", "right"),
        ("", ""),
    ],
)
def test_wrong_number_or_token_leaks_nothing(
    client: TestClient, case_number: str, token: str
) -> None:
    real_case, real_token = credentials(client.post("/report", data=parent_csam()).text)
    case_number = real_case if case_number == "right" else case_number
    token = real_token if token == "right" else token
    r = client.post("/status", data={"case_number": case_number, "token": token})
    assert r.status_code in (404, 422)
    assert "blackmailed" not in r.text and real_token not in r.text
    if case_number and token:
        assert r.status_code == 404
        assert "No report matches that case number and status token" in r.text
        assert token not in r.text  # the typed token is not echoed back
    assert r.headers["cache-control"] == "no-store"


def test_script_in_the_explanation_is_never_rendered_raw(client: TestClient) -> None:
    ok = client.post("/report", data=parent_csam(explanation=f"Please remove {SCRIPT}"))
    assert ok.status_code == 200 and SCRIPT not in ok.text
    case_number, token = credentials(ok.text)
    status = client.post("/status", data={"case_number": case_number, "token": token})
    assert SCRIPT not in status.text and "alert(1)" not in status.text  # never displayed
    # Re-rendered after an error, every field keeps its text, escaped.
    bad = client.post(
        "/report",
        data=parent_csam(
            explanation=SCRIPT,
            good_faith="",
            reporter_name=f'"><b>x</b>{SCRIPT}',
            urls=f"{POST_URL}\n{SCRIPT}",
        ),
    )
    assert bad.status_code == 422
    assert SCRIPT not in bad.text and "<b>x</b>" not in bad.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in bad.text
    assert 'value="&#34;&gt;&lt;b&gt;x&lt;/b&gt;' in bad.text
    assert parse(bad.text).scripts == 1  # only the page's own hashing module


def test_hashes_from_the_form_find_the_content_and_survive_errors(
    client: TestClient, rt: Runtime
) -> None:
    import json

    from takedown.media import hash_image_bytes
    from tests.conftest import standin_bytes

    photo = standin_bytes("camera.png")  # a stand-in photo
    register_post(rt, "pic-7", "https://social.example/p/pic-7")
    rt.registry.attach_media("pic-7", rt.registry.media_from_bytes(photo), actor="test")
    sig = hash_image_bytes(photo)
    field = json.dumps(
        {
            "md5": sig.md5,
            "pdq": sig.pdq.hash,
            "pdq_quality": sig.pdq.quality,
            "dihedral": [h for _, h in sig.pdq.dihedral],
        }
    )
    hash_only = {**parent_csam(urls=""), "hashes": field}
    # An error elsewhere: the hashes come back (as a hidden field and listed), unchanged.
    bad = client.post("/report", data={**hash_only, "good_faith": ""})
    assert bad.status_code == 422
    assert sig.pdq.hash in bad.text and 'name="hashes"' in bad.text
    ok = client.post("/report", data=hash_only)
    assert ok.status_code == 200, ok.text
    assert "hashes of 1 image" in ok.text and "We have hidden 1 item" in ok.text
    case_number, token = credentials(ok.text)
    creds = {"case_number": case_number, "token": token}
    status = client.post("/status", data=creds)
    assert "hashes of 1 image" in status.text and "Withdraw my report" in status.text
    withdrawn = client.post("/status/withdraw", data=creds)
    assert withdrawn.status_code == 200 and "You have withdrawn your report" in withdrawn.text
    assert "Withdraw my report" not in withdrawn.text
    assert client.post("/status/withdraw", data={**creds, "token": "x"}).status_code == 404
    for broken in ("not json", json.dumps({"md5": 5}), json.dumps({"pdq": "zz"})):
        r = client.post("/report", data={**hash_only, "hashes": broken})
        assert r.status_code == 422 and 'href="#hash-file"' in r.text


def test_validation_error_re_renders_with_422_and_keeps_input(client: TestClient) -> None:
    r = client.post(
        "/report",
        data=parent_csam(explanation="", item_ids="item-77\nitem-78", contact="+1 555 0100"),
    )
    assert r.status_code == 422
    page = parse(r.text)
    # The error summary comes first and links to the field.
    assert r.text.index("There is a problem") < r.text.index("<h1>")
    assert 'href="#explanation"' in r.text
    assert re.search(r'<textarea id="explanation"[^>]*aria-invalid="true"', r.text)
    assert "<title>Error:" in r.text
    # What the reporter typed is still there.
    checked = {(c["name"], c["value"]) for c in page.controls if "checked" in c}
    assert checked == {
        ("category", "csam"),
        ("reporter_role", "parent_guardian"),
        ("good_faith", "yes"),
    }
    assert f">{POST_URL}</textarea>" in r.text
    assert ">item-77\nitem-78</textarea>" in r.text
    assert 'value="+1 555 0100"' in r.text


@pytest.mark.parametrize(
    "field, data, anchor",
    [
        ("location", {"urls": ""}, "#urls"),
        ("bad url", {"urls": "not a web address"}, "#urls"),
        ("good faith", {"good_faith": ""}, "#good_faith"),
        ("category", {"category": ""}, "#category-csam"),
        ("role", {"reporter_role": "law_enforcement"}, "#reporter_role-person_depicted"),
        ("email", {"reporter_email": "nobody-at-example"}, "#reporter_email"),
        ("contact", {"category": "other", "reporter_role": "user"}, "#reporter_name"),
    ],
)
def test_each_error_links_to_its_field(
    client: TestClient, field: str, data: dict[str, str], anchor: str
) -> None:
    r = client.post("/report", data=parent_csam(**data))
    assert r.status_code == 422, field
    assert f'href="{anchor}"' in r.text, field
    assert "Unknown value" not in r.text  # plain language, not the API's wording


def test_ncii_from_the_person_depicted_lists_what_is_missing(client: TestClient) -> None:
    r = client.post(
        "/report",
        data={
            "category": "ncii",
            "reporter_role": "person_depicted",
            "urls": "https://social.example/p/photo-9",
            "explanation": "A private photo of me, posted by my ex without my consent.",
            "reporter_name": "Alex Example",
            "reporter_email": "alex@example.org",
            "good_faith": "yes",
        },
    )
    assert r.status_code == 422
    assert 'href="#signature"' in r.text
    assert "A removal request needs your signature (type your full name)" in r.text
    assert 'href="#not_consensual"' in r.text and "not consensual" in r.text
    assert 'href="#reporter_email"' not in r.text  # the email was given
    assert 'value="Alex Example"' in r.text and 'value="alex@example.org"' in r.text
    # With the signature and the statement it is a valid TAKE IT DOWN request.
    r = client.post(
        "/report",
        data={
            "category": "ncii",
            "reporter_role": "person_depicted",
            "urls": "https://social.example/p/photo-9",
            "explanation": "A private photo of me, posted by my ex without my consent.",
            "reporter_name": "Alex Example",
            "reporter_email": "alex@example.org",
            "signature": "Alex Example",
            "not_consensual": "yes",
            "good_faith": "yes",
        },
    )
    assert r.status_code == 200
    assert "complete removal request" in r.text and "48 hours" in r.text


def test_rate_limit_shows_a_429_page_and_keeps_input(client: TestClient, rt: Runtime) -> None:
    rt.settings.report_rate_limit_per_hour = 2
    for _ in range(2):
        assert client.post("/report", data=parent_csam()).status_code == 200
    r = client.post("/report", data=parent_csam(contact="kept-contact"))
    assert r.status_code == 429
    assert "Too many reports from this address" in r.text
    assert 'value="kept-contact"' in r.text
    assert r.headers["content-security-policy"]


def test_security_headers_on_every_page(client: TestClient) -> None:
    case_number, token = credentials(client.post("/report", data=parent_csam()).text)
    pages = [
        client.get("/report"),
        client.post("/report", data=parent_csam()),
        client.post("/report", data={}),
        client.get("/status"),
        client.post("/status", data={"case_number": case_number, "token": token}),
        client.post("/status", data={"case_number": case_number, "token": "nope"}),
    ]
    for r in pages:
        csp = r.headers["content-security-policy"]
        form_page = 'action="/report"' in r.text
        # The report form runs its own hashing scripts and may send nothing by script.
        scripts = (
            ("script-src 'self'", "connect-src 'none'") if form_page else ("script-src 'none'",)
        )
        for directive in (
            "default-src 'self'",
            *scripts,
            "form-action 'self'",
            "frame-ancestors 'none'",
        ):
            assert directive in csp
        assert "unsafe-inline" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["cache-control"] == "no-store"
        assert "set-cookie" not in r.headers  # anonymous forms: no session, nothing to forge
        assert " style=" not in r.text  # the CSP allows no inline style
        scripts_seen = re.findall(r"<script[^>]*>", r.text)
        assert scripts_seen == (
            ['<script type="module" src="/assets/js/report-form.js">'] if form_page else []
        )


def test_oversize_or_file_posts_are_refused_politely(client: TestClient) -> None:
    r = client.post("/report", files={"urls": ("a.png", b"\x89PNG")}, data=parent_csam())
    assert r.status_code == 400
    assert "could not be read" in r.text
    assert r.headers["content-security-policy"]


def test_decision_with_reasons_and_the_reporters_appeal(client: TestClient, rt: Runtime) -> None:
    register_post(rt, "photo-9", "https://social.example/p/photo-9")
    r = client.post(
        "/report",
        data={
            "category": "ncii",
            "reporter_role": "person_depicted",
            "urls": "https://social.example/p/photo-9",
            "explanation": "A private photo of me, posted without my consent.",
            "reporter_name": "Alex Example",
            "reporter_email": "alex@example.org",
            "signature": "Alex Example",
            "not_consensual": "yes",
            "good_faith": "yes",
        },
    )
    case_number, token = credentials(r.text)
    moderator = user_headers(rt, "mod-web", "moderator")
    decided = client.post(
        f"/v1/cases/{case_number}/decisions",
        headers=moderator,
        json={
            "outcome": "no_violation",
            "reasons": "The photo shows a landscape, no person.",
            "internal_note": "INTERNAL-NOTE-42 checked twice",
        },
    )
    assert decided.status_code == 201, decided.text
    status = client.post("/status", data={"case_number": case_number, "token": token})
    assert status.status_code == 200
    assert "We did not find that the content breaks" in status.text
    assert "The photo shows a landscape, no person." in status.text
    assert "INTERNAL-NOTE-42" not in status.text and "mod-web" not in status.text
    assert 'action="/status/appeal"' in status.text
    short = client.post(
        "/status/appeal", data={"case_number": case_number, "token": token, "reason": "no"}
    )
    assert short.status_code == 422 and 'href="#reason"' in short.text
    wrong = client.post(
        "/status/appeal",
        data={"case_number": case_number, "token": "guess", "reason": "It is me in that photo."},
    )
    assert wrong.status_code == 404 and "No report matches" in wrong.text
    appealed = client.post(
        "/status/appeal",
        data={
            "case_number": case_number,
            "token": token,
            "reason": "It is me in that photo, the landscape is the second image.",
        },
    )
    assert appealed.status_code == 200, appealed.text
    assert "We have received your appeal" in appealed.text
    assert "An appeal against the decision is being reviewed." in appealed.text
    assert 'action="/status/appeal"' not in appealed.text  # one appeal at a time


def test_a_report_joining_a_decided_case_reads_as_one_state(
    client: TestClient, rt: Runtime
) -> None:
    """Content already removed is reported again: the receipt and the status page say
    it was decided before this report came, and never that a reviewer will look."""
    register_post(rt)
    first, first_token = credentials(client.post("/report", data=parent_csam()).text)
    specialist = user_headers(rt, "spec-web", "child_safety_specialist")
    decided = client.post(
        f"/v1/cases/{first}/decisions",
        headers=specialist,
        json={"outcome": "violation", "policy": "csam", "reasons": "Removed as abuse material."},
    )
    assert decided.status_code == 201, decided.text
    again = client.post(
        "/report", data=parent_csam(explanation="The same video, reported by someone else.")
    )
    assert again.status_code == 200, again.text
    case_number, token = credentials(again.text)
    assert case_number == first  # the same content: the same case
    receipt = again.text
    assert "We had already made a decision about this content before your report" in receipt
    assert 'id="decided-before"' in receipt
    for pending in ("A trained reviewer will look", "until a reviewer has decided", "48 hours"):
        assert pending not in receipt, pending
    status = client.post("/status", data={"case_number": case_number, "token": token})
    assert status.status_code == 200
    assert "We had already made a decision about this content" in status.text
    assert "We have made a decision on your report" not in status.text
    assert "Removed as abuse material." in status.text
    # The timeline is this reporter's: their report comes after the decision.
    view = rt.cases.public_status(case_number, token)
    events = [e["event"] for e in view.timeline]
    assert events.index("decided") < events.index("received")
    # The first reporter's page is unchanged: the decision was on their report.
    mine = rt.cases.public_status(first, first_token)
    assert mine.status_text == "We have made a decision on your report."
