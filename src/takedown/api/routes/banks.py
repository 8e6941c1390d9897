"""Hash banks and their entries (the curator role, in HMA's terms)."""

from __future__ import annotations

import io
from functools import partial

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from takedown.api.auth import require, runtime
from takedown.api.schemas import (
    BankIn,
    BankPatch,
    EntriesIn,
    EntryPage,
    EntryPatch,
    FormText,
    SignalSettingIn,
)
from takedown.api.uploads import read_media_upload
from takedown.domain.access import Permission, Principal
from takedown.domain.hashlists import FORMATS, HashRecord
from takedown.errors import InvalidRequest
from takedown.runtime import Runtime
from takedown.services.banks.service import (
    AddResult,
    BankView,
    EntryChange,
    EntryView,
    MediaChange,
    Provenance,
    SettingChange,
)
from takedown.services.registry.retroscan import JobView
from takedown.signals import all_types

router = APIRouter(tags=["banks"])
_read = require(Permission.BANKS_READ)
_write = require(Permission.BANKS_WRITE)

_MEDIA_TYPES = {"text": "text/plain", "csv": "text/csv", "jsonl": "application/x-ndjson"}


@router.get(
    "/signal-types",
    summary="The signal types this deployment knows",
    description="Every registered signal type (built-in and plug-in): its name and "
    "aliases, what content it describes, whether Takedown can compute it and match it "
    "here (PhotoDNA: stored and exchanged only), and its default threshold.",
)
def list_signal_types(_: Principal = Depends(_read)) -> list[dict[str, object]]:
    return [t.describe() for t in all_types()]


@router.get("/banks", response_model=list[BankView], summary="List banks")
def list_banks(_: Principal = Depends(_read), rt: Runtime = Depends(runtime)) -> list[BankView]:
    return [(b) for b in rt.banks.list_banks()]


@router.post("/banks", response_model=BankView, status_code=201, summary="Create a bank")
def create_bank(
    body: BankIn, p: Principal = Depends(_write), rt: Runtime = Depends(runtime)
) -> BankView:
    view = rt.banks.create_bank(
        body.name,
        actor=p.actor,
        source=body.source,
        match_action=body.match_action,
        pdq_threshold=body.pdq_threshold,
        pdq_quality_floor=body.pdq_quality_floor,
        description=body.description,
        restrict_on_match=body.restrict_on_match,
        video_match_percent=body.video_match_percent,
        video_frame_threshold=body.video_frame_threshold,
        signal_settings=_setting_changes(body.signal_settings),
    )
    return view


@router.get("/banks/{bank}", response_model=BankView, summary="Describe a bank")
def get_bank(bank: str, _: Principal = Depends(_read), rt: Runtime = Depends(runtime)) -> BankView:
    return rt.banks.get_bank(bank)


@router.patch(
    "/banks/{bank}",
    response_model=BankView,
    summary="Change a bank's policy, or disable / re-enable it",
)
def update_bank(
    bank: str, body: BankPatch, p: Principal = Depends(_write), rt: Runtime = Depends(runtime)
) -> BankView:
    view = rt.banks.update_bank(
        bank,
        actor=p.actor,
        description=body.description,
        restrict_on_match=body.restrict_on_match,
        match_action=body.match_action,
        pdq_threshold=body.pdq_threshold,
        pdq_quality_floor=body.pdq_quality_floor,
        enabled=body.enabled,
        reason=body.reason,
        video_match_percent=body.video_match_percent,
        video_frame_threshold=body.video_frame_threshold,
        signal_settings=_setting_changes(body.signal_settings),
        share_to=body.share_to,
    )
    return view


@router.get("/banks/{bank}/entries", response_model=EntryPage, summary="List a bank's entries")
def list_entries(
    bank: str,
    after: str | None = Query(None, description="Cursor from the previous page."),
    limit: int = Query(100, ge=1, le=1000),
    include_disabled: bool = True,
    _: Principal = Depends(_read),
    rt: Runtime = Depends(runtime),
) -> EntryPage:
    views, cursor = rt.banks.list_entries(
        bank, after=after, limit=limit, include_disabled=include_disabled
    )
    return EntryPage(entries=[(v) for v in views], next_cursor=cursor)


@router.post(
    "/banks/{bank}/entries",
    response_model=AddResult,
    status_code=201,
    summary="Add entries by hash (all or nothing)",
)
def add_entries(
    bank: str, body: EntriesIn, p: Principal = Depends(_write), rt: Runtime = Depends(runtime)
) -> AddResult:
    records = [
        HashRecord(e.signal_type, e.value, e.quality, e.source, e.source_id, e.category, e.note)
        for e in body.entries
    ]
    return rt.banks.add_hashes(bank, records, actor=p.actor)


@router.post(
    "/banks/{bank}/media",
    response_model=AddResult,
    status_code=201,
    summary="Add an image (its PDQ, MD5 and SHA-256) or a video (its frame hashes, MD5 "
    "and SHA-256)",
)
async def add_media(
    bank: str,
    file: UploadFile = File(),
    source: FormText | None = Form(None, max_length=32),
    source_id: FormText | None = Form(None, max_length=200),
    category: FormText | None = Form(None, max_length=100),
    note: FormText | None = Form(None, max_length=5000),
    p: Principal = Depends(_write),
    rt: Runtime = Depends(runtime),
) -> AddResult:
    data = await read_media_upload(file, rt.settings)
    result = await run_in_threadpool(
        rt.banks.add_media,
        bank,
        data,
        Provenance(source, source_id, category, note),
        actor=p.actor,
    )
    return result


@router.post(
    "/banks/{bank}/import",
    response_model=AddResult,
    summary="Import a hash list (text, csv or jsonl) as the request body",
    description="All or nothing: if any line is rejected nothing is imported and the "
    "rejected lines are listed, unless skip_invalid=true.",
)
async def import_list(
    bank: str,
    request: Request,
    format: str = Query(description="text, csv or jsonl"),
    signal_type: str | None = Query(None, description="For text lists: pdq, md5 or sha256."),
    source: str | None = Query(None, max_length=32),
    category: str | None = Query(None, max_length=100),
    skip_invalid: bool = False,
    p: Principal = Depends(_write),
    rt: Runtime = Depends(runtime),
) -> AddResult:
    if format not in FORMATS:
        raise InvalidRequest(
            f"Unknown format {format[:20]!r}; use one of: {', '.join(FORMATS)}.",
            code="unknown_format",
        )
    raw = await request.body()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidRequest("The list must be UTF-8 text.", code="invalid_encoding") from None
    result = await run_in_threadpool(
        rt.banks.import_list,
        bank,
        text.splitlines(),
        format,
        actor=p.actor,
        default_type=signal_type,
        provenance=Provenance(source=source, category=category),
        skip_invalid=skip_invalid,
    )
    return result


@router.get("/banks/{bank}/export", summary="Export a bank's enabled entries")
def export_list(
    bank: str,
    format: str = Query("csv", description="text, csv or jsonl"),
    include_disabled: bool = False,
    signal_type: str | None = Query(
        None,
        description="Only this signal type (needed for a text list of a bank holding several).",
    ),
    _: Principal = Depends(_read),
    rt: Runtime = Depends(runtime),
) -> Response:
    if format not in FORMATS:
        raise InvalidRequest(
            f"Unknown format {format[:20]!r}; use one of: {', '.join(FORMATS)}.",
            code="unknown_format",
        )
    out = io.StringIO()
    rt.banks.export_list(
        bank,
        format,
        out,
        include_disabled=include_disabled,
        with_provenance=format == "jsonl",
        only_type=signal_type,
    )
    return Response(out.getvalue(), media_type=_MEDIA_TYPES[format])


@router.get("/entries/{entry_id}", response_model=EntryView, summary="Describe an entry")
def get_entry(
    entry_id: str, _: Principal = Depends(_read), rt: Runtime = Depends(runtime)
) -> EntryView:
    return rt.banks.get_entry(entry_id)


@router.patch(
    "/entries/{entry_id}",
    response_model=EntryChange,
    summary="Disable an entry (false positive) or re-enable it, with its file's other signals",
    description="An entry banked from a file (POST /banks/{bank}/media) is disabled or "
    "re-enabled together with the other signals of that file (`siblings`), so an upload "
    "of it stops matching on every signal; `all_signals: false` changes this entry only.",
)
def update_entry(
    entry_id: str,
    body: EntryPatch,
    p: Principal = Depends(_write),
    rt: Runtime = Depends(runtime),
) -> EntryChange:
    return rt.banks.set_entry_enabled(
        entry_id, body.enabled, actor=p.actor, reason=body.reason, all_signals=body.all_signals
    )


@router.post(
    "/banks/{bank}/media/disable",
    response_model=MediaChange,
    summary="Disable a file's entries (a false positive): give the file or its SHA-256",
    description="Every entry of the bank banked from the file, and every entry that is "
    "exactly one of its signals (its MD5 or SHA-256 from a hash list, its PDQ), in one "
    "transaction: an upload of the file no longer matches here.",
)
async def disable_media(
    bank: str,
    file: UploadFile | None = File(None),
    sha256: str | None = Form(None, max_length=100),
    reason: str | None = Form(None, max_length=5000),
    p: Principal = Depends(_write),
    rt: Runtime = Depends(runtime),
) -> MediaChange:
    data = await read_media_upload(file, rt.settings) if file is not None else None
    return await run_in_threadpool(
        partial(
            rt.banks.set_media_enabled,
            bank,
            False,
            actor=p.actor,
            data=data,
            sha256=sha256,
            reason=reason,
        )
    )


@router.post(
    "/banks/{bank}/media/enable",
    response_model=MediaChange,
    summary="Re-enable a file's entries: give the file or its SHA-256",
)
async def enable_media(
    bank: str,
    file: UploadFile | None = File(None),
    sha256: str | None = Form(None, max_length=100),
    p: Principal = Depends(_write),
    rt: Runtime = Depends(runtime),
) -> MediaChange:
    data = await read_media_upload(file, rt.settings) if file is not None else None
    return await run_in_threadpool(
        partial(rt.banks.set_media_enabled, bank, True, actor=p.actor, data=data, sha256=sha256)
    )


def _setting_changes(
    given: dict[str, SignalSettingIn] | None,
) -> dict[str, SettingChange] | None:
    if given is None:
        return None
    return {name: SettingChange(**s.model_dump()) for name, s in given.items()}


@router.get(
    "/banks/{bank}/retroscans",
    response_model=list[JobView],
    summary="Retroactive scans of a bank, newest first",
    description="Each addition of entries queues a scan of the registered media against "
    "the new entries (run by `takedown worker`); a rescan of the whole bank is queued "
    "with POST. Progress: media scanned of media_total, matches found, cases opened or "
    "joined.",
)
def list_retroscans(
    bank: str, _: Principal = Depends(_read), rt: Runtime = Depends(runtime)
) -> list[JobView]:
    return rt.retroscan.list_jobs(bank)


@router.post(
    "/banks/{bank}/retroscans",
    response_model=JobView,
    status_code=202,
    summary="Queue a retroactive scan of the whole bank",
)
def queue_retroscan(
    bank: str, p: Principal = Depends(_write), rt: Runtime = Depends(runtime)
) -> JobView:
    return rt.retroscan.rescan_bank(bank, actor=p.actor)
