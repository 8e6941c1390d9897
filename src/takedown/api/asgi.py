"""ASGI entry point for process managers: ``uvicorn --factory takedown.api.asgi:app_factory``.

Each worker process opens its own runtime (engine, matcher) from the environment and
the config file it names (``TAKEDOWN_CONFIG``), and logs which database, data directory
and master key it uses. Run ``takedown db upgrade`` once before starting several
workers: a worker does not create nor migrate the database.
"""

from __future__ import annotations

import logging
import os

from fastapi import FastAPI

from takedown.api.app import create_app
from takedown.memory import freeze_startup
from takedown.runtime import open_runtime

# uvicorn configures its own loggers in every worker; this one is shown with them.
log = logging.getLogger("uvicorn.error")


def app_factory() -> FastAPI:
    rt = open_runtime(migrate=False, create=False)
    settings = rt.settings
    log.info(
        "worker %d: database %s, data directory %s, master key %s (fingerprint %s)",
        os.getpid(),
        settings.database_display,
        settings.data_dir,
        rt.key_source,
        rt.blobs.cipher.keyring.fingerprints[0],
    )
    rt.warm_up()  # load the indexes before the first request
    app = create_app(rt)
    freeze_startup()  # takedown/memory.py
    return app
