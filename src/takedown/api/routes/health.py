from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy import text

from takedown import __version__
from takedown.api.auth import runtime
from takedown.api.schemas import HealthOut
from takedown.runtime import Runtime

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthOut, summary="Liveness and database check")
def health(rt: Runtime = Depends(runtime)) -> HealthOut:
    with rt.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    return HealthOut(
        status="ok",
        version=__version__,
        database=rt.engine.dialect.name,
        indexed_pdq_hashes=rt.matcher.indexed,
    )
