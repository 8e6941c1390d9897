"""The signal registry and the built-in types, in process (no server needed)."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from takedown.errors import InvalidHash, InvalidRequest
from takedown.signals import (
    MD5,
    PDQ,
    PHOTODNA,
    SHA256,
    VPDQ,
    ContentKind,
    IndexKind,
    SignalType,
    SignalTypeConflict,
    all_types,
    guess_signal_type,
    known,
    register,
    reload,
    signal_type,
)
from tests.signals.dhash_plugin import DHashSignal


@pytest.fixture
def fresh_registry() -> Iterator[None]:
    reload()
    yield
    reload()  # what a test registered is gone for the next one


def test_builtins_and_aliases():
    assert [t.name for t in all_types()][:5] == ["pdq", "md5", "sha256", "vpdq", "photodna"]
    assert signal_type("SHA-256") is SHA256 and signal_type("photo_md5") is MD5
    assert signal_type(" PDQ ") is PDQ and known("video_md5") and not known("sha1")
    with pytest.raises(InvalidHash) as caught:
        signal_type("sha1")
    assert caught.value.code == "unknown_signal_type"
    assert PDQ.perceptual and PDQ.matchable and PDQ.computable
    assert MD5.index is IndexKind.EXACT and not PHOTODNA.matchable
    assert not PHOTODNA.computable and ContentKind.VIDEO in VPDQ.content_kinds


def test_distance_threshold_and_guessing():
    a, b = "0" * 64, "0" * 63 + "7"
    assert PDQ.distance(a, b) == 3 and PDQ.matches(a, b) and not PDQ.matches(a, b, 2)
    assert MD5.distance("a" * 32, "a" * 32) == 0 and MD5.distance("a" * 32, "b" * 32) == 1
    assert PDQ.validate_threshold(31) == 31
    with pytest.raises(InvalidRequest):
        PDQ.validate_threshold(129)
    with pytest.raises(InvalidRequest):
        MD5.validate_threshold(1)  # exact types take none
    assert guess_signal_type("A" * 32) is MD5 and guess_signal_type("a" * 64) is PDQ
    with pytest.raises(InvalidHash):
        guess_signal_type("a" * 40)


def test_photodna_is_read_in_the_forms_lists_use():
    raw = bytes(range(144))
    forms = [raw.hex(), raw.hex().upper(), base64.b64encode(raw).decode(), ",".join(map(str, raw))]
    assert {PHOTODNA.normalize(f) for f in forms} == {raw.hex()}
    for bad in ("00" * 143, "1,2,300", "not base64!", ""):
        with pytest.raises(InvalidHash):
            PHOTODNA.normalize(bad)


def test_file_digests_are_computed_by_the_types():
    assert MD5.hash_bytes(b"stand-in") == MD5.normalize(MD5.hash_bytes(b"stand-in"))
    assert SHA256.hash_bytes(b"") == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_register_adds_a_type_and_refuses_clashes(fresh_registry: None):
    register(DHashSignal())
    assert signal_type("difference_hash").name == "dhash"

    class Clash(DHashSignal):
        name = "other"
        aliases = ("md5",)

    class BadName(DHashSignal):
        name = "Bad-Name"

    class BadWidth(DHashSignal):
        name = "wide"
        aliases = ()
        bits = 60

    for bad in (DHashSignal(), Clash(), BadName(), BadWidth()):
        with pytest.raises(SignalTypeConflict):
            register(bad)
    with pytest.raises(SignalTypeConflict):
        register(object())  # type: ignore[arg-type]


def test_a_type_must_say_how_its_values_look():
    class NoFormat(SignalType):
        name = "noformat"

    with pytest.raises(NotImplementedError):
        NoFormat().normalize("00")
