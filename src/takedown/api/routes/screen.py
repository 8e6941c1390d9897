"""Upload screening: the call that sits in the platform's upload path."""

from __future__ import annotations

from fastapi import APIRouter, Depends, File, Form, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from takedown.api.auth import require, runtime
from takedown.api.schemas import FormText, ScreenHashesIn, ScreenOut
from takedown.api.uploads import read_media_upload
from takedown.domain.access import Permission, Principal
from takedown.runtime import Runtime
from takedown.services.screening.service import ScreeningResult

router = APIRouter(prefix="/screen", tags=["screening"])


def _response(result: ScreeningResult) -> Response:
    """The answer serialized once by pydantic-core: returning a Response skips FastAPI's
    second validation and encoding of the response model (a tenth of a hash-only
    request's time). The OpenAPI schema still comes from ``response_model``."""
    return Response(serialize(result), media_type="application/json")


def serialize(result: ScreeningResult) -> bytes:
    """The JSON answer to a screening (also used by api/fast_screen.py)."""
    return _out(result).model_dump_json().encode()


def _out(result: ScreeningResult) -> ScreenOut:
    return ScreenOut.model_validate(
        {
            "verdict": result.verdict.value,
            "matches": result.matches,
            "screening_id": result.screening_id,
            "md5": result.md5,
            "sha256": result.sha256,
            "pdq": result.pdq,
            "pdq_quality": result.pdq_quality,
            "media_type": "video" if result.video else "image" if result.media else None,
            "video": result.video.to_dict() if result.video else None,
            "signals": result.signals,
            "not_matchable": result.not_matchable,
        }
    )


@router.post(
    "",
    response_model=ScreenOut,
    summary="Screen an upload's bytes",
    description="Hashes the image (PDQ with all 8 rotations/flips, MD5, SHA-256) or the "
    "video (one PDQ a second as vPDQ does, MD5, SHA-256) and returns every banked match "
    "and a verdict: block, review or allow.",
)
async def screen_media(
    file: UploadFile = File(description="The uploaded image or video."),
    content_ref: FormText | None = Form(None, max_length=500),
    principal: Principal = Depends(require(Permission.SCREEN)),
    rt: Runtime = Depends(runtime),
) -> Response:
    data = await read_media_upload(file, rt.settings)
    result = await run_in_threadpool(
        rt.screening.screen_media, data, actor=principal.actor, content_ref=content_ref
    )
    return _response(result)


@router.post(
    "/hashes",
    response_model=ScreenOut,
    summary="Screen precomputed hashes",
    description="For platforms that hash on their own side: give PDQ (and its variants), "
    "MD5 and/or SHA-256.",
)
# The API answers this address with api/fast_screen.py, ahead of the framework; this
# route defines it (OpenAPI) and serves it when that is off (create_app(fast_screening=
# False)); tests/api/test_fast_screen.py holds the two to the same answers.
# Runs on the event loop, not the thread pool: the work is an in-memory search and, on a
# hit, a few short indexed reads, and with many threads the GIL hand-offs cost more than the
# work (measured with wrk: see bench/screening.py and the notes in docs/operations.md).
async def screen_hashes(
    body: ScreenHashesIn,
    principal: Principal = Depends(require(Permission.SCREEN)),
    rt: Runtime = Depends(runtime),
) -> Response:
    return _response(await screen_hashes_body(rt, principal.actor, body))


async def screen_hashes_body(rt: Runtime, actor: str, body: ScreenHashesIn) -> ScreeningResult:
    """Screen a validated body (the route above and api/fast_screen.py). A match is kept
    before the answer leaves; the loop serves others meanwhile, and the write commits
    together with theirs (services/screening/recorder.py)."""
    result = rt.screening.screen_hashes(
        actor=actor,
        pdq=body.pdq,
        pdq_quality=body.pdq_quality,
        pdq_variants=body.pdq_variants,
        md5=body.md5,
        sha256=body.sha256,
        signals=body.signals,
        content_ref=body.content_ref,
        record=False,
    )
    return await rt.screening.record_async(result)
