"""The backup-and-restore drill, on both backends, through the real CLI: a database with
sealed media and an evidence record is backed up (`takedown db backup`, while it is open),
wiped with its data directory, restored (`takedown db restore`) with the master key kept
apart; the audit chain verifies and the sealed media and evidence open again."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from takedown.config import Settings
from takedown.runtime import Runtime, open_runtime
from takedown.store.db import make_engine, upgrade
from tests.cases.helpers import parent_report, platform_headers, user_headers
from tests.conftest import PG_ADMIN_URL, REQUIRE_PG, standin_bytes, write_key_file

PHOTO = standin_bytes("coffee.png")  # a stand-in photo, never real material
WHY = "Backup drill: checking that restored evidence opens"


def data_dir_of(env: dict[str, str]) -> Path:
    return Path(env["TAKEDOWN_DATA_DIR"])


def _admin():
    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a real deployment: a data directory, and on PostgreSQL a
    scratch database of this test's own (dropped at the end) with its key file."""
    data = tmp_path / "data"
    if request.param == "sqlite":
        data.mkdir()
        shutil.copy(request.getfixturevalue("sqlite_template"), data / "takedown.sqlite3")
        yield {"TAKEDOWN_DATA_DIR": str(data)}
        return
    name = f"takedown_drill_{uuid.uuid4().hex[:12]}"
    try:
        admin = _admin()
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure means "no server here"
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL not reachable: {exc}")
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    write_key_file(data / "master.key")
    yield {"TAKEDOWN_DATA_DIR": str(data), "TAKEDOWN_DATABASE_URL": url, "PGDB": name}
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _takedown(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "takedown.cli", *args],
        env={**os.environ, **{k: v for k, v in env.items() if k.startswith("TAKEDOWN_")}},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _populate(env: dict[str, str], *, keep_open: bool = False) -> tuple[str, Runtime]:
    """Stand-in media with its bytes kept, a report and preserved evidence: the id, and
    the runtime (closed unless ``keep_open``: a database in use)."""
    from takedown.api.app import create_app

    settings = Settings(
        data_dir=Path(env["TAKEDOWN_DATA_DIR"]), database_url=env.get("TAKEDOWN_DATABASE_URL")
    )
    rt = open_runtime(settings)
    try:
        with TestClient(create_app(rt)) as client:
            p = platform_headers(rt)
            assert client.put("/v1/items/e1", json={"account_id": "acc-1"}, headers=p).is_success
            r = client.post("/v1/items/e1/media", headers=p, files={"file": ("x.png", PHOTO)})
            assert r.status_code == 200, r.text
            r = client.post("/v1/reports", json=parent_report(["e1"]))
            assert r.status_code == 201, r.text
            case_id = str(r.json()["case_number"])
            legal = user_headers(rt, "lena-legal", "legal")
            body = {"case_id": case_id, "purpose": WHY}
            r = client.post("/v1/evidence", json=body, headers=legal)
            assert r.status_code == 201, r.text
            return str(r.json()["id"]), rt
    finally:
        if not keep_open:
            rt.close()


def test_backup_wipe_restore_verify(backend: dict[str, str], tmp_path: Path):
    # Backed up while in use: on SQLite the new rows are still in the write-ahead log
    # (a copy of the database file alone would not have them).
    evidence_id, live = _populate(backend, keep_open=True)
    if "PGDB" not in backend:
        assert Path(str(data_dir_of(backend) / "takedown.sqlite3") + "-wal").stat().st_size > 0
    data = Path(backend["TAKEDOWN_DATA_DIR"])
    backup_dir, offsite_key = tmp_path / "backup", tmp_path / "offsite" / "master.key"

    try:
        done = _takedown(backend, "db", "backup", str(backup_dir))
    finally:
        live.close()
    assert done.returncode == 0, done.stderr
    assert "not in the backup" in done.stdout
    assert not (backup_dir / "master.key").exists()  # the key is kept apart, by hand:
    offsite_key.parent.mkdir()
    shutil.copy2(data / "master.key", offsite_key)

    # The disaster: the data directory and the database are gone.
    shutil.rmtree(data)
    if "PGDB" in backend:
        with _admin().connect() as conn:
            conn.execute(text(f'DROP DATABASE "{backend["PGDB"]}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{backend["PGDB"]}"'))  # createdb: empty

    # Restoring without the key restores nothing usable: the command says so.
    data.mkdir()
    done = _takedown(backend, "db", "restore", str(backup_dir))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "master key" in done.stderr.lower()

    # With the key back in place.
    shutil.copy2(offsite_key, data / "master.key")
    done = _takedown(backend, "db", "restore", "--replace", str(backup_dir))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the master key fits: all 2 sealed objects" in done.stdout  # the photo, the record
    # A second restore over live data is refused without --replace.
    again = _takedown(backend, "db", "restore", str(backup_dir))
    assert again.returncode == 2 and "--replace" in again.stderr, again.stderr

    done = _takedown(backend, "audit", "verify")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "intact" in done.stdout

    package = tmp_path / "evidence.zip"
    done = _takedown(
        backend, "evidence", "export", evidence_id, "--purpose", WHY, "-o", str(package)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    with zipfile.ZipFile(package) as z:
        media = [n for n in z.namelist() if n.startswith("media/")]
        assert [hashlib.sha256(z.read(n)).hexdigest() for n in media] == [
            hashlib.sha256(PHOTO).hexdigest()
        ]
        assert "acc-1" in z.read("context.json").decode()


def test_the_drill_script_restores_into_a_scratch_database(backend: dict[str, str], tmp_path: Path):
    """scripts/backup-drill leaves the live database alone: it restores into a scratch
    one with the off-site key, and fails when that key is not the database's."""
    _populate(backend)
    offsite = tmp_path / "offsite.key"
    shutil.copy2(Path(backend["TAKEDOWN_DATA_DIR"]) / "master.key", offsite)
    scratch: list[str] = []
    if "PGDB" in backend:
        name = backend["PGDB"] + "_drill"
        with _admin().connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = backend["TAKEDOWN_DATABASE_URL"].rsplit("/", 1)[0] + "/" + name
        scratch = ["--scratch-database-url", url]
    try:
        done = _drill(backend, "--key-file", str(offsite), *scratch)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "backup drill passed" in done.stdout
        assert "audit log intact" in done.stdout
        wrong = write_key_file(tmp_path / "wrong.key")  # a key that is not the database's
        if "PGDB" in backend:
            with _admin().connect() as conn:
                conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        done = _drill(backend, "--key-file", str(wrong), *scratch)
        assert done.returncode != 0 and "backup drill passed" not in done.stdout
        assert "key" in done.stderr.lower(), done.stderr
    finally:
        if "PGDB" in backend:
            with _admin().connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _drill(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    script = Path(__file__).parents[2] / "scripts" / "backup-drill"
    return subprocess.run(
        [str(script), *args],
        env={
            **os.environ,
            **{k: v for k, v in env.items() if k.startswith("TAKEDOWN_")},
            # This interpreter's `takedown` (the sources on PYTHONPATH first).
            "TAKEDOWN_BIN": str(Path(sys.executable).parent / "takedown"),
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_damaged_backup_is_refused(backend: dict[str, str], tmp_path: Path):
    backup_dir = tmp_path / "backup"
    assert _takedown(backend, "db", "backup", str(backup_dir)).returncode == 0
    dump = next(p for p in backup_dir.iterdir() if p.name.startswith("database."))
    with dump.open("r+b") as fh:
        fh.seek(dump.stat().st_size // 2)
        fh.write(b"\0damaged\0")
    done = _takedown(backend, "db", "restore", "--replace", str(backup_dir))
    assert done.returncode == 2 and "SHA-256" in done.stderr, done.stderr
