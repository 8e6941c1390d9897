"""The HTTP API: FastAPI, versioned under /v1, OpenAPI at /docs."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from takedown import __version__
from takedown.api.errors import install_error_handlers
from takedown.api.limits import BodyLimitMiddleware
from takedown.api.routes import banks, health, screen
from takedown.api.schemas import ErrorOut
from takedown.runtime import Runtime

_ERRORS = {
    s: {"model": ErrorOut, "description": d}
    for s, d in {
        401: "No or invalid API key",
        403: "The key lacks the scope",
        404: "Not found",
        409: "Conflict",
        413: "Too large",
        415: "Unsupported media type",
        422: "Invalid request or media",
    }.items()
}


def create_app(rt: Runtime) -> FastAPI:
    app = FastAPI(
        title="Takedown API",
        version=__version__,
        description=(
            "Hash banks, matching and upload screening for child sexual abuse material "
            "and non-consensual intimate imagery. Every endpoint except /v1/health needs "
            "an API key (`Authorization: Bearer tdk_...`). Errors are JSON "
            "`{code, message}` with a stable code."
        ),
        responses=_ERRORS,  # type: ignore[arg-type]
    )
    app.state.runtime = rt
    v1 = APIRouter(prefix="/v1")
    v1.include_router(health.router)
    v1.include_router(screen.router)
    v1.include_router(banks.router)
    app.include_router(v1)
    install_error_handlers(app)
    media_limit = rt.settings.max_upload_bytes + 256 * 1024  # multipart envelope + fields
    import_limit = rt.settings.max_import_bytes

    def limit_for(path: str) -> int:
        return import_limit if path.endswith("/import") else media_limit

    app.add_middleware(BodyLimitMiddleware, limit_for_path=limit_for)
    return app
