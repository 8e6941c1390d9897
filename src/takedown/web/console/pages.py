"""The review console's pages: sign-in, queues, the case page and its forms, wellness
settings, the dashboard. Server-rendered; one small script adds the reveal-on-click,
keyboard shortcuts and the break reminder (everything but the reveal works without it).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from takedown.domain.access import Permission
from takedown.domain.cases import CaseState, Outcome
from takedown.domain.cybertipline import ESCALATION_NOTE_MAX, EscalationReason
from takedown.domain.reports import Category
from takedown.domain.review import BLUR_MAX, BLUR_MIN, BREAK_MAX, BREAK_MIN, MEDIA_PURPOSES
from takedown.errors import Forbidden, InvalidRequest, TakedownError, Unauthenticated
from takedown.runtime import Runtime
from takedown.web.console.media import media_links
from takedown.web.console.render import ConsoleRoute, page
from takedown.web.console.security import (
    CSRF_FIELD,
    LOGIN_COOKIE,
    SECURITY_HEADERS,
    SESSION_COOKIE,
    check_csrf,
    clear_cookie,
    new_login_token,
    secure_cookies,
    set_cookie,
)
from takedown.web.console.session import (
    Visitor,
    base_context,
    poster,
    read_form,
    runtime,
    visitor,
)

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

QUEUES = {
    "mine": "My queue",
    "moderation": "Moderation queue",
    "specialists": "Specialists' queue",
}
# Fixed confirmations shown after a redirect (never text taken from the URL).
NOTICES = {
    "claimed": "You hold this case now. Nobody else can work on it until you decide, "
    "release it, or the lock lapses.",
    "released": "You released the case.",
    "decided": "Decision recorded.",
    "escalated": "The case went to the specialists' queue.",
    "settings": "Your settings are saved.",
    "password": "Your password is changed; your other sign-ins were ended.",
    "break": "Welcome back. A new stretch of review starts now.",
    "drafted": "CyberTipline reports drafted: one per reported account. Check each, then "
    "submit it.",
}
# The CyberTipline draft form's escalation choice (domain.cybertipline.EscalationReason).
ESCALATION_CHOICES = (
    ("", "Do not escalate"),
    (EscalationReason.IMMINENT_DANGER.value, "A child is in imminent danger"),
    (EscalationReason.CHILD_IDENTIFIABLE.value, "The child depicted is identifiable"),
    (EscalationReason.ONGOING_ABUSE.value, "The abuse or exploitation is ongoing"),
)
OUTCOMES = (
    (Outcome.VIOLATION.value, "Violation: remove every copy", "1"),
    (Outcome.NO_VIOLATION.value, "No violation: restore", "2"),
    (Outcome.NEEDS_INFO.value, "Needs more information", "3"),
)
# The decision form's fields, parsed in one place (decision_from_form) so that new
# fields (e.g. a per-media classification) are one line here and one in the template.
DECISION_TEXT_FIELDS = {"reasons": 5000, "policy": 100, "internal_note": 5000}
POLICIES = ("csam", "minor_exploitation", "ncii", "other_illegal")


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, 303, headers=SECURITY_HEADERS)


def _back(case_id: str, notice: str) -> RedirectResponse:
    return _redirect(f"/console/cases/{case_id}?notice={notice}#main")


# -- sign-in and out ------------------------------------------------------------------
def _login_page(request: Request, error: str = "", status: int = 200) -> Response:
    token = new_login_token()
    response = page("login.html", status, me=None, login_csrf=token, error=error)
    set_cookie(
        response,
        LOGIN_COOKIE,
        token,
        secure=secure_cookies(runtime(request).settings, request),
        max_age=3600,
    )
    return response


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> Response:
    return _login_page(request)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    rt = runtime(request)
    form = await read_form(request)
    given = form.get(CSRF_FIELD)
    check_csrf(request.cookies.get(LOGIN_COOKIE) or "", given if isinstance(given, str) else None)
    username, password = form.get("username"), form.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or len(username) > 100:
        return _login_page(request, "Enter your username and password.", 422)
    try:
        grant = await run_in_threadpool(rt.users.sign_in, username, password[:1024])
        principal = await run_in_threadpool(rt.users.authenticate, grant.token)
    except Unauthenticated:
        return _login_page(request, "Wrong username or password.", 401)
    await run_in_threadpool(rt.review.start_stretch, principal)
    response = _redirect("/console")
    secure = secure_cookies(rt.settings, request)
    max_age = int((grant.expires_at - datetime.now(UTC)).total_seconds())
    set_cookie(response, SESSION_COOKIE, grant.token, secure=secure, max_age=max_age)
    clear_cookie(response, LOGIN_COOKIE, secure=secure)
    return response


@router.post("/logout")
def logout(request: Request, v: Visitor = Depends(poster)) -> Response:
    runtime(request).users.sign_out(v.token)
    response = _redirect("/console/login")
    clear_cookie(
        response, SESSION_COOKIE, secure=secure_cookies(runtime(request).settings, request)
    )
    return response


# -- queues -------------------------------------------------------------------------------
@router.get("", response_class=HTMLResponse)
def home(v: Visitor = Depends(visitor)) -> Response:
    if not v.can(Permission.CASES_READ):
        return _redirect("/console/admin/users")
    team = "specialists" if v.principal.role == "child_safety_specialist" else "moderation"
    return _redirect(f"/console/queue?team={team}")


@router.get("/queue", response_class=HTMLResponse)
def queue(
    request: Request,
    team: str = "moderation",
    category: str = "",
    state: str = "",
    v: Visitor = Depends(visitor),
) -> Response:
    rt = runtime(request)
    if team not in QUEUES:
        raise InvalidRequest("Choose one of the queues.", code="invalid_request")
    if category and category not in {c.value for c in Category}:
        raise InvalidRequest("Unknown category.", code="invalid_request")
    rows = rt.review.queue(v.principal, team, category=category or None, state=state or None)
    return page(
        "queue.html",
        **base_context(
            rt,
            v,
            rows=rows,
            team=team,
            queues=QUEUES,
            category=category,
            state=state,
            categories=[c.value for c in Category],
            states=[s.value for s in CaseState if s is not CaseState.DECIDED],
            now=datetime.now(UTC),
        ),
    )


# -- the case page ----------------------------------------------------------------------------
def _default_purpose(state: str, v: Visitor) -> str:
    if v.principal.role == "legal":
        return "legal_report"
    if state == CaseState.AWAITING_SECOND_REVIEW.value:
        return "second_review"
    if state == CaseState.APPEALED.value:
        return "appeal"
    return "review"


def _case_page(
    request: Request,
    case_id: str,
    v: Visitor,
    *,
    notice: str = "",
    form_error: str = "",
    form_values: dict[str, str] | None = None,
    legal_error: str = "",
    status: int = 200,
) -> Response:
    rt = runtime(request)
    detail = rt.cases.get(case_id, v.principal, copies_limit=500)
    media = rt.review.case_media(case_id, v.principal) if v.sees_media else []
    unmatchable = rt.review.unmatchable_entries() if media else []
    history = rt.review.history(case_id, v.principal)
    lock = rt.review.lock_of(case_id)
    pending = next(
        (
            d
            for d in reversed(detail.decisions)
            if not d.effective and d.outcome == Outcome.NO_VIOLATION.value
        ),
        None,
    )
    wellness = rt.review.reviewer(v.principal).wellness
    legal = _legal_context(rt, case_id, v)
    links = media_links(rt, v, case_id, media, _default_purpose(detail.state, v), wellness)
    return page(
        "case.html",
        status,
        **base_context(
            rt,
            v,
            case=detail,
            media=media,
            unmatchable=unmatchable,
            links=links,
            history=history,
            lock=lock,
            held=lock is not None and lock.user_id == v.principal.id,
            pending=pending,
            notice=NOTICES.get(notice, ""),
            form_error=form_error,
            form=form_values or {},
            outcomes=OUTCOMES,
            policies=POLICIES,
            purposes=MEDIA_PURPOSES,
            purpose=_default_purpose(detail.state, v),
            decided=detail.state == CaseState.DECIDED.value,
            identity=v.can(Permission.REPORTER_IDENTITY),
            lock_minutes=int(rt.review.lock_ttl.total_seconds() // 60),
            legal_error=legal_error,
            escalation_choices=ESCALATION_CHOICES,
            **legal,
        ),
    )


def _legal_context(rt: Runtime, case_id: str, v: Visitor) -> dict[str, Any]:
    """For legal staff: the case's CyberTipline filings and whether the queue suggests
    escalating (a suggestion only: the reason is theirs to give)."""
    if not v.can(Permission.LEGAL_READ):
        return {"filings": [], "legal_entry": None}
    entry = rt.legal.entry_for(case_id)
    filings = rt.cybertipline.for_case(case_id) if entry is not None else []
    return {"filings": filings, "legal_entry": entry}


@router.get("/cases/{case_id}", response_class=HTMLResponse)
def case_page(
    request: Request, case_id: str, notice: str = "", v: Visitor = Depends(visitor)
) -> Response:
    return _case_page(request, case_id, v, notice=notice)


@router.post("/cases/{case_id}/claim")
def claim(request: Request, case_id: str, v: Visitor = Depends(poster)) -> Response:
    runtime(request).review.claim(case_id, v.principal)
    return _back(case_id, "claimed")


@router.post("/cases/{case_id}/release")
def release(request: Request, case_id: str, v: Visitor = Depends(poster)) -> Response:
    runtime(request).review.release(case_id, v.principal)
    return _back(case_id, "released")


def decision_from_form(v: Visitor) -> dict[str, Any]:
    """The keyword arguments of ``CaseService.decide`` from the posted form."""
    values = {name: v.text(name, limit) for name, limit in DECISION_TEXT_FIELDS.items()}
    return {
        "outcome": v.text("outcome", 40),
        "reasons": values["reasons"],
        "policy": values["policy"].strip() or None,
        "internal_note": values["internal_note"].strip() or None,
        "manifestly_unfounded": v.text("manifestly_unfounded", 10) == "yes",
    }


@router.post("/cases/{case_id}/decide")
def decide(request: Request, case_id: str, v: Visitor = Depends(poster)) -> Response:
    decision = decision_from_form(v)
    try:
        runtime(request).review.decide(case_id, v.principal, **decision)
    except TakedownError as exc:
        if exc.status not in (409, 422):
            raise
        typed = {k: str(val or "") for k, val in decision.items()}
        return _case_page(
            request, case_id, v, form_error=exc.message, form_values=typed, status=exc.status
        )
    return _back(case_id, "decided")


@router.post("/cases/{case_id}/cybertipline")
def draft_cybertipline(request: Request, case_id: str, v: Visitor = Depends(poster)) -> Response:
    """Legal drafts the case's CyberTipline reports, escalated only with a reason."""
    if not v.can(Permission.LEGAL_FILE):
        raise Forbidden("Only legal staff file reports.", code="forbidden")
    choice = v.text("escalation_reason", 40).strip()
    note = v.text("escalation_note", ESCALATION_NOTE_MAX).strip() or None
    if choice and choice not in {r.value for r in EscalationReason}:
        return _case_page(request, case_id, v, legal_error="Unknown escalation reason.", status=422)
    reason = EscalationReason(choice) if choice else None
    try:
        if reason is None and note:
            raise InvalidRequest(
                "Choose why the report is escalated, or leave the note empty.",
                code="escalation_reason_required",
            )
        runtime(request).cybertipline.draft(
            case_id, v.principal, escalation_reason=reason, escalation_note=note
        )
    except TakedownError as exc:
        if exc.status not in (409, 422):
            raise
        return _case_page(request, case_id, v, legal_error=exc.message, status=exc.status)
    return _back(case_id, "drafted")


@router.post("/cases/{case_id}/escalate")
def escalate(request: Request, case_id: str, v: Visitor = Depends(poster)) -> Response:
    runtime(request).review.escalate(case_id, v.principal, v.text("note", 5000))
    return _back(case_id, "escalated")


# -- wellness and password ----------------------------------------------------------------
@router.get("/settings", response_class=HTMLResponse)
def settings_page(request: Request, notice: str = "", v: Visitor = Depends(visitor)) -> Response:
    rt = runtime(request)
    return page(
        "settings.html",
        **base_context(
            rt,
            v,
            notice=NOTICES.get(notice, ""),
            blur_min=BLUR_MIN,
            blur_max=BLUR_MAX,
            break_min=BREAK_MIN,
            break_max=BREAK_MAX,
        ),
    )


def _int(v: Visitor, name: str) -> int:
    try:
        return int(v.text(name, 10))
    except ValueError:
        raise InvalidRequest(
            f"{name.replace('_', ' ')} is a whole number.", code="invalid_settings"
        ) from None


@router.post("/settings")
def save_settings(request: Request, v: Visitor = Depends(poster)) -> Response:
    runtime(request).review.update_wellness(
        v.principal,
        _int(v, "blur_strength"),
        v.text("greyscale", 10) == "yes",
        _int(v, "break_minutes"),
    )
    return _redirect("/console/settings?notice=settings")


@router.post("/password")
def change_password(request: Request, v: Visitor = Depends(poster)) -> Response:
    new = v.text("new_password", 1024)
    if new != v.text("repeat_password", 1024):
        raise InvalidRequest("The two new passwords differ.", code="weak_password")
    runtime(request).users.change_password(
        v.principal.id, v.text("current_password", 1024), new, keep_token=v.token
    )
    return _redirect("/console/settings?notice=password")


@router.post("/break")
def took_break(request: Request, v: Visitor = Depends(poster)) -> Response:
    runtime(request).review.start_stretch(v.principal)
    back = v.text("next", 300)
    if not back.startswith("/console") or back.startswith("//"):
        back = "/console"
    sep = "&" if "?" in back else "?"
    return _redirect(f"{back}{sep}notice=break")


# -- dashboard ---------------------------------------------------------------------------------
PERIODS = {"1": "Last 24 hours", "7": "Last 7 days", "30": "Last 30 days", "90": "Last 90 days"}


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(request: Request, days: str = "7", v: Visitor = Depends(visitor)) -> Response:
    rt = runtime(request)
    if days not in PERIODS:
        raise InvalidRequest("Choose one of the periods.", code="invalid_period")
    end = datetime.now(UTC)
    figures = rt.review.dashboard(v.principal, end - timedelta(days=int(days)), end)
    return page("dashboard.html", **base_context(rt, v, d=figures, days=days, periods=PERIODS))
