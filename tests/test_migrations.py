"""The Alembic migrations and the models describe the same schema, on both backends."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, insert, text

from takedown.config import Settings
from takedown.runtime import open_runtime
from takedown.store.blobs import (
    EnvelopeCipher,
    KeyConfigError,
    Keyring,
    fingerprint,
    new_key_text,
)
from takedown.store.db import current_revision, make_engine, upgrade
from takedown.store.models import Base, Blob
from tests.conftest import PG_ADMIN_URL

HEAD = "0035_case_priority_stale"


def test_migrations_match_models(database_url: str):
    engine = make_engine(database_url)
    upgrade(engine)  # idempotent on an already migrated database
    assert current_revision(engine) == HEAD
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def test_sqlite_runs_in_wal_mode(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no schema yet, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.sqlite3'}"
        return
    request.getfixturevalue("postgres_url")  # skips (or fails in CI) without a server
    name = f"takedown_migration_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield admin.url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_bank_settings_move_to_per_signal_rows_unchanged(empty_database: str, tmp_path: Path):
    """Migration 0012: every bank keeps its PDQ and video settings, now per signal type,
    and its entries and matches work as before."""
    engine = make_engine(empty_database)
    upgrade(engine, "0011")
    with engine.begin() as conn:
        for name, values in (("strict", (20, 60, 70, 25)), ("usual", (31, 50, 80, 31))):
            conn.execute(
                text(
                    "INSERT INTO banks (public_id, name, description, source, match_action, "
                    "pdq_threshold, pdq_quality_floor, enabled, restrict_on_match, created_at, "
                    "created_by, updated_at, video_match_percent, video_frame_threshold) "
                    "VALUES (:pid, :name, '', 'own', 'block', :t, :q, true, false, "
                    "CURRENT_TIMESTAMP, 'old', CURRENT_TIMESTAMP, :p, :f)"
                ),
                {
                    "pid": name.upper().ljust(26, "0"),
                    "name": name,
                    "t": values[0],
                    "q": values[1],
                    "p": values[2],
                    "f": values[3],
                },
            )
        conn.execute(
            text(
                "INSERT INTO bank_entries (public_id, bank_id, signal_type, value, quality, "
                "source, added_by, added_at, enabled) SELECT 'ENTRY000000000000000000001', "
                "banks.id, "
                "'pdq', :v, 90, 'own', 'old', CURRENT_TIMESTAMP, true FROM banks "
                "WHERE name = 'strict'"
            ),
            {"v": "f" * 64},
        )
    upgrade(engine)
    assert current_revision(engine) == HEAD
    engine.dispose()
    settings = Settings(database_url=empty_database, data_dir=tmp_path / "d")
    rt = open_runtime(settings.model_copy(update={"master_key": new_key_text()}))
    try:
        strict, usual = rt.banks.get_bank("strict"), rt.banks.get_bank("usual")
        assert (strict.pdq_threshold, strict.pdq_quality_floor) == (20, 60)
        assert (strict.video_match_percent, strict.video_frame_threshold) == (70, 25)
        assert strict.signal_settings["vpdq"]["quality_floor"] == 60
        assert (usual.pdq_threshold, usual.video_match_percent) == (31, 80)
        near = "f" * 63 + "0"  # 4 bits away: within 20
        found = rt.screening.screen_hashes(actor="t", pdq=near, pdq_quality=90)
        assert found.verdict.value == "block" and found.matches[0].threshold == 20
    finally:
        rt.close()


def test_bank_entries_learn_their_file_where_it_is_certain(empty_database: str):
    """Migration 0014: a banked video's frame-set entry (valued by the file's SHA-256)
    knows its file; an entry from a hash list has none."""
    engine = make_engine(empty_database)
    upgrade(engine, "0012")
    sha = "ab" * 32
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO banks (public_id, name, description, source, match_action, "
                "enabled, restrict_on_match, created_at, created_by, updated_at) VALUES "
                "('BANK0000000000000000000001', 'videos', '', 'own', 'block', true, false, "
                "CURRENT_TIMESTAMP, 'old', CURRENT_TIMESTAMP)"
            )
        )
        for pid, kind, value in (("E1", "vpdq", sha), ("E2", "md5", "cd" * 16)):
            conn.execute(
                text(
                    "INSERT INTO bank_entries (public_id, bank_id, signal_type, value, "
                    "source, added_by, added_at, enabled) SELECT :pid, id, :kind, :value, "
                    "'own', 'old', CURRENT_TIMESTAMP, true FROM banks"
                ),
                {"pid": pid.ljust(26, "0"), "kind": kind, "value": value},
            )
    upgrade(engine)
    with engine.connect() as conn:
        linked = dict(
            conn.execute(text("SELECT signal_type, media_sha256 FROM bank_entries")).all()
        )
    engine.dispose()
    assert linked == {"vpdq": sha, "md5": None}


def test_keys_that_sealed_blobs_before_0015_are_recorded(empty_database: str, tmp_path: Path):
    """Migration 0015 records the key each stored blob names, so a process with another
    key is refused from the first start after the upgrade."""
    engine = make_engine(empty_database)
    upgrade(engine, "0012")
    key = new_key_text()
    sealed = EnvelopeCipher(Keyring.from_lines([key], "test")).seal(b"stand-in", b"01BLOB")
    with engine.begin() as conn:
        conn.execute(
            insert(Blob.__table__).values(
                public_id="01BLOB",
                kind="media",
                content_type="text/plain",
                size=8,
                sha256=hashlib.sha256(b"stand-in").hexdigest(),
                sealed=sealed,
                created_at=datetime.now(UTC),
            )
        )
    upgrade(engine)
    with engine.connect() as conn:
        recorded = set(conn.scalars(text("SELECT fingerprint FROM master_key_fingerprints")))
    engine.dispose()
    assert recorded == {fingerprint(Keyring.from_lines([key], "test").current)}
    settings = Settings(database_url=empty_database, data_dir=tmp_path / "d")
    with pytest.raises(KeyConfigError, match="not one the database"):
        open_runtime(settings.model_copy(update={"master_key": new_key_text()}))
    rt = open_runtime(settings.model_copy(update={"master_key": key}))
    try:
        with rt.sessions() as s:
            assert rt.blobs.get(s, "01BLOB") == b"stand-in"
    finally:
        rt.close()


def test_cases_learn_when_their_content_was_removed(empty_database: str):
    """Migration 0019_clocks: a case decided before it gets ``removed_at`` from its first
    removal sent to the platform (the TAKE IT DOWN clock is judged on it); a case whose
    content was never removed gets none."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import insert, select

    from takedown.store.models import Case, OutboxMessage

    engine = make_engine(empty_database)
    upgrade(engine, "0015")
    first = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
    with engine.begin() as conn:
        for n, pid in enumerate(("CASEREMOVED000000000000001", "CASEHIDDEN0000000000000002")):
            conn.execute(
                insert(Case.__table__).values(
                    id=n + 1,
                    public_id=pid,
                    state="decided" if n == 0 else "restricted",
                    categories="ncii",
                    hash_sources="",
                    minor_safety=False,
                    restrict_first=True,
                    priority=0,
                    priority_factors="[]",
                    opened_at=first - timedelta(hours=30),
                    views_at_first_report=0,
                    updated_at=first,
                )
            )
        rows = [
            (1, "item.restrict", first - timedelta(hours=30)),
            (1, "item.remove", first + timedelta(hours=2)),  # a later copy
            (1, "item.remove", first),  # the decision
            (2, "item.restrict", first),
        ]
        for n, (case, topic, at) in enumerate(rows):
            conn.execute(
                insert(OutboxMessage.__table__).values(
                    public_id=f"OUT{n}".ljust(26, "0"),
                    idempotency_key=f"key-{n}",
                    topic=topic,
                    target_type="item",
                    target_platform_id=f"i{n}",
                    case_id=case,
                    payload="{}",
                    state="acknowledged",
                    attempts=1,
                    created_at=at,
                    next_attempt_at=at,
                )
            )
    upgrade(engine)
    with engine.connect() as conn:
        removed = dict(conn.execute(select(Case.public_id, Case.removed_at)).all())
    engine.dispose()
    assert removed == {"CASEREMOVED000000000000001": first, "CASEHIDDEN0000000000000002": None}
