"""API-key authentication and scope checks, as FastAPI dependencies."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from takedown.errors import Forbidden, Unauthenticated
from takedown.runtime import Runtime
from takedown.services.apikeys import Principal, Scope

_bearer = HTTPBearer(auto_error=False, description="An API key from `takedown apikey create`.")


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def require(scope: Scope) -> Callable[..., Principal]:
    """Dependency: the caller must present a valid key that carries ``scope``."""

    def dependency(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    ) -> Principal:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise Unauthenticated(
                "Send an API key as 'Authorization: Bearer <key>'.", code="unauthenticated"
            )
        principal = runtime(request).api_keys.authenticate(credentials.credentials)
        if not principal.allows(scope):
            raise Forbidden(f"This API key lacks the '{scope.value}' scope.", code="forbidden")
        return principal

    return dependency
