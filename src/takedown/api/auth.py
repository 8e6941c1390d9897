"""API-key authentication and scope checks, as FastAPI dependencies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from takedown.errors import Forbidden, Unauthenticated
from takedown.runtime import Runtime
from takedown.services.apikeys import Principal, Scope

_bearer = HTTPBearer(auto_error=False, description="An API key from `takedown apikey create`.")


def runtime_of(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def runtime(request: Request) -> Runtime:
    """Dependency: the process's runtime. ``async`` only so that FastAPI does not send
    this trivial lookup through its thread pool."""
    return runtime_of(request)


def require(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """Dependency: the caller must present a valid key that carries ``scope``."""

    async def dependency(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    ) -> Principal:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise Unauthenticated(
                "Send an API key as 'Authorization: Bearer <key>'.", code="unauthenticated"
            )
        # One indexed lookup, run on the event loop: a thread-pool hop per request costs
        # more than the query itself (measured; see bench/screening.py).
        principal = runtime_of(request).api_keys.authenticate(credentials.credentials)
        if not principal.allows(scope):
            raise Forbidden(f"This API key lacks the '{scope.value}' scope.", code="forbidden")
        return principal

    return dependency
