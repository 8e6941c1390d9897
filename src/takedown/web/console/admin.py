"""Admin pages: people (users and roles) and machines (API keys)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from takedown.domain.access import SCOPE_PERMISSIONS, Permission
from takedown.domain.cases import UserRole
from takedown.errors import Forbidden
from takedown.web.console.render import ConsoleRoute, page
from takedown.web.console.security import SECURITY_HEADERS
from takedown.web.console.session import Visitor, base_context, poster, runtime, visitor

router = APIRouter(prefix="/console/admin", route_class=ConsoleRoute, include_in_schema=False)


def _admin(v: Visitor) -> Visitor:
    if not v.can(Permission.USERS_ADMIN):
        raise Forbidden("Only admins manage users and API keys.", code="forbidden")
    return v


async def admin_visitor(v: Visitor = Depends(visitor)) -> Visitor:
    return _admin(v)


async def admin_poster(v: Visitor = Depends(poster)) -> Visitor:
    return _admin(v)


@router.get("/users", response_class=HTMLResponse)
def users(request: Request, v: Visitor = Depends(admin_visitor)) -> Response:
    rt = runtime(request)
    return page(
        "admin_users.html",
        **base_context(rt, v, users=rt.users.list(), roles=[r.value for r in UserRole]),
    )


@router.post("/users")
def create_user(request: Request, v: Visitor = Depends(admin_poster)) -> Response:
    runtime(request).users.create(
        v.text("username", 100),
        v.text("password", 1024),
        v.text("role", 40),
        actor=v.principal.actor,
    )
    return RedirectResponse("/console/admin/users", 303, headers=SECURITY_HEADERS)


@router.post("/users/{user_id}/active")
def set_active(request: Request, user_id: str, v: Visitor = Depends(admin_poster)) -> Response:
    active = v.text("active", 10) == "yes"
    if not active and user_id == v.principal.id:
        raise Forbidden("You cannot deactivate your own account.", code="forbidden")
    runtime(request).users.set_active(user_id, active, actor=v.principal.actor)
    return RedirectResponse("/console/admin/users", 303, headers=SECURITY_HEADERS)


@router.get("/keys", response_class=HTMLResponse)
def keys(request: Request, v: Visitor = Depends(admin_visitor)) -> Response:
    rt = runtime(request)
    return page(
        "admin_keys.html",
        **base_context(rt, v, keys=rt.api_keys.list(), scopes=list(SCOPE_PERMISSIONS), secret=None),
    )


@router.post("/keys", response_class=HTMLResponse)
def create_key(request: Request, v: Visitor = Depends(admin_poster)) -> Response:
    rt = runtime(request)
    scopes = [s for s in v.form.getlist("scopes") if isinstance(s, str)]
    view, secret = rt.api_keys.create(v.text("name", 100), scopes, actor=v.principal.actor)
    # The secret is shown once, on this page, and never again.
    return page(
        "admin_keys.html",
        201,
        **base_context(
            rt,
            v,
            keys=rt.api_keys.list(),
            scopes=list(SCOPE_PERMISSIONS),
            secret=secret,
            created=view,
        ),
    )


@router.post("/keys/{key_id}/revoke")
def revoke_key(request: Request, key_id: str, v: Visitor = Depends(admin_poster)) -> Response:
    runtime(request).api_keys.revoke(key_id, actor=v.principal.actor)
    return RedirectResponse("/console/admin/keys", 303, headers=SECURITY_HEADERS)
