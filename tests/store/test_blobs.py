"""Encrypted blob store: nothing readable at rest, tampering detected, keys rotate."""

from __future__ import annotations

import os
import stat

import pytest
from sqlalchemy import select, update

from takedown.errors import NotFound
from takedown.runtime import Runtime
from takedown.store.blobs import (
    BlobStore,
    EnvelopeCipher,
    KeyConfigError,
    Keyring,
    new_key_text,
)
from takedown.store.models import Blob
from tests.conftest import standin_bytes

PAYLOAD = standin_bytes("astronaut.png")  # a stand-in photo, never real material


def test_round_trip_and_nothing_plain_at_rest(rt: Runtime):
    with rt.sessions.begin() as s:
        info = rt.blobs.put(s, PAYLOAD, kind="media", content_type="image/png")
    assert info.size == len(PAYLOAD)
    with rt.sessions() as s:
        sealed = s.scalar(select(Blob.sealed).where(Blob.public_id == info.public_id))
        assert sealed is not None
        # No run of the plaintext survives in the stored bytes.
        assert PAYLOAD[100:132] not in sealed and PAYLOAD[-32:] not in sealed
        assert rt.blobs.get(s, info.public_id) == PAYLOAD
        assert rt.blobs.info(s, info.public_id).sha256 == info.sha256


def test_failed_transaction_keeps_nothing(rt: Runtime):
    with pytest.raises(RuntimeError), rt.sessions.begin() as s:
        info = rt.blobs.put(s, b"stand-in bytes", kind="media", content_type="image/png")
        raise RuntimeError("the request failed after storing")
    with rt.sessions() as s, pytest.raises(NotFound) as err:
        rt.blobs.get(s, info.public_id)
    assert err.value.code == "blob_not_found"


def test_tampered_or_moved_ciphertext_refused(rt: Runtime):
    with rt.sessions.begin() as s:
        a = rt.blobs.put(s, b"stand-in a", kind="media", content_type="text/plain")
        b = rt.blobs.put(s, b"stand-in b", kind="media", content_type="text/plain")
    with rt.sessions.begin() as s:
        sealed_a = s.scalar(select(Blob.sealed).where(Blob.public_id == a.public_id))
        # Moving a's ciphertext into b's row: the associated data (b's id) refuses it.
        s.execute(update(Blob).where(Blob.public_id == b.public_id).values(sealed=sealed_a))
        assert sealed_a is not None
        flipped = sealed_a[:-1] + bytes([sealed_a[-1] ^ 1])
        s.execute(update(Blob).where(Blob.public_id == a.public_id).values(sealed=flipped))
    with rt.sessions() as s:
        for blob in (a, b):
            with pytest.raises(KeyConfigError):
                rt.blobs.get(s, blob.public_id)


def test_destroy_removes_the_object(rt: Runtime):
    with rt.sessions.begin() as s:
        info = rt.blobs.put(s, b"stand-in", kind="evidence", content_type="text/plain")
    with rt.sessions.begin() as s:
        rt.blobs.destroy(s, info.public_id)
    with rt.sessions() as s:
        assert s.scalar(select(Blob).where(Blob.public_id == info.public_id)) is None


def test_embedded_default_creates_a_private_key_file(tmp_path):
    with pytest.raises(KeyConfigError, match="No master key"):
        Keyring.load(None, None, tmp_path)  # only when the caller says a new key is right
    ring = Keyring.load(None, None, tmp_path, create=True)
    path = tmp_path / "master.key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert Keyring.load(None, None, tmp_path) == ring  # the same key next time


def test_rotation_old_objects_still_open(tmp_path):
    old, new = new_key_text(), new_key_text()
    sealed = EnvelopeCipher(Keyring.from_lines([old], "test")).seal(b"stand-in", b"id1")
    key_file = tmp_path / "keys"
    key_file.write_text(f"{new}\n{old}\n")
    rotated = EnvelopeCipher(Keyring.load(None, key_file, tmp_path))
    assert rotated.open(sealed, b"id1") == b"stand-in"
    with pytest.raises(KeyConfigError, match="No configured master key"):
        EnvelopeCipher(Keyring.from_lines([new], "test")).open(sealed, b"id1")


@pytest.mark.parametrize(
    "text,match",
    [("not base64 !!", "not base64"), ("c2hvcnQ=", "32 bytes"), ("", "No master key")],
)
def test_bad_keys_refused_at_start(tmp_path, text, match):
    key_file = tmp_path / "keys"
    key_file.write_text(text)
    with pytest.raises(KeyConfigError, match=match):
        Keyring.load(None, key_file, tmp_path)
    with pytest.raises(KeyConfigError):
        Keyring.load(None, tmp_path / "missing", tmp_path)


def test_environment_key_wins(tmp_path):
    text = new_key_text()
    store = BlobStore(EnvelopeCipher(Keyring.load(text, None, tmp_path)))
    assert store.cipher.keyring == Keyring.from_lines([text], "x")
    assert not (tmp_path / "master.key").exists()
