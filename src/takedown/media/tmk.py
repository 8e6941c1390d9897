"""TMK+PDQF: Meta's Temporal Match Kernel over float PDQ frame features (what StopNCII
sends for video), computed from our own decoded frames and compared with ``tmkpy``.

**What TMK is.** Every frame, resampled to 15 frames a second and scaled to 64 x 64
RGB, gets a *PDQF* feature: the 16 x 16 float DCT coefficients PDQ computes before it
thresholds them into bits. The features are folded over time into a fixed-size vector
per video: their average (level 1) and, for a few periods and Fourier coefficients,
their cosine- and sine-weighted sums (level 2), which keep the order of scenes. Two
videos match when both the level-1 cosine and the level-2 kernel score (maximised over
time offsets) reach their thresholds -- 0.7 each in Meta's tools.

**How it is computed here.** ``tmk-hash-video`` (and ``tmkpy.hashVideo``) pipe the file
through an ``ffmpeg`` *binary*, which this project neither ships nor lets near untrusted
files outside its bounded decoder. We decode in the same bounded child as vPDQ
(``media/video_decode.py``), pick frames at 15 per second as ``ffmpeg -r 15`` does (the
latest frame at or before each output instant), scale them to 64 x 64 with swscale's
bicubic filter (ffmpeg's default), compute PDQF with our PDQ code (at 64 x 64 the tent
filter is the identity, so the buffer is the luma itself) and hand the features to
``tmkpy``'s ``TMKFeatureVectors`` -- Meta's own aggregation and scoring code. The file
we write is the ``.tmk`` feature-vector file byte for byte in layout. ffmpeg's frame
choice and scaler may differ from ours by rounding, so our vectors are close to, not
bit-identical with, the reference tool's; TMK compares by cosine, and the scores of a
file against itself computed both ways are not measured here (no ffmpeg binary).

``tmkpy`` is optional (``pip install 'takedown[tmk]'``; its sdist needs ``swig`` at build
time, which PyPI's ``swig`` wheel provides). Without it, TMK entries stay stored and
exchanged but are not matched, and the API says so.
"""

from __future__ import annotations

import base64
import functools
import struct
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from takedown.media.pdq_compute import dct16, downsample, luma

TMK_FPS: Final = 15
TMK_SIDE: Final = 64
FEATURE_DIMENSION: Final = 256
LEVEL1_THRESHOLD: Final = 0.7
LEVEL2_THRESHOLD: Final = 0.7
_HEADER: Final = struct.Struct("<4s4s4s5i")
_MAGIC: Final = (b"TMK1", b"FVEC", b"PDQF")


@functools.cache
def tmk_available() -> bool:
    """Whether ``tmkpy`` (Meta's TMK code) can be imported here."""
    try:
        import tmkpy  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class TmkVectors:
    """A parsed ``.tmk`` feature-vector file."""

    fps: int
    frame_count: int
    periods: tuple[int, ...]
    coefficients: np.ndarray  # float32, numCoefficients
    pure_average: np.ndarray  # float32, 256
    cos: np.ndarray  # float32, periods x coefficients x 256
    sin: np.ndarray

    def to_bytes(self) -> bytes:
        header = _HEADER.pack(
            *_MAGIC,
            self.fps,
            len(self.periods),
            len(self.coefficients),
            FEATURE_DIMENSION,
            self.frame_count,
        )
        return b"".join(
            (
                header,
                np.asarray(self.periods, dtype="<i4").tobytes(),
                np.asarray(self.coefficients, dtype="<f4").tobytes(),
                np.asarray(self.pure_average, dtype="<f4").tobytes(),
                np.asarray(self.cos, dtype="<f4").tobytes(),
                np.asarray(self.sin, dtype="<f4").tobytes(),
            )
        )

    def to_text(self) -> str:
        """The form exchanges carry: base64 of the file (``signals.TMK`` canonical)."""
        return base64.b64encode(self.to_bytes()).decode("ascii")


def parse_tmk(raw: bytes) -> TmkVectors:
    """A ``.tmk`` file's vectors (the value was checked by ``signals.TMK.normalize``)."""
    *magic, fps, periods, coefficients, dimension, count = _HEADER.unpack_from(raw)
    if tuple(magic) != _MAGIC or dimension != FEATURE_DIMENSION:
        raise ValueError("not a TMK+PDQF feature-vector file")
    offset = _HEADER.size

    def take(dtype: str, n: int) -> np.ndarray:
        nonlocal offset
        out = np.frombuffer(raw, dtype=dtype, count=n, offset=offset)
        offset += 4 * n
        return out

    shape = (periods, coefficients, dimension)
    period_values = tuple(int(p) for p in take("<i4", periods))
    coefficient_values = take("<f4", coefficients)
    pure = take("<f4", dimension)
    cos = take("<f4", periods * coefficients * dimension).reshape(shape)
    sin = take("<f4", periods * coefficients * dimension).reshape(shape)
    return TmkVectors(fps, count, period_values, coefficient_values, pure, cos, sin)


def pdqf(rgb64: np.ndarray) -> np.ndarray:
    """The PDQF frame feature of a 64 x 64 RGB frame: PDQ's 16 x 16 float DCT."""
    return dct16(downsample(luma(rgb64))).astype(np.float32).ravel()


class TmkAccumulator:
    """Folds PDQF frame features into TMK vectors with Meta's code (``tmkpy``); used in
    the decoding child, one frame at a time (an hour at 15 fps never sits in memory)."""

    def __init__(self) -> None:
        import tmkpy

        t = tmkpy.TMKFeatureVectors
        self._vectors: Any = t(
            tmkpy.TMKFramewiseAlgorithm_PDQ_FLOAT,
            TMK_FPS,
            t.makePoullotPeriods(),
            t.makePoullotFourierCoefficients(),
            FEATURE_DIMENSION,
        )
        self.frames = 0

    def add(self, rgb64: np.ndarray) -> None:
        self._vectors.ingestFrameFeature(pdqf(rgb64).tolist(), self.frames)
        self.frames += 1

    def finish(self) -> TmkVectors | None:
        if not self.frames:
            return None
        v = self._vectors
        v.finishFrameFeatureIngest()
        return TmkVectors(
            fps=TMK_FPS,
            frame_count=self.frames,
            periods=tuple(v.getPeriods()),
            coefficients=np.asarray(v.getFourierCoefficients(), dtype=np.float32),
            pure_average=np.asarray(v.getPureAverageFeature(), dtype=np.float32),
            cos=np.asarray(v.getCosFeatures(), dtype=np.float32),
            sin=np.asarray(v.getSinFeatures(), dtype=np.float32),
        )


def _native(v: TmkVectors) -> Any:
    import tmkpy

    return tmkpy.createTMKFeatureVectors(
        v.fps,
        v.frame_count,
        list(v.periods),
        v.coefficients.tolist(),
        v.pure_average.tolist(),
        v.cos.tolist(),
        v.sin.tolist(),
    )


@dataclass(frozen=True)
class TmkScore:
    level1: float  # cosine of the average frame features
    level2: float  # TMK kernel score, best time offset

    @property
    def matches(self) -> bool:
        return self.level1 >= LEVEL1_THRESHOLD and self.level2 >= LEVEL2_THRESHOLD


def level1(a: TmkVectors, b: TmkVectors) -> float:
    """The level-1 score, the cosine of the average frame features (equal to
    ``tmkpy``'s ``computeLevel1Score`` to float precision), in numpy: cheap enough to
    screen every banked TMK before the level-2 kernel."""
    x, y = a.pure_average.astype(np.float64), b.pure_average.astype(np.float64)
    norms = float(np.linalg.norm(x) * np.linalg.norm(y))
    return float(x @ y) / norms if norms else 0.0


def compare(a: TmkVectors, b: TmkVectors) -> TmkScore | None:
    """Meta's two scores; None when the vectors were made with other periods or
    coefficients (TMK compares only like with like)."""
    import tmkpy

    if a.periods != b.periods or len(a.coefficients) != len(b.coefficients):
        return None
    first = level1(a, b)
    if first < LEVEL1_THRESHOLD:  # level 2 costs more; Meta's tools skip it too
        return TmkScore(first, 0.0)
    t = tmkpy.TMKFeatureVectors
    return TmkScore(first, float(t.computeLevel2Score(_native(a), _native(b))))
