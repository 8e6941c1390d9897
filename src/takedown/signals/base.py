"""The interface every signal type implements, and the kinds it is described by.

A *signal* is a hash (or other compact fingerprint) of a piece of content, written as a
string that any exchange format can carry unchanged. A *signal type* says what such a
string is and how two of them compare: its name and aliases, how a value is normalised
and validated, the distance between two values and the threshold a bank uses by
default, which content kinds it applies to, whether and how we compute it from content,
and which index serves it. Modelled on python-threatexchange's ``SignalType``.

Nothing here imports Pillow, PyAV or numba: a type that hashes images receives the
decoded image from ``takedown.media`` (which owns safe decoding) and may import its own
libraries inside its methods.
"""

from __future__ import annotations

import hashlib
import re
from enum import StrEnum
from typing import Any, ClassVar

from takedown.errors import InvalidHash, InvalidRequest

_HEX = re.compile(r"^[0-9a-f]+$")


class ContentKind(StrEnum):
    """What a signal can describe."""

    IMAGE = "image"
    VIDEO = "video"
    TEXT = "text"
    URL = "url"
    FILE = "file"  # any bytes (file digests)


class IndexKind(StrEnum):
    """How banked values of a type are found for a query."""

    EXACT = "exact"  # equal values, looked up in the database
    HAMMING = "hamming"  # within a bit distance, in an in-memory Hamming index
    NONE = "none"  # stored and exchanged only: not matchable here


class SignalType:
    """One signal type. Subclass it, set the class attributes, override what differs,
    and register an instance (built-ins in ``builtin.py``; third parties through the
    ``takedown.signals`` entry-point group, see docs/extending.md).

    Values are lowercase hex of ``hex_digits`` digits unless :meth:`normalize` is
    overridden; Hamming types compare by the bits that differ (at most 256 bits, the
    width of the shared index).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    content_kinds: ClassVar[frozenset[ContentKind]] = frozenset()
    index: ClassVar[IndexKind] = IndexKind.EXACT
    hex_digits: ClassVar[int | None] = None  # None: the type normalises values itself
    max_value_length: ClassVar[int] = 512  # longest value (written form) accepted
    # Values longer than a bank entry's 512 characters (TMK) are kept whole beside the
    # entry, which is valued by the SHA-256 of the canonical value.
    stored_by_digest: ClassVar[bool] = False
    bits: ClassVar[int] = 0  # Hamming types: bits in a value
    default_threshold: ClassVar[int] = 0  # largest distance counted as a match
    max_threshold: ClassVar[int] = 0
    has_quality: ClassVar[bool] = False  # values come with a 0-100 quality
    default_quality_floor: ClassVar[int | None] = None
    # Computed by takedown.media's own pipeline (PDQ with its 8 variants, vPDQ frames,
    # file digests) rather than by this class's hash_* methods.
    computed_by_media: ClassVar[bool] = False
    # Where a hash-list line of this type may come from when it carries no type name:
    # a bare hex value of this many digits is taken as this type (None: never guessed).
    guess_by_length: ClassVar[bool] = False
    example: ClassVar[str | None] = None  # a valid value, for docs and tests

    # -- what it is ------------------------------------------------------------------
    @property
    def matchable(self) -> bool:
        """Whether screening can match it here (else it is stored and exchanged only)."""
        return self.index is not IndexKind.NONE

    @property
    def perceptual(self) -> bool:
        return self.index is IndexKind.HAMMING

    @property
    def computable(self) -> bool:
        """Whether Takedown can compute it from content it is given."""
        return self.computed_by_media or self.hashes_bytes or self.hashes_images

    @property
    def hashes_bytes(self) -> bool:
        return type(self).hash_bytes is not SignalType.hash_bytes

    @property
    def hashes_images(self) -> bool:
        return type(self).hash_image is not SignalType.hash_image

    def describe(self) -> dict[str, object]:
        """What the type is, for `GET /v1/signal-types`, the CLI and docs."""
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "description": self.description,
            "content_kinds": sorted(k.value for k in self.content_kinds),
            "index": self.index.value,
            "matchable": self.matchable,
            "computable": self.computable,
            "default_threshold": self.default_threshold if self.perceptual else None,
            "has_quality": self.has_quality,
        }

    # -- values ----------------------------------------------------------------------
    def normalize(self, value: str) -> str:
        """The canonical form of a value (lowercase hex by default), or
        :class:`InvalidHash` saying what a value of this type looks like."""
        text = value.strip().lower()
        digits = self.hex_digits
        if digits is None:
            raise NotImplementedError(f"{type(self).__name__} must override normalize()")
        if len(text) != digits or not _HEX.match(text):
            raise InvalidHash(
                f"A {self.name} hash is {digits} hexadecimal digits; got {preview(value)!r}.",
                signal_type=self.name,
            )
        return text

    def stored_value(self, value: str) -> str:
        """What a bank entry holds for a normalised value: the value itself, or for a
        type stored by digest the SHA-256 (hex) of it."""
        if self.stored_by_digest:
            return hashlib.sha256(value.encode("ascii")).hexdigest()
        return value

    def distance(self, a: str, b: str) -> int:
        """How far apart two normalised values are: the bits that differ for a Hamming
        type, 0 or 1 (equal or not) for an exact one."""
        if self.perceptual:
            return (int(a, 16) ^ int(b, 16)).bit_count()
        return 0 if a == b else 1

    def matches(self, a: str, b: str, threshold: int | None = None) -> bool:
        limit = self.default_threshold if threshold is None else threshold
        return self.distance(a, b) <= limit

    def validate_threshold(self, value: int) -> int:
        if not self.perceptual:
            raise InvalidRequest(
                f"A {self.name} signal matches only when equal: it takes no threshold.",
                code="invalid_threshold",
            )
        if not 0 <= value <= self.max_threshold:
            raise InvalidRequest(
                f"The {self.name} distance threshold must be between 0 and "
                f"{self.max_threshold} bits; got {value}. Its usual value is "
                f"{self.default_threshold}.",
                code="invalid_threshold",
            )
        return value

    # -- computing it from content (override what applies) -----------------------------
    def hash_bytes(self, data: bytes) -> str | None:
        """The signal of a file's bytes, for types that digest any file."""
        raise NotImplementedError

    def hash_image(self, image: Any) -> tuple[str, int | None]:
        """``(value, quality or None)`` of a decoded image: a Pillow ``Image`` as
        ``takedown.media`` decoded it for PDQ (checked and bounded; at most 512 px a
        side; RGB, or greyscale ``L`` for a large JPEG decoded straight to luma)."""
        raise NotImplementedError


def preview(value: str, limit: int = 80) -> str:
    return value if len(value) <= limit else value[:limit] + "…"
