"""Blurred, greyscale previews for the review console (wellness by default).

The blur is applied here, on the server, not by a CSS filter in the browser: until a
reviewer chooses to reveal an item, the sharp picture never reaches their screen or
their browser's memory (a CSS blur can be switched off in the developer tools).
The preview is small (480 px) and re-encoded as JPEG, so it carries no metadata.
"""

from __future__ import annotations

import io

from PIL import Image, ImageFilter, ImageOps, JpegImagePlugin

from takedown.errors import InvalidMedia
from takedown.media.decode import check_dimensions, check_size, sniff_format
from takedown.media.limits import ImageLimits

PREVIEW_SIDE = 480


def blurred_preview(data: bytes, limits: ImageLimits, *, radius: int, greyscale: bool) -> bytes:
    """A JPEG of ``data`` at most 480 px on a side, Gaussian-blurred by ``radius``
    (scaled to the preview) and greyscale if asked. Refuses what the decoder refuses."""
    check_size(len(data), limits)
    fmt = sniff_format(data)
    try:
        with Image.open(io.BytesIO(data), formats=[fmt.pillow]) as img:
            check_dimensions(img.width, img.height, limits)
            if isinstance(img, JpegImagePlugin.JpegImageFile):
                img.draft("RGB", (PREVIEW_SIDE, PREVIEW_SIDE))
            small = ImageOps.exif_transpose(img.convert("RGB"))
    except InvalidMedia:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure: a corrupt file
        raise InvalidMedia(
            "The stored file could not be decoded for a preview.", code="media_corrupt"
        ) from exc
    small.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    if greyscale:
        small = small.convert("L")
    small = small.filter(ImageFilter.GaussianBlur(radius))
    out = io.BytesIO()
    small.save(out, "JPEG", quality=70)
    return out.getvalue()
