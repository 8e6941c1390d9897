"""The 512 x 512 samples taken inside Pillow (decode._sample_in_pillow) are exactly the
pixels the array path picks (decode.sample_indices), at every size and DCT reduction,
so the fast path cannot move a hash by a single bit."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from takedown.media import decode


def _array_path(data: bytes, draft: bool) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
        if draft:  # large JPEGs: reduced DCT scale, luma only
            img.draft("L", (decode.DRAFT_MIN_SIDE, decode.DRAFT_MIN_SIDE))
        pixels = np.asarray(img) if draft else decode._to_rgb(img)
        rows = decode.sample_indices(height, pixels.shape[0])
        cols = decode.sample_indices(width, pixels.shape[1])
        return np.ascontiguousarray(pixels[np.ix_(rows, cols)])


SIZES = [
    (4032, 3024),
    (4000, 3000),
    (2048, 1536),
    (1024, 1024),
    (600, 800),
    (513, 700),
    (4031, 3023),
    (3000, 4000),
    (8192, 1024),
    (1030, 2050),
    (2047, 2049),
]


@pytest.mark.parametrize(("width", "height"), SIZES)
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_pillow_sampling_equals_the_array_path(width: int, height: int, fmt: str):
    noise = np.random.default_rng(width * height).integers(0, 256, (height, width, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    data = buffer.getvalue()
    ours = decode.decode_for_pdq(data).pixels
    assert ours.shape == ((512, 512) if fmt == "JPEG" else (512, 512, 3))
    assert np.array_equal(ours, _array_path(data, draft=fmt == "JPEG"))


def test_the_fast_path_is_taken_for_exact_reductions_only():
    rgb_only, with_luma = ("RGB",), ("RGB", "L")
    with Image.new("RGB", (2016, 1512)) as img:
        assert decode._sample_in_pillow(img, 4032, 3024, rgb_only) is not None  # exactly 1/2
        assert decode._sample_in_pillow(img, 4031, 3023, rgb_only) is None  # not an integer factor
    with Image.new("L", (1024, 1024)) as grey:
        assert decode._sample_in_pillow(grey, 1024, 1024, rgb_only) is None  # converted first
        assert decode._sample_in_pillow(grey, 1024, 1024, with_luma) is not None  # JPEG luma
