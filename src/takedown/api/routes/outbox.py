"""Deliveries of actions to the platform: what is pending, acknowledged, dead-lettered."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from takedown.api.auth import require, runtime
from takedown.domain.access import Permission, Principal
from takedown.runtime import Runtime
from takedown.services.outbound.delivery import OutboxView

router = APIRouter(tags=["delivery"])
_admin = require(Permission.OUTBOX_ADMIN)


@router.get(
    "/outbox",
    response_model=list[OutboxView],
    summary="Actions for the platform, newest first (filter by state)",
)
def list_outbox(
    state: str | None = Query(None, description="pending, delivering, acknowledged or dead_letter"),
    limit: int = Query(100, ge=1, le=1000),
    _: Principal = Depends(_admin),
    rt: Runtime = Depends(runtime),
) -> list[OutboxView]:
    return rt.outbox.list(state=state, limit=limit)


@router.post(
    "/outbox/{outbox_id}/redeliver",
    response_model=OutboxView,
    summary="Send a dead-lettered action again",
)
def redeliver(
    outbox_id: str, p: Principal = Depends(_admin), rt: Runtime = Depends(runtime)
) -> OutboxView:
    return rt.outbox.redeliver(outbox_id, actor=p.actor)
