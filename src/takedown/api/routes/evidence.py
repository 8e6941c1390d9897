"""The evidence vault, for legal staff: preserve, hold, read, export, delete, destroy.

Every call states its purpose (``purpose``: a query parameter on reads, a body field
otherwise); it is written to the audit log with who asked.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from takedown.api.auth import require, runtime
from takedown.domain.access import Permission, Principal
from takedown.runtime import Runtime
from takedown.services.evidence.vault import EvidenceView, HoldView

router = APIRouter(prefix="/evidence", tags=["evidence"])
_LEGAL = require(Permission.EVIDENCE)
_PURPOSE = "Why you need this evidence (5–500 characters); written to the audit log."


class PreserveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    case_id: str = Field(max_length=40)
    purpose: str = Field("", max_length=1000, description=_PURPOSE)


class ReportedIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    completed_at: datetime = Field(description="When the report was completed (with a zone).")
    reference: str | None = Field(
        None, max_length=200, description="The authority's report id (NCMEC, NCA)."
    )


class ExportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    purpose: str = Field("", max_length=1000, description=_PURPOSE)
    le_reference: str | None = Field(
        None, max_length=200, description="The requesting agency's case or request reference."
    )


class HoldIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    until: datetime = Field(description="When the hold ends (with a zone); later than now.")
    reason: str = Field("", max_length=2000)


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=2000)


class DestroyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    requested_by: str = Field("", max_length=300, description="Agency and officer who asked.")
    reference: str = Field("", max_length=200, description="Their request reference.")
    reason: str = Field("", max_length=2000)


@router.post("", response_model=EvidenceView, status_code=201, summary="Preserve a case now")
def preserve(
    body: PreserveIn, p: Principal = Depends(_LEGAL), rt: Runtime = Depends(runtime)
) -> EvidenceView:
    return rt.evidence.preserve(body.case_id, p.actor, body.purpose)


@router.get("", response_model=list[EvidenceView], summary="A case's preserved evidence")
def list_evidence(
    case_id: str = Query(max_length=40),
    purpose: str = Query("", max_length=1000, description=_PURPOSE),
    p: Principal = Depends(_LEGAL),
    rt: Runtime = Depends(runtime),
) -> list[EvidenceView]:
    return rt.evidence.list_for_case(case_id, p.actor, purpose)


@router.post(
    "/cases/{case_id}/reported",
    response_model=list[EvidenceView],
    summary="A report about the case was completed: hold its evidence for a year or more",
)
def reported(
    case_id: str, body: ReportedIn, p: Principal = Depends(_LEGAL), rt: Runtime = Depends(runtime)
) -> list[EvidenceView]:
    return rt.evidence.mark_reported(case_id, body.completed_at, p.actor, reference=body.reference)


@router.get("/{evidence_id}", response_model=EvidenceView, summary="Evidence, holds, files")
def get_evidence(
    evidence_id: str,
    purpose: str = Query("", max_length=1000, description=_PURPOSE),
    p: Principal = Depends(_LEGAL),
    rt: Runtime = Depends(runtime),
) -> EvidenceView:
    return rt.evidence.get(evidence_id, p.actor, purpose)


@router.get("/{evidence_id}/context", summary="The preserved context document (decrypted)")
def get_context(
    evidence_id: str,
    purpose: str = Query("", max_length=1000, description=_PURPOSE),
    p: Principal = Depends(_LEGAL),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    return rt.evidence.context(evidence_id, p.actor, purpose)


@router.post(
    "/{evidence_id}/export",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}}},
    summary="An evidence package for law enforcement: files, context, SHA-256 manifest",
)
def export(
    evidence_id: str, body: ExportIn, p: Principal = Depends(_LEGAL), rt: Runtime = Depends(runtime)
) -> Response:
    pkg = rt.evidence.export(evidence_id, p.actor, body.purpose, le_reference=body.le_reference)
    return Response(
        pkg.data,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{pkg.filename}"',
            "X-Manifest-SHA256": pkg.manifest_sha256,
            "Cache-Control": "no-store",
        },
    )


@router.post(
    "/{evidence_id}/holds", response_model=HoldView, status_code=201, summary="Add a legal hold"
)
def add_hold(
    evidence_id: str, body: HoldIn, p: Principal = Depends(_LEGAL), rt: Runtime = Depends(runtime)
) -> HoldView:
    return rt.evidence.add_hold(evidence_id, p.actor, until=body.until, reason=body.reason)


@router.post(
    "/{evidence_id}/holds/{hold_id}/extend", response_model=HoldView, summary="Extend a hold"
)
def extend_hold(
    evidence_id: str,
    hold_id: str,
    body: HoldIn,
    p: Principal = Depends(_LEGAL),
    rt: Runtime = Depends(runtime),
) -> HoldView:
    return rt.evidence.extend_hold(
        evidence_id, hold_id, p.actor, until=body.until, reason=body.reason
    )


@router.post(
    "/{evidence_id}/holds/{hold_id}/release", response_model=HoldView, summary="End a legal hold"
)
def release_hold(
    evidence_id: str,
    hold_id: str,
    body: ReasonIn,
    p: Principal = Depends(_LEGAL),
    rt: Runtime = Depends(runtime),
) -> HoldView:
    return rt.evidence.release_hold(evidence_id, hold_id, p.actor, reason=body.reason)


@router.post(
    "/{evidence_id}/delete",
    response_model=EvidenceView,
    summary="Delete evidence whose holds have all ended",
)
def delete(
    evidence_id: str, body: ReasonIn, p: Principal = Depends(_LEGAL), rt: Runtime = Depends(runtime)
) -> EvidenceView:
    return rt.evidence.delete(evidence_id, p.actor, reason=body.reason)


@router.post(
    "/{evidence_id}/destroy",
    response_model=EvidenceView,
    summary="Destroy on a law-enforcement request (18 U.S.C. 2258B(c))",
)
def destroy(
    evidence_id: str,
    body: DestroyIn,
    p: Principal = Depends(_LEGAL),
    rt: Runtime = Depends(runtime),
) -> EvidenceView:
    return rt.evidence.destroy(
        evidence_id,
        p.actor,
        requested_by=body.requested_by,
        reference=body.reference,
        reason=body.reason,
    )
