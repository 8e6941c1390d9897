"""Media handling: safe image decoding and the signals (MD5, SHA-256, PDQ) we match on."""

from takedown.media.hashing import MediaSignals, hash_file, hash_image_bytes
from takedown.media.limits import ImageLimits
from takedown.media.pdq import DIHEDRAL_NAMES, PdqHash

__all__ = [
    "DIHEDRAL_NAMES",
    "ImageLimits",
    "MediaSignals",
    "PdqHash",
    "hash_file",
    "hash_image_bytes",
]
