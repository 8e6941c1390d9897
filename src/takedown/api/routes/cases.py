"""Cases: the review queue, case pages, decisions and uploader appeals."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from takedown.api.auth import require, runtime
from takedown.domain.access import Permission, Principal
from takedown.domain.cases import CaseState
from takedown.domain.reports import Category
from takedown.runtime import Runtime
from takedown.services.cases.service import CaseDetail, CaseSummary, DecisionView

router = APIRouter(tags=["cases"])


class MediaReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    media_id: str = Field(max_length=26, description="The media's public id.")
    classification: str | None = Field(None, description="A1, A2, B1 or B2.")
    annotations: list[str] = Field(
        default_factory=list, max_length=20, description="e.g. potentialMeme, generativeAi."
    )


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: str = Field(description="violation, no_violation or needs_info")
    policy: str | None = Field(
        None, max_length=100, description="Which policy is violated (required for violation)."
    )
    reasons: str = Field(
        max_length=5000, description="Written reasons, shown to the reporter and the uploader."
    )
    manifestly_unfounded: bool = Field(
        False,
        description="With no_violation: the reports were manifestly unfounded (counts "
        "against their reporters, DSA art. 23).",
    )
    internal_note: str | None = Field(
        None, max_length=5000, description="For reviewers only; never shown outside."
    )
    media_review: list[MediaReviewIn] | None = Field(
        None,
        max_length=1000,
        description="With violation: per file of the case, its industry classification "
        "(A1, A2, B1, B2) and NCMEC file annotations, for the CyberTipline report.",
    )


class AppealIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(max_length=5000)


class AppealOut(BaseModel):
    case_id: str
    state: str


@router.get(
    "/cases",
    response_model=list[CaseSummary],
    summary="The queue: open cases by priority, then deadline",
)
def list_cases(
    state: CaseState | None = Query(None, description="Only cases in this state."),
    category: Category | None = Query(None, description="Only cases of this category."),
    limit: int = Query(50, ge=1, le=500),
    _: Principal = Depends(require(Permission.CASES_READ)),
    rt: Runtime = Depends(runtime),
) -> list[CaseSummary]:
    return rt.cases.queue(
        state=state.value if state else None,
        category=category.value if category else None,
        limit=limit,
    )


@router.get("/cases/{case_id}", response_model=CaseDetail, summary="A case and its copies")
def get_case(
    case_id: str,
    p: Principal = Depends(require(Permission.CASES_READ)),
    rt: Runtime = Depends(runtime),
) -> CaseDetail:
    return rt.cases.get(case_id, p)


@router.post(
    "/cases/{case_id}/decisions",
    response_model=DecisionView,
    status_code=201,
    summary="Decide a case (people only; four eyes for minor-safety dismissals)",
)
def decide_case(
    case_id: str,
    body: DecisionIn,
    p: Principal = Depends(require(Permission.CASES_DECIDE)),
    rt: Runtime = Depends(runtime),
) -> DecisionView:
    return rt.cases.decide(
        case_id,
        outcome=body.outcome,
        reasons=body.reasons,
        principal=p,
        policy=body.policy,
        internal_note=body.internal_note,
        manifestly_unfounded=body.manifestly_unfounded,
        media_review=[m.model_dump() for m in body.media_review] if body.media_review else None,
    )


@router.post(
    "/cases/{case_id}/appeals",
    response_model=AppealOut,
    status_code=201,
    summary="File the uploader's appeal (DSA Art. 20), through the platform",
)
def uploader_appeal(
    case_id: str,
    body: AppealIn,
    p: Principal = Depends(require(Permission.UPLOADER_APPEAL)),
    rt: Runtime = Depends(runtime),
) -> AppealOut:
    return AppealOut(case_id=case_id, state=rt.cases.appeal_as_uploader(case_id, body.reason, p))
