"""Signing in, and user administration."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from takedown.api.auth import current_principal, require, runtime
from takedown.domain.access import Permission, Principal
from takedown.runtime import Runtime
from takedown.services.identity.users import TokenGrant, UserView

router = APIRouter(tags=["users"])


class SignInIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(max_length=100)
    password: str = Field(max_length=500)


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(max_length=100)
    password: str = Field(max_length=500)
    role: str = Field(description="admin, moderator, child_safety_specialist, legal, platform")


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    active: bool


@router.post(
    "/auth/token", response_model=TokenGrant, summary="Sign in: a bearer token that expires"
)
def sign_in(body: SignInIn, rt: Runtime = Depends(runtime)) -> TokenGrant:
    return rt.users.sign_in(body.username, body.password)


@router.post("/auth/logout", status_code=204, summary="Revoke the token used")
def sign_out(
    request: Request,
    _: Principal = Depends(current_principal),
    rt: Runtime = Depends(runtime),
) -> None:
    token = request.headers.get("authorization", "").split(" ", 1)[-1]
    rt.users.sign_out(token)


@router.get("/users", response_model=list[UserView], summary="List users")
def list_users(
    _: Principal = Depends(require(Permission.USERS_ADMIN)), rt: Runtime = Depends(runtime)
) -> list[UserView]:
    return rt.users.list()


@router.post("/users", response_model=UserView, status_code=201, summary="Create a user")
def create_user(
    body: UserIn,
    p: Principal = Depends(require(Permission.USERS_ADMIN)),
    rt: Runtime = Depends(runtime),
) -> UserView:
    return rt.users.create(body.username, body.password, body.role, actor=p.actor)


@router.patch(
    "/users/{user_id}", response_model=UserView, summary="Deactivate or reactivate a user"
)
def update_user(
    user_id: str,
    body: UserPatch,
    p: Principal = Depends(require(Permission.USERS_ADMIN)),
    rt: Runtime = Depends(runtime),
) -> UserView:
    return rt.users.set_active(user_id, body.active, actor=p.actor)
