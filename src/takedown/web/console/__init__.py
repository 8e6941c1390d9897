"""The review console (``/console``): see docs/console.md."""

from __future__ import annotations

from fastapi import APIRouter

from takedown.web.console import (
    admin,
    assets,
    banks,
    exchanges,
    legal_dsa,
    legal_shares,
    media,
    pages,
)

router = APIRouter()
for part in (
    pages.router,
    media.router,
    admin.router,
    legal_dsa.router,
    legal_shares.router,
    banks.router,
    exchanges.router,
    assets.router,
):
    router.include_router(part)

__all__ = ["router"]
