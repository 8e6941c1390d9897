"""Authentication (API keys for machines, expiring tokens for people) and permission
checks, as FastAPI dependencies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from takedown.domain.access import Permission, Principal
from takedown.errors import Forbidden, Unauthenticated
from takedown.runtime import Runtime
from takedown.services.identity.apikeys import KEY_PREFIX
from takedown.services.identity.users import TOKEN_PREFIX

_bearer = HTTPBearer(
    auto_error=False,
    description="An API key (`tdk_…`, from `takedown apikey create`) or a user token "
    "(`tdu_…`, from `POST /v1/auth/token`).",
)


def runtime_of(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def runtime(request: Request) -> Runtime:
    """Dependency: the process's runtime. ``async`` only so that FastAPI does not send
    this trivial lookup through its thread pool."""
    return runtime_of(request)


def authenticate(rt: Runtime, secret: str) -> Principal:
    if secret.startswith(TOKEN_PREFIX):
        return rt.users.authenticate(secret)
    if secret.startswith(KEY_PREFIX):
        return rt.api_keys.authenticate(secret)
    raise Unauthenticated("That is not a Takedown API key or token.", code="invalid_api_key")


async def current_principal(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> Principal:
    """Dependency: whoever is calling, authenticated. One indexed lookup, run on the
    event loop: a thread-pool hop per request costs more than the query (measured)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated(
            "Send an API key or token as 'Authorization: Bearer <key>'.", code="unauthenticated"
        )
    return authenticate(runtime_of(request), credentials.credentials)


async def optional_principal(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> Principal | None:
    """For endpoints open to the public that trusted channels may also use."""
    if credentials is None:
        return None
    return authenticate(runtime_of(request), credentials.credentials)


def require(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    """Dependency: the caller must be authenticated and hold ``permission``."""

    async def dependency(principal: Principal = Depends(current_principal)) -> Principal:
        check_permission(principal, permission)
        return principal

    return dependency


def check_permission(principal: Principal, permission: Permission) -> None:
    if not principal.allows(permission):
        raise Forbidden(
            f"This {'API key' if principal.kind == 'apikey' else 'account'} lacks the "
            f"'{permission.value}' permission.",
            code="forbidden",
        )
