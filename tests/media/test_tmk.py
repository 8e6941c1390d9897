"""TMK+PDQF vectors: Meta's file layout written and read back, and our level-1 score
equal to tmkpy's. Synthetic frames (noise and gradients), no video."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from takedown.media import tmk
from takedown.signals import TMK

tmkpy = pytest.importorskip("tmkpy")


def _vectors(seed: int, frames: int = 40) -> tmk.TmkVectors:
    rng = np.random.default_rng(seed)
    acc = tmk.TmkAccumulator()
    for _ in range(frames):
        acc.add(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    vectors = acc.finish()
    assert vectors is not None
    return vectors


def test_the_tmk_file_round_trips_and_is_a_valid_tmk_value(tmp_path):
    v = _vectors(1)
    raw = v.to_bytes()
    assert TMK.normalize(v.to_text()) == v.to_text()  # the exchange's form
    back = tmk.parse_tmk(raw)
    assert back.periods == v.periods and back.frame_count == 40
    assert np.array_equal(back.cos, v.cos) and np.array_equal(back.sin, v.sin)
    assert tmk.parse_tmk(base64.b64decode(v.to_text())).to_bytes() == raw


def test_scores_are_tmkpys():
    a, b = _vectors(1), _vectors(2)
    native = tmkpy.TMKFeatureVectors.computeLevel1Score(tmk._native(a), tmk._native(b))
    assert tmk.level1(a, b) == pytest.approx(native, abs=1e-5)
    same = tmk.compare(a, a)
    assert same is not None and same.matches and same.level2 == pytest.approx(1.0, abs=1e-5)
