"""ASGI entry point for process managers: ``uvicorn --factory takedown.api.asgi:app_factory``.

Each worker process opens its own runtime (engine, matcher) from the environment. Run
``takedown db upgrade`` once before starting several workers.
"""

from __future__ import annotations

from fastapi import FastAPI

from takedown.api.app import create_app
from takedown.runtime import open_runtime


def app_factory() -> FastAPI:
    rt = open_runtime(migrate=False)
    rt.warm_up()  # load the indexes before the first request
    return create_app(rt)
