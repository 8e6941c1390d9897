"""Shares of the platform's own confirmed hashes to exchanges: the legal team's queue,
approval and refusal, and a withdrawal done by hand. The legal role only
(``shares:decide``): an admin, a specialist or any API key gets 403 ``forbidden``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from takedown.api.auth import require, runtime
from takedown.domain.access import Permission, Principal
from takedown.runtime import Runtime
from takedown.services.exchanges.sharing import ShareView

router = APIRouter(tags=["exchanges"])
_legal = require(Permission.SHARES_DECIDE)


class ShareApproval(BaseModel):
    model_config = ConfigDict(extra="forbid")
    classification: str | None = Field(
        None, max_length=20, description="NCMEC's classification of the file: A1, A2, B1 or B2."
    )
    note: str | None = Field(None, max_length=5000, description="Kept with the approval.")


class ShareRefusal(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(max_length=5000, description="Why nothing is shared (required).")


class ShareRemovedByHand(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(max_length=5000, description="How the exchange removed the entry (required).")


@router.get(
    "/exchange-shares",
    response_model=list[ShareView],
    summary="Shares of our own confirmed hashes (state=pending: the legal team's queue)",
)
def list_shares(
    state: str | None = Query(
        None,
        max_length=20,
        description="pending, approved, refused, sent or failed; cancelled, withdrawing, "
        "withdrawn or withdraw_failed (the file found not violating after all).",
    ),
    limit: int = Query(200, ge=1, le=1000),
    _: Principal = Depends(_legal),
    rt: Runtime = Depends(runtime),
) -> list[ShareView]:
    return rt.shares.list(state=state, limit=limit)


@router.get("/exchange-shares/{share}", response_model=ShareView, summary="Describe a share")
def get_share(
    share: str, _: Principal = Depends(_legal), rt: Runtime = Depends(runtime)
) -> ShareView:
    return rt.shares.get(share)


@router.post(
    "/exchange-shares/{share}/approve",
    response_model=ShareView,
    summary="Approve a pending share: it is sent to the exchange (retried until it is taken)",
)
def approve_share(
    share: str,
    body: ShareApproval | None = None,
    p: Principal = Depends(_legal),
    rt: Runtime = Depends(runtime),
) -> ShareView:
    return rt.shares.approve(
        share,
        actor=p.actor,
        classification=body.classification if body else None,
        note=body.note if body else None,
    )


@router.post(
    "/exchange-shares/{share}/refuse",
    response_model=ShareView,
    summary="Refuse a pending share, saying why: nothing is sent",
)
def refuse_share(
    share: str, body: ShareRefusal, p: Principal = Depends(_legal), rt: Runtime = Depends(runtime)
) -> ShareView:
    return rt.shares.refuse(share, actor=p.actor, reason=body.reason)


@router.post(
    "/exchange-shares/{share}/withdrawn",
    response_model=ShareView,
    summary="Mark a share whose withdrawal failed as removed by the exchange (asked by hand)",
)
def share_withdrawn_by_hand(
    share: str,
    body: ShareRemovedByHand,
    p: Principal = Depends(_legal),
    rt: Runtime = Depends(runtime),
) -> ShareView:
    return rt.shares.mark_withdrawn(share, actor=p.actor, note=body.note)
