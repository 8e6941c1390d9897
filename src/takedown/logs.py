"""Log lines: text (the default) or one JSON object a line (``TAKEDOWN_LOG_FORMAT=json``),
each carrying the id of the request it was written for.

The request id is held in a context variable that the application sets for each HTTP
request (api/app.py); threads the request's work runs in (FastAPI's thread pool) copy
the context, and uvicorn writes its access line from the request's own task, so every
line written for a request, the access line included, names it.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

REQUEST_ID_HEADER = "X-Request-ID"
_request_id: ContextVar[str | None] = ContextVar("takedown_request_id", default=None)
# An incoming id is kept when it is short and made of safe characters (it is echoed in
# a header and written into logs); anything else is replaced by one of ours.
_SAFE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
FORMATS = ("text", "json")


def accept_request_id(incoming: str | None) -> str:
    """The caller's id when it is acceptable, else a new one."""
    if incoming and _SAFE_ID.fullmatch(incoming):
        return incoming
    return secrets.token_hex(12)


def set_request_id(value: str | None) -> object:
    return _request_id.set(value)


def reset_request_id(token: object) -> None:
    _request_id.reset(token)  # type: ignore[arg-type]


def current_request_id() -> str | None:
    return _request_id.get()


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (or None) to every record that passes the handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True


_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request_id, and for
    uvicorn's access lines the request's fields by name."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or _request_id.get(),
        }
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            out.update(zip(_ACCESS_FIELDS, args, strict=True))
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def uvicorn_log_config(log_format: str) -> dict[str, Any]:
    """uvicorn's ``log_config`` for the format: uvicorn's own for text; for json, every
    logger (uvicorn's, Takedown's, the root) through one JSON handler on stderr."""
    if log_format != "json":
        from uvicorn.config import LOGGING_CONFIG

        return LOGGING_CONFIG
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "filters": ["request_id"],
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"json": handler},
        "loggers": {
            "uvicorn": {"handlers": [], "level": "INFO", "propagate": True},
            "uvicorn.error": {"handlers": [], "level": "INFO", "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "INFO", "propagate": True},
        },
        "root": {"handlers": ["json"], "level": "INFO"},
    }


def configure(log_format: str) -> None:
    """Logging for a command that is not (yet) uvicorn's: JSON on stderr, or the text
    lines the server has always written."""
    if log_format == "json":
        from logging.config import dictConfig

        dictConfig(uvicorn_log_config(log_format))
    elif not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
