"""Decode untrusted image bytes into exactly the pixels PDQ should see.

Three concerns live here: compatibility, speed and distrust of the input.

**Compatibility with Meta's reference.** Hash lists shared by NCMEC, StopNCII and
ThreatExchange members were computed with Meta's C++ PDQ reference (or tools that
copy it). That program loads the whole image with CImg and, when either side is
larger than 512 px, resizes it to exactly 512 x 512 with CImg's default
nearest-neighbour filter -- aspect ratio *not* kept -- taking for output column
``x`` the source column ``floor(x * W / 512)`` (rows likewise). Images with both
sides <= 512 are hashed at native size. We reproduce that sampling with numpy index
arithmetic: Pillow's ``Image.NEAREST`` samples pixel *centres* and picks different
columns, which costs hash bits for nothing.

**Speed without losing that compatibility.** For JPEG we ask Pillow for a *draft*
decode: libjpeg can decode at 1/2, 1/4 or 1/8 scale straight from the DCT
coefficients, which is several times faster than a full decode of a 12 MP photo.
We ask for the smallest scale that keeps both sides >= 1024 (twice the
reference's 512), and from that reduced image take the pixel covering the source
pixel the reference would have taken (reduced column ``min(w' - 1, cx * w' // W)``).
A reduced pixel is a local average of s x s source pixels rather than a point
sample, so the hash can differ from the reference by a few bits. Measured on the
stand-in corpus: drafting to >= 512 gave a median of 2 and a worst case of 10 bits
(a fine brick texture enlarged 2x: exactly Meta's limit, no margin); drafting to
>= 1024 gives a worst case of 2 bits for about 4 ms more on a 12 MP photo.
The draft also asks libjpeg for the *luma* channel only (Pillow's ``draft("L")``):
a JPEG stores Y, Cb and Cr, and its Y is the same ``0.299 R + 0.587 G + 0.114 B``
that PDQ computes, so decoding the chroma, upsampling it and converting to RGB
(a quarter of the decode time) would only be undone. Y differs from the luma of
the decoded RGB by rounding, and where RGB clips (saturated colours).
``tests/media/test_pdq_compat.py`` holds us to Meta's acceptance criterion
(<= 10 bits at quality >= 80) on that corpus.

**Defensive decoding.** Every check runs in order of cost, so a hostile file is
refused as cheaply as possible:

1. empty input and byte count (:class:`MediaEmpty`, :class:`MediaTooLarge`);
2. the format is sniffed from magic bytes and must be on a short allowlist
   (JPEG, PNG, GIF, WebP, BMP). Pillow is then told to try *only* that plugin
   (``formats=``), so the dozens of other Pillow parsers never see hostile input.
   TIFF is deliberately left out: it is rare for the media we handle and its
   decoder (libtiff, many compressions) is the largest attack surface in Pillow;
3. the declared dimensions are checked against the limits *before* any pixel is
   decoded (:class:`MediaTooManyPixels`). WebP is checked from its header even
   before Pillow opens it, because libwebp allocates the canvas on open. Pillow's
   own bomb check runs inside ``Image.open`` and is mapped to the same error. We
   do not touch the global warning filters (``warnings.catch_warnings`` is not
   thread-safe and this code runs in a web server's thread pool); instead, if the
   process turns warnings into errors, Pillow's ``DecompressionBombWarning``
   arrives as an exception and is mapped too. With the default limits (50 MP <
   Pillow's ~89 MP) our refusal always comes first;
4. anything the decoder raises about the data (truncation, bad Huffman tables,
   broken zlib streams...) becomes :class:`MediaCorrupt`. Truncated files must be
   refused, not silently padded with grey, so we insist that Pillow's global
   ``ImageFile.LOAD_TRUNCATED_IMAGES`` is off and fail loudly if some other module
   switched it on.

**Pixel conventions.** Every mode becomes 8-bit RGB. Alpha is dropped, not
composited, because the reference computes luma from the first three channels
and ignores the fourth. 16-bit greyscale keeps its high byte (Pillow would clip
it to white). GIF and WebP contribute their first frame. A multi-picture JPEG
(MPO) is a JPEG whose first picture is what every viewer shows; it is reported as
JPEG.

**EXIF orientation is ignored on purpose.** The C++ reference never reads EXIF,
so the hashes on shared lists are hashes of the *stored* pixels. Applying the
orientation tag would make our hash of a phone photo disagree with the list's
hash of the very same file. Nothing is lost: matching compares all eight
dihedral variants (rotations and flips) of the query hash, so a copy that was
re-saved with the rotation baked in still matches. ``width`` and ``height`` are
therefore the stored dimensions too.
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
from PIL import Image, ImageFile, JpegImagePlugin

from takedown.errors import (
    MediaCorrupt,
    MediaEmpty,
    MediaTooLarge,
    MediaTooManyPixels,
    MediaUnsupportedType,
)
from takedown.media.limits import DEFAULT_LIMITS, ImageLimits

PDQ_SIDE: Final = 512
"""Side of the square the reference resizes larger images to (``DOWNSAMPLE_DIMS``)."""

ACCEPTED_FORMATS_TEXT: Final = "JPEG, PNG, GIF, WebP and BMP"

# Exceptions Pillow and the codecs below it raise for bad data. A Warning only
# arrives here as an exception when the process's filters turn warnings into
# errors; it is then about this input, so it is treated the same way.
_DECODER_ERRORS: Final = (
    OSError,  # includes UnidentifiedImageError and "image file is truncated"
    SyntaxError,  # Pillow's "not a JPEG/PNG file", broken chunks
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    EOFError,
    struct.error,
    zlib.error,
    ZeroDivisionError,
    Warning,
)

_OBJECT_REPR: Final = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")

_SIXTEEN_BIT_GREY: Final = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


@dataclass(frozen=True)
class DecodedImage:
    """The pixels fed to PDQ plus what we learnt about the file on the way.

    ``pixels`` is uint8, C-contiguous and read-only: 512 x 512 when the original
    exceeds 512 px on either side, otherwise the native size. It is H x W x 3 RGB,
    or H x W luma when a large JPEG was decoded straight to its Y channel (the draft
    path); :func:`takedown.media.pdq.pdq_from_pixels` takes either.
    ``width`` and ``height`` are the original (stored) dimensions.
    """

    pixels: np.ndarray
    format: str
    width: int
    height: int
    mime_type: str


@dataclass(frozen=True)
class ImageFormat:
    """An accepted format: how we report it and the one Pillow plugin that may parse it."""

    name: str  # what we report
    pillow: str  # the only Pillow plugin allowed to parse it
    mime_type: str
    matches: Callable[[bytes], bool]


def _is_bmp(head: bytes) -> bool:
    # "BM" alone is two letters of text; also require a known DIB header size,
    # the same test Pillow's BMP parser applies next.
    if len(head) < 18 or head[:2] != b"BM":
        return False
    return struct.unpack_from("<I", head, 14)[0] in (12, 40, 52, 56, 64, 108, 124)


_FORMATS: Final = (
    ImageFormat("JPEG", "JPEG", "image/jpeg", lambda h: h.startswith(b"\xff\xd8\xff")),
    ImageFormat("PNG", "PNG", "image/png", lambda h: h.startswith(b"\x89PNG\r\n\x1a\n")),
    ImageFormat("GIF", "GIF", "image/gif", lambda h: h[:6] in (b"GIF87a", b"GIF89a")),
    ImageFormat("WEBP", "WEBP", "image/webp", lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP"),
    ImageFormat("BMP", "BMP", "image/bmp", _is_bmp),
)

# Recognisable things people upload by mistake, so the refusal can say what it saw.
_NOT_IMAGES: Final = (
    (0, b"%PDF-", "a PDF document"),
    (0, b"PK\x03\x04", "a ZIP archive (or an Office document)"),
    (0, b"PK\x05\x06", "an empty ZIP archive"),
    (0, b"\x1f\x8b", "a gzip archive"),
    (0, b"Rar!", "a RAR archive"),
    (0, b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (0, b"II*\x00", "a TIFF image (not accepted)"),
    (0, b"MM\x00*", "a TIFF image (not accepted)"),
    (0, b"\x00\x00\x01\x00", "an ICO icon (not accepted)"),
    (0, b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image (not accepted)"),
    (0, b"8BPS", "a Photoshop document"),
    (4, b"ftyp", "a HEIF/AVIF image or an MP4/MOV video (not accepted)"),
    (0, b"RIFF", "a RIFF container (AVI/WAV), not a WebP image"),
    (0, b"\x1a\x45\xdf\xa3", "a Matroska/WebM video"),
    (0, b"\x7fELF", "an executable"),
    (0, b"MZ", "an executable"),
)


def decode_for_pdq(data: bytes, limits: ImageLimits | None = None) -> DecodedImage:
    """Decode ``data`` safely into the pixels PDQ hashes (JPEG draft fast path).

    Raises a subclass of :class:`takedown.errors.InvalidMedia` for anything that is
    not an acceptable, intact image within ``limits``.
    """
    return _decode(data, limits or DEFAULT_LIMITS, fast_jpeg=True)


def decode_reference(data: bytes, limits: ImageLimits | None = None) -> np.ndarray:
    """Decode like Meta's reference: full decode, RGB, nearest-neighbour 512 x 512.

    Slower than :func:`decode_for_pdq`; used by tests and benchmarks as the yardstick.
    The same defensive checks apply.
    """
    return _decode(data, limits or DEFAULT_LIMITS, fast_jpeg=False).pixels


def check_size(size_bytes: int, limits: ImageLimits) -> None:
    """Refuse empty or oversized input before anything else looks at it."""
    if size_bytes == 0:
        raise MediaEmpty("The file is empty (0 bytes).")
    if size_bytes > limits.max_bytes:
        raise MediaTooLarge(
            f"The file exceeds the size limit of {limits.max_bytes:,} bytes.",
            max_bytes=limits.max_bytes,
        )


def sniff_format(data: bytes) -> ImageFormat:
    """Identify an accepted format from magic bytes or raise MediaUnsupportedType."""
    head = data[:32]
    for fmt in _FORMATS:
        if fmt.matches(head):
            return fmt
    seen = _describe_non_image(head)
    raise MediaUnsupportedType(
        f"This file looks like {seen}; only {ACCEPTED_FORMATS_TEXT} images can be hashed.",
        detected=seen,
    )


def _describe_non_image(head: bytes) -> str:
    for offset, magic, description in _NOT_IMAGES:
        if head[offset : offset + len(magic)] == magic:
            return description
    if _looks_like_text(head):
        return "text (for example SVG, HTML, JSON or a plain-text file)"
    return "data in an unrecognised format"


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # The 32-byte window may cut a multi-byte character; retry without its tail.
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return all(ch.isprintable() or ch in "\t\r\n\f" for ch in text)


def _decode(data: bytes, limits: ImageLimits, *, fast_jpeg: bool) -> DecodedImage:
    check_size(len(data), limits)
    fmt = sniff_format(data)
    if fmt.name == "WEBP" and (declared := webp_declared_size(data[:32])):
        check_dimensions(*declared, limits)
    _require_truncated_images_refused()
    try:
        with Image.open(io.BytesIO(data), formats=[fmt.pillow]) as img:
            width, height = img.size
            check_dimensions(width, height, limits)
            fast = fast_jpeg and isinstance(img, JpegImagePlugin.JpegImageFile)
            if fast:
                # Hand libjpeg the whole file in one call instead of 64 KB pieces, each
                # ending in a suspension that backs up and re-decodes the interrupted
                # unit (measured: 0.3 of 12 ms for a 12 MP photo). The bytes are in
                # memory already.
                img.decodermaxblock = max(len(data), ImageFile.MAXBLOCK)
            pixels = _pdq_pixels(img, width, height, draft=fast)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise MediaTooManyPixels(
            f"The {fmt.name} image declares more pixels than the decoder will accept "
            f"(limit {limits.max_pixels:,}).",
            max_pixels=limits.max_pixels,
        ) from exc
    except _DECODER_ERRORS as exc:
        raise MediaCorrupt(
            f"The {fmt.name} file could not be decoded; it is truncated or corrupt.",
            format=fmt.name,
            decoder_message=_decoder_message(exc),
        ) from exc
    pixels.setflags(write=False)
    return DecodedImage(pixels, fmt.name, width, height, fmt.mime_type)


def _decoder_message(exc: BaseException) -> str:
    """Pillow's own words, for logs and API details, minus object addresses."""
    return _OBJECT_REPR.sub("<data>", str(exc))[:200]


def webp_declared_size(head: bytes) -> tuple[int, int] | None:
    """Canvas size from a WebP header, or None if the header is not understood.

    libwebp allocates the whole canvas as soon as Pillow *opens* a WebP file, before
    our post-open check could run, so for WebP the limits are applied to the header
    first. (Pillow's own pre-check only stops at twice its ~89 MP limit.)
    """
    kind = head[12:16]
    if kind == b"VP8X" and len(head) >= 30:  # extended: 24-bit sizes minus one
        width = int.from_bytes(head[24:27], "little") + 1
        return width, int.from_bytes(head[27:30], "little") + 1
    if kind == b"VP8L" and len(head) >= 25:  # lossless: 14-bit sizes minus one
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8 " and len(head) >= 30:  # lossy: 14-bit sizes after the start code
        width = int.from_bytes(head[26:28], "little") & 0x3FFF
        return width, int.from_bytes(head[28:30], "little") & 0x3FFF
    return None


def check_dimensions(width: int, height: int, limits: ImageLimits) -> None:
    """Refuse impossible or oversized declared dimensions before decoding."""
    if width < 1 or height < 1:
        raise MediaCorrupt(f"The image declares an empty size of {width} x {height} pixels.")
    if max(width, height) > limits.max_side or width * height > limits.max_pixels:
        raise MediaTooManyPixels(
            f"The image declares {width:,} x {height:,} pixels; the limits are "
            f"{limits.max_pixels:,} pixels and {limits.max_side:,} px per side.",
            width=width,
            height=height,
            max_pixels=limits.max_pixels,
            max_side=limits.max_side,
        )


def _require_truncated_images_refused() -> None:
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES has been enabled by some module in this "
            "process; takedown refuses to hash truncated images padded with grey, because "
            "such a hash is not the hash of the real picture. Remove that setting."
        )


DRAFT_MIN_SIDE = 2 * PDQ_SIDE


def _pdq_pixels(img: Image.Image, width: int, height: int, *, draft: bool) -> np.ndarray:
    """Return the reference's input: native size, or nearest-neighbour 512 x 512."""
    if width <= PDQ_SIDE and height <= PDQ_SIDE:
        return np.ascontiguousarray(_to_rgb(img))
    if draft:
        # Smallest DCT scale (1/2, 1/4, 1/8) that keeps both sides >= 1024: twice the
        # reference's 512, so each sampled pixel averages a small block; and only the
        # luma channel (see above). CMYK and grey JPEGs keep their mode.
        img.draft("L", (DRAFT_MIN_SIDE, DRAFT_MIN_SIDE))
    modes = ("RGB", "L") if draft else ("RGB",)
    sampled = _sample_in_pillow(img, width, height, modes)
    if sampled is not None:
        return sampled
    pixels = np.asarray(img) if draft and img.mode == "L" else _to_rgb(img)
    rows = sample_indices(height, pixels.shape[0])
    cols = sample_indices(width, pixels.shape[1])
    return np.ascontiguousarray(pixels[np.ix_(rows, cols)])


def _sample_in_pillow(
    img: Image.Image, width: int, height: int, modes: tuple[str, ...]
) -> np.ndarray | None:
    """The 512 x 512 samples taken inside Pillow, when that is exactly the same as
    :func:`sample_indices`; None otherwise.

    Why: converting the whole decoded image to an array (2016 x 1512 for a 12 MP JPEG
    drafted at 1/2) and then picking 512 x 512 of it moved ~20 MB through memory per
    upload, a fifth of a serving worker's time under 12 MP uploads (py-spy). Pillow's
    affine transform with nearest-neighbour resampling picks the same pixels directly:
    output pixel x reads input ``floor(a * (x + 0.5) + c)``, and with ``a = actual / 512``
    and ``c = -a / 2`` that is ``floor(x * actual / 512)`` computed exactly (``a`` and
    ``c`` are multiples of 2^-10). That equals the reference's index mapped into the
    reduced image whenever the reduction is an exact integer factor of both sides; other
    sizes, and modes other than ``modes``, take the array path (tests compare the two)."""
    actual_w, actual_h = img.size
    if img.mode not in modes or width % actual_w or height % actual_h:
        return None
    if width // actual_w != height // actual_h:
        return None
    a, e = actual_w / PDQ_SIDE, actual_h / PDQ_SIDE
    sampled = img.transform(
        (PDQ_SIDE, PDQ_SIDE),
        Image.Transform.AFFINE,
        (a, 0.0, -a / 2, 0.0, e, -e / 2),
        resample=Image.Resampling.NEAREST,
    )
    return np.ascontiguousarray(np.asarray(sampled))


def sample_indices(original: int, actual: int) -> np.ndarray:
    """Indices into an axis of ``actual`` pixels reproducing the reference's 512 samples.

    The reference takes source index ``floor(i * original / 512)``. When the decoder
    delivered a reduced axis (JPEG draft), we take the reduced pixel covering that
    source pixel: ``min(actual - 1, src * actual // original)``.
    """
    src = np.arange(PDQ_SIDE, dtype=np.int64) * original // PDQ_SIDE
    if actual == original:
        return src
    return np.minimum(actual - 1, src * actual // original)


def _to_rgb(img: Image.Image) -> np.ndarray:
    """Decode and convert any mode to uint8 H x W x 3 RGB (alpha dropped)."""
    if img.mode in _SIXTEEN_BIT_GREY:
        grey = (np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8)
        return np.repeat(grey[:, :, np.newaxis], 3, axis=2)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img)
