"""A third-party signal type for the plug-in tests: a 64-bit difference hash (dHash).

It is what docs/extending.md walks through: a class that says what the signal is, how
it is written and compared, which content it describes and how an image is hashed.
The tests install it the way a wheel is installed (this module beside a ``.dist-info``
whose ``entry_points.txt`` names it in the ``takedown.signals`` group), so the server
and the CLI find it through the entry point, not through any test hook.
"""

from __future__ import annotations

from typing import Any

from takedown.signals import ContentKind, IndexKind, SignalType


class DHashSignal(SignalType):
    name = "dhash"
    description = "64-bit difference hash of an image (example plug-in)"
    aliases = ("difference_hash",)
    content_kinds = frozenset({ContentKind.IMAGE})
    index = IndexKind.HAMMING
    hex_digits = 16
    bits = 64
    default_threshold = 10
    max_threshold = 32
    example = "0f0f0f0f33333333"

    def hash_image(self, image: Any) -> tuple[str, int | None]:
        # Greyscale 9 x 8; each bit says whether a pixel is brighter than its right
        # neighbour. Pillow is imported by the caller (takedown.media) already.
        small = image.convert("L").resize((9, 8))
        pixels = small.tobytes()  # one byte a pixel, row by row
        bits = 0
        for row in range(8):
            for col in range(8):
                left, right = pixels[row * 9 + col], pixels[row * 9 + col + 1]
                bits = (bits << 1) | (left > right)
        return f"{bits:016x}", None
