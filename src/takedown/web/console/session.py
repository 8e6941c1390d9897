"""Who is using the console: the session dependency, and CSRF on every POST."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException

from takedown.domain.access import Permission, Principal, may_view_media
from takedown.domain.review import break_due_at
from takedown.errors import Forbidden, InvalidCharacter, InvalidRequest, Unauthenticated
from takedown.ids import utcnow
from takedown.runtime import Runtime
from takedown.web.console.render import LoginRequired
from takedown.web.console.security import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    check_csrf,
    csrf_token,
)

# Console users are people who read cases or administer the system; a user with the
# "platform" role (an integration's account) has no business here.
CONSOLE_PERMISSIONS = (Permission.CASES_READ, Permission.USERS_ADMIN)


@dataclass(frozen=True)
class Visitor:
    principal: Principal
    token: str
    csrf: str
    form: FormData = field(default_factory=FormData)

    def can(self, permission: str) -> bool:
        return self.principal.allows(Permission(permission))

    @property
    def sees_media(self) -> bool:
        return may_view_media(self.principal)

    def text(self, name: str, limit: int = 20_000) -> str:
        value = self.form.get(name)
        if not isinstance(value, str):
            return ""
        if len(value) > limit:
            raise InvalidRequest(
                f"The field {name!r} is longer than {limit} characters.", code="field_too_long"
            )
        return value


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def visitor(request: Request) -> Visitor:
    """Dependency: the signed-in person, or off to the sign-in page."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise LoginRequired
    try:
        principal = await run_in_threadpool(runtime(request).users.authenticate, token)
    except Unauthenticated:
        raise LoginRequired from None
    if principal.kind != "user" or not any(principal.allows(p) for p in CONSOLE_PERMISSIONS):
        raise Forbidden("This account has no access to the review console.", code="forbidden")
    return Visitor(principal, token, csrf_token(token))


async def read_form(request: Request) -> FormData:
    try:
        form = await request.form(max_files=0, max_fields=60, max_part_size=256 * 1024)
    except HTTPException:
        raise InvalidRequest("The form could not be read.", code="invalid_request") from None
    if any(isinstance(value, str) and "\x00" in value for value in form.values()):
        # Refused everywhere (api/limits.py); a multipart form reaches here unscanned.
        raise InvalidCharacter(
            "The form contains a NUL character (U+0000), which is never accepted.",
            code="invalid_character",
        )
    return form


async def poster(request: Request) -> Visitor:
    """Dependency for every POST: a session, and the session's CSRF token in the form
    (or, from the console's script, in the X-CSRF-Token header)."""
    v = await visitor(request)
    form = await read_form(request)
    given = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
    check_csrf(v.csrf, given if isinstance(given, str) else None)
    return Visitor(v.principal, v.token, v.csrf, form)


def base_context(rt: Runtime, v: Visitor, **extra: Any) -> dict[str, Any]:
    """What every console page needs: who, the CSRF token, wellness and the break."""
    state = rt.review.reviewer(v.principal)
    due = break_due_at(state.stretch_started_at, state.wellness.break_minutes)
    return {
        "me": v.principal,
        "v": v,
        "csrf": v.csrf,
        "wellness": state.wellness,
        "break_due_at": due,
        "break_now": due is not None and due <= utcnow(),
        **extra,
    }
