"""Which database, data directory and master key a process uses, checked before it
serves or changes anything, so the server and every command agree wherever they run.

- :func:`check_database`: a command never makes a new, empty database by accident (run
  in the wrong place, or with the wrong settings); only ``takedown serve`` and
  ``takedown db upgrade`` create one.
- :func:`open_keyring`: the master key. A key file is made only for a new embedded
  (SQLite) database; a PostgreSQL database outlives any one machine's data directory,
  so its key must be provided. Every database records the fingerprints of the keys it
  was used with (``master_key_fingerprints``) and a process holding none of them is
  refused: it would seal media the others cannot open and chain audit events that
  ``takedown audit verify`` would report as altered.
- :func:`describe`: what ``takedown status`` prints and a server logs at start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, func, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from takedown.config import CONFIG_ENV, DATABASE_FILE, Settings
from takedown.errors import ConfigError
from takedown.services.audit.chain import AuditChain, head_verifies
from takedown.services.index import snapshot as index_snapshot
from takedown.store.blobs import (
    KEY_FILE,
    KeyConfigError,
    Keyring,
    KeySource,
    record_fingerprints,
    recorded_fingerprints,
)
from takedown.store.db import current_revision, head_revision, make_engine, unit_of_work
from takedown.store.models import AuditEvent, Bank, Case, MasterKeyFingerprint
from takedown.store.repositories import MASTER_KEYS, lock_inserts

LEGACY_DATA_DIR = "takedown-data"  # the default before it stopped depending on the directory
_HOW_TO_NAME = (
    f"name the one in use with --config FILE (or {CONFIG_ENV}), --data-dir DIR (or "
    "TAKEDOWN_DATA_DIR) or TAKEDOWN_DATABASE_URL"
)
_HOW_TO_KEY = (
    "set TAKEDOWN_MASTER_KEY_FILE (or master_key_file in the config file) to the key file "
    "the server uses, or TAKEDOWN_MASTER_KEY to the key"
)


def sqlite_path(settings: Settings) -> Path | None:
    """The embedded database's file, None for a server database (or SQLite in memory)."""
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def check_database(settings: Settings, *, create: bool) -> None:
    """Refuse a database that does not exist yet unless ``create`` (``takedown serve``,
    ``takedown db upgrade``), and a new default one while the old default
    (``./takedown-data``) holds the operator's data."""
    path = sqlite_path(settings)
    if path is None or path.exists():
        return
    legacy = Path.cwd() / LEGACY_DATA_DIR
    if (
        settings.database_url is None
        and settings.origin("data_dir") == "default"
        and (legacy / DATABASE_FILE).exists()
        and legacy.absolute() != settings.data_dir
    ):
        raise ConfigError(
            f"The data directory is {settings.data_dir} (the default, wherever a command "
            f"runs), which has no database, but {legacy} has one (the default data "
            f"directory of earlier versions). Move it there (mv {legacy} "
            f"{settings.data_dir}) or name it: --data-dir {legacy}, TAKEDOWN_DATA_DIR or "
            "data_dir in a config file."
        )
    if not create:
        raise ConfigError(
            f"No Takedown database at {path} (data directory {settings.data_dir}, "
            f"{settings.origin('data_dir')}). `takedown db upgrade` or `takedown serve` "
            f"creates a new one; to use an existing one, {_HOW_TO_NAME}."
        )


def check_schema(engine: Engine, settings: Settings, *, create: bool, migrate: bool) -> None:
    """Refuse a database without Takedown's tables unless one may be created, and one
    older than this version when it is not migrated here."""
    tables = set(inspect(engine).get_table_names())
    if "alembic_version" not in tables and not create:
        raise ConfigError(
            f"The database {settings.database_display} has no Takedown tables. "
            f"`takedown db upgrade` creates them; to use an existing database, {_HOW_TO_NAME}."
        )
    if not migrate and "master_key_fingerprints" not in tables:
        raise ConfigError(
            f"The database {settings.database_display} is older than this version of "
            "Takedown: run `takedown db upgrade`."
        )


def open_keyring(settings: Settings, sessions: sessionmaker[Session]) -> tuple[Keyring, KeySource]:
    """The master key, checked against the keys the database was used with (and
    recorded when it is new to it: a new database, or a rotation)."""
    with unit_of_work(sessions, write=False) as s:
        known = recorded_fingerprints(s)
    source = KeySource.locate(settings.master_key, settings.master_key_file, settings.data_dir)
    if source is not None:
        keyring = source.read(settings.master_key)
        if known and set(keyring.fingerprints) <= known:
            return keyring, source  # the usual start: nothing to record
    with unit_of_work(sessions) as s:
        lock_inserts(s, MASTER_KEYS)  # one first recording, whoever starts at once
        known = recorded_fingerprints(s)
        source = KeySource.locate(settings.master_key, settings.master_key_file, settings.data_dir)
        if source is None:
            _may_create_key(settings, s, known)
            source = KeySource.create(settings.data_dir)
        keyring = source.read(settings.master_key)
        _check_key(settings, s, keyring, source, known)
        record_fingerprints(s, keyring.fingerprints)
    return keyring, source


def _may_create_key(settings: Settings, session: Session, known: set[str]) -> None:
    where = settings.data_dir / KEY_FILE
    if not settings.embedded_database:
        raise KeyConfigError(
            f"No master key for the database {settings.database_display}: Takedown makes "
            "one only for a new embedded SQLite database, never for a server database "
            f"that other processes share. {_HOW_TO_KEY[0].upper()}{_HOW_TO_KEY[1:]} "
            f"(or put it at {where}). For a new database, make one with `takedown key new`."
        )
    used = known or session.scalar(select(func.count()).select_from(AuditEvent))
    if used:
        named = f" (fingerprint {', '.join(sorted(known))})" if known else ""
        raise KeyConfigError(
            f"No master key at {where}, and the database {settings.database_display} was "
            f"used with one{named}: a new key would not open its media nor verify its "
            f"audit log. {_HOW_TO_KEY[0].upper()}{_HOW_TO_KEY[1:]}, or {_HOW_TO_NAME}."
        )


def _check_key(
    settings: Settings, session: Session, keyring: Keyring, source: KeySource, known: set[str]
) -> None:
    mine = keyring.fingerprints
    if known and not known & set(mine):
        raise KeyConfigError(
            f"The master key from {source} (fingerprint {mine[0]}) is not one the database "
            f"{settings.database_display} was used with ({', '.join(sorted(known))}): "
            "media sealed under it could not be opened by the other processes, nor theirs "
            "by this one, and the audit log would not verify. "
            f"{_HOW_TO_KEY[0].upper()}{_HOW_TO_KEY[1:]}; `takedown status` shows the "
            "key file and fingerprint each process uses."
        )
    if not known and head_verifies(session, AuditChain.from_master_keys(keyring.keys)) is False:
        raise KeyConfigError(
            f"The master key from {source} (fingerprint {mine[0]}) did not sign the newest "
            f"event of the audit log of {settings.database_display}: it is not this "
            f"database's key. {_HOW_TO_KEY[0].upper()}{_HOW_TO_KEY[1:]}."
        )


# -- what is in use ------------------------------------------------------------------------
@dataclass(frozen=True)
class Line:
    label: str
    value: str
    ok: bool = True


def describe(settings: Settings) -> list[Line]:
    """Which config file, data directory, database and master key this process uses,
    with the schema revision and a few counts; never creates or changes anything."""
    lines = [
        Line(
            "config file",
            f"{settings.config} ({settings.origin('config')})" if settings.config else "none",
        ),
        Line("data directory", f"{settings.data_dir} ({settings.origin('data_dir')})"),
        Line(
            "database",
            f"{settings.database_display} ({settings.origin('database_url')})"
            if settings.database_url
            else f"{settings.database_display} (embedded, in the data directory)",
        ),
    ]
    path = sqlite_path(settings)
    known: set[str] | None = None
    if path is not None and not path.exists():
        lines.append(Line("schema", "no database here yet", ok=False))
    else:
        engine = make_engine(settings.resolved_database_url)
        try:
            lines += _database_lines(engine)
            if inspect(engine).has_table("master_key_fingerprints"):
                with engine.connect() as conn:
                    known = set(conn.scalars(select(MasterKeyFingerprint.fingerprint)))
        except SQLAlchemyError as exc:
            lines.append(Line("schema", f"cannot connect: {exc.__class__.__name__}", ok=False))
        finally:
            engine.dispose()
    lines.append(_key_line(settings, known))
    hashes = index_snapshot.written_hashes(index_snapshot.snapshot_path(settings.data_dir))
    lines.append(
        Line(
            "index snapshot",
            f"{hashes:,} hashes in {index_snapshot.snapshot_path(settings.data_dir)}"
            if hashes
            else "none (workers read the bank index from the database)",
        )
    )
    return lines


def _database_lines(engine: Engine) -> list[Line]:
    revision, head = current_revision(engine), head_revision()
    if revision is None:
        return [Line("schema", "no Takedown tables (`takedown db upgrade` makes them)", ok=False)]
    if revision != head:
        behind = f"{revision}; this version needs {head}: run `takedown db upgrade`"
        return [Line("schema", behind, ok=False)]
    with Session(engine) as s:
        banks = s.scalar(select(func.count()).select_from(Bank)) or 0
        cases = s.scalar(select(func.count()).select_from(Case)) or 0
        head_event = s.scalar(select(func.max(AuditEvent.id))) or 0
    return [
        Line("schema", f"{revision} (current)"),
        Line("contents", f"banks: {banks:,}, cases: {cases:,}, audit events: {head_event:,}"),
    ]


def _key_line(settings: Settings, known: set[str] | None) -> Line:
    try:
        source = KeySource.locate(settings.master_key, settings.master_key_file, settings.data_dir)
        if source is None:
            if settings.embedded_database and not known:
                made = settings.data_dir / KEY_FILE
                return Line("master key", f"none yet ({made} is made at first use)")
            return Line("master key", f"none: {_HOW_TO_KEY}", ok=False)
        keyring = source.read(settings.master_key)
    except KeyConfigError as exc:
        return Line("master key", str(exc), ok=False)
    mine = keyring.fingerprints
    older = f", {len(mine) - 1} older" if len(mine) > 1 else ""
    text = f"{source} (fingerprint {mine[0]}{older})"
    if not known:
        return Line("master key", text)
    if known & set(mine):
        return Line("master key", f"{text}, this database's")
    return Line(
        "master key",
        f"{text}, NOT this database's (it was used with {', '.join(sorted(known))})",
        ok=False,
    )
