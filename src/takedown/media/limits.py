"""Resource limits applied to every image before it is decoded.

Uploaded files are hostile until proven otherwise: a 40-byte PNG can declare
100000 x 100000 pixels and ask the decoder for 30 GB. The limits are checked in the
cheapest possible order -- byte count before parsing, header dimensions before
decoding -- so that a refused file costs almost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class ImageLimits:
    """Upper bounds for one image.

    ``max_bytes``: size of the encoded file. 50 MiB is well above any phone photo
    (a 48 MP JPEG is ~15-25 MiB) and bounds the memory spent just holding the upload.

    ``max_pixels``: width x height as declared by the header. 50 MP covers current
    phone cameras. Decoding needs ~3 bytes per pixel, so this caps a decode at about
    150 MB. It is kept below Pillow's own ``Image.MAX_IMAGE_PIXELS`` (~89 MP) so that
    with the defaults our refusal always comes before Pillow's bomb warning.

    ``max_side``: longest side in pixels. 65535 is the JPEG and PNG-in-practice
    ceiling; anything longer is a degenerate strip (e.g. 1 x 50,000,000) that no
    camera produces and that only exists to stress decoders.
    """

    max_bytes: int = 50 * MIB
    max_pixels: int = 50_000_000
    max_side: int = 65_535

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels", "max_side"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ImageLimits.{name} must be a positive integer, got {value!r}.")


DEFAULT_LIMITS = ImageLimits()
