"""Test vectors for hashing in the browser: stand-in images and what the server says of them.

Run ``python -m tests.web.vectors`` to (re)build ``tests/web/vectors/`` and
``tests/web/pdq_vectors.json``. ``test_pdq_vectors.py`` checks that the JSON still agrees
with the server, and ``test_browser_hashing.py`` that the browser computes the same.

Every picture is a benign stand-in: a photo shipped inside the scikit-image,
scikit-learn or matplotlib wheel (an astronaut, a cat, a rocket, coffee, coins...) or a
transformed copy of one. Nothing is downloaded and no real material is ever involved.

Each vector records:

* ``md5``, ``pdq``, ``quality``, ``dihedral``, ``width``, ``height``: what
  :func:`takedown.media.hash_image_bytes` returns for the file -- the values the browser
  must reproduce;
* ``reference_pdq``: the hash of the reference's pixels (full decode, nearest 512 x 512,
  :func:`takedown.media.decode.decode_reference`). The browser cannot decode JPEG at a
  reduced DCT scale as the server does for large JPEGs, so it computes this one; the two
  differ by ``server_vs_reference_bits``;
* ``browser_max_bits``: how far the browser's hash may be from ``pdq``, and ``why`` when
  that is not 0.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from takedown.media import hash_image_bytes
from takedown.media.decode import decode_reference
from takedown.media.pdq import pdq_from_pixels
from takedown.signals import pdq_distance
from tests.media.standins import encode, load_rgb, resized, stand_in

HERE = Path(__file__).parent
VECTOR_DIR = HERE / "vectors"
JSON_PATH = HERE / "pdq_vectors.json"
MAX_TOTAL_BYTES = 3 * 1024 * 1024

JPEG_WHY = (
    "JPEG: the browser decodes with its own libjpeg-turbo build; a different IDCT or "
    "upsampling could move a few pixel values by 1 (Chromium's decoder measured identical "
    "to Pillow's here)."
)
DRAFT_WHY = (
    "Both sides >= 2048 px: the server decodes this JPEG at a reduced DCT scale (Pillow "
    "draft) for speed, the browser decodes it in full and samples the reference's pixels, "
    "so the browser's hash is the reference's, server_vs_reference_bits away."
)


# -- a PNG encoder for what Pillow cannot write (Adam7 interlacing, chosen filters) --------
_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _filter_rows(rows: Sequence[bytes], bpp: int, filters: Sequence[int]) -> bytes:
    """Apply PNG filter ``filters[n % len]`` to row n (0 None, 1 Sub, 2 Up, 3 Avg, 4 Paeth)."""
    out = []
    prev: np.ndarray | None = None
    for n, row in enumerate(rows):
        kind = filters[n % len(filters)]
        cur = np.frombuffer(row, np.uint8).astype(np.int32)
        up = np.zeros_like(cur) if prev is None else prev
        left = np.concatenate([np.zeros(bpp, np.int32), cur[:-bpp]])[: len(cur)]
        up_left = np.concatenate([np.zeros(bpp, np.int32), up[:-bpp]])[: len(cur)]
        if kind == 0:
            res = cur
        elif kind == 1:
            res = cur - left
        elif kind == 2:
            res = cur - up
        elif kind == 3:
            res = cur - ((left + up) >> 1)
        else:
            p = left + up - up_left
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
            res = cur - np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, up_left))
        out.append(bytes([kind]) + (res & 255).astype(np.uint8).tobytes())
        prev = cur
    return b"".join(out)


def _pack_rows(samples: np.ndarray, depth: int) -> list[bytes]:
    rows = []
    for line in samples:
        flat = line.reshape(-1)
        if depth == 16:
            rows.append(flat.astype(">u2").tobytes())
        elif depth == 8:
            rows.append(flat.astype(np.uint8).tobytes())
        else:  # 1, 2 or 4 bits per sample, most significant first
            bits = np.unpackbits(flat.astype(np.uint8)[:, None], axis=1)[:, 8 - depth :]
            rows.append(np.packbits(bits.reshape(-1)).tobytes())
    return rows


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(
    samples: np.ndarray,
    colour_type: int,
    depth: int,
    *,
    interlace: bool = False,
    palette: bytes | None = None,
    transparency: bytes | None = None,
    filters: Sequence[int] = (0, 1, 2, 3, 4),
    idat_parts: int = 2,
) -> bytes:
    """A PNG from raw samples (H x W x channels integers), written by hand so that every
    colour type, bit depth, filter and Adam7 interlacing can be produced."""
    height, width, channels = samples.shape
    if channels != _CHANNELS[colour_type]:
        raise ValueError(f"colour type {colour_type} has {_CHANNELS[colour_type]} channels")
    bpp = max(1, channels * depth // 8)
    if interlace:
        raw = b"".join(
            _filter_rows(_pack_rows(sub, depth), bpp, filters)
            for x0, y0, dx, dy in _ADAM7
            if (sub := samples[y0::dy, x0::dx]).size
        )
    else:
        raw = _filter_rows(_pack_rows(samples, depth), bpp, filters)
    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, int(interlace))
    out = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
    if palette is not None:
        out += _chunk(b"PLTE", palette)
    if transparency is not None:
        out += _chunk(b"tRNS", transparency)
    stream = zlib.compress(raw, 9)
    step = -(-len(stream) // idat_parts)
    for start in range(0, len(stream), step):
        out += _chunk(b"IDAT", stream[start : start + step])
    return out + _chunk(b"IEND", b"")


# -- the corpus -----------------------------------------------------------------------------
@dataclass(frozen=True)
class VectorSpec:
    name: str  # file name under tests/web/vectors/
    description: str
    build: Callable[[], bytes]
    browser_max_bits: int = 0
    why: str = ""


def _rgba_with_hidden_colour(pixels: np.ndarray) -> np.ndarray:
    """Alpha: a left-to-right ramp, and a fully transparent band whose colour stays stored."""
    height, width = pixels.shape[:2]
    alpha = np.tile((np.arange(width) * 255 // max(1, width - 1)).astype(np.uint8), (height, 1))
    alpha[:, : width // 4] = 0
    return np.dstack([pixels, alpha])


def _exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the server ignores it, so must the browser
    return encode(
        Image.fromarray(load_rgb(stand_in("chelsea"))), "JPEG", quality=90, exif=exif.tobytes()
    )


def _grey16_interlaced() -> bytes:
    grey = load_rgb(stand_in("coins"))[:, :, 0].astype(np.uint16)
    # 16-bit samples whose low byte differs from the high byte (the server keeps the high one)
    samples = (grey * 256 + (255 - grey))[:, :, None]
    return encode_png(samples, 0, 16, interlace=True)


def _palette_with_transparency() -> bytes:
    img = Image.fromarray(load_rgb(stand_in("coffee"))).quantize(64)
    return encode(img, "PNG", transparency=0)


def _gif_with_transparency() -> bytes:
    img = Image.fromarray(load_rgb(stand_in("chelsea"))).quantize(128)
    return encode(img, "GIF", transparency=5)


def _upscaled_nearest(name: str, long_side: int) -> bytes:
    pixels = load_rgb(stand_in(name))
    height, width = pixels.shape[:2]
    factor = long_side / max(width, height)
    size = (round(width * factor), round(height * factor))
    # Nearest keeps the file small (runs of equal pixels) and the ratio is not an integer,
    # so the 512-sample index arithmetic is exercised on uneven steps.
    return encode(
        Image.fromarray(pixels).resize(size, Image.Resampling.NEAREST), "PNG", optimize=True
    )


def corpus() -> list[VectorSpec]:
    """The stand-in vectors, small enough to commit (< 3 MB together)."""
    return [
        VectorSpec(
            "chelsea.png",
            "scikit-image's cat photo as shipped, RGB PNG 451 x 300 (hashed at native size)",
            lambda: stand_in("chelsea").read_bytes(),
        ),
        VectorSpec(
            "camera_grey.png",
            "scikit-image's camera photo, greyscale PNG 512 x 512",
            lambda: stand_in("camera").read_bytes(),
        ),
        VectorSpec(
            "coffee_2000.png",
            "coffee photo upscaled (nearest, x3.33) to 2000 x 1333, RGB PNG: 512 x 512 samples",
            lambda: _upscaled_nearest("coffee", 2000),
        ),
        VectorSpec(
            "coins_wide_grey.png",
            "coins photo stretched (nearest) to 2400 x 300, greyscale PNG: only one side is "
            "over 512, and it is still sampled to 512 x 512",
            lambda: encode(
                Image.fromarray(load_rgb(stand_in("coins"))[:, :, 0]).resize(
                    (2400, 300), Image.Resampling.NEAREST
                ),
                "PNG",
                optimize=True,
            ),
        ),
        VectorSpec(
            "motorcycle_rgba.png",
            "motorcycle photo at half size, RGBA PNG: alpha ramp and a fully transparent band "
            "whose colour is still stored (the server hashes it, alpha dropped)",
            lambda: encode(
                _rgba_with_hidden_colour(
                    np.asarray(resized(load_rgb(stand_in("motorcycle_left")), 0.5))
                ),
                "PNG",
                optimize=True,
            ),
        ),
        VectorSpec(
            "coins_grey16_interlaced.png",
            "coins photo as a 16-bit greyscale, Adam7-interlaced PNG (written by hand)",
            _grey16_interlaced,
        ),
        VectorSpec(
            "coffee_palette.png",
            "coffee photo quantised to a 64-colour palette PNG with a transparent entry",
            _palette_with_transparency,
        ),
        VectorSpec(
            "rocket.jpg",
            "scikit-image's rocket photo as shipped, JPEG 640 x 427",
            lambda: stand_in("rocket").read_bytes(),
            2,
            JPEG_WHY,
        ),
        VectorSpec(
            "grace_hopper.jpg",
            "matplotlib's Grace Hopper portrait as shipped, JPEG 512 x 600",
            lambda: stand_in("grace_hopper").read_bytes(),
            2,
            JPEG_WHY,
        ),
        VectorSpec(
            "astronaut_q90.jpg",
            "astronaut photo re-encoded as JPEG quality 90, 512 x 512",
            lambda: encode(load_rgb(stand_in("astronaut")), "JPEG", quality=90),
            2,
            JPEG_WHY,
        ),
        VectorSpec(
            "chelsea_exif_rotated.jpg",
            "cat photo as JPEG quality 90 with EXIF orientation 6; hashed as stored (451 x 300)",
            _exif_rotated_jpeg,
            2,
            JPEG_WHY,
        ),
        VectorSpec(
            "moon_2100.jpg",
            "moon photo upscaled (Lanczos) to 2100 x 2100, JPEG quality 85: the "
            "server's reduced-scale (draft) decode path, 2 bits from the reference",
            lambda: encode(resized(load_rgb(stand_in("moon")), long_side=2100), "JPEG", quality=85),
            2,
            DRAFT_WHY,
        ),
        VectorSpec(
            "chelsea.webp",
            "cat photo as lossy WebP quality 80",
            lambda: encode(load_rgb(stand_in("chelsea")), "WEBP", quality=80),
        ),
        VectorSpec(
            "chelsea_transparent.gif",
            "cat photo as a 128-colour GIF with a transparent index (the server sees its colour)",
            _gif_with_transparency,
        ),
        VectorSpec(
            "coins.bmp",
            "coins photo as an 8-bit greyscale BMP, 384 x 303",
            lambda: encode(Image.fromarray(load_rgb(stand_in("coins"))[:, :, 0]), "BMP"),
        ),
        VectorSpec(
            "flower_alpha.webp",
            "flower photo at 320 x 214 as lossless WebP with an alpha ramp and a fully "
            "transparent band whose colour is still stored (read with WebCodecs)",
            lambda: encode(
                _rgba_with_hidden_colour(np.asarray(resized(load_rgb(stand_in("flower")), 0.5))),
                "WEBP",
                lossless=True,
                exact=True,
            ),
        ),
    ]


# -- expectations -------------------------------------------------------------------------
def expected(spec: VectorSpec, data: bytes) -> dict[str, Any]:
    """What the server computes for ``data``, plus the reference hash and the tolerance."""
    signals = hash_image_bytes(data)
    reference = pdq_from_pixels(decode_reference(data))
    return {
        "file": spec.name,
        "description": spec.description,
        "format": signals.format,
        "width": signals.width,
        "height": signals.height,
        "bytes": len(data),
        "md5": signals.md5,
        "pdq": signals.pdq.hash,
        "quality": signals.pdq.quality,
        "dihedral": signals.pdq.variants(),
        "reference_pdq": reference.hash,
        "server_vs_reference_bits": pdq_distance(signals.pdq.hash, reference.hash),
        "browser_max_bits": spec.browser_max_bits,
        "why": spec.why,
    }


def load_vectors() -> list[dict[str, Any]]:
    """The committed expectations (``pdq_vectors.json``)."""
    data: dict[str, Any] = json.loads(JSON_PATH.read_text())
    vectors: list[dict[str, Any]] = data["vectors"]
    return vectors


def main() -> None:
    VECTOR_DIR.mkdir(exist_ok=True)
    specs = corpus()
    for stale in VECTOR_DIR.iterdir():
        if stale.name not in {spec.name for spec in specs}:
            stale.unlink()
    vectors = []
    for spec in specs:
        data = spec.build()
        (VECTOR_DIR / spec.name).write_bytes(data)
        vectors.append(expected(spec, data))
        print(
            f"{spec.name:32s} {len(data):>9,d} B  {vectors[-1]['width']:>5d} x "
            f"{vectors[-1]['height']:<5d} server-vs-reference "
            f"{vectors[-1]['server_vs_reference_bits']} bits"
        )
    total = sum(v["bytes"] for v in vectors)
    if total > MAX_TOTAL_BYTES:
        raise SystemExit(
            f"The vectors take {total:,d} bytes; keep them under {MAX_TOTAL_BYTES:,d}."
        )
    payload = {
        "about": "Stand-in images (benign photos from the scikit-image, scikit-learn and "
        "matplotlib wheels, and transformed copies) and the hashes Takedown's server "
        "computes for them. Regenerate with: python -m tests.web.vectors",
        "vectors": vectors,
    }
    JSON_PATH.write_text(json.dumps(payload, indent=1) + "\n")
    print(
        f"{len(vectors)} vectors, {total:,d} bytes -> {JSON_PATH.relative_to(HERE.parent.parent)}"
    )


if __name__ == "__main__":
    main()
