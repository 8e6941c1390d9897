"""Benign stand-in photos for the media tests and the benchmark.

Takedown's tests never touch real abuse material. Instead they use ordinary photos
that ship *inside* installed wheels (scikit-image, scikit-learn, matplotlib):
an astronaut portrait, a cat, a coffee cup, a rocket, a flower, Grace Hopper...
They are found through the installed packages' paths -- no network, no download.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np
from PIL import Image

# (package, path inside the package) -- real photographs, not tiny synthetic figures.
STAND_IN_PHOTOS: tuple[tuple[str, str], ...] = (
    ("skimage", "data/astronaut.png"),
    ("skimage", "data/camera.png"),
    ("skimage", "data/chelsea.png"),
    ("skimage", "data/coffee.png"),
    ("skimage", "data/rocket.jpg"),
    ("skimage", "data/hubble_deep_field.jpg"),
    ("skimage", "data/retina.jpg"),
    ("skimage", "data/motorcycle_left.png"),
    ("skimage", "data/motorcycle_right.png"),
    ("skimage", "data/moon.png"),
    ("skimage", "data/coins.png"),
    ("skimage", "data/ihc.png"),
    ("skimage", "data/cell.png"),
    ("skimage", "data/brick.png"),
    ("skimage", "data/grass.png"),
    ("skimage", "data/gravel.png"),
    ("skimage", "data/clock_motion.png"),
    ("sklearn", "datasets/images/china.jpg"),
    ("sklearn", "datasets/images/flower.jpg"),
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
)


def package_dir(package: str) -> Path | None:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def stand_in_paths() -> dict[str, Path]:
    """Name -> path of every stand-in photo present in this environment."""
    found: dict[str, Path] = {}
    for package, relative in STAND_IN_PHOTOS:
        root = package_dir(package)
        if root is not None and (root / relative).is_file():
            found[Path(relative).stem] = root / relative
    return found


def stand_in(name: str) -> Path:
    """Path of one stand-in photo (e.g. ``"astronaut"``)."""
    return stand_in_paths()[name]


def load_rgb(path: Path) -> np.ndarray:
    """The stand-in's pixels as uint8 RGB."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def encode(pixels: np.ndarray | Image.Image, fmt: str, **options: object) -> bytes:
    """Encode pixels (or an image) with Pillow, in memory."""
    img = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def resized(
    pixels: np.ndarray, scale: float | None = None, long_side: int | None = None
) -> Image.Image:
    """A Lanczos-resized copy, by factor or to a given long side."""
    height, width = pixels.shape[:2]
    factor = scale if scale is not None else (long_side or max(width, height)) / max(width, height)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS)
