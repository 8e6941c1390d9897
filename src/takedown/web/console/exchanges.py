"""The hash exchanges page: every exchange feeding a bank, its policy (threshold and
action, its own or its bank's), its last and next sync, the entries it added, disabled
and rejected, the live upstream signals, staleness, its last error; a "sync now" button.
An exchange's own page adds the negative banks and the flood quarantine in front of it
and the match history of its entries (``services/exchanges/history.py``).
Who: ``banks:read`` sees the pages, ``banks:write`` syncs."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from takedown.domain.access import Permission
from takedown.errors import Forbidden, TakedownError
from takedown.services.exchanges.history import exchange_detail
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


@router.get("/{name}", response_class=HTMLResponse)
def exchange_page(request: Request, name: str, v: Visitor = Depends(visitor)) -> Response:
    if not v.can(Permission.BANKS_READ):
        raise Forbidden("Only bank curators and admins see the exchanges.", code="forbidden")
    rt = runtime(request)
    detail = exchange_detail(rt.sessions, name, flood_uploads=rt.quarantine.uploads)
    return page("exchange.html", **base_context(rt, v, d=detail))


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
