"""The hash exchanges page: every exchange feeding a bank, its last and next sync, the
entries it added, disabled and rejected, the live upstream signals, its last error; a
"sync now" button. Who: ``banks:read`` sees the page, ``banks:write`` syncs."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from takedown.domain.access import Permission
from takedown.errors import Forbidden, TakedownError
from takedown.web.console.render import ConsoleRoute, page
from takedown.web.console.security import SECURITY_HEADERS
from takedown.web.console.session import Visitor, base_context, poster, runtime, visitor

router = APIRouter(prefix="/console/exchanges", route_class=ConsoleRoute, include_in_schema=False)


@router.get("", response_class=HTMLResponse)
def exchanges(request: Request, notice: str = "", v: Visitor = Depends(visitor)) -> Response:
    if not v.can(Permission.BANKS_READ):
        raise Forbidden("Only bank curators and admins see the exchanges.", code="forbidden")
    rt = runtime(request)
    return page(
        "exchanges.html",
        **base_context(rt, v, exchanges=rt.exchanges.list(), notice=notice[:300]),
    )


@router.post("/{name}/sync")
def sync(request: Request, name: str, v: Visitor = Depends(poster)) -> Response:
    if not v.can(Permission.BANKS_WRITE):
        raise Forbidden("Only bank curators and admins sync exchanges.", code="forbidden")
    try:
        r = runtime(request).exchanges.sync(name, actor=v.principal.actor)
        notice = (
            f"{r.exchange}: {r.pages} page(s), {r.added} added, {r.disabled} disabled, "
            f"{r.rejected} rejected."
        )
    except TakedownError as exc:
        notice = exc.message
    return RedirectResponse(
        f"/console/exchanges?notice={quote(notice)}", 303, headers=SECURITY_HEADERS
    )
