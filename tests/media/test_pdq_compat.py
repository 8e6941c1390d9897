"""Our fast PDQ path against Meta's reference preprocessing, on stand-in photos.

Meta's acceptance criterion for a PDQ implementation is that, on images of quality
>= 80, its hashes are within 10 bits of the reference's. The reference here is
``pdqhash`` (Meta's C++ code) fed by :func:`decode_reference` (full decode,
nearest-neighbour 512 x 512 like the C++ tool). Ours is :func:`hash_image_bytes`,
which uses the reduced-scale (draft) decode for large JPEGs.

The corpus is benign stand-in photos shipped inside the scikit-image,
scikit-learn and matplotlib wheels, plus transformed copies made here:
re-compressed JPEG, half size, double size, PNG, and for a handful of photos a
~4000 px JPEG (phone-photo size, where the draft path matters most).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pdqhash
import pytest

from takedown.media import hash_image_bytes
from takedown.media.decode import decode_for_pdq, decode_reference
from takedown.media.pdq import bits_to_hex
from takedown.signals import pdq_distance
from tests.media.standins import encode, load_rgb, resized, stand_in_paths

MAX_DISTANCE = 10  # Meta's criterion for quality >= 80
MIN_QUALITY = 80
LARGE = ("astronaut", "chelsea", "coffee", "rocket", "grace_hopper")


@dataclass(frozen=True)
class Outcome:
    case: str
    width: int
    height: int
    format: str
    reference_quality: int
    reference_hash: str
    our_hash: str

    @property
    def distance(self) -> int:
        return pdq_distance(self.reference_hash, self.our_hash)

    @property
    def drafted(self) -> bool:
        """True when our path decoded at a reduced DCT scale (both sides >= 1024)."""
        return self.format == "JPEG" and min(self.width, self.height) >= 1024


def _variants(name: str, path: Path) -> dict[str, bytes]:
    pixels = load_rgb(path)
    cases = {
        f"{name}/file": path.read_bytes(),
        f"{name}/jpeg70": encode(pixels, "JPEG", quality=70),
        f"{name}/half.jpg": encode(resized(pixels, scale=0.5), "JPEG", quality=90),
        f"{name}/png": encode(pixels, "PNG", compress_level=1),
    }
    if max(pixels.shape) <= 800:  # 2x lands in the 1/2-scale draft range
        cases[f"{name}/double.jpg"] = encode(resized(pixels, scale=2.0), "JPEG", quality=90)
    if name in LARGE:  # 1/4 scale
        cases[f"{name}/4000.jpg"] = encode(resized(pixels, long_side=4000), "JPEG", quality=90)
    if name == "astronaut":  # square and >= 4096 on both sides: the 1/8 scale
        cases[f"{name}/4200sq.jpg"] = encode(resized(pixels, long_side=4200), "JPEG", quality=90)
    return cases


@pytest.fixture(scope="session")
def compat_corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Stand-in photos and transformed copies, written once per session to tmp."""
    root = tmp_path_factory.mktemp("pdq-compat")
    corpus: dict[str, Path] = {}
    for name, path in stand_in_paths().items():
        for case, data in _variants(name, path).items():
            target = root / case.replace("/", "__")
            target.write_bytes(data)
            corpus[case] = target
    return corpus


@pytest.fixture(scope="session")
def outcomes(compat_corpus: dict[str, Path]) -> list[Outcome]:
    """Reference and fast-path hashes of every corpus file, computed once."""
    results = []
    for case, path in compat_corpus.items():
        data = path.read_bytes()
        bits, quality = pdqhash.compute(decode_reference(data))
        ours = hash_image_bytes(data)
        results.append(
            Outcome(
                case=case,
                width=ours.width,
                height=ours.height,
                format=ours.format,
                reference_quality=int(quality),
                reference_hash=bits_to_hex(bits),
                our_hash=ours.pdq.hash,
            )
        )
    return results


def test_corpus_has_enough_stand_ins(compat_corpus: dict[str, Path]) -> None:
    photos = {case.split("/")[0] for case in compat_corpus}
    assert len(photos) >= 12, f"only these stand-in photos were found: {sorted(photos)}"


def test_fast_path_is_within_10_bits_of_reference(outcomes: list[Outcome]) -> None:
    graded = [o for o in outcomes if o.reference_quality >= MIN_QUALITY]
    distances = [o.distance for o in graded]
    drafted = [o.distance for o in graded if o.drafted]
    summary = (
        f"{len(graded)} images with quality >= {MIN_QUALITY}: median distance "
        f"{statistics.median(distances)}, max {max(distances)}; of these {len(drafted)} "
        f"decoded at reduced JPEG scale: median {statistics.median(drafted)}, "
        f"max {max(drafted)}, mean {statistics.fmean(drafted):.2f}"
    )
    print("\nPDQ compatibility:", summary)
    worst = sorted(graded, key=lambda o: -o.distance)[:5]
    assert max(distances) <= MAX_DISTANCE, (
        f"{summary}; worst: {[(o.case, o.distance) for o in worst]}"
    )
    assert len(graded) >= 0.8 * len(outcomes), summary
    assert len(drafted) >= 12, f"the draft path was barely exercised: {summary}"


def test_without_resampling_hashes_are_identical(outcomes: list[Outcome]) -> None:
    """At <= 512 px nothing is resampled, so any difference would be a decoding bug."""
    native = [o for o in outcomes if max(o.width, o.height) <= 512]
    assert len(native) >= 20
    assert [o.case for o in native if o.distance] == []


def test_non_jpeg_takes_no_shortcut(compat_corpus: dict[str, Path]) -> None:
    """Large PNGs are sampled exactly like the reference: identical pixels."""
    data = compat_corpus["motorcycle_left/png"].read_bytes()  # 741 x 500
    ours = decode_for_pdq(data)
    assert ours.pixels.shape == (512, 512, 3)
    np.testing.assert_array_equal(ours.pixels, decode_reference(data))
