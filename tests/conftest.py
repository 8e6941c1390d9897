"""Shared fixtures: a real database on both backends, the real app, stand-in images.

Every test that takes ``rt`` or ``client`` runs twice: on SQLite (the embedded default)
and on PostgreSQL (production). Without a PostgreSQL server the PostgreSQL half is
skipped with the reason, unless TAKEDOWN_REQUIRE_POSTGRES=1 (as in CI), where it fails.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from takedown.config import Settings
from takedown.runtime import Runtime, open_runtime
from takedown.store.db import make_engine, upgrade
from takedown.store.models import Base

PG_ADMIN_URL = os.environ.get(
    "TAKEDOWN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_PG = os.environ.get("TAKEDOWN_REQUIRE_POSTGRES") == "1"

# -- test modules one xdist worker runs whole ----------------------------------------
# Their servers (a homeserver, a Spark session) start once, on one worker; scripts/test
# runs `--dist loadgroup`. pytest-xdist 3.8 marks a group by rewriting ``item._nodeid``,
# which pytest 9 no longer reads: the groups silently fell apart, and both workers
# started each module's servers. The scheduler below groups by module instead; each
# module's ``xdist_group`` mark must name the same group (checked at collection).
XDIST_GROUPS = {
    "tests/connectors/test_synapse.py": "synapse",
    "tests/connectors/test_mastodon.py": "mastodon",
    "tests/services/test_retroscan_spark.py": "spark",
}


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class ModuleGroups(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            group = XDIST_GROUPS.get(nodeid.split("::", 1)[0])
            return "@" + group if group else super()._split_scope(nodeid)

    return ModuleGroups(config, log)


# The longest single tests (one to two minutes each on the loaded machine), handed out
# first under xdist: a worker that began one when the rest of the suite was nearly done
# would run on alone for that long. Listed by module, in the order they are handed out.
SLOW_FIRST = (
    "tests/test_readme.py",
    "tests/cases/test_mission_case.py",
    "tests/services/test_retroscan_spark.py",
    "tests/ops/test_backup_drill.py",
    "tests/api/test_fuzz_openapi.py",
    "tests/exchanges/test_sharing_processes.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if hasattr(config, "workerinput"):  # an xdist worker: every worker sorts alike
        rank = {module: n for n, module in enumerate(SLOW_FIRST)}
        items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))
    for item in items:
        mark = item.get_closest_marker("xdist_group")
        named = mark.args[0] if mark and mark.args else None
        listed = XDIST_GROUPS.get(item.nodeid.split("::", 1)[0])
        if named != listed:
            raise pytest.UsageError(
                f"{item.nodeid}: xdist_group {named!r}, but tests/conftest.py's "
                f"XDIST_GROUPS says {listed!r}"
            )


# -- databases -----------------------------------------------------------------------
@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating each time is slower)."""
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session, dropped at the end."""
    name = f"takedown_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
            # A commit does not wait for its WAL to reach the disk: what the tests see
            # is the same (transactions, isolation, locks), only a crash of the server
            # could lose the last commits. The tests' commits (thousands, each
            # waiting for an fsync on a busy disk) were most of PostgreSQL's share.
            conn.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit TO off'))
    except Exception as exc:  # noqa: BLE001 - any failure means "no server here"
        message = f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc.__class__.__name__}"
        if REQUIRE_PG:
            pytest.fail(message + " (TAKEDOWN_REQUIRE_POSTGRES=1)")
        pytest.skip(message)
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


_EMPTYING: dict[str, Engine] = {}
_DELETES: dict[str, bool] = {}  # per database: may this role empty tables by DELETE?
_LARGE = 5_000  # rows from which a table is truncated rather than deleted from


def _truncate_all(url: str) -> None:
    """Empty every table and restart every sequence, for the next test.

    Only the tables holding rows are emptied, and a small one by DELETE: TRUNCATE makes
    new files for a table and each of its indexes, which took 0.4 s for the 11 tables
    a report fills on the loaded machine (DELETE: 0.06 s). The append-only triggers
    and the foreign keys are set aside for it (``session_replication_role``, for this
    transaction only: a superuser's right, as the test server's ``postgres`` has; any
    other role truncates). A table of many rows is truncated still. The sequences are
    all restarted, as those of tables emptied by a rollback have moved on too."""
    engine = _EMPTYING.get(url)
    if engine is None:  # one per database, no connection kept between tests
        engine = _EMPTYING[url] = create_engine(url, poolclass=NullPool)
        with engine.connect() as conn:
            _DELETES[url] = bool(
                conn.scalar(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"))
            )
    names = [t.name for t in Base.metadata.sorted_tables]
    probe = " UNION ALL ".join(
        f"SELECT '{name}', EXISTS (SELECT 1 FROM \"{name}\" OFFSET {_LARGE}) "
        f'WHERE EXISTS (SELECT 1 FROM "{name}")'
        for name in names
    )
    with engine.begin() as conn:
        filled = conn.execute(text(probe)).all()
        small = [f'"{name}"' for name, large in filled if not large] if _DELETES[url] else []
        large = [f'"{name}"' for name, _ in filled if f'"{name}"' not in small]
        if small:
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            for name in small:
                conn.execute(text(f"DELETE FROM {name}"))
        if large:
            conn.execute(text(f"TRUNCATE {', '.join(large)} RESTART IDENTITY CASCADE"))
        conn.execute(
            text(
                "SELECT setval(format('%I.%I', schemaname, sequencename), start_value, false) "
                "FROM pg_sequences WHERE schemaname = current_schema()"
            )
        )


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The test's database. SQLite's master key is made in the data directory at first
    use; PostgreSQL never gets one made, so the test's data directory (``tmp_path /
    "data"``, as every test uses) holds one, as an operator would put it there."""
    if request.param == "sqlite":
        path = tmp_path / "takedown.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_url")
    _truncate_all(url)
    write_key_file(tmp_path / "data" / "master.key")
    return url


def write_key_file(path: Path) -> Path:
    """A new master key file (mode 0600), as `takedown key new -o` writes one."""
    from takedown.store.blobs import new_key_text

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new_key_text() + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=database_url, data_dir=tmp_path / "data")


@pytest.fixture
def rt(settings: Settings) -> Iterator[Runtime]:
    runtime = open_runtime(settings, migrate=False)
    yield runtime
    runtime.close()


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    from takedown.api.app import create_app

    with TestClient(create_app(rt), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def admin_key(rt: Runtime) -> str:
    _, secret = rt.api_keys.create("test-admin", ["admin"], actor="test")
    return secret


@pytest.fixture
def auth(admin_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_key}"}


# -- a real server ------------------------------------------------------------------
def start_server(env: dict[str, str], workers: int = 2) -> tuple[subprocess.Popen[str], int]:
    """`takedown serve --workers N` in a subprocess on a free port (stderr kept for the
    test to read); the caller stops it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = subprocess.Popen(
        [sys.executable, "-m", "takedown.cli", "serve", "--workers", str(workers)]
        + ["--port", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return server, port


# -- stand-in images -----------------------------------------------------------------
def standin_path(name: str) -> Path:
    """A benign photo shipped inside the scikit-image wheel (a stand-in, never real
    material)."""
    import skimage

    return Path(skimage.__file__).parent / "data" / name


def standin_bytes(name: str) -> bytes:
    return standin_path(name).read_bytes()


def encode(img: Image.Image | np.ndarray, fmt: str = "PNG", **kw: object) -> bytes:
    if isinstance(img, np.ndarray):
        img = Image.fromarray(np.ascontiguousarray(img))
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def standin_rgb(name: str) -> np.ndarray:
    return np.asarray(Image.open(standin_path(name)).convert("RGB"))


@pytest.fixture(autouse=True)
def _own_default_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """The default data directory (``$XDG_DATA_HOME/takedown``) of a test that names none
    is its own, never the machine user's."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg")))


@pytest.fixture(autouse=True)
def _light_password_hashing(request: pytest.FixtureRequest, monkeypatch) -> None:
    """Passwords are hashed with argon2id at a light cost in this process: the same
    hasher and code paths, but its production cost (64 MiB, 3 passes, 4 lanes) is 0.4 s
    of CPU for each user a test makes and each sign-in (a second on the loaded machine),
    and hundreds of tests make several. The production cost stays tested: by the tests
    marked ``production_password_hashing`` and by every server and command the tests
    start in another process (the README's users, `takedown serve`)."""
    if request.node.get_closest_marker("production_password_hashing"):
        return
    from argon2 import PasswordHasher

    from takedown.services.identity import users

    light = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(users, "_hasher", light)


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> Iterator[None]:
    """The report rate limit is per process; every test starts with a clean count."""
    from takedown.web import ratelimit

    ratelimit.reset()
    yield
    ratelimit.reset()
