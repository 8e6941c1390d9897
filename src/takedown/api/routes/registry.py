"""The content registry: accounts, items, media and views, keyed by the platform's ids."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, File, UploadFile
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from takedown.api.auth import current_principal, require, runtime
from takedown.api.schemas import Count
from takedown.api.uploads import read_media_upload
from takedown.domain.access import Permission, Principal
from takedown.errors import Forbidden, InvalidRequest
from takedown.media import DIHEDRAL_NAMES
from takedown.media.video import media_mime_type
from takedown.runtime import Runtime
from takedown.services.registry.service import (
    MAX_IP_EVENTS,
    AccountInput,
    AccountView,
    IpEventInput,
    ItemInput,
    ItemResult,
    MediaInput,
)

router = APIRouter(tags=["registry"])
_write = require(Permission.REGISTRY_WRITE)


async def _reader(principal: Principal = Depends(current_principal)) -> Principal:
    """Reads of the registry: the platform (registry:write), or legal staff and admins
    (the evidence permission), who alone see IP addresses."""
    if not (principal.allows(Permission.REGISTRY_WRITE) or principal.allows(Permission.EVIDENCE)):
        raise Forbidden(
            f"This {'API key' if principal.kind == 'apikey' else 'account'} lacks the "
            f"'{Permission.REGISTRY_WRITE.value}' permission.",
            code="forbidden",
        )
    return principal


def _ip_reader(p: Principal) -> str | None:
    """The actor, when the caller may read IP addresses (as evidence); else None."""
    return p.actor if p.allows(Permission.EVIDENCE) else None


class IpEventIn(BaseModel):
    """An IP address the platform saw, for the CyberTipline's ipCaptureEvent (NCMEC
    routes a report to a country and agency by it). Personal data: only legal staff
    and admins read it back."""

    model_config = ConfigDict(extra="forbid")
    ip: str = Field(max_length=64, description="IPv4 or IPv6 address.")
    event: Literal["registration", "login", "upload", "purchase", "other"] | None = Field(
        None,
        description="What the address was seen for. Required on accounts; on items it "
        "defaults to upload.",
    )
    at: AwareDatetime | None = Field(
        None, description="When (RFC 3339 with a zone). Optional, but recommended."
    )
    port: int | None = Field(None, ge=0, le=65535, description="Source port, if known.")


_IP_EVENTS_DOC = (
    "IP addresses the platform saw (idempotent: the same address, event and time sent "
    f"again adds nothing; at most {MAX_IP_EVENTS} a request). Sent to NCMEC in "
    "CyberTipline reports as ipCaptureEvents."
)


def _ip_events(events: list[IpEventIn]) -> tuple[IpEventInput, ...]:
    return tuple(IpEventInput(e.ip, e.event or "", e.at, e.port) for e in events)


class AccountIn(BaseModel):
    """What the platform says of an account. Every field is optional: a field left out
    stays as it is. Takedown's own state (strikes, its suspensions) is not set here."""

    model_config = ConfigDict(extra="forbid")
    handle: str | None = Field(None, max_length=200)
    platform_status: str | None = Field(
        None,
        max_length=16,
        description="The account's status on the platform: active, suspended, terminated "
        "or deleted. Reactivating an account "
        "Takedown suspended is recorded on its cases; Takedown's suspension stands.",
    )
    status: str | None = Field(
        None, max_length=16, description="Deprecated: the old name of platform_status."
    )
    flagged: bool | None = Field(
        None,
        description="Known to the platform for sharing abuse material (raises the "
        "priority of cases it is in). false clears the flag.",
    )
    flag_reason: str | None = Field(None, max_length=500, description="Why it is flagged.")
    flag_source: str | None = Field(
        None, max_length=200, description="Who flagged it (default: platform)."
    )
    prior_violations: int | None = Field(
        None,
        ge=0,
        le=1_000_000,
        description="Violations confirmed before (by the platform's own moderation, "
        "an industry partner...); they raise the priority like strikes here.",
    )
    prior_violations_source: str | None = Field(
        None, max_length=200, description="Where they were confirmed (required with a count)."
    )
    ip_events: list[IpEventIn] = Field(
        default_factory=list,
        max_length=MAX_IP_EVENTS,
        description=_IP_EVENTS_DOC + " Events: registration, login, purchase, other.",
    )


class MediaIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sha256: str = Field(description="SHA-256 of the file's bytes.")
    md5: str | None = None
    pdq: str | None = Field(None, description="PDQ hash, 64 hex digits.")
    pdq_quality: int | None = Field(None, ge=0, le=100)
    dihedral: list[str] = Field(
        default_factory=list,
        max_length=8,
        description="The 8 dihedral PDQ variants (rotations, mirror images), first = pdq, "
        "in the order original, rotate90, rotate180, rotate270, flip_top_bottom, "
        "flip_left_right, transpose, transverse (as `takedown hash` prints them and the "
        "report API takes them). With them a rotated or mirrored "
        "copy is found whichever way round the two were registered; without them, only "
        "when the other copy has them (media sent as bytes always do).",
    )
    media_type: str = Field("image", pattern="^(image|video|gif)$")
    file_name: str | None = Field(
        None,
        max_length=255,
        description="The name the file was uploaded with in this item (sent to NCMEC as "
        "originalFileName): a name, no folders, no control characters.",
    )


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    account_id: str | None = Field(
        None, max_length=200, description="The author's account id on the platform."
    )
    url: str | None = Field(None, max_length=2000)
    posted_at: datetime | None = None
    reposts: str | None = Field(None, max_length=200, description="Item id this reposts.")
    quotes: str | None = Field(None, max_length=200, description="Item id this quotes.")
    replies_to: str | None = Field(None, max_length=200)
    monetized: bool = False
    view_count: Count | None = None
    media: list[MediaIn] = Field(default_factory=list, max_length=50)
    visibility: Literal["public", "restricted", "private"] | None = Field(
        None,
        description="Who can see the item on the platform. Kept, as it was, when the "
        "item joins a case (sent to NCMEC as publiclyAvailable; unknown when not said).",
    )
    ip_events: list[IpEventIn] = Field(
        default_factory=list,
        max_length=MAX_IP_EVENTS,
        description=_IP_EVENTS_DOC + " Usually the upload's address (event upload).",
    )


class ViewsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    view_count: Count
    at: datetime | None = None


def account_input(account_id: str, body: AccountIn) -> AccountInput:
    """``PUT /v1/accounts/{id}``'s body as the registry's event (a batch line's too)."""
    if body.status and body.platform_status and body.status != body.platform_status:
        raise InvalidRequest(
            "status is the old name of platform_status: send one of them.",
            code="conflicting_fields",
        )
    return AccountInput(
        account_id,
        handle=body.handle,
        platform_status=body.platform_status or body.status,
        flagged=body.flagged,
        flag_reason=body.flag_reason,
        flag_source=body.flag_source,
        prior_violations=body.prior_violations,
        prior_violations_source=body.prior_violations_source,
        ip_events=_ip_events(body.ip_events),
    )


def item_input(item_id: str, body: ItemIn) -> ItemInput:
    """``PUT /v1/items/{id}``'s body as the registry's event (a batch line's too)."""
    media = [
        MediaInput(
            m.sha256,
            m.md5,
            m.pdq,
            m.pdq_quality,
            tuple(zip(DIHEDRAL_NAMES, m.dihedral, strict=False)),
            m.media_type,
            file_name=m.file_name,
        )
        for m in body.media
    ]
    return ItemInput(
        platform_id=item_id,
        account_id=body.account_id,
        url=body.url,
        posted_at=body.posted_at,
        reposts=body.reposts,
        quotes=body.quotes,
        replies_to=body.replies_to,
        monetized=body.monetized,
        view_count=body.view_count,
        media=media,
        visibility=body.visibility,
        ip_events=_ip_events(body.ip_events),
    )


@router.put(
    "/accounts/{account_id}",
    response_model=AccountView,
    summary="Register an account or say what the platform knows of it (idempotent)",
)
def put_account(
    account_id: str, body: AccountIn, p: Principal = Depends(_write), rt: Runtime = Depends(runtime)
) -> AccountView:
    return rt.registry.upsert_account(account_input(account_id, body), actor=p.actor)


@router.get(
    "/accounts/{account_id}",
    response_model=AccountView,
    summary="An account: the platform's status and Takedown's, strikes, cases, measures",
    description="ip_events only for legal staff and admins (null otherwise); their read "
    "is recorded in the audit log.",
)
def get_account(
    account_id: str, p: Principal = Depends(_reader), rt: Runtime = Depends(runtime)
) -> AccountView:
    return rt.registry.get_account(account_id, ip_events_for=_ip_reader(p))


@router.put(
    "/items/{item_id}",
    response_model=ItemResult,
    summary="Register or update an item with its media hashes (idempotent)",
    description="Media are screened against the banks; an item that copies "
    "material in an open case joins it and is restricted like the rest.",
)
def put_item(
    item_id: str, body: ItemIn, p: Principal = Depends(_write), rt: Runtime = Depends(runtime)
) -> ItemResult:
    return rt.registry.upsert_item(item_input(item_id, body), actor=p.actor)


@router.post(
    "/items/{item_id}/media",
    response_model=ItemResult,
    summary="Attach an image or video by its bytes (hashed here: PDQ ×8, MD5, SHA-256; a "
    "video's frame hashes, MD5, SHA-256)",
    description="The upload's file name is kept as the name the file was uploaded with "
    "(originalFileName in CyberTipline reports). A video is screened against the banks and "
    "matched to registered copies by its frames (vPDQ).",
)
async def post_item_media(
    item_id: str,
    file: UploadFile = File(),
    p: Principal = Depends(_write),
    rt: Runtime = Depends(runtime),
) -> ItemResult:
    data = await read_media_upload(file, rt.settings)

    def attach() -> ItemResult:
        current = rt.registry.get_item(item_id)  # the item must exist
        media = rt.registry.media_from_bytes(data)
        # The upload's own name, as the originalFileName (a browser may send a path).
        name = (file.filename or "").replace("\\", "/").rsplit("/", 1)[-1]
        media = replace(media, file_name=name or None)
        return rt.registry.attach_media(
            current.item_id,
            media,
            actor=p.actor,
            content=data,
            content_type=media_mime_type(data),
        )

    return await run_in_threadpool(attach)


@router.post(
    "/items/{item_id}/views",
    response_model=ItemResult,
    summary="Report the item's current view count",
)
def post_views(
    item_id: str, body: ViewsIn, p: Principal = Depends(_write), rt: Runtime = Depends(runtime)
) -> ItemResult:
    return rt.registry.record_views(item_id, body.view_count, actor=p.actor, at=body.at)


@router.get(
    "/items/{item_id}",
    response_model=ItemResult,
    summary="An item's state",
    description="ip_events only for legal staff and admins (null otherwise); their read "
    "is recorded in the audit log.",
)
def get_item(
    item_id: str, p: Principal = Depends(_reader), rt: Runtime = Depends(runtime)
) -> ItemResult:
    return rt.registry.get_item(item_id, ip_events_for=_ip_reader(p))
