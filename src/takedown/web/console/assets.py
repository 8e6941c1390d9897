"""The console's stylesheet and script, served by the router (no static mount)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response

router = APIRouter(prefix="/console/assets", include_in_schema=False)

STATIC = Path(__file__).resolve().parent.parent / "static"
ASSETS = {
    "console.css": ("console.css", "text/css; charset=utf-8"),
    "console.js": ("js/console.js", "text/javascript; charset=utf-8"),
}


@cache
def _read(path: str) -> bytes:
    return (STATIC / path).read_bytes()


@router.get("/{name}")
async def asset(name: str) -> Response:
    if name not in ASSETS:  # only these files; no path from the URL reaches the disk
        return Response("Not found", status_code=404, media_type="text/plain")
    path, media_type = ASSETS[name]
    return Response(
        _read(path),
        media_type=media_type,
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"},
    )
