"""The server and every command use the same database, data directory and master key,
wherever they run: settings from a config file and the environment (never the current
directory), no database nor master key made by accident, a key the database was not used
with refused before it seals or signs anything, and `takedown status` saying what is in
use."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from takedown.cli import app
from takedown.config import Settings, default_data_dir
from takedown.errors import ConfigError
from takedown.runtime import open_runtime
from takedown.store.blobs import KeyConfigError, Keyring, fingerprint, new_key_text
from takedown.store.db import make_engine
from tests.conftest import _truncate_all, write_key_file
from tests.test_migrations import HEAD

runner = CliRunner()


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Commands run from a directory that has nothing to do with Takedown."""
    place = tmp_path / "elsewhere"
    place.mkdir()
    monkeypatch.chdir(place)
    for name in list(os.environ):
        if name.upper().startswith("TAKEDOWN_"):
            monkeypatch.delenv(name)
    return place


@pytest.fixture
def pg_url(postgres_url: str) -> str:
    _truncate_all(postgres_url)
    return postgres_url


def _fingerprint_of(key_file: Path) -> str:
    return fingerprint(Keyring.from_lines(key_file.read_text().splitlines(), "test").current)


def _invoke(*args: str) -> tuple[int, str]:
    """Exit code, and what the terminal shows (stdout and stderr) with runs of spaces
    made one (the status table's alignment is not what is tested)."""
    result = runner.invoke(app, list(args))
    return result.exit_code, re.sub(r" +", " ", result.output)


# -- where settings come from ----------------------------------------------------------------
def test_the_default_data_directory_does_not_depend_on_the_current_one(elsewhere: Path):
    settings = Settings()
    assert settings.data_dir == default_data_dir()
    assert settings.data_dir.is_absolute() and elsewhere not in settings.data_dir.parents
    assert settings.resolved_database_url == f"sqlite:///{default_data_dir()}/takedown.sqlite3"


def test_a_toml_config_file_paths_relative_to_it_and_the_environment_above_it(
    elsewhere: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    etc = tmp_path / "etc"
    etc.mkdir()
    config = etc / "takedown.toml"
    config.write_text(
        'data_dir = "../var/takedown"\n'
        'master_key_file = "keys/master.key"\n'
        'database_url = "sqlite:///db/takedown.sqlite3"\n'
        "port = 9001\n"
    )
    monkeypatch.setenv("TAKEDOWN_CONFIG", str(config))
    monkeypatch.setenv("TAKEDOWN_PORT", "9002")
    settings = Settings()
    assert settings.data_dir == tmp_path / "var/takedown"
    assert settings.master_key_file == etc / "keys/master.key"
    assert settings.database_url == f"sqlite:///{etc}/db/takedown.sqlite3"
    assert settings.port == 9002 and settings.origin("port") == "TAKEDOWN_PORT"
    assert settings.origin("data_dir") == f"config file {config}"
    # A command-line --data-dir wins over both.
    assert Settings(data_dir=Path("here")).data_dir == elsewhere / "here"


def test_an_environment_file_as_config(elsewhere: Path, tmp_path: Path):
    config = tmp_path / "takedown.env"
    config.write_text(
        "# as systemd's EnvironmentFile reads it\n"
        "TAKEDOWN_DATA_DIR=data\n"
        "export TAKEDOWN_ACCESS_LOG=false\n"
        "PYTHONUNBUFFERED=1\n"
    )
    settings = Settings(config=config)
    assert settings.data_dir == tmp_path / "data" and settings.access_log is False


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("t.toml", 'datadir = "/x"\n', "datadir, which is not a setting. Did you mean data_dir"),
        ("t.env", "TAKEDOWN_DATABASE_ULR=x\n", "Did you mean TAKEDOWN_DATABASE_URL?"),
        ("t.toml", "port = \n", "is not valid TOML"),
        ("t.toml", "[server]\nport = 1\n", "has a table [server]"),
        ("missing.toml", None, "Cannot read the config file"),
    ],
)
def test_config_file_mistakes_are_named(
    elsewhere: Path, tmp_path: Path, name: str, content: str | None, message: str
):
    config = tmp_path / name
    if content is not None:
        config.write_text(content)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("?", r"\?")):
        Settings(config=config)
    code, output = _invoke("--config", str(config), "status")
    assert code == 2 and message.split(".")[0][:20] in output


@pytest.mark.parametrize(
    "variable,value",
    [
        ("TAKEDOWN_DATA_DIR", "takedown-data"),
        ("TAKEDOWN_CONFIG", "takedown.toml"),
        ("TAKEDOWN_MASTER_KEY_FILE", "master.key"),
        ("TAKEDOWN_DATABASE_URL", "sqlite:///takedown.sqlite3"),
    ],
)
def test_relative_paths_in_the_environment_are_refused(
    elsewhere: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
):
    monkeypatch.setenv(variable, value)
    code, output = _invoke("bank", "list")
    assert code == 2 and variable in output and "absolute" in output
    assert list(elsewhere.iterdir()) == []


# -- settings checked at start -----------------------------------------------------------------
def _start(command: list[str], settings: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`takedown <command>` in a process of its own with these settings (and no other
    TAKEDOWN_ variable): a command that wrongly starts is stopped by the timeout."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TAKEDOWN_")}
    return subprocess.run(
        [sys.executable, "-m", "takedown.cli", *command],
        env=env | settings,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_serve_with_a_short_webhook_secret_fails_at_start_with_one_line(
    elsewhere: Path, tmp_path: Path
):
    """The report: the server started, then every worker died in its lifespan with a
    traceback. Now the setting is named in one line, exit code 2, nothing created."""
    data = tmp_path / "data"
    done = _start(
        ["serve", "--port", "0", "--workers", "2"],
        {
            "TAKEDOWN_DATA_DIR": str(data),
            "TAKEDOWN_WEBHOOK_URL": "http://127.0.0.1:9/hook",
            "TAKEDOWN_WEBHOOK_SECRET": "too short",
        },
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "TAKEDOWN_WEBHOOK_SECRET" in lines[0] and "at least 16" in lines[0]
    assert "too short" not in lines[0]  # never the secret itself
    assert not data.exists()


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["worker"]])
def test_missing_or_unreadable_secrets_are_named_at_start(
    elsewhere: Path, tmp_path: Path, command: list[str]
):
    data, missing, secret = tmp_path / "data", tmp_path / "no-such-file", tmp_path / "secret"
    secret.write_text("0123456789abcdef\n")
    webhooks = {"TAKEDOWN_DATA_DIR": str(data), "TAKEDOWN_WEBHOOK_URL": "http://127.0.0.1:9/h"}
    for settings, expected in [
        (webhooks, "there is no webhook secret: set TAKEDOWN_WEBHOOK_SECRET or"),
        (
            webhooks | {"TAKEDOWN_WEBHOOK_SECRET_FILE": str(missing)},
            f"TAKEDOWN_WEBHOOK_SECRET_FILE={missing} cannot be read",
        ),
        (
            webhooks
            | {"TAKEDOWN_WEBHOOK_SECRET_FILE": str(secret)}
            | {"TAKEDOWN_NCMEC_PASSWORD_FILE": str(missing)},
            f"TAKEDOWN_NCMEC_PASSWORD_FILE={missing} cannot be read",
        ),
    ]:
        done = _start(command, settings)
        assert done.returncode == 2 and expected in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not data.exists()


# -- nothing made by accident -------------------------------------------------------------------
def test_a_command_never_creates_a_database(elsewhere: Path, tmp_path: Path):
    code, output = _invoke("--data-dir", str(tmp_path / "new"), "bank", "list")
    assert code == 2 and "No Takedown database at" in output and "takedown db upgrade" in output
    assert not (tmp_path / "new").exists()  # no directory, database nor key made
    code, output = _invoke("--data-dir", str(tmp_path / "new"), "db", "upgrade")
    assert code == 0 and "at revision" in output
    code, output = _invoke("--data-dir", str(tmp_path / "new"), "bank", "create", "own")
    assert code == 0, output
    key = tmp_path / "new" / "master.key"  # the embedded database's key, made at first use
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert list(elsewhere.iterdir()) == []


def test_the_old_default_directory_is_named_not_replaced(elsewhere: Path):
    """`./takedown-data` was the default data directory; after an upgrade a server started
    there must not begin again with an empty database elsewhere."""
    old = elsewhere / "takedown-data"
    old.mkdir()
    (old / "takedown.sqlite3").write_bytes(b"")
    for args in (["bank", "list"], ["db", "upgrade"]):
        code, output = _invoke(*args)
        assert code == 2 and str(old) in output and "--data-dir" in output
    assert not default_data_dir().exists()


def test_postgresql_without_a_key_is_refused_and_no_key_is_made(
    elsewhere: Path, tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
):
    data = tmp_path / "data-of-this-shell"
    monkeypatch.setenv("TAKEDOWN_DATABASE_URL", pg_url)
    monkeypatch.setenv("TAKEDOWN_DATA_DIR", str(data))
    for args in (["user", "list"], ["audit", "verify"], ["serve"]):
        code, output = _invoke(*args)
        assert code == 2, output
        assert "No master key for the database" in output
        assert "TAKEDOWN_MASTER_KEY_FILE" in output and "never for a server database" in output
    assert not (data / "master.key").exists() and list(elsewhere.iterdir()) == []
    code, output = _invoke("status")
    assert code == 1 and "master key:" in output and "TAKEDOWN_MASTER_KEY_FILE" in output


# -- one key per database ---------------------------------------------------------------------
def test_a_command_with_another_key_is_refused_instead_of_forking_the_audit_log(
    elsewhere: Path, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
):
    """The report: the CLI signed audit events with another key than the server's, and
    `takedown audit verify` then said "Event 4 was altered"."""
    server_key = tmp_path / "data" / "master.key"  # the server's (made, or the fixture's)
    rt = open_runtime(Settings(database_url=database_url, data_dir=tmp_path / "data"))
    rt.banks.create_bank("own", actor="server")
    rt.close()
    other = write_key_file(tmp_path / "other" / "master.key")
    monkeypatch.setenv("TAKEDOWN_DATABASE_URL", database_url)
    monkeypatch.setenv("TAKEDOWN_MASTER_KEY_FILE", str(other))
    code, output = _invoke("bank", "create", "from-cli")
    assert code == 2
    assert f"fingerprint {_fingerprint_of(other)}" in output
    assert _fingerprint_of(server_key) in output and "not one the database" in output
    code, output = _invoke("status")
    assert code == 1 and "NOT this database's" in output
    monkeypatch.setenv("TAKEDOWN_MASTER_KEY_FILE", str(server_key))
    code, output = _invoke("bank", "create", "from-cli")
    assert code == 0, output
    code, output = _invoke("audit", "verify")
    assert code == 0 and "audit log intact" in output


def test_a_rotated_key_file_is_accepted_and_its_new_key_recorded(
    elsewhere: Path, tmp_path: Path, database_url: str
):
    data = tmp_path / "data"
    rt = open_runtime(Settings(database_url=database_url, data_dir=data))
    rt.banks.create_bank("own", actor="t")
    rt.close()
    old = (data / "master.key").read_text().strip()
    new = new_key_text()
    rotated = tmp_path / "rotated.key"
    rotated.write_text(f"{new}\n{old}\n")
    settings = Settings(database_url=database_url, data_dir=data, master_key_file=rotated)
    rt = open_runtime(settings)
    try:
        rt.banks.create_bank("after-rotation", actor="t")
        assert rt.audit.verify().ok
    finally:
        rt.close()
    # Only the new key now: the database knows it too (old objects would need the old).
    rt = open_runtime(settings.model_copy(update={"master_key_file": None, "master_key": new}))
    rt.close()


def test_a_database_from_before_recorded_keys_adopts_only_the_key_of_its_audit_log(
    tmp_path: Path, database_url: str
):
    data = tmp_path / "data"
    rt = open_runtime(Settings(database_url=database_url, data_dir=data))
    rt.banks.create_bank("own", actor="t")
    rt.close()
    engine = make_engine(database_url)
    with engine.begin() as conn:  # as migration 0015 leaves a database without blobs
        conn.execute(text("DELETE FROM master_key_fingerprints"))
    engine.dispose()
    other = Settings(database_url=database_url, data_dir=data, master_key=new_key_text())
    with pytest.raises(KeyConfigError, match="did not sign the newest event"):
        open_runtime(other)
    rt = open_runtime(Settings(database_url=database_url, data_dir=data))
    rt.close()
    with pytest.raises(KeyConfigError, match="not one the database"):
        open_runtime(other)  # recorded now


def test_an_embedded_database_that_lost_its_key_file_gets_no_new_one(
    tmp_path: Path, database_url: str
):
    data = tmp_path / "data"
    rt = open_runtime(Settings(database_url=database_url, data_dir=data))
    rt.banks.create_bank("own", actor="t")
    rt.close()
    (data / "master.key").rename(tmp_path / "moved.key")
    with pytest.raises(KeyConfigError, match="No master key"):
        open_runtime(Settings(database_url=database_url, data_dir=data))
    assert not (data / "master.key").exists()


def test_key_new_writes_a_private_key_file(elsewhere: Path, tmp_path: Path):
    target = tmp_path / "master.key"
    code, output = _invoke("key", "new", "-o", str(target))
    assert code == 0 and str(target) in output
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert len(Keyring.from_lines(target.read_text().splitlines(), "t").current) == 32
    code, output = _invoke("key", "new", "-o", str(target))
    assert code == 2 and "cannot create" in output  # never overwrites a key
    code, output = _invoke("key", "new")
    assert code == 0 and len(output.strip()) == 44


# -- status, and the server agrees ---------------------------------------------------------------
def test_status_says_what_is_in_use_and_hides_the_password(
    elsewhere: Path, tmp_path: Path, pg_url: str
):
    key = write_key_file(tmp_path / "secrets" / "master.key")
    with_password = pg_url.replace("postgres@", "postgres:hunter2@")  # trust auth ignores it
    config = tmp_path / "takedown.toml"
    config.write_text(
        f'database_url = "{with_password}"\n'
        'data_dir = "data"\n'
        'master_key_file = "secrets/master.key"\n'
    )
    code, output = _invoke("--config", str(config), "status")
    assert code == 0, output
    assert "hunter2" not in output and "postgres:***@" in output
    assert f"config file: {config} (--config)" in output
    assert f"data directory: {tmp_path / 'data'} (config file {config})" in output
    assert f"{key} (fingerprint {_fingerprint_of(key)})" in output
    assert f"schema: {HEAD} (current)" in output and "banks: 0," in output


def _wait_for(url: str, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 300  # a server starting on a loaded machine
    while True:
        assert server.poll() is None, server.stderr.read() if server.stderr else ""
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.2)


@pytest.fixture
def shared_config(tmp_path: Path, database_url: str) -> Path:
    """The operator's config file: the database and the key file, relative to it."""
    etc = tmp_path / "etc"
    etc.mkdir()
    write_key_file(etc / "master.key")
    config = etc / "takedown.toml"
    config.write_text(
        f'database_url = "{database_url}"\n'
        'data_dir = "../var"\n'
        'master_key_file = "master.key"\n'
        "access_log = false\n"
        "index_snapshot_rows = 0\n"
    )
    return config


@pytest.fixture
def server(shared_config: Path, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`takedown --config FILE serve --workers 2`, started from yet another directory."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    (tmp_path / "server-cwd").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TAKEDOWN_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "takedown.cli", "--config", str(shared_config), "serve"]
        + ["--workers", "2", "--port", str(port)],
        env=env,
        cwd=tmp_path / "server-cwd",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/v1/health", proc)
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.terminate()
        proc.wait(60)


def test_the_server_and_the_cli_agree_and_the_audit_log_verifies(
    elsewhere: Path,
    tmp_path: Path,
    shared_config: Path,
    server: tuple[str, subprocess.Popen[str]],
    monkeypatch: pytest.MonkeyPatch,
):
    base, proc = server
    monkeypatch.setenv("TAKEDOWN_CONFIG", str(shared_config))
    created = runner.invoke(app, ["apikey", "create", "ops", "--scope", "admin"])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    auth = {"Authorization": f"Bearer {key}"}
    for name in ("from-api-1", "from-api-2"):  # each worker may take one
        r = httpx.post(f"{base}/v1/banks", headers=auth, json={"name": name}, timeout=120)
        assert r.status_code == 201, r.text
    assert _invoke("bank", "create", "from-cli")[0] == 0
    r = httpx.post(f"{base}/v1/banks", headers=auth, json={"name": "from-api-3"}, timeout=120)
    assert r.status_code == 201, r.text
    code, output = _invoke("audit", "verify")
    assert code == 0 and "audit log intact" in output, output
    code, status = _invoke("status")
    assert code == 0 and "banks: 4," in status, status
    assert list(elsewhere.iterdir()) == [] and list((tmp_path / "server-cwd").iterdir()) == []
    proc.terminate()
    proc.wait(60)
    log = proc.stderr.read() if proc.stderr else ""
    fp = _fingerprint_of(shared_config.parent / "master.key")
    # The server said at start what `takedown status` says, and every worker agreed.
    assert f"data directory: {tmp_path / 'var'} (config file {shared_config})" in log
    assert f"{shared_config.parent / 'master.key'} (fingerprint {fp}" in log
    assert f"data directory: {tmp_path / 'var'}" in status
    assert log.count(f"(fingerprint {fp})") >= 3, log  # the supervisor, then each worker
