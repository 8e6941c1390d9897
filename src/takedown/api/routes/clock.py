"""Clocks set by hand, for test and staging deployments: a report's received time (the
TAKE IT DOWN Act's 48 hours) and a decision's time (the six-month appeal window).
Admins only; refused unless TAKEDOWN_ALLOW_CLOCK_OVERRIDE is on and no filing goes to a
production CyberTipline or DSA database (docs/operations.md)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from takedown.api.auth import require, runtime
from takedown.domain.access import Permission, Principal
from takedown.runtime import Runtime
from takedown.services.cases.service import ClockChange

router = APIRouter(prefix="/admin/clock", tags=["admin"])
_admin = require(Permission.CLOCK_OVERRIDE)


class ClockIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    at: datetime = Field(description="The new time, with a zone, not in the future.")


@router.post(
    "/reports/{report_id}/received",
    response_model=ClockChange,
    summary="Set a report's received time (test and staging only)",
)
def set_received(
    report_id: str,
    body: ClockIn,
    p: Principal = Depends(_admin),
    rt: Runtime = Depends(runtime),
) -> ClockChange:
    return rt.cases.set_received(report_id, body.at, p.actor)


@router.post(
    "/decisions/{decision_id}/decided",
    response_model=ClockChange,
    summary="Set a decision's time (test and staging only)",
)
def set_decided(
    decision_id: str,
    body: ClockIn,
    p: Principal = Depends(_admin),
    rt: Runtime = Depends(runtime),
) -> ClockChange:
    return rt.cases.set_decided(decision_id, body.at, p.actor)
