"""PDQ hex convention, cross-check with python-threatexchange, dihedral variants."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
import pytest

from takedown.errors import InvalidHash
from takedown.media import DIHEDRAL_NAMES, hash_image_bytes
from takedown.media.pdq import bits_to_hex, hex_to_bits, pdq_from_pixels
from takedown.signals import pdq_distance
from tests.media.standins import encode, load_rgb, stand_in


def test_element_zero_is_the_most_significant_bit() -> None:
    bits = np.zeros(256, dtype=np.uint8)
    bits[0] = 1
    assert bits_to_hex(bits) == "8" + "0" * 63
    bits[:] = 0
    bits[255] = 1
    assert bits_to_hex(bits) == "0" * 63 + "1"


def test_hex_round_trip() -> None:
    bits = np.random.default_rng(7).integers(0, 2, 256).astype(np.uint8)
    text = bits_to_hex(bits)
    assert len(text) == 64 and text == text.lower()
    np.testing.assert_array_equal(hex_to_bits(text), bits)
    np.testing.assert_array_equal(hex_to_bits(text.upper()), bits)


@pytest.mark.parametrize("bad", [[0, 1] * 64, [2] * 256])
def test_bits_to_hex_rejects_non_hashes(bad: list[int]) -> None:
    with pytest.raises(ValueError):
        bits_to_hex(bad)


def test_hex_to_bits_rejects_non_hashes() -> None:
    with pytest.raises(InvalidHash) as caught:
        hex_to_bits("abc")
    assert caught.value.code == "invalid_hash"


@pytest.mark.parametrize("name", ["astronaut", "camera", "chelsea"])
def test_hash_equals_threatexchange_exactly(name: str) -> None:
    """python-threatexchange (HMA's hasher) is the field's convention for writing PDQ.

    For a <= 512 px stand-in PNG neither side resamples, so hash and quality must be
    identical -- this pins bit order and hex formatting to theirs.
    """
    pdq_hasher = pytest.importorskip("threatexchange.signal_type.pdq.pdq_hasher")
    data = stand_in(name).read_bytes()
    ours = hash_image_bytes(data)
    assert max(ours.width, ours.height) <= 512
    assert (ours.pdq.hash, ours.pdq.quality) == pdq_hasher.pdq_from_bytes(data)


def test_dihedral_first_entry_is_the_hash() -> None:
    result = pdq_from_pixels(load_rgb(stand_in("astronaut")))
    assert tuple(name for name, _ in result.dihedral) == DIHEDRAL_NAMES
    assert result.dihedral[0] == ("original", result.hash)
    assert len(set(result.variants().values())) == 8


TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "original": lambda a: a,
    "rotate90": lambda a: np.rot90(a, 1),
    "rotate180": lambda a: np.rot90(a, 2),
    "rotate270": lambda a: np.rot90(a, 3),
    "flip_top_bottom": np.flipud,
    "flip_left_right": np.fliplr,
    "transpose": lambda a: a.transpose(1, 0, 2),
    "transverse": lambda a: np.rot90(a, 2).transpose(1, 0, 2),
}


@pytest.mark.parametrize("photo", ["astronaut", "chelsea", "coffee"])
@pytest.mark.parametrize("variant", DIHEDRAL_NAMES)
def test_transformed_image_matches_its_dihedral_variant(photo: str, variant: str) -> None:
    """Hashing a rotated/flipped copy lands next to the matching variant of the original.

    Not bit-exact: the reference's box filter is not symmetric under flips, so the
    derived hashes are a few bits off (~16 measured), far below the ~128 bits that
    separate unrelated variants.
    """
    pixels = load_rgb(stand_in(photo))
    variants = _variants_of(photo)
    moved = np.ascontiguousarray(TRANSFORMS[variant](pixels))
    moved_hash = hash_image_bytes(encode(moved, "BMP")).pdq.hash
    distances = {name: pdq_distance(moved_hash, value) for name, value in variants.items()}
    assert min(distances, key=distances.__getitem__) == variant, distances
    assert distances[variant] <= 31, distances


@cache
def _variants_of(photo: str) -> dict[str, str]:
    # BMP: lossless and, unlike PNG, no time spent compressing.
    return hash_image_bytes(encode(load_rgb(stand_in(photo)), "BMP")).pdq.variants()
