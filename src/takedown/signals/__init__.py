"""Signal types as plug-ins: what a hash is called, how it is written and compared,
which content it describes, how we compute it and which index serves it.

``base.py`` defines the interface (:class:`SignalType`), ``builtin.py`` the types
Takedown ships (PDQ, MD5, SHA-256, vPDQ; PhotoDNA and TMK stored only), and
``registry.py`` looks them up, with third-party types from the ``takedown.signals``
entry-point group.

Importable without Pillow, PyAV or numba (a test holds it): the domain rules and the
hash-list formats depend on it, the media and matching layers build on it.
"""

from takedown.signals.base import ContentKind, IndexKind, SignalType
from takedown.signals.builtin import MD5, PDQ, PHOTODNA, SHA256, TMK, VPDQ
from takedown.signals.registry import (
    ENTRY_POINT_GROUP,
    SignalTypeConflict,
    all_types,
    guess_signal_type,
    hamming_types,
    known,
    register,
    reload,
    signal_type,
)


def pdq_distance(a: str, b: str) -> int:
    """Hamming distance between two PDQ hex strings."""
    return PDQ.distance(a, b)


__all__ = [
    "ENTRY_POINT_GROUP",
    "MD5",
    "PDQ",
    "PHOTODNA",
    "SHA256",
    "TMK",
    "VPDQ",
    "ContentKind",
    "IndexKind",
    "SignalType",
    "SignalTypeConflict",
    "all_types",
    "guess_signal_type",
    "hamming_types",
    "known",
    "pdq_distance",
    "register",
    "reload",
    "signal_type",
]
