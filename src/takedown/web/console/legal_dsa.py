"""The legal team's page for statements of reasons to the DSA Transparency Database:
the counters (pending, submitted, failed, the oldest unsent) and the failed statements
with the database's (or Takedown's) field errors, each with a requeue button.

Who: ``legal:read`` sees the page, ``legal:file`` requeues (legal staff and admins).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from takedown.domain.access import Permission
from takedown.errors import Forbidden
from takedown.web.console.render import ConsoleRoute, page
from takedown.web.console.security import SECURITY_HEADERS
from takedown.web.console.session import Visitor, base_context, poster, runtime, visitor

router = APIRouter(prefix="/console/legal", route_class=ConsoleRoute, include_in_schema=False)
NOTICES = {"requeued": "The statement is queued; the next legal run sends it."}


@router.get("/dsa", response_class=HTMLResponse)
def dsa_statements(request: Request, notice: str = "", v: Visitor = Depends(visitor)) -> Response:
    if not v.can(Permission.LEGAL_READ):
        raise Forbidden("Only legal staff see the DSA statements.", code="forbidden")
    rt = runtime(request)
    return page(
        "legal_dsa.html",
        **base_context(
            rt,
            v,
            summary=rt.dsa.summary(),
            failed=rt.dsa.statements("failed", 200),
            notice=NOTICES.get(notice, ""),
        ),
    )


@router.post("/dsa/{puid}/retry")
def retry(request: Request, puid: str, v: Visitor = Depends(poster)) -> Response:
    if not v.can(Permission.LEGAL_FILE):
        raise Forbidden("Only legal staff requeue DSA statements.", code="forbidden")
    runtime(request).dsa.requeue(puid, v.principal.actor)
    return RedirectResponse("/console/legal/dsa?notice=requeued", 303, headers=SECURITY_HEADERS)
