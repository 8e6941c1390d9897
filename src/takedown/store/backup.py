"""Back up and restore the database: everything Takedown keeps except the master key.

Media and evidence are sealed blobs in the database (``store/blobs.py``), so one
consistent copy of the database holds them all; the index snapshot in the data directory
is a cache rebuilt from the database. What the copy cannot hold is the master key: it
must be kept, separately, by the operator (a dump and its key together are the plaintext).

- SQLite: SQLite's online backup API, a consistent copy of a live database in WAL mode
  (copying the file while the server writes can miss the WAL's pages or tear a page).
- PostgreSQL: ``pg_dump --format=custom``, restored with ``pg_restore`` into an empty
  database (one transaction: a failed restore leaves it empty).

A backup is a directory: the dump, and ``manifest.json`` (dialect, schema revision,
SHA-256 of the dump, fingerprints of the keys that open its sealed objects).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import inspect, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from takedown.errors import ConfigError
from takedown.ids import utcnow
from takedown.store.blobs import BlobStore
from takedown.store.db import current_revision, make_engine
from takedown.store.models import Blob

MANIFEST = "manifest.json"
SQLITE_DUMP = "database.sqlite3"
PG_DUMP = "database.pgdump"
FORMAT = 1


class BackupError(ConfigError):
    """A backup or restore that cannot be done as asked (an operator's problem)."""


@dataclass(frozen=True)
class Manifest:
    format: int
    dialect: str
    revision: str | None
    created_at: str
    file: str
    sha256: str
    bytes: int
    key_fingerprints: list[str]


def backup(url: str, out: Path) -> Manifest:
    """Write a consistent copy of the database at ``url`` into the new directory ``out``."""
    if out.exists() and any(out.iterdir()):
        raise BackupError(f"{out} is not empty; a backup goes into a new directory.")
    parsed = make_url(url)
    engine = make_engine(url)
    try:
        revision = current_revision(engine)
        with engine.connect() as conn:
            fingerprints = sorted(
                conn.execute(text("SELECT fingerprint FROM master_key_fingerprints")).scalars()
            )
    finally:
        engine.dispose()
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    if parsed.get_backend_name() == "sqlite":
        dump = out / SQLITE_DUMP
        _sqlite_copy(_sqlite_file(parsed), dump, journal="DELETE")  # one self-contained file
    elif parsed.get_backend_name() == "postgresql":
        dump = out / PG_DUMP
        _run_pg(["pg_dump", "--format=custom", "--file", str(dump)], parsed)
    else:
        raise BackupError(f"Cannot back up a {parsed.get_backend_name()} database.")
    dump.chmod(0o600)
    manifest = Manifest(
        format=FORMAT,
        dialect=parsed.get_backend_name(),
        revision=revision,
        created_at=utcnow().isoformat(),
        file=dump.name,
        sha256=_sha256(dump),
        bytes=dump.stat().st_size,
        key_fingerprints=fingerprints,
    )
    (out / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2) + "\n")
    return manifest


def read_manifest(source: Path) -> Manifest:
    try:
        manifest = Manifest(**json.loads((source / MANIFEST).read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise BackupError(f"{source} holds no readable Takedown backup ({exc}).") from exc
    if manifest.format != FORMAT:
        raise BackupError(f"{source} is a backup in format {manifest.format}, not {FORMAT}.")
    dump = source / manifest.file
    if not dump.is_file() or _sha256(dump) != manifest.sha256:
        raise BackupError(f"{dump} is missing or does not match its SHA-256 in the manifest.")
    return manifest


def restore(url: str, source: Path, *, replace: bool = False) -> Manifest:
    """Restore the backup in ``source`` into the database at ``url``, which must be empty
    (a PostgreSQL database created beforehand; an SQLite file that does not exist yet)
    unless ``replace``."""
    manifest = read_manifest(source)
    parsed = make_url(url)
    if parsed.get_backend_name() != manifest.dialect:
        raise BackupError(
            f"{source} is a {manifest.dialect} backup; the database configured is "
            f"{parsed.get_backend_name()}."
        )
    dump = source / manifest.file
    if manifest.dialect == "sqlite":
        target = _sqlite_file(parsed)
        if target.exists() and not replace and _has_tables(url):
            raise BackupError(f"{target} already holds a database; restore with --replace.")
        for stale in (target, Path(f"{target}-wal"), Path(f"{target}-shm")):
            stale.unlink(missing_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        _sqlite_copy(dump, target, journal="WAL")  # as Takedown opens its database
    else:
        if _has_tables(url) and not replace:
            raise BackupError(
                f"The database {parsed.render_as_string(hide_password=True)} is not empty; "
                "restore into a new one (createdb) or with --replace."
            )
        clean = ["--clean", "--if-exists"] if replace else []
        _run_pg(
            ["pg_restore", "--no-owner", "--exit-on-error", "--single-transaction", *clean]
            + ["--dbname", "{dbname}", str(dump)],
            parsed,
        )
    engine = make_engine(url)
    try:
        restored = current_revision(engine)
    finally:
        engine.dispose()
    if restored != manifest.revision:
        raise BackupError(f"The restored database is at {restored}, not {manifest.revision}.")
    return manifest


def open_every_sealed_object(sessions: sessionmaker[Session], blobs: BlobStore) -> int:
    """Open (decrypt, check the SHA-256 of) every stored object: how many. Raises
    KeyConfigError at the first that does not open with the configured key."""
    with sessions() as s:
        ids = list(s.scalars(select(Blob.public_id).order_by(Blob.id)))
    for start in range(0, len(ids), 500):
        with sessions() as s:
            for public_id in ids[start : start + 500]:
                blobs.get(s, public_id)
    return len(ids)


def _sqlite_file(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise BackupError("An in-memory SQLite database has nothing to back up.")
    return Path(url.database)


def _sqlite_copy(source: Path, target: Path, *, journal: str) -> None:
    src = sqlite3.connect(f"{source.absolute().as_uri()}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)  # page by page, consistent even while others write
            dst.execute(f"PRAGMA journal_mode={journal}")
        finally:
            dst.close()
    finally:
        src.close()


def _has_tables(url: str) -> bool:
    engine = make_engine(url)
    try:
        return bool(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _run_pg(command: list[str], url: URL) -> None:
    """Run a PostgreSQL client tool against ``url``: the connection in libpq's
    environment variables, so the password is never on a command line."""
    if shutil.which(command[0]) is None:
        raise BackupError(f"{command[0]} is not installed (PostgreSQL's client tools).")
    env = dict(os.environ)
    for name, value in (
        ("PGHOST", url.host),
        ("PGPORT", url.port),
        ("PGUSER", url.username),
        ("PGPASSWORD", url.password),
        ("PGDATABASE", url.database),
    ):
        if value is not None:
            env[name] = str(value)
    command = [(url.database or "") if part == "{dbname}" else part for part in command]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupError(f"{command[0]} failed: {done.stderr.strip() or done.returncode}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
