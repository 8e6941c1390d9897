"""The audit log's hash chain: canonical serialization, MACs and the verification rule.

Each event's ``event_hash`` is HMAC-SHA256, under the audit key, of its canonical form;
the canonical form includes the event's chain position (its id) and the previous
event's hash. So changing any field, deleting an event, inserting one or moving one
breaks the chain at that event, and nobody without the key can forge a chain that
verifies — not even by recomputing every hash after an edit. A keyed chain still
cannot show that its newest events were cut off: checkpoints (MACed rows naming an
event id and its hash, written periodically) bound that, and a checkpoint copied
outside the database (an "anchor") bounds it even against someone who deletes the
checkpoints too.

Canonical form: a JSON array, ASCII-only, no spaces, of
``["takedown-audit-v1", id, at, actor, action, object_type, object_id, details,
prev_hash]`` where ``at`` is UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` and ``details`` is
the stored JSON text, verbatim. Each element is encoded alone and joined with commas,
which is exactly what ``json.dumps(list, separators=(",", ":"))`` produces, so bulk
appends can encode the fields shared by many events once.

Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from json.encoder import encode_basestring_ascii

EVENT_TAG = "takedown-audit-v1"
CHECKPOINT_TAG = "takedown-audit-checkpoint-v1"
GENESIS = "0" * 64  # the "previous hash" of the first chained event
_KEY_LABEL = b"takedown audit chain v1"


def derive_key(master_key: bytes) -> bytes:
    """The audit key, derived from a master key (domain-separated: it is never used to
    encrypt, and the encryption key is never used to MAC)."""
    return hmac.digest(master_key, _KEY_LABEL, "sha256")


def enc(value: object) -> str:
    if isinstance(value, str):  # what json.dumps does for a str, without its overhead
        return encode_basestring_ascii(value)
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"))


def timestamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@lru_cache(maxsize=8)
def _keyed(key: bytes) -> hmac.HMAC:
    return hmac.new(key, digestmod=hashlib.sha256)  # the key schedule, done once


def mac(key: bytes, message: str) -> str:
    h = _keyed(key).copy()
    h.update(message.encode("ascii"))
    return h.hexdigest()


@dataclass(frozen=True)
class EventFields:
    id: int
    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    details: str


def shared_part(at: datetime, actor: str, action: str, object_type: str) -> str:
    """The encoded fields between the id and the object id (shared by a bulk append)."""
    return ",".join((enc(timestamp(at)), enc(actor), enc(action), enc(object_type)))


def canonical(event_id: int, shared: str, object_id: str, details_enc: str, prev: str) -> str:
    return f'["{EVENT_TAG}",{event_id},{shared},{enc(object_id)},{details_enc},"{prev}"]'


def canonical_event(e: EventFields, prev_hash: str) -> str:
    shared = shared_part(e.at, e.actor, e.action, e.object_type)
    return canonical(e.id, shared, e.object_id, enc(e.details), prev_hash)


def canonical_checkpoint(
    checkpoint_id: int, event_id: int, event_hash: str, made_at: datetime, made_by: str, prev: str
) -> str:
    return enc(
        [CHECKPOINT_TAG, checkpoint_id, event_id, event_hash, timestamp(made_at), made_by, prev]
    )


# -- verification -------------------------------------------------------------------
@dataclass(frozen=True)
class StoredEvent:
    fields: EventFields
    prev_hash: str | None
    event_hash: str | None


@dataclass(frozen=True)
class StoredCheckpoint:
    id: int
    event_id: int
    event_hash: str
    made_at: datetime
    made_by: str
    mac: str


@dataclass(frozen=True)
class Problem:
    event_id: int | None  # None: the problem is a checkpoint's or an anchor's
    message: str


@dataclass
class Verifier:
    """Feed events in id order (``check``), then call ``finish``. Keeps only the last
    hash and the checkpoints' targets in memory, so millions of events stream through."""

    keys: Sequence[bytes]
    checkpoints: Sequence[StoredCheckpoint] = ()
    anchors: Sequence[tuple[int, str]] = ()
    problems: list[Problem] = field(default_factory=list)
    checked: int = 0
    legacy: int = 0
    last_id: int | None = None
    _prev: str | None = None  # hash of the last chained event
    _targets: dict[int, list[tuple[str, str]]] = field(default_factory=dict)
    _key_order: list[bytes] = field(default_factory=list)
    _shared_key: tuple[datetime, str, str, str] | None = None
    _shared: str = ""

    def __post_init__(self) -> None:
        self._key_order = list(self.keys)
        self._check_checkpoints()
        for cp in self.checkpoints:
            self._targets.setdefault(cp.event_id, []).append(
                (cp.event_hash, f"checkpoint {cp.id} (made {timestamp(cp.made_at)})")
            )
        for event_id, expected in self.anchors:
            self._targets.setdefault(event_id, []).append((expected, "the anchor given"))

    def _macs_ok(self, message: str, expected: str) -> bool:
        for i, key in enumerate(self._key_order):
            if hmac.compare_digest(mac(key, message), expected):
                if i:  # a rotated key: try it first from now on
                    self._key_order.insert(0, self._key_order.pop(i))
                return True
        return False

    def _check_checkpoints(self) -> None:
        prev = GENESIS
        for n, cp in enumerate(self.checkpoints, start=1):
            if cp.id != n:
                self.problems.append(
                    Problem(None, f"Checkpoint {n} is missing (deleted); the next is {cp.id}.")
                )
            message = canonical_checkpoint(
                cp.id, cp.event_id, cp.event_hash, cp.made_at, cp.made_by, prev
            )
            if not self._macs_ok(message, cp.mac):
                self.problems.append(
                    Problem(
                        None,
                        f"Checkpoint {cp.id} does not verify: it was altered or forged, or "
                        "the checkpoint before it was deleted.",
                    )
                )
            prev = cp.mac

    def check(self, event: StoredEvent) -> None:
        f = event.fields
        if event.event_hash is None and event.prev_hash is None and self._prev is None:
            self.legacy += 1  # written before the chain existed (migration 0006)
            self.last_id = f.id
            return
        self.checked += 1
        if self._prev is None:
            expected_prev = GENESIS
            if event.prev_hash != GENESIS:
                self._problem(
                    f.id,
                    "is the first chained event but does not start the chain: the events "
                    "before it were deleted, or it was inserted",
                )
        else:
            expected_prev = self._prev
            assert self.last_id is not None
            if f.id != self.last_id + 1:
                missing = (
                    f"{self.last_id + 1}"
                    if f.id == self.last_id + 2
                    else f"{self.last_id + 1}–{f.id - 1}"
                )
                self._problem(f.id, f"follows a gap: event(s) {missing} were deleted")
            elif event.prev_hash != expected_prev:
                self._problem(
                    f.id,
                    f"does not follow event {self.last_id}: events were reordered, or one "
                    "was inserted or replaced",
                )
        if event.event_hash is None or event.prev_hash is None:
            self._problem(f.id, "has lost its chain fields (set to NULL)")
        elif not self._macs_ok(self._canonical(f, event.prev_hash), event.event_hash):
            self._problem(f.id, "was altered: its content does not match its hash")
        for expected, source in self._targets.get(f.id, ()):
            if event.event_hash != expected:
                self._problem(f.id, f"does not match {source}: the chain was rewritten")
        self._prev = event.event_hash or expected_prev
        self.last_id = f.id

    def _canonical(self, f: EventFields, prev: str) -> str:
        # Events of one bulk append share these fields: encode them once per run.
        key = (f.at, f.actor, f.action, f.object_type)
        if key != self._shared_key:
            self._shared_key, self._shared = key, shared_part(*key)
        return canonical(f.id, self._shared, f.object_id, enc(f.details), prev)

    def finish(self) -> list[Problem]:
        last = self.last_id or 0
        for event_id, targets in sorted(self._targets.items()):
            if event_id > last:
                for _, source in targets:
                    self.problems.append(
                        Problem(
                            event_id,
                            f"Event {event_id} is missing but {source} covers it: the "
                            f"newest events (after {last}) were deleted.",
                        )
                    )
        return self.problems

    def _problem(self, event_id: int, what: str) -> None:
        self.problems.append(Problem(event_id, f"Event {event_id} {what}."))


def verify_events(
    events: Iterable[StoredEvent],
    keys: Sequence[bytes],
    checkpoints: Sequence[StoredCheckpoint] = (),
) -> list[Problem]:
    """Every problem in a whole chain (convenience for small chains and tests)."""
    v = Verifier(keys, checkpoints)
    for e in events:
        v.check(e)
    return v.finish()
