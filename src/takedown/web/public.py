"""The public report form and status pages: no login, no cookies, no JavaScript needed.

The one script is optional: on the report form, "hash it here" computes an image's
hashes on the reporter's device (static/js/report-form.js) so that only the hashes are
sent. Everything else works, and the form still works, with scripts off.

Why server-rendered HTML and not a script-driven page: the people who use these pages
are victims, parents and bystanders, often on an old phone, sometimes with scripts
blocked, always under stress. Plain HTML forms work for all of them, and for screen
readers and keyboards, with nothing to load or break.

The TAKE IT DOWN Act asks for a clear, plain-language notice of the removal process,
reachable from the service: it is at the top of ``/report`` (``#how-it-works``) and
linked from every page's footer.

CSRF: these forms are anonymous. There is no session, no cookie and no other ambient
credential that a forged cross-site request could ride on; what a form grants (filing
a report, appealing with a case number and token) needs only what the submitter typed.
So there is deliberately no CSRF token, and no cookie is ever set here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException

from takedown.domain.reports import (
    INTIMATE_IMAGERY,
    MAX_HASHED_FILES,
    MAX_TEXT,
    VICTIM_ROLES,
    Category,
    ReportedHash,
    ReporterRole,
    ReportInput,
)
from takedown.errors import InvalidRequest, NotFound, TakedownError
from takedown.runtime import Runtime
from takedown.services.cases.service import PublicStatusView
from takedown.web.ratelimit import check_report_rate

log = logging.getLogger("takedown.web")

router = APIRouter(include_in_schema=False)

SITE_NAME = "Takedown"
STYLESHEET_PATH = "/assets/public.css"

# Headers on every page. script-src 'none': the pages need no script at all, so an
# injected one cannot run. form-action 'self': a page cannot be made to post a report
# (and its personal data) elsewhere. frame-ancestors 'none': no clickjacking.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# The report form alone runs a script: the optional in-browser hashing (report-form.js and
# the worker). Scripts and the worker only from this server ('self'), and connect-src
# 'none': no script on the page can send anything by fetch, XHR, WebSocket or beacon.
# What leaves is the form post, and the file input has no name, so never the file.
REPORT_FORM_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; worker-src 'self'; connect-src 'none'; "
    "style-src 'self'; img-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Every page may carry personal data typed by the reporter, a status token or a
    # case's status: nothing is kept by the browser's or a proxy's cache.
    "Cache-Control": "no-store",
}

# The limits the browser enforces (``maxlength``) and that we use to tell the reporter
# which field was too long; the domain enforces the same or looser ones.
MAX_LEN = {
    "urls": 210_000,
    "item_ids": 20_000,
    "explanation": MAX_TEXT,
    "reporter_name": 200,
    "reporter_email": 320,
    "contact": 500,
    "signature": 200,
    "victim_first_name": 100,
    "victim_last_name": 100,
    "victim_email": 320,
    "victim_phone": 50,
    "victim_age": 3,
    "victim_date_of_birth": 10,
}
MAX_APPEAL = 5000
VICTIM_FIELDS = (
    "victim_first_name",
    "victim_last_name",
    "victim_email",
    "victim_phone",
    "victim_age",
    "victim_date_of_birth",
)
TEXT_FIELDS = (
    "urls",
    "item_ids",
    "explanation",
    "reporter_name",
    "reporter_email",
    "contact",
    "signature",
    *VICTIM_FIELDS,
)
CHECKBOXES = ("good_faith", "not_consensual", "authorised_for_depicted", "victim_consent")

CATEGORY_CHOICES = (
    (
        Category.CSAM.value,
        "Sexual images or video of a child or teen",
        "Anyone under 18, including images they took of themselves.",
    ),
    (
        Category.MINOR_EXPLOITATION.value,
        "Sextortion, grooming or exploitation of a minor",
        "For example, someone threatening to share a young person's images unless they send "
        "more, or pressuring them into sexual contact.",
    ),
    (
        Category.NCII.value,
        "Intimate images of an adult shared without consent",
        "Nude or sexual images or video of someone 18 or over, shared without their consent, "
        "including fake or AI-made images.",
    ),
    (Category.OTHER.value, "Something else", "Other content you believe is illegal."),
)
ROLE_CHOICES = (
    (ReporterRole.PERSON_DEPICTED.value, "I am the person shown", ""),
    (
        ReporterRole.PARENT_GUARDIAN.value,
        "I am a parent or guardian of the person shown, or authorised to act for them",
        "",
    ),
    (ReporterRole.USER.value, "I am someone else who came across it", ""),
)
# Radio groups are reached through their first option.
_ANCHORS = {
    "category": f"category-{CATEGORY_CHOICES[0][0]}",
    "reporter_role": f"reporter_role-{ROLE_CHOICES[0][0]}",
}
# A browser-made "hashes" field is a few hundred characters; a longer one is not read.
MAX_HASHES_FIELD = 4096
# Which field a validation error points at (the domain raises one error at a time).
_CODE_FIELD = {
    "unknown_category": "category",
    "unknown_reporter_role": "reporter_role",
    "channel_key_required": "reporter_role",
    "location_required": "urls",
    "too_many_locations": "urls",
    "invalid_url": "urls",
    "invalid_email": "reporter_email",
    "explanation_required": "explanation",
    "good_faith_required": "good_faith",
    "invalid_hash": "hash-file",
    "too_many_files": "hash-file",
    "victim_consent_required": "victim_consent",
    "victim_details_not_accepted": "reporter_role",
}
# The domain's wording names the API's values; on the form, a radio left empty is
# simply a question not yet answered.
_WEB_MESSAGES = {
    "unknown_category": "Choose what kind of content you are reporting.",
    "unknown_reporter_role": "Choose who you are: the person shown, a parent or guardian, "
    "or someone else.",
}
OUTCOME_TEXT = {
    "violation": "We found that the content breaks the law or our rules. We removed it and "
    "the copies of it we know of.",
    "no_violation": "We did not find that the content breaks the law or our rules.",
    "needs_info": "We need more information to decide.",
}
EVENT_TEXT = {
    "received": "Report received",
    "content_restricted": "Content hidden from the public while we review it",
    "decided": "Decision made",
    "appeal_opened": "Appeal received",
    "withdrawn": "You withdrew your report",
}


@dataclass(frozen=True)
class FieldError:
    """One problem, shown in the error summary (linked to its field) and by the field."""

    field: str | None
    message: str

    @property
    def anchor(self) -> str | None:
        return _ANCHORS.get(self.field, self.field) if self.field else None


# -- rendering ----------------------------------------------------------------------------
def _when(value: datetime | str | None) -> str:
    """A date a person can read: "3 May 2026, 14:05 UTC"."""
    if value is None:
        return ""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:  # SQLite hands back naive datetimes; they are UTC
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return f"{moment.day} {moment:%B %Y, %H:%M} UTC"


@cache
def _env() -> Environment:
    # autoescape=True for every template, whatever its name: everything a reporter
    # typed is escaped on the way out. StrictUndefined: a typo in a template fails the
    # tests instead of silently rendering an empty string.
    env = Environment(
        loader=PackageLoader("takedown.web", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.globals.update(
        site_name=SITE_NAME,
        stylesheet=STYLESHEET_PATH,
        max_len=MAX_LEN,
        max_appeal=MAX_APPEAL,
    )
    return env


def _page(
    template: str, status: int = 200, csp: str = CONTENT_SECURITY_POLICY, **context: Any
) -> HTMLResponse:
    html = _env().get_template(template).render(**context)
    headers = {**SECURITY_HEADERS, "Content-Security-Policy": csp}
    return HTMLResponse(html, status_code=status, headers=headers)


def _error_page(status: int, title: str, message: str) -> HTMLResponse:
    return _page("error.html", status, title=title, message=message)


def _runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


_FORM_PROBLEMS = {
    413: "The form was too large.",
    422: "The form contains a character that cannot be accepted (a NUL character).",
}


class FormRefused(Exception):
    """The posted form is not read: its status and a sentence for the person."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def _read_form(request: Request) -> FormData:
    """The posted fields, refusing files and oversize fields (a form has neither), and
    NUL characters (the API refuses them everywhere: api/limits.py)."""
    try:
        form = await request.form(max_files=0, max_fields=40, max_part_size=256 * 1024)
    except HTTPException:
        raise FormRefused(400, "The form was too large or not sent as a form.") from None
    except TakedownError as exc:  # over the body limit, or a NUL, found as it arrived
        raise FormRefused(exc.status, _FORM_PROBLEMS.get(exc.status, exc.message)) from None
    if any(isinstance(value, str) and "\x00" in value for value in form.values()):
        raise FormRefused(422, _FORM_PROBLEMS[422])
    return form


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


# -- the report form ----------------------------------------------------------------------
def _form_values(form: FormData | None) -> dict[str, Any]:
    values: dict[str, Any] = {"category": "", "reporter_role": "", "hashes": []}
    values.update({name: "" for name in TEXT_FIELDS})
    values.update({name: False for name in CHECKBOXES})
    if form is None:
        return values
    for name in ("category", "reporter_role", *TEXT_FIELDS):
        values[name] = _text(form, name)
    for name in CHECKBOXES:
        values[name] = bool(_text(form, name))
    values["hashes"] = [h for h in form.getlist("hashes") if isinstance(h, str)][
        : MAX_HASHED_FILES + 1
    ]
    return values


def _reported_hashes(fields: list[str]) -> list[ReportedHash]:
    """The hidden "hashes" fields the page's script added: one JSON object per file."""
    out = []
    for text in fields:
        try:
            data = _hash_record(text)
            md5, pdq, quality = data.get("md5"), data.get("pdq"), data.get("pdq_quality")
            dihedral = data.get("dihedral") or []
            if not all(isinstance(v, str | None) for v in (md5, pdq, *dihedral)):
                raise TypeError("hashes are strings")
            if not isinstance(quality, int | None) or not isinstance(dihedral, list):
                raise TypeError("a quality is a number, the variants a list")
            out.append(ReportedHash(md5, pdq, quality, tuple(dihedral)))
        except (ValueError, AttributeError, TypeError):
            raise InvalidRequest(
                "The image's hashes could not be read; remove them and hash the image again.",
                code="invalid_hash",
            ) from None
    return out


def _hash_record(text: str) -> Any:
    """One "hashes" field as JSON, or ValueError: too long, or nested beyond what the
    parser follows (a RecursionError, which is no bug of ours to log)."""
    if len(text) > MAX_HASHES_FIELD:
        raise ValueError("too long for a file's hashes")
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _report_input(values: Mapping[str, Any]) -> ReportInput:
    def optional(name: str) -> str | None:
        text = str(values[name]).strip()
        return text or None

    return ReportInput(
        category=values["category"],
        reporter_role=values["reporter_role"],
        explanation=values["explanation"],
        urls=_lines(values["urls"]),
        item_ids=_lines(values["item_ids"]),
        reporter_name=optional("reporter_name"),
        reporter_email=optional("reporter_email"),
        contact=optional("contact"),
        signature=optional("signature"),
        good_faith=values["good_faith"],
        not_consensual=values["not_consensual"],
        authorised_for_depicted=values["authorised_for_depicted"],
        hashes=_reported_hashes(values["hashes"]),
        victim_consent=values["victim_consent"],
        victim_first_name=optional("victim_first_name"),
        victim_last_name=optional("victim_last_name"),
        victim_email=optional("victim_email"),
        victim_phone=optional("victim_phone"),
        victim_age=_victim_age(optional("victim_age")),
        victim_date_of_birth=_victim_birth_date(optional("victim_date_of_birth")),
    )


def _victim_age(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isdigit() or len(text) > 3:
        raise InvalidRequest(
            "An age is a whole number of years.", code="invalid_victim_details", field="victim_age"
        )
    return int(text)


def _victim_birth_date(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(
            "Write the date of birth as year-month-day, for example 2010-04-30.",
            code="invalid_victim_details",
            field="victim_date_of_birth",
        ) from None


def _missing_field(missing: str) -> str | None:
    """The form field that supplies a missing TAKE IT DOWN element (domain wording)."""
    text = missing.lower()
    if "signature" in text:
        return "signature"
    if "not consensual" in text:
        return "not_consensual"
    if "authorised" in text:
        return "authorised_for_depicted"
    if "contact" in text:
        return "reporter_email"
    return None


def _errors_for(exc: TakedownError, values: Mapping[str, Any]) -> list[FieldError]:
    if exc.code == "takedown_request_incomplete":
        missing = exc.details.get("missing") or []
        if missing:
            return [FieldError(_missing_field(m), f"A removal request needs {m}.") for m in missing]
    if exc.code == "field_too_long":
        for name, limit in MAX_LEN.items():
            if len(str(values.get(name, ""))) > limit:
                return [FieldError(name, exc.message)]
    if exc.code == "invalid_victim_details" and exc.details.get("field") in VICTIM_FIELDS:
        return [FieldError(str(exc.details["field"]), exc.message)]
    if exc.code == "contact_required":
        field = "reporter_email" if values.get("reporter_name") else "reporter_name"
        return [FieldError(field, exc.message)]
    return [FieldError(_CODE_FIELD.get(exc.code), _WEB_MESSAGES.get(exc.code, exc.message))]


def _shown_hashes(fields: list[str]) -> list[dict[str, str]]:
    """The hashes to list again after a validation error (also without script)."""
    shown = []
    for text in fields:
        try:
            data = _hash_record(text)
            shown.append({"raw": text, "md5": str(data.get("md5")), "pdq": str(data.get("pdq"))})
        except (ValueError, AttributeError):
            continue
    return shown


def _form_page(
    values: Mapping[str, Any], errors: list[FieldError] | None = None, status: int = 200
) -> HTMLResponse:
    errors = errors or []
    by_field: dict[str, str] = {}
    for error in errors:
        if error.field and error.field not in by_field:
            by_field[error.field] = error.message
    return _page(
        "report_form.html",
        status,
        csp=REPORT_FORM_CONTENT_SECURITY_POLICY,
        v=values,
        errors=errors,
        field_errors=by_field,
        shown_hashes=_shown_hashes(values["hashes"]),
        categories=CATEGORY_CHOICES,
        roles=ROLE_CHOICES,
    )


@router.get("/report", response_class=HTMLResponse)
async def report_form() -> HTMLResponse:
    """The report form, with the plain-language notice of the removal process."""
    return _form_page(_form_values(None))


@router.post("/report", response_class=HTMLResponse)
async def report_submit(request: Request) -> HTMLResponse:
    """File a report; on success show the case number and the status token, once."""
    rt = _runtime(request)
    try:
        form = await _read_form(request)
    except FormRefused as exc:
        return _error_page(
            exc.status, "The form could not be read", f"{exc.message} Please go back and try again."
        )
    values = _form_values(form)
    try:
        check_report_rate(request, rt.settings.report_rate_limit_per_hour)
        # The service call touches the database: off the event loop.
        receipt = await run_in_threadpool(
            rt.cases.submit_report, _report_input(values), channel="web"
        )
    except TakedownError as exc:
        # Rate limit (429) and validation (422) alike: the reporter keeps what they typed.
        if exc.status == 429:
            return _form_page(values, [FieldError(None, exc.message)], 429)
        return _form_page(values, _errors_for(exc, values), exc.status)
    except Exception:  # noqa: BLE001 - a bug: log it, and be honest with the reporter
        log.exception("web report submission failed")
        return _error_page(
            500,
            "Your report could not be sent",
            "Something went wrong on our side and your report may not have been saved. "
            "Please try again in a few minutes.",
        )
    victim_request = values["category"] in {c.value for c in INTIMATE_IMAGERY} and values[
        "reporter_role"
    ] in {r.value for r in VICTIM_ROLES}
    return _page(
        "report_received.html",
        200,
        receipt=receipt,
        minor_safety=values["category"] in (Category.CSAM.value, Category.MINOR_EXPLOITATION.value),
        show_missing=victim_request and not receipt.takedown_request,
        gave_email=bool(values["reporter_email"].strip()),
        hashed_files=len(values["hashes"]),
    )


# -- status and appeal --------------------------------------------------------------------
def _status_page(
    view: PublicStatusView,
    token: str,
    *,
    status: int = 200,
    errors: list[FieldError] | None = None,
    appeal_reason: str = "",
    appeal_sent: bool = False,
    withdrawn_now: bool = False,
) -> HTMLResponse:
    can_appeal = (
        view.decision is not None
        and view.status == "decided"
        and _aware(view.decision.appeal_until) >= datetime.now(UTC)
    )
    return _page(
        "status.html",
        status,
        view=view,
        token=token,
        errors=errors or [],
        can_appeal=can_appeal,
        appeal_reason=appeal_reason,
        appeal_sent=appeal_sent,
        withdrawn_now=withdrawn_now,
        outcome_text=OUTCOME_TEXT,
        event_text=EVENT_TEXT,
    )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _status_form(
    case_number: str = "", errors: list[FieldError] | None = None, status: int = 200
) -> HTMLResponse:
    # The token is never echoed back: a mistyped one is retyped, not shown again.
    return _page("status_form.html", status, case_number=case_number, errors=errors or [])


NO_MATCH = (
    "No report matches that case number and status token. Check both and try again; "
    "the token is the long code shown when you sent the report."
)


async def _lookup(
    request: Request, case_number: str, token: str
) -> PublicStatusView | HTMLResponse:
    """The status view, or the status form again with one message for every failure
    (unknown case, wrong token): a case number alone reveals nothing."""
    missing = []
    if not case_number:
        missing.append(FieldError("case_number", "Enter your case number."))
    if not token:
        missing.append(FieldError("token", "Enter your status token."))
    if missing:
        return _status_form(case_number, missing, 422)
    if len(case_number) > 40 or len(token) > 100:
        return _status_form(case_number[:40], [FieldError("case_number", NO_MATCH)], 404)
    try:
        return await run_in_threadpool(_runtime(request).cases.public_status, case_number, token)
    except NotFound:
        return _status_form(case_number, [FieldError("case_number", NO_MATCH)], 404)


@router.get("/status", response_class=HTMLResponse)
async def status_form() -> HTMLResponse:
    """Ask for the case number and status token (by POST, so they stay out of URLs,
    browser history and server logs)."""
    return _status_form()


@router.post("/status", response_class=HTMLResponse)
async def status_show(request: Request) -> HTMLResponse:
    """The honest status of a report: what we did, when, and the decision with reasons."""
    try:
        form = await _read_form(request)
    except FormRefused as exc:
        return _status_form(errors=[FieldError(None, exc.message)], status=exc.status)
    case_number, token = _text(form, "case_number").strip(), _text(form, "token").strip()
    found = await _lookup(request, case_number, token)
    if isinstance(found, HTMLResponse):
        return found
    return _status_page(found, token)


@router.post("/status/appeal", response_class=HTMLResponse)
async def status_appeal(request: Request) -> HTMLResponse:
    """Appeal the decision (DSA Art. 20: open to notifiers, free, six months)."""
    try:
        form = await _read_form(request)
    except FormRefused as exc:
        return _status_form(errors=[FieldError(None, exc.message)], status=exc.status)
    case_number, token = _text(form, "case_number").strip(), _text(form, "token").strip()
    reason = _text(form, "reason")
    found = await _lookup(request, case_number, token)
    if isinstance(found, HTMLResponse):
        return found
    if len(reason) > MAX_APPEAL:
        error = FieldError("reason", f"Please keep your appeal under {MAX_APPEAL} characters.")
        return _status_page(found, token, status=422, errors=[error], appeal_reason=reason)
    try:
        view = await run_in_threadpool(
            _runtime(request).cases.appeal_as_reporter, case_number, token, reason
        )
    except TakedownError as exc:
        field = "reason" if exc.code == "reasons_required" else None
        if exc.code == "reasons_required":
            message = "Explain in a few words why the decision should change."
        else:
            message = exc.message
        return _status_page(
            found,
            token,
            status=exc.status if exc.status >= 400 else 422,
            errors=[FieldError(field, message)],
            appeal_reason=reason,
        )
    return _status_page(view, token, appeal_sent=True)


@router.post("/status/withdraw", response_class=HTMLResponse)
async def status_withdraw(request: Request) -> HTMLResponse:
    """The reporter withdraws their report (see CaseService.withdraw for what changes)."""
    try:
        form = await _read_form(request)
    except FormRefused as exc:
        return _status_form(errors=[FieldError(None, exc.message)], status=exc.status)
    case_number, token = _text(form, "case_number").strip(), _text(form, "token").strip()
    found = await _lookup(request, case_number, token)
    if isinstance(found, HTMLResponse):
        return found
    view = await run_in_threadpool(_runtime(request).cases.withdraw, case_number, token)
    return _status_page(view, token, withdrawn_now=True)


# -- the stylesheet ---------------------------------------------------------------------------
@cache
def _stylesheet() -> bytes:
    return (Path(__file__).parent / "static" / "public.css").read_bytes()


@router.get(STYLESHEET_PATH)
async def stylesheet() -> Response:
    """The one stylesheet, served by the router so that the pages need no extra mount."""
    return Response(
        _stylesheet(),
        media_type="text/css; charset=utf-8",
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=3600"},
    )


# -- the scripts that hash an image on the reporter's device ----------------------------------
# Only these files are served (no path from the URL ever reaches the filesystem).
SCRIPT_NAMES = frozenset({"hash-worker.js", "md5.js", "pdq.js", "report-form.js"})
# A Web Worker's CSP comes from its own script's response, not from the page. These scripts
# may import one another ('self') and nothing else; default-src 'none' leaves them no way to
# fetch, post or open a socket, so the image the worker reads cannot leave the device
# through it.
SCRIPT_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
SCRIPT_HEADERS = {
    **SECURITY_HEADERS,
    "Content-Security-Policy": SCRIPT_CONTENT_SECURITY_POLICY,
    # No personal data here, but the three files must not be mixed across versions:
    # revalidate on every use.
    "Cache-Control": "no-cache",
}


@cache
def _script(name: str) -> bytes:
    return (Path(__file__).parent / "static" / "js" / name).read_bytes()


@router.get("/assets/js/{name}")
async def script(name: str) -> Response:
    """The browser-side hashing scripts (ES modules, see docs/browser-hashing.md)."""
    if name not in SCRIPT_NAMES:
        return Response(
            "Not found", status_code=404, media_type="text/plain", headers=SECURITY_HEADERS
        )
    return Response(
        _script(name), media_type="text/javascript; charset=utf-8", headers=SCRIPT_HEADERS
    )
