"""Cryptographic digests of a file's exact bytes.

MD5 is still what NCMEC reports and many legacy hash lists carry, so we compute it
despite its collision weakness; SHA-256 is the digest to prefer. Both identify a
*file*, not a picture: one re-save changes them, which is why PDQ exists.
"""

from __future__ import annotations

import hashlib


def md5_hex(data: bytes) -> str:
    """MD5 of ``data`` as 32 lowercase hex digits.

    ``usedforsecurity=False`` says what this is -- an identifier for matching, not a
    security control -- and keeps it working on FIPS-mode systems.
    """
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def sha256_hex(data: bytes) -> str:
    """SHA-256 of ``data`` as 64 lowercase hex digits."""
    return hashlib.sha256(data).hexdigest()
