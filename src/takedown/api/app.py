"""The HTTP API: FastAPI, versioned under /v1, OpenAPI at /docs (served offline)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache

from fastapi import APIRouter, FastAPI
from starlette.types import Message, Receive, Scope, Send

from takedown import __version__
from takedown.api.errors import install_error_handlers
from takedown.api.fast_screen import FastScreenHashes
from takedown.api.limits import RequestGuard
from takedown.api.routes import (
    banks,
    cases,
    clock,
    docs,
    exchanges,
    health,
    metrics,
    outbox,
    registry,
    registry_batch,
    reports,
    screen,
    shares,
    users,
)
from takedown.api.routes import evidence as evidence_routes
from takedown.api.routes.legal import router as legal_router
from takedown.api.schemas import ErrorOut
from takedown.logs import accept_request_id, reset_request_id, set_request_id
from takedown.runtime import Runtime
from takedown.runtime.workers import (
    start_delivery_worker,
    start_mail_worker,
    start_priority_worker,
    start_retroscan_worker,
    start_snapshot_worker,
)
from takedown.services.index.follower import Poller
from takedown.web import console, public

_ERRORS = {
    s: {"model": ErrorOut, "description": d}
    for s, d in {
        400: "Malformed body: JSON that is not UTF-8, or a broken multipart form",
        401: "No or invalid API key",
        403: "The key lacks the scope",
        404: "Not found",
        409: "Conflict",
        413: "Too large",
        415: "Unsupported media type",
        422: "Invalid request or media",
    }.items()
}


def create_app(rt: Runtime, *, fast_screening: bool = True) -> TakedownAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Background work that belongs to a serving process: reporter mail and the
        # platform's actions (each starts only when its server is configured), the
        # bank index snapshot that workers start from (unless turned off), and the
        # reading of bank entries that other processes add.
        mail = start_mail_worker(rt)
        delivery = start_delivery_worker(rt)
        snapshots = start_snapshot_worker(rt)
        retro = start_retroscan_worker(rt) if rt.settings.retroscan_in_serve else None
        priorities = start_priority_worker(rt)
        # Bank entries other processes add are read by a thread, not by the query that
        # happens to come next (services/index/follower.py).
        interval_s = rt.settings.index_sync_interval_ms / 1000
        poller = Poller(rt.matcher.follower, interval_s).start() if interval_s else None
        try:
            yield
        finally:
            for worker in (poller, mail, delivery, snapshots, retro, priorities):
                if worker is not None:
                    worker.stop()

    app = TakedownAPI(
        title="Takedown API",
        version=__version__,
        description=(
            "Hash banks, matching, upload screening, the content registry, reports and "
            "cases for child sexual abuse material and non-consensual intimate imagery. "
            "Machines authenticate with an API key (`Authorization: Bearer tdk_...`), "
            "people with a token from `POST /v1/auth/token` (`tdu_...`); reporting is open "
            "to the public. Errors are JSON `{code, message}` with a stable code."
        ),
        responses=_ERRORS,  # type: ignore[arg-type]
        lifespan=lifespan,
        # /docs is Takedown's own page with Swagger UI's files from the package, never
        # from a CDN (api/routes/docs.py); ReDoc has no packaged build, so none.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.runtime = rt
    app.router.routes.extend(_routes().routes)
    docs.install(app)
    install_error_handlers(app)
    app.add_middleware(
        RequestGuard,
        media_limit=rt.settings.max_media_bytes + 256 * 1024,  # multipart envelope + fields
        import_limit=rt.settings.max_import_bytes,
    )
    if fast_screening:
        app.fast_screen = FastScreenHashes(rt)
    return app


@cache
def _routes() -> APIRouter:
    """Every route of the API and the pages, composed once per process.

    The routes hold no state of an app or a runtime (a request finds its runtime in
    ``request.app.state``). FastAPI works out each route's dependencies and models
    when it is first routed (0.3-0.6 s of CPU for these routes); an app built again in
    the same process, as every test does, reuses that work instead of repeating it."""
    # As the app's own router, so the routes get the contexts they would there.
    routes = APIRouter(responses=_ERRORS)  # type: ignore[arg-type]
    v1 = APIRouter()
    for router in (
        health.router,
        screen.router,
        banks.router,
        exchanges.router,
        shares.router,
        registry.router,
        registry_batch.router,
        reports.router,
        cases.router,
        users.router,
        outbox.router,
        legal_router,
        evidence_routes.router,
        clock.router,
    ):
        v1.include_router(router)
    routes.include_router(v1, prefix="/v1")  # a prefix given here: checked once, not twice
    routes.include_router(metrics.router)  # /metrics and /v1/health/ready
    routes.include_router(public.router)  # the public report and status pages (HTML)
    routes.include_router(console.router)  # the review console (HTML, session cookies)
    return routes


class TakedownAPI(FastAPI):
    """The API application. One request, the upload path's hash screening, is answered
    before the framework's middleware and routing (api/fast_screen.py says why); every
    other request, and that one too when ``fast_screen`` is unset, goes through FastAPI."""

    fast_screen: FastScreenHashes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        # The request's id: the caller's X-Request-ID when it is short and safe, else
        # a new one; returned in the response and written in every log line for the
        # request (takedown/logs.py).
        incoming = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = accept_request_id(incoming)
        header = (b"x-request-id", request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        token = set_request_id(request_id)
        try:
            if self.fast_screen is not None and self.fast_screen.handles(scope):
                await self.fast_screen(scope, receive, send_with_id)
                return
            await super().__call__(scope, receive, send_with_id)
        finally:
            reset_request_id(token)
