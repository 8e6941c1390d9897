"""The one place where errors become HTTP: ``{"code": ..., "message": ...}`` always."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from takedown.errors import TakedownError

log = logging.getLogger("takedown.api")

# HTTP errors raised by the framework itself (routing, multipart parsing), not by us.
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


def error_response(status: int, code: str, message: str, **extra: object) -> JSONResponse:
    body: dict[str, object] = {"code": code, "message": message}
    body.update({k: v for k, v in extra.items() if v})
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


def validation_problem(errors: Sequence[Any]) -> tuple[str, list[dict[str, str]]]:
    """A validation failure as one sentence plus every problem by field."""
    problems = [
        {
            "field": ".".join(str(p) for p in err.get("loc", ()) if p != "body"),
            "problem": err.get("msg", ""),
        }
        for err in errors
    ]
    first = problems[0] if problems else {"field": "", "problem": "invalid"}
    return f"Invalid request: {first['field'] or 'body'}: {first['problem']}.", problems


def allowed_methods(request: Request) -> str:
    """Every method this address accepts, for a 405's ``Allow`` header and message (the
    router's own header names only the methods of the first route whose path matched).
    Each method is tried against the routes, through their public ``matches``."""
    allowed = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(r.matches(scope)[0] is Match.FULL for r in request.app.router.routes):
            allowed.append(method)
    return ", ".join(allowed)


_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TakedownError)
    async def _takedown_error(_req: Request, exc: TakedownError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, details=exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        message, problems = validation_problem(errors)
        # A NUL in a multipart form's text field (api.schemas.FormText) has the code NULs
        # have everywhere else (api/limits.py).
        nul = any(err.get("type") == "nul_character" for err in errors)
        code = "invalid_character" if nul else "invalid_request"
        return error_response(422, code, message, details={"errors": problems})

    @app.exception_handler(StarletteHTTPException)
    async def _http(req: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else "Request refused."
        headers = dict(exc.headers or {})
        if exc.status_code == 404 and message == "Not Found":
            message = "There is nothing at this address. The API reference is at /docs."
        if exc.status_code == 405:
            allowed = allowed_methods(req) or headers.get("Allow", "")
            headers["Allow"] = allowed
            message = f"This address does not accept {req.method[:10]}; use {allowed}."
        if exc.status_code == 400 and message == "There was an error parsing the body":
            message = (
                "The request body could not be read: send JSON in UTF-8, or a well-formed form."
            )
        response = error_response(exc.status_code, code, message)
        response.headers.update(headers)
        return response

    @app.exception_handler(Exception)
    async def _bug(_req: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(
            500, "internal_error", "Something went wrong on our side; it has been logged."
        )
