"""Wires the pieces together once per process: settings → database → services.

The API and the CLI both start from :func:`open_runtime`, so they share one set of use
cases and one in-memory matcher per process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from takedown.config import Settings
from takedown.services.apikeys import ApiKeyService
from takedown.services.banks import BankService, BankSettings
from takedown.services.matcher import Matcher
from takedown.services.screening import ScreeningService
from takedown.store.db import make_engine, make_session_factory, upgrade

# FAISS, numba and BLAS start one busy thread per core in every process; with several
# workers on few cores they spin and waste the CPU (measured on HMA). One thread each.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    matcher: Matcher
    banks: BankService
    screening: ScreeningService
    api_keys: ApiKeyService

    def close(self) -> None:
        self.api_keys.close()
        self.engine.dispose()


def open_runtime(settings: Settings | None = None, *, migrate: bool = True) -> Runtime:
    settings = settings or Settings()
    engine = make_engine(settings.resolved_database_url)
    if migrate:
        upgrade(engine)
    sessions = make_session_factory(engine)
    matcher = Matcher(sync_interval_s=settings.index_sync_interval_ms / 1000)
    limits = settings.image_limits
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=sessions,
        matcher=matcher,
        banks=BankService(
            sessions,
            BankSettings(settings.default_pdq_threshold, settings.default_pdq_quality_floor),
            limits,
        ),
        screening=ScreeningService(sessions, matcher, limits),
        api_keys=ApiKeyService(sessions),
    )
