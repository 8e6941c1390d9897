"""One error hierarchy for the whole package.

Every mistake a caller can make is raised as a subclass of :class:`TakedownError`
carrying a stable machine-readable ``code`` and a human sentence. The API maps each
class to an HTTP status once (``takedown.api.errors``); the CLI prints the code and
the sentence. Anything else that escapes is a bug and becomes a 500.
"""

from __future__ import annotations

from typing import Any


class TakedownError(Exception):
    """Base class: a caller's mistake or a refused operation, never a bug."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class InvalidRequest(TakedownError):
    status = 422
    code = "invalid_request"


class InvalidHash(InvalidRequest):
    code = "invalid_hash"


class InvalidCharacter(InvalidRequest):
    """A NUL character (U+0000) in a path, query, form or JSON string: refused everywhere
    (PostgreSQL cannot store it in text, and no field has a use for it)."""

    code = "invalid_character"


class InvalidMedia(TakedownError):
    """Media refused before or during decoding. Subclasses say why."""

    status = 422
    code = "media_invalid"


class MediaEmpty(InvalidMedia):
    code = "media_empty"


class MediaTooLarge(InvalidMedia):
    status = 413
    code = "media_too_large"


class MediaTooManyPixels(InvalidMedia):
    status = 413
    code = "media_too_many_pixels"


class MediaUnsupportedType(InvalidMedia):
    status = 415
    code = "media_unsupported_type"


class MediaCorrupt(InvalidMedia):
    code = "media_corrupt"


class Unauthenticated(TakedownError):
    status = 401
    code = "unauthenticated"


class Forbidden(TakedownError):
    status = 403
    code = "forbidden"


class NotFound(TakedownError):
    status = 404
    code = "not_found"


class Conflict(TakedownError):
    status = 409
    code = "conflict"


class TooManyLines(TakedownError):
    status = 413
    code = "too_many_lines"


class UnsupportedContentType(TakedownError):
    status = 415
    code = "unsupported_content_type"


# -- video (media/video.py) --------------------------------------------------------------


class VideoTooLong(InvalidMedia):
    status = 413
    code = "video_too_long"


class VideoDecodeTimeout(InvalidMedia):
    """Decoding took longer than the configured budget (or the decoder hung)."""

    status = 422
    code = "video_decode_timeout"


class VideoNoStream(InvalidMedia):
    code = "video_no_stream"


# -- the operator's set-up ----------------------------------------------------------------


class ConfigError(RuntimeError):
    """The operator's set-up is wrong or incomplete: a setting, the config file, the
    database or the master key. Never a caller's mistake, so not a TakedownError: the
    CLI prints the sentence (which says how to fix it) and exits with code 2, and a
    server refuses to start."""


class ExchangeFailed(TakedownError):
    """A hash exchange refused a sync or could not be reached (after the client's
    retries). Pages already pulled stay committed with their checkpoint; the next sync
    resumes after them."""

    status = 409
    code = "exchange_sync_failed"
