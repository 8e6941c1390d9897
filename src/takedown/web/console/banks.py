"""A bank's console page: its policy and entry counts, and its retroactive scans with
their progress (media scanned, matches acted on, cases opened or joined).

Who: ``banks:read`` (moderators, curators, admins)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from takedown.domain.access import Permission
from takedown.errors import Forbidden
from takedown.web.console.render import ConsoleRoute, page
from takedown.web.console.session import Visitor, base_context, runtime, visitor

router = APIRouter(prefix="/console/banks", route_class=ConsoleRoute, include_in_schema=False)


@router.get("/{bank}", response_class=HTMLResponse)
def bank_page(request: Request, bank: str, v: Visitor = Depends(visitor)) -> Response:
    if not v.can(Permission.BANKS_READ):
        raise Forbidden("Only those who may read banks see a bank's page.", code="forbidden")
    rt = runtime(request)
    return page(
        "bank.html",
        **base_context(rt, v, bank=rt.banks.get_bank(bank), scans=rt.retroscan.list_jobs(bank)),
    )
