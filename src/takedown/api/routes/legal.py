"""Legal: the reporting queue, CyberTipline filings, NCA references, and the DSA and
TAKE IT DOWN figures. For the legal role (and admins)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from takedown.api.auth import require, runtime
from takedown.domain.access import Permission, Principal
from takedown.domain.cybertipline import ESCALATION_NOTE_MAX, EscalationReason
from takedown.errors import InvalidRequest
from takedown.runtime import Runtime
from takedown.services.legal.cybertipline import ExchangeView, FilingView
from takedown.services.legal.dsa import DsaStatementView, DsaSummary
from takedown.services.legal.queue import LegalQueueEntry

router = APIRouter(prefix="/legal", tags=["legal"])


class CyberTiplineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    escalation_reason: EscalationReason | None = Field(
        None,
        description="Why NCMEC should treat the reports as high priority; sent as the "
        "text of escalateToHighPriority. Leave out: not escalated (the queue's "
        "suggestion is not a reason).",
    )
    escalation_note: str | None = Field(
        None,
        max_length=ESCALATION_NOTE_MAX,
        description="Free text added after the reason's sentence (needs a reason).",
    )
    escalate_to_high_priority: bool | None = Field(
        None,
        description="Deprecated: false means no escalation; true needs escalation_reason "
        "(else 422 escalation_reason_required).",
    )


class NcaIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reference: str = Field(max_length=100, description="The NCA's reference for the report.")


class FilingDetail(BaseModel):
    filing: FilingView
    exchanges: list[ExchangeView]


@router.get("/queue", response_model=list[LegalQueueEntry], summary="Cases that need a report")
def legal_queue(
    include_reported: bool = Query(False),
    _: Principal = Depends(require(Permission.LEGAL_READ)),
    rt: Runtime = Depends(runtime),
) -> list[LegalQueueEntry]:
    return rt.legal.queue(include_reported=include_reported)


@router.get(
    "/cases/{case_id}/filings",
    response_model=list[FilingView],
    summary="Which bodies a case was reported to",
)
def case_filings(
    case_id: str,
    _: Principal = Depends(require(Permission.LEGAL_READ)),
    rt: Runtime = Depends(runtime),
) -> list[FilingView]:
    return rt.cybertipline.for_case(case_id)


@router.post(
    "/cases/{case_id}/cybertipline",
    response_model=list[FilingView],
    status_code=201,
    summary="Draft CyberTipline reports: one per reported account",
)
def draft_cybertipline(
    case_id: str,
    body: CyberTiplineIn | None = None,
    p: Principal = Depends(require(Permission.LEGAL_FILE)),
    rt: Runtime = Depends(runtime),
) -> list[FilingView]:
    reason = body.escalation_reason if body else None
    note = body.escalation_note if body else None
    flag = body.escalate_to_high_priority if body else None
    if flag is True and reason is None:
        raise InvalidRequest(
            "Escalating needs a reason: give escalation_reason ("
            + ", ".join(r.value for r in EscalationReason)
            + ").",
            code="escalation_reason_required",
        )
    if flag is False and reason is not None:
        raise InvalidRequest(
            "escalate_to_high_priority is false but an escalation_reason is given; "
            "send one or the other.",
            code="escalation_conflict",
        )
    return rt.cybertipline.draft(case_id, p, escalation_reason=reason, escalation_note=note)


@router.post(
    "/cases/{case_id}/nca",
    response_model=FilingView,
    status_code=201,
    summary="Record the case's report to the UK National Crime Agency",
)
def record_nca(
    case_id: str,
    body: NcaIn,
    p: Principal = Depends(require(Permission.LEGAL_FILE)),
    rt: Runtime = Depends(runtime),
) -> FilingView:
    return rt.cybertipline.record_nca(case_id, body.reference, p.actor)


@router.get(
    "/filings/{filing_id}", response_model=FilingDetail, summary="A filing and its exchanges"
)
def get_filing(
    filing_id: str,
    _: Principal = Depends(require(Permission.LEGAL_READ)),
    rt: Runtime = Depends(runtime),
) -> FilingDetail:
    return FilingDetail(
        filing=rt.cybertipline.get(filing_id), exchanges=rt.cybertipline.exchanges(filing_id)
    )


@router.post(
    "/filings/{filing_id}/submit",
    response_model=FilingView,
    summary="Send a drafted report through NCMEC's workflow (or continue it)",
)
def submit_filing(
    filing_id: str,
    p: Principal = Depends(require(Permission.LEGAL_FILE)),
    rt: Runtime = Depends(runtime),
) -> FilingView:
    return rt.cybertipline.run(filing_id, p.actor)


@router.post(
    "/filings/{filing_id}/retract",
    response_model=FilingView,
    summary="Retract a report that is not finished",
)
def retract_filing(
    filing_id: str,
    p: Principal = Depends(require(Permission.LEGAL_FILE)),
    rt: Runtime = Depends(runtime),
) -> FilingView:
    return rt.cybertipline.retract(filing_id, p.actor)


def _period(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidRequest(
            "Give start and end with a time zone (e.g. 2026-01-01T00:00:00Z).",
            code="invalid_date_range",
        )
    return start, end


@router.get("/dsa/transparency", summary="DSA Art. 15/24 figures for a period (JSON or CSV)")
def dsa_transparency(
    start: datetime,
    end: datetime,
    format: Literal["json", "csv"] = "json",
    _: Principal = Depends(require(Permission.LEGAL_READ)),
    rt: Runtime = Depends(runtime),
) -> Any:
    start, end = _period(start, end)
    if format == "csv":
        return PlainTextResponse(rt.transparency.dsa_csv(start, end), media_type="text/csv")
    return rt.transparency.dsa_report(start, end)


@router.get(
    "/dsa/statements",
    response_model=list[DsaStatementView],
    summary="Statements of reasons for the DSA Transparency Database, failed first",
)
def dsa_statements(
    state: Literal["pending", "submitted", "failed"] | None = Query(None),
    limit: int = Query(100, ge=1, le=1000),
    _: Principal = Depends(require(Permission.LEGAL_READ)),
    rt: Runtime = Depends(runtime),
) -> list[DsaStatementView]:
    return rt.dsa.statements(state, limit)


@router.get(
    "/dsa/statements/summary",
    response_model=DsaSummary,
    summary="How many statements are pending, submitted and failed; the oldest unsent",
)
def dsa_statements_summary(
    _: Principal = Depends(require(Permission.LEGAL_READ)),
    rt: Runtime = Depends(runtime),
) -> DsaSummary:
    return rt.dsa.summary()


@router.post(
    "/dsa/statements/{puid}/retry",
    response_model=DsaStatementView,
    summary="Requeue a failed statement (rebuilt and checked again)",
)
def dsa_statement_retry(
    puid: str,
    p: Principal = Depends(require(Permission.LEGAL_FILE)),
    rt: Runtime = Depends(runtime),
) -> DsaStatementView:
    return rt.dsa.requeue(puid, p.actor)


@router.get(
    "/take-it-down/compliance",
    summary="TAKE IT DOWN Act compliance for a period (JSON or CSV)",
)
def take_it_down_compliance(
    start: datetime,
    end: datetime,
    format: Literal["json", "csv"] = "json",
    _: Principal = Depends(require(Permission.LEGAL_READ)),
    rt: Runtime = Depends(runtime),
) -> Any:
    start, end = _period(start, end)
    if format == "csv":
        return Response(rt.transparency.take_it_down_csv(start, end), media_type="text/csv")
    return rt.transparency.take_it_down(start, end)
