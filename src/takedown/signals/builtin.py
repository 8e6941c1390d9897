"""The signal types Takedown ships: PDQ, MD5, SHA-256 and vPDQ, which it computes and
matches; TMK (StopNCII's video lists carry it), which it computes and matches when
Meta's ``tmkpy`` is installed and otherwise stores and exchanges only; PhotoDNA, which
banks store and exchange but nothing here can compute or match (its algorithm is
licensed by Microsoft; NCMEC's lists carry it)."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import importlib.util
import struct
from typing import ClassVar

from takedown.errors import InvalidHash, InvalidRequest
from takedown.signals.base import ContentKind, IndexKind, SignalType, preview


class PdqSignal(SignalType):
    name = "pdq"
    description = "PDQ perceptual hash of an image (256 bits)"
    aliases = ("pdq_hash", "image_pdq", "photo_pdq")
    content_kinds = frozenset({ContentKind.IMAGE})
    index = IndexKind.HAMMING
    hex_digits = 64
    bits = 256
    default_threshold = 31  # the field's usual value (Meta, HMA)
    max_threshold = 128  # beyond half the bits a "match" is noise
    has_quality = True
    default_quality_floor = 50
    computed_by_media = True  # takedown.media: the 8 rotations/flips in one decode
    guess_by_length = True
    example = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"


class VpdqSignal(SignalType):
    """A banked video: the entry's value is the file's SHA-256 and its frames (one PDQ a
    second, vPDQ) are stored beside it; a video matches by the share of frames within
    the frame threshold (domain/video.py)."""

    name = "vpdq"
    description = "vPDQ: a video's frame PDQ hashes (entry valued by the file's SHA-256)"
    aliases = ("video_vpdq",)
    content_kinds = frozenset({ContentKind.VIDEO})
    index = IndexKind.HAMMING
    hex_digits = 64
    bits = 256
    default_threshold = 31  # per frame
    max_threshold = 128
    has_quality = True
    default_quality_floor = 50
    computed_by_media = True
    default_match_percent = 80


class Md5Signal(SignalType):
    name = "md5"
    description = "MD5 digest of the file's bytes"
    aliases = ("photo_md5", "video_md5", "file_md5")
    content_kinds = frozenset({ContentKind.IMAGE, ContentKind.VIDEO, ContentKind.FILE})
    index = IndexKind.EXACT
    hex_digits = 32
    computed_by_media = True
    guess_by_length = True
    example = "9e107d9d372bb6826bd81d3542a419d6"

    def hash_bytes(self, data: bytes) -> str:
        return hashlib.md5(data, usedforsecurity=False).hexdigest()


class Sha256Signal(SignalType):
    name = "sha256"
    description = "SHA-256 digest of the file's bytes"
    aliases = ("sha-256", "sha_256", "video_sha256", "file_sha256")
    content_kinds = frozenset({ContentKind.IMAGE, ContentKind.VIDEO, ContentKind.FILE})
    index = IndexKind.EXACT
    hex_digits = 64
    computed_by_media = True
    example = "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592"

    def hash_bytes(self, data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()


class PhotoDnaSignal(SignalType):
    """PhotoDNA: 144 bytes, exchanged as hex (288 digits), base64 or 144 comma-separated
    byte values; stored here as hex. Not computable or matchable here: screening and
    the console say so instead of ignoring it."""

    name = "photodna"
    description = "PhotoDNA hash of an image (144 bytes); stored and exchanged, not matched here"
    aliases = ("photo_dna", "pdna")
    content_kinds = frozenset({ContentKind.IMAGE})
    index = IndexKind.NONE
    size: ClassVar[int] = 144

    def normalize(self, value: str) -> str:
        text = value.strip()
        raw: bytes | None = None
        if "," in text:
            try:
                numbers = [int(x) for x in text.split(",")]
                if all(0 <= n <= 255 for n in numbers):
                    raw = bytes(numbers)
            except ValueError:
                raw = None
        elif len(text) == 2 * self.size:
            try:
                raw = bytes.fromhex(text)
            except ValueError:
                raw = None
        else:
            try:
                raw = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raw = None
        if raw is None or len(raw) != self.size:
            raise InvalidHash(
                f"A photodna hash is {self.size} bytes: 288 hexadecimal digits, base64, or "
                f"144 comma-separated numbers; got {preview(value)!r}.",
                signal_type=self.name,
            )
        return raw.hex()


class TmkSignal(SignalType):
    """TMK+PDQF (Meta's Temporal Match Kernel over float PDQ frame features): the
    feature-vector file ``tmk-hash-video`` writes, exchanged as base64 (or hex) of its
    bytes. Computed from uploaded videos and matched (``media/tmk.py``) when Meta's code
    (``tmkpy``, the optional ``tmk`` extra) is installed; otherwise stored and exchanged
    only, and screening names it in ``not_matchable``. A value is about 130 KB (176,000 base64
    characters with the usual 2 periods, 32 coefficients and 256 dimensions), far more
    than a bank entry's value holds: a bank keeps it whole beside the entry, which is
    valued by the SHA-256 of the canonical base64 (``stored_by_digest``)."""

    name = "tmk"
    description = (
        "TMK+PDQF video hash (feature-vector file); matched against uploaded videos when "
        "tmkpy is installed, else stored and exchanged only"
    )
    aliases = ("video_tmk", "tmk_pdqf", "video_tmk_pdqf")
    content_kinds = frozenset({ContentKind.VIDEO})
    index = IndexKind.NONE
    max_value_length = 4_000_000  # characters of base64 or hex, checked before decoding
    stored_by_digest = True
    _HEADER = struct.Struct("<4s4s4s5i")  # magics, fps, periods, coefficients, dim, pad
    _MAGIC = (b"TMK1", b"FVEC", b"PDQF")
    _MAX_PERIODS, _MAX_COEFFICIENTS = 64, 256

    @property
    def matchable(self) -> bool:
        return _tmkpy_installed()

    @property
    def computable(self) -> bool:
        return _tmkpy_installed()

    def validate_threshold(self, value: int) -> int:
        raise InvalidRequest(
            "A tmk signal matches by Meta's two scores (level 1 and level 2, both at least "
            "0.7): it takes no threshold.",
            code="invalid_threshold",
        )

    def normalize(self, value: str) -> str:
        text = value.strip()
        raw = None
        if len(text) <= self.max_value_length:
            try:
                # Hex of a TMK file starts with the hex of "TMK1"; anything else is
                # read as base64.
                if text[:8].lower() == "544d4b31":
                    raw = bytes.fromhex(text)
                else:
                    raw = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raw = None
        problem = self._problem(raw)
        if problem:
            raise InvalidHash(
                f"A tmk hash is the base64 (or hex) of a TMK+PDQF feature-vector file; "
                f"{problem}: {preview(value)!r}.",
                signal_type=self.name,
            )
        assert raw is not None
        return base64.b64encode(raw).decode("ascii")

    def _problem(self, raw: bytes | None) -> str | None:
        if raw is None:
            return "this is neither base64 nor hex within the size limit"
        if len(raw) < self._HEADER.size:
            return "this is shorter than the file's header"
        *magic, _fps, periods, coefficients, dimension, _pad = self._HEADER.unpack_from(raw)
        if tuple(magic) != self._MAGIC:
            return "the header is not TMK1 / FVEC / PDQF"
        if not (
            0 < periods <= self._MAX_PERIODS
            and 0 < coefficients <= self._MAX_COEFFICIENTS
            and dimension == 256
        ):
            return "the header's periods, coefficients or dimension are out of range"
        floats = periods + coefficients + dimension + 2 * periods * coefficients * dimension
        if len(raw) != self._HEADER.size + 4 * floats:
            return "the length does not match what the header declares"
        return None


@functools.cache
def _tmkpy_installed() -> bool:
    """Whether Meta's TMK code (``tmkpy``) is importable: without it TMK is stored only."""
    return importlib.util.find_spec("tmkpy") is not None


PDQ = PdqSignal()
VPDQ = VpdqSignal()
MD5 = Md5Signal()
SHA256 = Sha256Signal()
PHOTODNA = PhotoDnaSignal()
TMK = TmkSignal()
BUILTIN: tuple[SignalType, ...] = (PDQ, MD5, SHA256, VPDQ, PHOTODNA, TMK)
