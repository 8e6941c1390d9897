"""Benchmark: PDQ-hashing a 12 MP phone-size JPEG, our path vs the reference path.

Run with ``.venv/bin/python bench/hashing.py``. The test image is a *stand-in*: the
scikit-image "chelsea" cat photo (shipped in the scikit-image wheel), upscaled to
4032 x 3024 and saved as a quality-90 JPEG -- the size and format of a phone photo.
No real abuse material is ever used, and nothing is downloaded.

Measured, each as the median of several runs in one process:

* ``ours``: :func:`takedown.media.hash_image_bytes` -- JPEG draft decode at reduced
  DCT scale, nearest-neighbour 512 x 512, PDQ with 8 dihedral hashes, MD5, SHA-256;
* ``reference``: full decode, nearest-neighbour 512 x 512, ``pdqhash.compute``;
* ``pdqhash_full_size``: ``pdqhash.compute`` on the full 12 MP decoded array (what
  naive integrations do), excluding the decode, which is timed separately.

Results are printed as JSON and written to ``bench/results/hashing.json``.
"""

from __future__ import annotations

import importlib.util
import io
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pdqhash
import PIL
from PIL import Image

from takedown.media import hash_image_bytes
from takedown.media.decode import decode_for_pdq, decode_reference
from takedown.media.pdq import bits_to_hex
from takedown.media.signals import pdq_distance

ROOT = Path(__file__).resolve().parents[1]

SIZE = (4032, 3024)
RUNS = 9
STAND_IN = "chelsea"


def make_stand_in_jpeg() -> bytes:
    """The stand-in cat photo from the scikit-image wheel, upscaled to 12 MP, as a JPEG.

    The file is located through the installed package's path, so nothing is fetched.
    """
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-image is not installed; it ships the stand-in photo.")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / f"{STAND_IN}.png"
    with Image.open(path) as photo:
        large = photo.convert("RGB").resize(SIZE, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    large.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def median_ms(action: Callable[[], object], runs: int = RUNS) -> float:
    """Median wall time of ``runs`` calls after one warm-up call, in milliseconds."""
    action()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 2)


def full_decode(data: bytes) -> np.ndarray:
    """What a naive integration does: decode every pixel of the photo."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))


def reference_hash(data: bytes) -> tuple[str, int]:
    """Meta's reference preprocessing: full decode, nearest 512 x 512, then PDQ."""
    bits, quality = pdqhash.compute(decode_reference(data))
    return bits_to_hex(bits), int(quality)


def run() -> dict[str, Any]:
    data = make_stand_in_jpeg()
    full = full_decode(data)
    ours = hash_image_bytes(data)
    reference, reference_quality = reference_hash(data)
    full_bits, _ = pdqhash.compute(full)
    timings = {
        "ours_hash_image_bytes": median_ms(lambda: hash_image_bytes(data)),
        "ours_decode_only": median_ms(lambda: decode_for_pdq(data)),
        "reference_decode_nearest512_pdq": median_ms(lambda: reference_hash(data)),
        "full_decode_only": median_ms(lambda: full_decode(data)),
        "pdqhash_compute_full_size_array": median_ms(lambda: pdqhash.compute(full)),
    }
    # Issue #8's yardstick: a 12 MP JPEG hashed as naive integrations do it (decode at
    # full size, pdqhash.compute on the full array) against ours (which also computes
    # the 8 rotations/flips, MD5 and SHA-256). One thread each. Goal: 30x.
    naive = timings["full_decode_only"] + timings["pdqhash_compute_full_size_array"]
    ours_ms = timings["ours_hash_image_bytes"]
    return {
        "image": {
            "description": f"stand-in photo (scikit-image '{STAND_IN}', a cat) upscaled "
            f"to {SIZE[0]}x{SIZE[1]}, JPEG quality 90",
            "bytes": len(data),
            "megapixels": round(SIZE[0] * SIZE[1] / 1e6, 1),
        },
        "median_ms": timings,
        "runs": RUNS,
        "jpegs_per_s": {
            "ours": round(1000 / ours_ms, 1),
            "full_size_pdqhash": round(1000 / naive, 2),
        },
        "speedup_vs_full_size_pdqhash": round(naive / ours_ms, 1),
        "goal_speedup": 30,
        "pdq": {
            "ours": ours.pdq.hash,
            "ours_quality": ours.pdq.quality,
            "reference": reference,
            "reference_quality": reference_quality,
            "distance_ours_vs_reference": pdq_distance(ours.pdq.hash, reference),
            "distance_full_size_vs_reference": pdq_distance(bits_to_hex(full_bits), reference),
        },
        "environment": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "pillow": PIL.__version__,
            "numpy": np.__version__,
            "pdqhash": pdqhash.__version__,
        },
    }


def main() -> None:
    results = run()
    text = json.dumps(results, indent=2)
    print(text)
    out = ROOT / "bench" / "results" / "hashing.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
