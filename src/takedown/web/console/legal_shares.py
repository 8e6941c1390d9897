"""The legal team's page of hash shares: the platform's own confirmed files that a bank
offers to an exchange, each waiting for approval or for a refusal with a reason, and
what became of the decided ones (sent with the exchange's upstream id, or failed with
its reason); first, the shares the exchange still holds although their file was found
not violating (``withdraw_failed``: NCMEC has no call to take one back), to be removed
by asking the exchange and then marked withdrawn here.

Who: the legal role only (``shares:decide``; not admins).
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from takedown.domain.access import Permission
from takedown.errors import Forbidden, TakedownError
from takedown.web.console.render import ConsoleRoute, page
from takedown.web.console.security import SECURITY_HEADERS
from takedown.web.console.session import Visitor, base_context, poster, runtime, visitor

router = APIRouter(prefix="/console/legal", route_class=ConsoleRoute, include_in_schema=False)


def _legal(v: Visitor) -> None:
    if not v.can(Permission.SHARES_DECIDE):
        raise Forbidden("Only the legal team decides what is shared.", code="forbidden")


@router.get("/shares", response_class=HTMLResponse)
def shares(request: Request, notice: str = "", v: Visitor = Depends(visitor)) -> Response:
    _legal(v)
    rt = runtime(request)
    return page(
        "legal_shares.html",
        **base_context(
            rt,
            v,
            pending=rt.shares.list(state="pending", limit=1000),
            withdraw_failed=rt.shares.list(state="withdraw_failed", limit=1000),
            decided=rt.shares.list(decided=True, limit=200),
            notice=notice[:300],
        ),
    )


@router.post("/shares/{share_id}/approve")
def approve(request: Request, share_id: str, v: Visitor = Depends(poster)) -> Response:
    _legal(v)
    try:
        runtime(request).shares.approve(
            share_id,
            actor=v.principal.actor,
            classification=v.text("classification", 20) or None,
            note=v.text("note", 5000) or None,
        )
        notice = f"Share {share_id} approved: it is sent at the worker's next round."
    except TakedownError as exc:
        notice = exc.message
    return _back(notice)


@router.post("/shares/{share_id}/refuse")
def refuse(request: Request, share_id: str, v: Visitor = Depends(poster)) -> Response:
    _legal(v)
    try:
        runtime(request).shares.refuse(
            share_id, actor=v.principal.actor, reason=v.text("reason", 5000)
        )
        notice = f"Share {share_id} refused: nothing is sent."
    except TakedownError as exc:
        notice = exc.message
    return _back(notice)


@router.post("/shares/{share_id}/withdrawn")
def withdrawn(request: Request, share_id: str, v: Visitor = Depends(poster)) -> Response:
    _legal(v)
    try:
        runtime(request).shares.mark_withdrawn(
            share_id, actor=v.principal.actor, note=v.text("note", 5000)
        )
        notice = f"Share {share_id} marked withdrawn: the exchange removed it."
    except TakedownError as exc:
        notice = exc.message
    return _back(notice)


def _back(notice: str) -> Response:
    return RedirectResponse(
        f"/console/legal/shares?notice={quote(notice)}", 303, headers=SECURITY_HEADERS
    )
