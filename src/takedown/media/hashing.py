"""One call from image bytes to every signal we match on: MD5, SHA-256 and PDQ, and
the signals of plug-in types that hash images or bytes (``takedown.signals``).

The digests are computed from the bytes as received, the PDQ hash from the
decoded pixels (see :mod:`takedown.media.decode` for how those are chosen). All
input problems surface as :class:`takedown.errors.InvalidMedia` subclasses.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from takedown.media.decode import check_size, decode_for_pdq
from takedown.media.digests import md5_hex, sha256_hex
from takedown.media.limits import DEFAULT_LIMITS, ImageLimits
from takedown.media.pdq import PdqHash, pdq_from_pixels
from takedown.signals import ContentKind, SignalType, all_types

log = logging.getLogger(__name__)


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
    # Plug-in signal types' values: name -> (value, quality or None).
    others: dict[str, tuple[str, int | None]] = field(default_factory=dict)

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
        } | (
            {"signals": {n: {"hash": v, "quality": q} for n, (v, q) in self.others.items()}}
            if self.others
            else {}
        )


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
        others=plugin_signals(data, decoded.pixels),
    )


def image_plugins() -> list[SignalType]:
    """Plug-in types that hash images or bytes (built-ins are computed above)."""
    return [
        t
        for t in all_types()
        if not t.computed_by_media
        and ContentKind.IMAGE in t.content_kinds
        and (t.hashes_images or t.hashes_bytes)
    ]


def plugin_signals(data: bytes, pixels: Any) -> dict[str, tuple[str, int | None]]:
    """Each plug-in's signal of an image: from the bytes, or from the pixels as decoded
    for PDQ (at most 512 px a side; RGB, or greyscale for a large JPEG), as a Pillow
    image. A plug-in's value is normalised like any value of its type."""
    found: dict[str, tuple[str, int | None]] = {}
    plugins = image_plugins()
    if not plugins:
        return found
    from PIL import Image

    image = None
    for t in plugins:
        try:
            if t.hashes_images:
                if image is None:
                    image = Image.fromarray(pixels)
                value, quality = t.hash_image(image)
            else:
                value, quality = t.hash_bytes(data) or "", None
            found[t.name] = (t.normalize(value), quality)
        except Exception:  # a plug-in's bug must not refuse the upload: its signal is left out
            log.exception("signal type %r failed to hash an image; its signal is left out", t.name)
    return found


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
