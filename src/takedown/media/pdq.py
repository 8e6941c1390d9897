"""PDQ hashes of decoded pixels, written the way the rest of the field writes them.

The arithmetic is :mod:`takedown.media.pdq_compute` (Meta's algorithm in numpy,
held to the ``pdqhash`` binding by the tests). Hashes are 64 hex digits with bit 255
first: ``pdqhash``'s 256-element 0/1 vector has its *first* element as the *most*
significant bit -- the convention of python-threatexchange and
Hasher-Matcher-Actioner, and therefore of every hash list exchanged with them.
Getting this backwards produces well-formed hashes that never match anything, so
``tests/media`` cross-checks it against ``threatexchange`` directly.

The eight dihedral hashes come from one DCT: Meta's code derives the hash of each
rotation/flip of the image by permuting and negating coefficients, far cheaper
than hashing eight images. They let a single query match copies that were rotated
or mirrored (including copies whose EXIF orientation was baked in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from takedown.media.pdq_compute import bits_to_hex as bits_to_hex  # part of this API
from takedown.media.pdq_compute import pdq_dihedral
from takedown.signals import PDQ

DIHEDRAL_NAMES: Final[tuple[str, ...]] = (
    "original",
    "rotate90",  # 90 degrees counter-clockwise, np.rot90(img, 1)
    "rotate180",
    "rotate270",  # 90 degrees clockwise, np.rot90(img, 3)
    "flip_top_bottom",  # np.flipud
    "flip_left_right",  # np.fliplr
    "transpose",  # mirror across the main diagonal, img.transpose(1, 0, 2)
    "transverse",  # mirror across the anti-diagonal
)
"""Names of the 8 dihedral hashes, in the order of ``pdqhash.compute_dihedral``.

Each entry is the (approximate) hash of the image transformed that way. The
vocabulary is Pillow's ``Image.Transpose`` (rotations counter-clockwise); the order
was measured against numpy transforms and is pinned by ``tests/media``.
"""


@dataclass(frozen=True)
class PdqHash:
    """A PDQ hash (64 lowercase hex digits), its quality (0-100) and its 8 variants.

    ``dihedral`` is a tuple of ``(name, hex)`` pairs in :data:`DIHEDRAL_NAMES` order;
    the first is ``("original", hash)``. Meta recommends ignoring hashes with
    quality below 50 (flat, featureless images) when matching.
    """

    hash: str
    quality: int
    dihedral: tuple[tuple[str, str], ...]

    def variants(self) -> dict[str, str]:
        """The dihedral hashes as a name -> hex mapping."""
        return dict(self.dihedral)


def hex_to_bits(value: str) -> np.ndarray:
    """64 hex digits to a uint8 vector of 256 bits, element 0 = most significant.

    Raises :class:`takedown.errors.InvalidHash` for anything that is not a PDQ hash.
    """
    canonical = PDQ.normalize(value)
    return np.unpackbits(np.frombuffer(bytes.fromhex(canonical), dtype=np.uint8))


def pdq_from_pixels(pixels: np.ndarray) -> PdqHash:
    """Hash uint8 pixels: H x W x 3 RGB, or H x W grey (as ``decode_for_pdq`` returns)."""
    if (
        pixels.dtype != np.uint8
        or not pixels.size
        or not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 3))
    ):
        raise ValueError(
            "Expected non-empty uint8 H x W x 3 RGB or H x W grey pixels, "
            f"got {pixels.dtype} {pixels.shape}."
        )
    hexes, quality = pdq_dihedral(pixels)
    return PdqHash(
        hash=hexes[0],
        quality=quality,
        dihedral=tuple(zip(DIHEDRAL_NAMES, hexes, strict=True)),
    )
