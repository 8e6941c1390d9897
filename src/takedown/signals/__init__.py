"""Signal types: what a hash of media is called, how it is written, how two compare.

One small class per signal type, registered by name, in the spirit of
python-threatexchange's ``SignalType``: adding a type (vPDQ frames, PhotoDNA) means one
new class and one line in :data:`SIGNAL_TYPES`. A signal is always a lowercase hex
string so that any exchange format (text lists, CSV, JSON) can carry it unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from takedown.errors import InvalidHash

_HEX = re.compile(r"^[0-9a-f]+$")


@dataclass(frozen=True)
class SignalType:
    """A hash family. ``perceptual`` types are compared by Hamming distance."""

    name: str
    hex_digits: int
    perceptual: bool
    description: str

    def normalize(self, value: str) -> str:
        """Return the canonical form (lowercase hex) or raise :class:`InvalidHash`."""
        text = value.strip().lower()
        if len(text) != self.hex_digits or not _HEX.match(text):
            raise InvalidHash(
                f"A {self.name} hash is {self.hex_digits} hexadecimal digits; "
                f"got {_preview(value)!r}.",
                signal_type=self.name,
            )
        return text


PDQ = SignalType("pdq", 64, True, "PDQ perceptual hash of an image (256 bits)")
MD5 = SignalType("md5", 32, False, "MD5 digest of the file's bytes")
SHA256 = SignalType("sha256", 64, False, "SHA-256 digest of the file's bytes")

VPDQ = "vpdq"  # the signal type of a banked video's entry (its frames follow it)

SIGNAL_TYPES: dict[str, SignalType] = {t.name: t for t in (PDQ, MD5, SHA256)}

# Names other tools use for the same types (threatexchange / HMA write "pdq", "md5";
# some exports say "sha-256" or "video_md5"). Mapped once here.
_ALIASES = {"sha-256": "sha256", "sha_256": "sha256", "pdq_hash": "pdq", "photo_md5": "md5"}


def signal_type(name: str) -> SignalType:
    """Look a signal type up by name (case-insensitive, common aliases accepted)."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    try:
        return SIGNAL_TYPES[key]
    except KeyError:
        known = ", ".join(SIGNAL_TYPES)
        raise InvalidHash(
            f"Unknown signal type {_preview(name)!r}; known types: {known}.",
            code="unknown_signal_type",
        ) from None


def guess_signal_type(value: str) -> SignalType:
    """Guess the type of a bare hash by its length (64 hex digits are taken as PDQ).

    Used only for one-hash-per-line lists, where the bank's own default type wins.
    """
    text = value.strip().lower()
    if _HEX.match(text):
        if len(text) == 32:
            return MD5
        if len(text) == 64:
            return PDQ
    raise InvalidHash(f"Not a hash: {_preview(value)!r}.")


def pdq_distance(a: str, b: str) -> int:
    """Hamming distance between two PDQ hex strings."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def _preview(value: str, limit: int = 80) -> str:
    return value if len(value) <= limit else value[:limit] + "…"
