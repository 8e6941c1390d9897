"""One call from image bytes to every signal we match on: MD5, SHA-256 and PDQ.

The digests are computed from the bytes as received, the PDQ hash from the
decoded pixels (see :mod:`takedown.media.decode` for how those are chosen). All
input problems surface as :class:`takedown.errors.InvalidMedia` subclasses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from takedown.media.decode import check_size, decode_for_pdq
from takedown.media.digests import md5_hex, sha256_hex
from takedown.media.limits import DEFAULT_LIMITS, ImageLimits
from takedown.media.pdq import PdqHash, pdq_from_pixels


@dataclass(frozen=True)
class MediaSignals:
    """Everything we learn from one image file. ``width``/``height`` are as stored
    (EXIF orientation is not applied), ``size_bytes`` is the file's length."""

    media_type: str
    format: str
    mime_type: str
    width: int
    height: int
    size_bytes: int
    md5: str
    sha256: str
    pdq: PdqHash

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; the dihedral hashes keyed by name."""
        return {
            "media_type": self.media_type,
            "format": self.format,
            "mime_type": self.mime_type,
            "width": self.width,
            "height": self.height,
            "bytes": self.size_bytes,
            "md5": self.md5,
            "sha256": self.sha256,
            "pdq": {
                "hash": self.pdq.hash,
                "quality": self.pdq.quality,
                "dihedral": self.pdq.variants(),
            },
        }


def hash_image_bytes(data: bytes, limits: ImageLimits | None = None) -> MediaSignals:
    """Decode ``data`` defensively and compute its signals.

    Raises an :class:`takedown.errors.InvalidMedia` subclass for empty, oversized,
    unsupported, too-many-pixel or corrupt input.
    """
    decoded = decode_for_pdq(data, limits or DEFAULT_LIMITS)
    return MediaSignals(
        media_type="image",
        format=decoded.format,
        mime_type=decoded.mime_type,
        width=decoded.width,
        height=decoded.height,
        size_bytes=len(data),
        md5=md5_hex(data),
        sha256=sha256_hex(data),
        pdq=pdq_from_pixels(decoded.pixels),
    )


def hash_file(path: str | os.PathLike[str], limits: ImageLimits | None = None) -> MediaSignals:
    """Hash the image at ``path``.

    Reads at most ``max_bytes + 1`` bytes, so an oversized file (or an endless one
    such as a pipe) is refused without being read in full. Errors opening the path
    (missing file, permissions) are ordinary ``OSError``\\s for the caller to report.
    """
    limits = limits or DEFAULT_LIMITS
    with open(path, "rb") as handle:
        data = handle.read(limits.max_bytes + 1)
    check_size(len(data), limits)
    return hash_image_bytes(data, limits)
