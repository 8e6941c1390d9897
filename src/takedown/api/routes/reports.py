"""Report intake and the reporter's status, over the API.

Open to the public (no key), like the web form: a person depicted, a parent or a user
needs no account. Trusted flaggers and law enforcement send their API key, which is
what lets them report in those roles.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from takedown.api.auth import optional_principal, runtime
from takedown.api.schemas import Int64
from takedown.domain.access import Principal
from takedown.domain.reports import ReportedHash, ReportInput
from takedown.runtime import Runtime
from takedown.services.cases.service import PublicStatusView, ReportReceipt
from takedown.web.ratelimit import check_report_rate

router = APIRouter(tags=["reports"])


class HashIn(BaseModel):
    """One file hashed on the reporter's device; the file itself is never sent."""

    model_config = ConfigDict(extra="forbid")
    md5: str | None = Field(None, max_length=64, description="MD5 of the file's bytes (hex).")
    pdq: str | None = Field(None, max_length=128, description="PDQ hash of the image (hex).")
    pdq_quality: Int64 | None = Field(None, description="PDQ quality, 0 to 100.")
    dihedral: list[str] = Field(
        default_factory=list,
        max_length=8,
        description="The 8 dihedral PDQ variants (rotations, mirror images), first = pdq.",
    )
    signals: dict[str, Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=dict,
        max_length=8,
        description="Hashes of other signal types matched here (plug-ins, see GET "
        "/v1/signal-types), by type name; they are matched against the banks.",
    )


class ReportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    category: str = Field(description="csam, minor_sexual_exploitation, ncii or other")
    reporter_role: str = Field(
        description="person_depicted, parent_guardian, user, trusted_flagger or law_enforcement"
    )
    explanation: str = Field(
        "", max_length=10_000, description="Why the content is illegal or harmful."
    )
    urls: list[str] = Field(default_factory=list, max_length=100)
    item_ids: list[str] = Field(
        default_factory=list, max_length=100, description="The platform's ids of the items."
    )
    reporter_name: str | None = Field(None, max_length=200)
    reporter_email: str | None = Field(None, max_length=320)
    contact: str | None = Field(None, max_length=500)
    signature: str | None = Field(
        None,
        max_length=200,
        description="Your full name, as an electronic signature (TAKE IT DOWN Act).",
    )
    good_faith: bool = Field(
        False, description="You believe in good faith the report is accurate and complete."
    )
    not_consensual: bool = Field(False, description="The depiction is not consensual.")
    authorised_for_depicted: bool = Field(
        False, description="A parent, guardian or agent authorised to act for the person depicted."
    )
    hashes: list[HashIn] = Field(
        default_factory=list,
        max_length=20,
        description="Instead of (or with) a location: hashes of files computed on the "
        "reporter's device (see docs/browser-hashing.md). Matching content is found and "
        "treated as if its address had been reported.",
    )
    victim_consent: bool = Field(
        False,
        description="The person depicted, or their parent or guardian, agrees that the "
        "victim details below go to the National Center for Missing & Exploited Children "
        "(NCMEC) in the CyberTipline report, for law enforcement. Without it nothing of "
        "theirs is sent, and details are refused (victim_consent_required).",
    )
    victim_first_name: str | None = Field(None, max_length=100)
    victim_last_name: str | None = Field(None, max_length=100)
    victim_email: str | None = Field(None, max_length=320)
    victim_phone: str | None = Field(None, max_length=50)
    victim_age: int | None = Field(None, ge=0, le=120, description="Age now, in years.")
    victim_date_of_birth: date | None = Field(None, description="YYYY-MM-DD.")


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    case_number: str = Field(max_length=40)
    token: str = Field(max_length=100)


class ReporterAppealIn(StatusIn):
    reason: str = Field(max_length=5000)


def report_input(body: ReportIn) -> ReportInput:
    fields = body.model_dump(exclude={"hashes"})
    hashes = [
        ReportedHash(h.md5, h.pdq, h.pdq_quality, tuple(h.dihedral), tuple(h.signals.items()))
        for h in body.hashes
    ]
    return ReportInput(**fields, hashes=hashes)


@router.post(
    "/reports",
    response_model=ReportReceipt,
    status_code=201,
    summary="File a report (public; trusted flaggers and law enforcement send their key)",
    description="Returns a case number and a status token at once. The token "
    "is shown only here; keep it to follow the report.",
)
async def submit_report(
    body: ReportIn,
    request: Request,
    principal: Principal | None = Depends(optional_principal),
    rt: Runtime = Depends(runtime),
) -> ReportReceipt:
    if principal is None:
        check_report_rate(request, rt.settings.report_rate_limit_per_hour)
    return await run_in_threadpool(
        rt.cases.submit_report, report_input(body), channel="api", principal=principal
    )


@router.post(
    "/reports/status",
    response_model=PublicStatusView,
    summary="The honest status of a report (case number + token)",
)
def report_status(body: StatusIn, rt: Runtime = Depends(runtime)) -> PublicStatusView:
    return rt.cases.public_status(body.case_number, body.token)


@router.post(
    "/reports/appeal",
    response_model=PublicStatusView,
    summary="Appeal the decision on your report (within six months)",
)
def reporter_appeal(body: ReporterAppealIn, rt: Runtime = Depends(runtime)) -> PublicStatusView:
    return rt.cases.appeal_as_reporter(body.case_number, body.token, body.reason)


@router.post(
    "/reports/withdraw",
    response_model=PublicStatusView,
    summary="Withdraw your report (case number + token); idempotent",
    description="The report stops counting as a removal request and its hashes and "
    "addresses stop pulling in later uploads. Content already hidden stays hidden until "
    "a reviewer decides.",
)
def withdraw_report(body: StatusIn, rt: Runtime = Depends(runtime)) -> PublicStatusView:
    return rt.cases.withdraw(body.case_number, body.token)
