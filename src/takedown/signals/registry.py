"""Which signal types this process knows: the built-ins, then every type installed
through the ``takedown.signals`` entry-point group (docs/extending.md), loaded once on
first use. A plug-in whose name or alias clashes with a known type, or that is not a
:class:`SignalType`, stops the process with a sentence naming it: a bank silently
matching by the wrong rule would be worse than not starting."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from importlib.metadata import entry_points

from takedown.errors import InvalidHash
from takedown.signals.base import IndexKind, SignalType, preview
from takedown.signals.builtin import BUILTIN

ENTRY_POINT_GROUP = "takedown.signals"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,15}$")  # fits bank_entries.signal_type

_lock = threading.Lock()
_types: dict[str, SignalType] | None = None
_aliases: dict[str, str] = {}


class SignalTypeConflict(RuntimeError):
    """A plug-in cannot be registered (bad name, clash, not a SignalType)."""


def _load() -> dict[str, SignalType]:
    global _types
    if _types is not None:
        return _types
    with _lock:
        if _types is None:
            types: dict[str, SignalType] = {}
            aliases: dict[str, str] = {}
            for t in BUILTIN:
                _add(types, aliases, t, "built-in")
            for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
                obj = ep.load()
                instance = obj() if isinstance(obj, type) else obj
                _add(types, aliases, instance, f"entry point {ep.value!r}")
            _aliases.clear()
            _aliases.update(aliases)
            _types = types
    return _types


def _add(types: dict[str, SignalType], aliases: dict[str, str], t: object, where: str) -> None:
    if not isinstance(t, SignalType):
        raise SignalTypeConflict(f"{where} is not a takedown.signals.SignalType: {t!r}")
    name = getattr(t, "name", "")
    if not isinstance(name, str) or not _NAME.match(name):
        raise SignalTypeConflict(
            f"{where}: a signal type's name is 1-16 lowercase letters, digits or '_', "
            f"starting with a letter; got {name!r}"
        )
    if t.perceptual and not (0 < t.bits <= 256 and t.hex_digits and t.hex_digits * 4 == t.bits):
        raise SignalTypeConflict(
            f"{where}: a Hamming type's values are hex digits of 4 to 256 bits "
            f"(hex_digits * 4 == bits); got {t.bits} bits, {t.hex_digits} digits"
        )
    for key in (name, *t.aliases):
        if key in types or key in aliases:
            raise SignalTypeConflict(f"{where}: {key!r} is already a signal type or alias")
    types[name] = t
    for alias in t.aliases:
        aliases[alias] = name


def register(t: SignalType) -> None:
    """Add a type in this process (the entry point group is the way for deployments)."""
    global _types
    types = _load()
    with _lock:
        fresh, aliases = dict(types), dict(_aliases)
        _add(fresh, aliases, t, f"register({type(t).__name__})")
        _aliases.update(aliases)
        _types = fresh


def reload() -> None:
    """Forget what was loaded: the next lookup reads the entry points again."""
    global _types
    with _lock:
        _types = None


def all_types() -> list[SignalType]:
    return list(_load().values())


def known(name: str) -> bool:
    key = name.strip().lower()
    types = _load()
    return key in types or key in _aliases


def signal_type(name: str) -> SignalType:
    """Look a type up by name or alias (case-insensitive)."""
    key = name.strip().lower()
    types = _load()
    key = _aliases.get(key, key)
    try:
        return types[key]
    except KeyError:
        raise InvalidHash(
            f"Unknown signal type {preview(name)!r}; known types: {', '.join(types)}.",
            code="unknown_signal_type",
        ) from None


def hamming_types() -> Iterator[SignalType]:
    return (t for t in _load().values() if t.index is IndexKind.HAMMING)


def guess_signal_type(value: str) -> SignalType:
    """Guess the type of a bare hex hash by its length, among the types that allow it
    (``guess_by_length``; 64 digits are taken as PDQ, 32 as MD5). Used only for
    one-hash-per-line lists, where the bank's own default type wins."""
    text = value.strip().lower()
    if re.fullmatch(r"[0-9a-f]+", text):
        for t in _load().values():
            if t.guess_by_length and t.hex_digits == len(text):
                return t
    raise InvalidHash(f"Not a hash: {preview(value)!r}.")
