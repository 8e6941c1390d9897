"""Encrypted storage for media bytes and evidence: never plaintext at rest.

Envelope encryption with AES-256-GCM (``cryptography``; we write no cipher code):
each object gets its own random data key; the data key is wrapped (AES-GCM) by the
master key; both layers bind the blob's public id as associated data, so a ciphertext
moved to another row does not open. The master key comes from ``TAKEDOWN_MASTER_KEY``
(base64 of 32 bytes) or ``TAKEDOWN_MASTER_KEY_FILE``, else from ``master.key`` in the
data directory. That file is created (mode 0600) only for a new embedded SQLite
database (``takedown.runtime.setup`` decides): never for PostgreSQL, whose database
outlives any one machine's data directory.

Each database records the fingerprints of the keys it was used with (table
``master_key_fingerprints``), so a process holding another key is refused at start
rather than sealing media and chaining audit events under a key the others do not have.

A key file may hold several keys, one per line: the first seals new objects, the
others still open old ones (rotation). Each sealed object names its key by a short
fingerprint, never the key.

Blobs live in the database (table ``blobs``) rather than on a file system: a blob is
written in the same transaction as the rows that point at it, so a failed request
leaves no orphan and a backup of the database holds everything. Deleting the row is
the destruction of the object.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.orm import Session

from takedown.errors import ConfigError, NotFound
from takedown.ids import new_id, utcnow
from takedown.store.keytext import new_key_text as new_key_text  # re-exported
from takedown.store.models import Blob, MasterKeyFingerprint

MAGIC = b"TDE1"
_KEY_ID_LEN = 8
_NONCE = 12
_WRAPPED = 32 + 16  # a 256-bit data key plus the GCM tag


KEY_FILE = "master.key"  # in the data directory


class KeyConfigError(ConfigError):
    """The master key is missing or malformed, or a stored object does not open: an
    operator's or an integrity problem, never a caller's, so not a TakedownError (it is
    raised at start-up where it can be, and is a 500 anywhere else)."""


def _fingerprint(key: bytes) -> bytes:
    return hashlib.sha256(b"takedown-master-key:" + key).digest()[:_KEY_ID_LEN]


def fingerprint(key: bytes) -> str:
    """A key's public fingerprint (16 hex digits): what sealed objects name their key by,
    what the database records and what ``takedown status`` shows; never the key."""
    return _fingerprint(key).hex()


def _parse_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyConfigError(f"The master key in {where} is not base64.") from exc
    if len(key) != 32:
        raise KeyConfigError(f"The master key in {where} must be 32 bytes (AES-256).")
    return key


@dataclass(frozen=True)
class Keyring:
    """The current master key (seals) and every key that may open (rotation)."""

    current: bytes
    older: tuple[bytes, ...] = ()

    @classmethod
    def from_lines(cls, lines: list[str], where: str) -> Keyring:
        keys = [_parse_key(line, where) for line in lines if line.strip()]
        if not keys:
            raise KeyConfigError(f"No master key in {where}.")
        return cls(keys[0], tuple(keys[1:]))

    @classmethod
    def load(
        cls, env_key: str | None, key_file: Path | None, data_dir: Path, *, create: bool = False
    ) -> Keyring:
        """The keys from ``env_key``, else ``key_file``, else the data directory's key
        file; that one is created when ``create`` and missing (the caller decides
        when a new key is right), otherwise a missing key is a KeyConfigError."""
        source = KeySource.locate(env_key, key_file, data_dir)
        if source is None:
            if not create:
                raise KeyConfigError(f"No master key: {data_dir / KEY_FILE} does not exist.")
            source = KeySource.create(data_dir)
        return source.read(env_key)

    @property
    def keys(self) -> tuple[bytes, ...]:
        return (self.current, *self.older)

    @property
    def fingerprints(self) -> list[str]:
        return [fingerprint(k) for k in self.keys]

    def key_for(self, key_id: bytes) -> bytes:
        for key in (self.current, *self.older):
            if _fingerprint(key) == key_id:
                return key
        raise KeyConfigError("No configured master key opens this object (was a key removed?).")


@dataclass(frozen=True)
class KeySource:
    """Where the master key comes from: ``TAKEDOWN_MASTER_KEY`` (``path`` None) or a
    key file."""

    path: Path | None

    @classmethod
    def locate(cls, env_key: str | None, key_file: Path | None, data_dir: Path) -> KeySource | None:
        """The key named by the settings, else the data directory's key file if it
        exists; None when there is none."""
        if env_key:
            return cls(None)
        if key_file is not None:
            return cls(key_file)  # named: reading it says what is wrong with it
        default = data_dir / KEY_FILE
        return cls(default) if default.exists() else None

    @classmethod
    def create(cls, data_dir: Path) -> KeySource:
        """A new key file in the data directory, readable by this user only."""
        path = data_dir / KEY_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(new_key_text() + "\n")
        return cls(path)

    def read(self, env_key: str | None) -> Keyring:
        if self.path is None:
            return Keyring.from_lines([env_key or ""], "TAKEDOWN_MASTER_KEY")
        try:
            lines = self.path.read_text().splitlines()
        except OSError as exc:
            raise KeyConfigError(
                f"Cannot read the master key file {self.path}: {exc.strerror or exc}."
            ) from exc
        return Keyring.from_lines(lines, str(self.path))

    def __str__(self) -> str:
        return "TAKEDOWN_MASTER_KEY" if self.path is None else str(self.path)


def recorded_fingerprints(session: Session) -> set[str]:
    """The fingerprints of the master keys this database was used with."""
    return set(session.scalars(select(MasterKeyFingerprint.fingerprint)))


def record_fingerprints(session: Session, fingerprints: list[str]) -> None:
    """Record keys as this database's (the caller holds ``MASTER_KEYS``' lock)."""
    known = recorded_fingerprints(session)
    for fp in fingerprints:
        if fp not in known:
            session.add(MasterKeyFingerprint(fingerprint=fp, first_used_at=utcnow()))
    session.flush()


class EnvelopeCipher:
    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        data_key = AESGCM.generate_key(bit_length=256)
        wrap_nonce, nonce = os.urandom(_NONCE), os.urandom(_NONCE)
        master = self.keyring.current
        wrapped = AESGCM(master).encrypt(wrap_nonce, data_key, b"dek:" + aad)
        body = AESGCM(data_key).encrypt(nonce, plaintext, aad)
        return MAGIC + _fingerprint(master) + wrap_nonce + wrapped + nonce + body

    def open(self, sealed: bytes, aad: bytes) -> bytes:
        head = len(MAGIC)
        if sealed[:head] != MAGIC or len(sealed) < head + _KEY_ID_LEN + 2 * _NONCE + _WRAPPED:
            raise KeyConfigError("A stored object is not in the expected sealed format.")
        pos = head
        key_id = sealed[pos : pos + _KEY_ID_LEN]
        pos += _KEY_ID_LEN
        wrap_nonce = sealed[pos : pos + _NONCE]
        pos += _NONCE
        wrapped = sealed[pos : pos + _WRAPPED]
        pos += _WRAPPED
        nonce = sealed[pos : pos + _NONCE]
        pos += _NONCE
        master = self.keyring.key_for(key_id)
        try:
            data_key = AESGCM(master).decrypt(wrap_nonce, wrapped, b"dek:" + aad)
            return AESGCM(data_key).decrypt(nonce, sealed[pos:], aad)
        except InvalidTag as exc:
            raise KeyConfigError("A stored object failed its integrity check.") from exc


@dataclass(frozen=True)
class BlobInfo:
    public_id: str
    kind: str
    content_type: str
    size: int
    sha256: str


class BlobStore:
    """Put, get and destroy encrypted objects inside the caller's transaction."""

    def __init__(self, cipher: EnvelopeCipher) -> None:
        self.cipher = cipher

    def put(self, session: Session, data: bytes, *, kind: str, content_type: str) -> BlobInfo:
        public_id = new_id()
        digest = hashlib.sha256(data).hexdigest()
        row = Blob(
            public_id=public_id,
            kind=kind,
            content_type=content_type,
            size=len(data),
            sha256=digest,
            sealed=self.cipher.seal(data, public_id.encode()),
        )
        session.add(row)
        session.flush()
        return BlobInfo(public_id, kind, content_type, len(data), digest)

    def info(self, session: Session, public_id: str) -> BlobInfo:
        row = self._row(session, public_id)
        return BlobInfo(row.public_id, row.kind, row.content_type, row.size, row.sha256)

    def get(self, session: Session, public_id: str) -> bytes:
        row = self._row(session, public_id)
        data = self.cipher.open(row.sealed, row.public_id.encode())
        if hashlib.sha256(data).hexdigest() != row.sha256:
            raise KeyConfigError("A stored object does not match its recorded SHA-256.")
        return data

    def destroy(self, session: Session, public_id: str) -> None:
        session.delete(self._row(session, public_id))
        session.flush()

    @staticmethod
    def _row(session: Session, public_id: str) -> Blob:
        row = session.scalar(select(Blob).where(Blob.public_id == public_id))
        if row is None:
            raise NotFound(f"No stored object {public_id}.", code="blob_not_found")
        return row
