"""The public entry points: hash_image_bytes, hash_file and the JSON shape."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from takedown.errors import MediaEmpty, MediaTooLarge
from takedown.media import DIHEDRAL_NAMES, ImageLimits, MediaSignals, hash_file, hash_image_bytes
from tests.media.standins import stand_in


def test_signals_of_a_stand_in_jpeg() -> None:
    data = stand_in("rocket").read_bytes()
    signals = hash_image_bytes(data)
    assert isinstance(signals, MediaSignals)
    assert (signals.media_type, signals.format, signals.mime_type) == (
        "image",
        "JPEG",
        "image/jpeg",
    )
    assert (signals.width, signals.height, signals.size_bytes) == (640, 427, len(data))
    assert signals.md5 == hashlib.md5(data).hexdigest()
    assert signals.sha256 == hashlib.sha256(data).hexdigest()
    assert len(signals.pdq.hash) == 64 and 0 <= signals.pdq.quality <= 100


def test_to_dict_is_json_with_named_dihedral_hashes() -> None:
    signals = hash_image_bytes(stand_in("chelsea").read_bytes())
    body = json.loads(json.dumps(signals.to_dict()))
    assert list(body) == [
        "media_type",
        "format",
        "mime_type",
        "width",
        "height",
        "bytes",
        "md5",
        "sha256",
        "pdq",
    ]
    assert body["bytes"] == signals.size_bytes
    assert body["pdq"]["hash"] == signals.pdq.hash
    assert body["pdq"]["quality"] == signals.pdq.quality
    assert list(body["pdq"]["dihedral"]) == list(DIHEDRAL_NAMES)
    assert body["pdq"]["dihedral"]["original"] == signals.pdq.hash


def test_hash_file_equals_hash_bytes(tmp_path: Path) -> None:
    data = stand_in("coffee").read_bytes()
    path = tmp_path / "stand-in.png"
    path.write_bytes(data)
    assert hash_file(path) == hash_image_bytes(data)


def test_hash_file_refuses_oversized_files(tmp_path: Path) -> None:
    path = tmp_path / "stand-in.png"
    path.write_bytes(stand_in("coffee").read_bytes())
    with pytest.raises(MediaTooLarge):
        hash_file(path, ImageLimits(max_bytes=1000))


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_hash_file_never_reads_past_the_limit() -> None:
    """/dev/zero never ends: only a bounded read can return, and then refuse."""
    with pytest.raises(MediaTooLarge):
        hash_file("/dev/zero", ImageLimits(max_bytes=64 * 1024))


def test_hash_file_refuses_empty_files(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.touch()
    with pytest.raises(MediaEmpty):
        hash_file(path)


@pytest.mark.parametrize("field", ["max_bytes", "max_pixels", "max_side"])
def test_limits_must_be_positive(field: str) -> None:
    with pytest.raises(ValueError):
        ImageLimits(**{field: 0})
