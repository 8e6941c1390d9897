"""Media in the console: blurred previews, reveal on click, and the serving itself.

Who: ``may_view_media`` (moderators, specialists, legal, admins; never an API key).
How: through signed links (see security.py) that expire in minutes and work only in
the session that received them. Every serving, blurred or full, writes a
``media.viewed`` audit event with its purpose; ``full`` is true only when the sharp
file itself was sent (a reveal), which is what ``fileViewedByEsp`` may rely on. A reveal
names the item whose copy is shown (the media card's "as posted in" choice, or its only
item), so the view counts for that item's account (domain/cybertipline.ViewedScope).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from takedown.domain.review import MEDIA_PURPOSES, Wellness
from takedown.errors import Forbidden, InvalidRequest
from takedown.media.preview import blurred_preview
from takedown.media.video import render_poster
from takedown.runtime import Runtime
from takedown.services.review.service import MediaView
from takedown.web.console.render import ConsoleRoute
from takedown.web.console.security import (
    MEDIA_HEADERS,
    SECURITY_HEADERS,
    MediaLink,
    read_media_link,
    sign_media_link,
)
from takedown.web.console.session import Visitor, poster, runtime, visitor

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

# What a revealed file may be served as; anything else is a download, never rendered.
SAFE_TYPES = frozenset(
    {"image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp", "video/mp4", "video/webm"}
)


@dataclass(frozen=True)
class MediaLinks:
    preview: str | None  # blurred image (a video's poster frame), None for hash-only media
    reveal: str  # POST here to get a link to the full file


def _url(
    rt: Runtime,
    v: Visitor,
    case_id: str,
    media_id: str,
    purpose: str,
    full: bool,
    item: str = "",
) -> str:
    expires = int(time.time()) + rt.settings.console_media_link_seconds
    token = sign_media_link(v.token, MediaLink(case_id, media_id, purpose, full, expires, item))
    return f"/console/m/{token}"


def media_links(
    rt: Runtime,
    v: Visitor,
    case_id: str,
    media: Sequence[MediaView],
    purpose: str,
    wellness: Wellness,
) -> dict[str, MediaLinks]:
    out = {}
    for m in media:
        preview = None
        if m.has_bytes and m.media_type in ("image", "video"):
            preview = _url(rt, v, case_id, m.id, purpose, False)
        out[m.id] = MediaLinks(preview, f"/console/cases/{case_id}/media/{m.id}/reveal")
    return out


@router.post("/cases/{case_id}/media/{media_id}/reveal")
def reveal(request: Request, case_id: str, media_id: str, v: Visitor = Depends(poster)) -> Response:
    """A short-lived link to the full file, for this session. The console's script
    asks with ``Accept: application/json``; without script, the browser follows."""
    if not v.sees_media:
        raise Forbidden("This account may not see media.", code="forbidden")
    purpose = v.text("purpose", 40) or "review"
    if purpose not in MEDIA_PURPOSES:
        raise InvalidRequest(f"Unknown purpose {purpose[:40]!r}.", code="invalid_purpose")
    item = v.text("item", 200).strip()
    url = _url(runtime(request), v, case_id, media_id, purpose, True, item)
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"url": url}, headers=SECURITY_HEADERS)
    return RedirectResponse(url, 303, headers=SECURITY_HEADERS)


@router.get("/m/{token}")
def serve(request: Request, token: str, v: Visitor = Depends(visitor)) -> Response:
    """One serving of one media file: checked, audited, never cached."""
    rt = runtime(request)
    link = read_media_link(v.token, token)
    got = rt.review.view_media(
        link.case_id,
        link.media_id,
        v.principal,
        purpose=link.purpose,
        full=link.full,
        item_id=link.item or None,
    )
    if not link.full:
        wellness = rt.review.reviewer(v.principal).wellness
        # A video's preview is its most detailed sampled frame (decoded in a bounded
        # child process, as for hashing), blurred and greyed like any image.
        still = (
            render_poster(got.data, rt.settings.video_limits, blur=0)
            if got.media_type == "video"
            else got.data
        )
        body = blurred_preview(
            still,
            rt.settings.image_limits,
            radius=wellness.blur_strength,
            greyscale=wellness.greyscale,
        )
        return Response(body, media_type="image/jpeg", headers=MEDIA_HEADERS)
    headers = dict(MEDIA_HEADERS)
    media_type = got.content_type if got.content_type in SAFE_TYPES else None
    if media_type is None:
        media_type = "application/octet-stream"
        headers["Content-Disposition"] = "attachment"
    return Response(got.data, media_type=media_type, headers=headers)
