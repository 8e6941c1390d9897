"""PDQ hashes of decoded pixels, written the way the rest of the field writes them.

``pdqhash`` (the Python binding of Meta's C++ code) returns a 256-element 0/1 vector.
Its *first* element is the *most* significant bit of the hex string -- the
convention of python-threatexchange and Hasher-Matcher-Actioner, and therefore of
every hash list exchanged with them. Getting this backwards produces well-formed
hashes that never match anything, so ``tests/media`` cross-checks it against
``threatexchange`` directly.

The eight dihedral hashes come from one DCT: Meta's code derives the hash of each
rotation/flip of the image by permuting and negating coefficients, far cheaper
than hashing eight images. They let a single query match copies that were rotated
or mirrored (including copies whose EXIF orientation was baked in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import pdqhash

from takedown.media.signals import PDQ

HASH_BITS: Final = 256

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
"""Names of the hashes ``pdqhash.compute_dihedral`` returns, in its order.

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


def bits_to_hex(bits: np.ndarray | list[int]) -> str:
    """256 bits (element 0 = most significant) to 64 lowercase hex digits."""
    array = np.asarray(bits)
    if array.shape != (HASH_BITS,) or not np.isin(array, (0, 1)).all():
        raise ValueError(f"A PDQ hash is a vector of {HASH_BITS} zeros and ones.")
    return np.packbits(array.astype(np.uint8)).tobytes().hex()


def hex_to_bits(value: str) -> np.ndarray:
    """64 hex digits to a uint8 vector of 256 bits, element 0 = most significant.

    Raises :class:`takedown.errors.InvalidHash` for anything that is not a PDQ hash.
    """
    canonical = PDQ.normalize(value)
    return np.unpackbits(np.frombuffer(bytes.fromhex(canonical), dtype=np.uint8))


def pdq_from_pixels(pixels: np.ndarray) -> PdqHash:
    """Hash uint8 H x W x 3 RGB pixels (as produced by ``decode_for_pdq``)."""
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3 or not pixels.size:
        raise ValueError(
            f"Expected non-empty uint8 H x W x 3 RGB pixels, got {pixels.dtype} {pixels.shape}."
        )
    vectors, quality = pdqhash.compute_dihedral(np.ascontiguousarray(pixels))
    hexes = tuple(bits_to_hex(vector) for vector in vectors)
    return PdqHash(
        hash=hexes[0],
        quality=int(quality),
        dihedral=tuple(zip(DIHEDRAL_NAMES, hexes, strict=True)),
    )
