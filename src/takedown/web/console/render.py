"""Rendering for the console: templates, error pages, and the route class that turns
every refusal into a page (or JSON for the console's own script) with its code."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, StrictUndefined

from takedown.errors import TakedownError
from takedown.web.console.security import SECURITY_HEADERS

log = logging.getLogger("takedown.console")


class LoginRequired(Exception):
    """No valid session: go to the sign-in page."""


def _at(value: datetime | None) -> str:
    if value is None:
        return ""
    moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _duration(value: timedelta | None) -> str:
    if value is None:
        return "–"
    minutes = int(value.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours // 24} d {hours % 24} h"


def _label(value: str | None) -> str:
    return (value or "").replace("_", " ")


@cache
def env() -> Environment:
    # Autoescape everywhere: report texts, handles, URLs, notes are all shown as text.
    environment = Environment(
        loader=PackageLoader("takedown.web", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(at=_at, duration=_duration, label=_label)
    return environment


def page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = env().get_template(f"console/{template}").render(**context)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def error_page(status: int, code: str, message: str) -> HTMLResponse:
    return page("error.html", status, http_status=status, code=code, message=message, me=None)


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


class ConsoleRoute(APIRoute):
    """Refusals become a page with the HTTP status and the stable error code (or JSON
    for the console's script); no session means the sign-in page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired:
                if _wants_json(request):
                    return JSONResponse(
                        {"code": "unauthenticated", "message": "Sign in again."}, 401
                    )
                return RedirectResponse("/console/login", 303, headers=SECURITY_HEADERS)
            except TakedownError as exc:
                if _wants_json(request):
                    return JSONResponse(
                        {"code": exc.code, "message": exc.message},
                        exc.status,
                        headers=SECURITY_HEADERS,
                    )
                return error_page(exc.status, exc.code, exc.message)

        return route
