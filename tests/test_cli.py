"""The `takedown` command, end to end on a real database."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from takedown.cli import app
from tests.conftest import standin_path

runner = CliRunner()


@pytest.fixture
def cli_env(database_url: str, tmp_path, monkeypatch):
    monkeypatch.setenv("TAKEDOWN_DATABASE_URL", database_url)
    monkeypatch.setenv("TAKEDOWN_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def test_hash_prints_one_json_object_per_file(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    result = runner.invoke(app, ["hash", str(standin_path("coffee.png")), str(bad)])
    assert result.exit_code == 2
    good, refused = [json.loads(line) for line in result.stdout.splitlines()]
    assert good["file"].endswith("coffee.png") and len(good["pdq"]["hash"]) == 64
    assert len(good["pdq"]["dihedral"]) == 8 and len(good["md5"]) == 32
    assert refused["error"]["code"] == "media_unsupported_type"


def test_bank_lifecycle_from_the_cli(cli_env):
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    r = runner.invoke(app, ["bank", "create", "own", "--action", "block"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app, ["bank", "add-media", "own", str(standin_path("chelsea.png")), "--source-id", "case-9"]
    )
    assert r.exit_code == 0 and "added 3" in r.stdout
    lst = cli_env / "list.csv"
    lst.write_text("signal_type,signal\npdq," + "a" * 64 + "\nmd5,zz\npdq," + "b" * 64 + "\n")
    r = runner.invoke(app, ["bank", "import", "own", str(lst)])
    assert r.exit_code == 2 and "line 3" in r.output and "nothing imported" in r.output
    assert "--skip-invalid" in r.output  # the flag this command takes, not the API's field
    r = runner.invoke(app, ["bank", "import", "own", str(lst), "--skip-invalid"])
    assert r.exit_code == 0 and "added 2" in r.stdout and "line 3" in r.stdout
    out = cli_env / "export.csv"
    r = runner.invoke(app, ["bank", "export", "own", "--format", "csv", "-o", str(out)])
    assert r.exit_code == 0 and out.read_text().count("\n") == 5
    r = runner.invoke(app, ["screen", str(standin_path("chelsea.png"))])
    assert json.loads(r.stdout)["verdict"] == "block"
    r = runner.invoke(app, ["bank", "disable", "own", "--reason", "test"])
    assert r.exit_code == 0
    r = runner.invoke(app, ["screen", str(standin_path("chelsea.png"))])
    assert json.loads(r.stdout)["verdict"] == "allow"
    r = runner.invoke(app, ["bank", "list"])
    assert "own" in r.stdout


def test_a_false_positive_banked_by_media_is_disabled_on_every_signal(cli_env):
    """`entry disable` with the id of one signal of a banked file disables them all;
    `bank disable-media` takes the file itself; `--only-this` one entry."""
    from takedown.config import Settings
    from takedown.runtime import open_runtime

    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    assert runner.invoke(app, ["bank", "create", "own", "--action", "block"]).exit_code == 0
    image = standin_path("coffee.png")
    assert runner.invoke(app, ["bank", "add-media", "own", str(image)]).exit_code == 0
    rt = open_runtime(Settings(), migrate=False)
    try:
        entries, _ = rt.banks.list_entries("own")
    finally:
        rt.close()
    pdq = next(e.id for e in entries if e.signal_type == "pdq")

    def verdict() -> str:
        return json.loads(runner.invoke(app, ["screen", str(image)]).stdout)["verdict"]

    assert verdict() == "block"
    r = runner.invoke(app, ["entry", "disable", pdq, "--reason", "false positive: a cup"])
    assert r.exit_code == 0, r.output
    assert r.stdout.count("disabled entry") == 3 and "same file" in r.stdout
    assert verdict() == "allow"
    r = runner.invoke(app, ["bank", "enable-media", "own", str(image)])
    assert r.exit_code == 0 and "enabled 3 of the file's 3 entries" in r.stdout
    assert verdict() == "block"
    r = runner.invoke(app, ["entry", "disable", pdq, "--reason", "fp", "--only-this"])
    assert r.exit_code == 0 and r.stdout.count("disabled entry") == 1
    assert verdict() == "block"  # MD5 and SHA-256 still match
    r = runner.invoke(app, ["bank", "disable-media", "own", str(image), "--reason", "fp"])
    assert r.exit_code == 0 and "disabled 2 of the file's 3 entries" in r.stdout
    assert verdict() == "allow"
    r = runner.invoke(app, ["bank", "disable-media", "own", "--reason", "fp"])
    assert r.exit_code == 2 and "--sha256" in r.output
    r = runner.invoke(
        app, ["bank", "disable-media", "own", str(standin_path("camera.png")), "--reason", "fp"]
    )
    assert r.exit_code == 2 and "media_not_in_bank" in r.output


def test_cli_errors_are_codes_and_sentences(cli_env):
    r = runner.invoke(app, ["bank", "create", "Bad Name"])
    assert r.exit_code == 2 and "invalid_bank_name" in r.output
    r = runner.invoke(app, ["bank", "show", "missing"])
    assert r.exit_code == 2 and "bank_not_found" in r.output


def test_bank_settings_per_signal_type_from_the_cli(cli_env):
    r = runner.invoke(app, ["bank", "create", "vid", "--setting", "vpdq:match_percent=60"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app,
        [
            "bank",
            "update",
            "vid",
            "--setting",
            "vpdq:threshold=20",
            "--setting",
            "pdq:quality_floor=70",
        ],
    )
    assert r.exit_code == 0, r.output
    shown = json.loads(runner.invoke(app, ["bank", "show", "vid"]).stdout)
    # Per type: the PDQ floor set here is not the video frames' (the API's
    # pdq_quality_floor shorthand sets both, as it always has).
    assert shown["signal_settings"]["vpdq"] == {
        "matchable": True,
        "threshold": 20,
        "quality_floor": 50,
        "match_percent": 60,
    }
    assert shown["signal_settings"]["photodna"] == {"matchable": False}
    assert (shown["video_frame_threshold"], shown["pdq_quality_floor"]) == (20, 70)
    r = runner.invoke(app, ["bank", "update", "vid", "--setting", "pdq-threshold=3"])
    assert r.exit_code == 2 and "TYPE:FIELD=N" in r.output
    r = runner.invoke(app, ["bank", "update", "vid", "--setting", "photodna:threshold=3"])
    assert r.exit_code == 2 and "signal_not_matchable" in r.output


def test_apikey_create_list_revoke(cli_env):
    r = runner.invoke(app, ["apikey", "create", "platform", "--scope", "screen"])
    assert r.exit_code == 0
    secret = r.stdout.strip().splitlines()[-1]
    assert secret.startswith("tdk_")
    r = runner.invoke(app, ["apikey", "list"])
    assert "platform" in r.stdout and secret not in r.stdout
    r = runner.invoke(app, ["apikey", "create", "x", "--scope", "everything"])
    assert r.exit_code == 2 and "invalid_scope" in r.output


def test_apikey_create_help_lists_every_scope():
    from takedown.domain.access import SCOPE_PERMISSIONS
    from takedown.domain.scopes import SCOPES

    # The help's list (domain/scopes.py, light to import) names the scopes that exist.
    assert tuple(SCOPE_PERMISSIONS) == SCOPES
    r = runner.invoke(app, ["apikey", "create", "--help"], env={"COLUMNS": "400"})
    assert r.exit_code == 0
    assert "platform" in SCOPE_PERMISSIONS
    for scope in SCOPE_PERMISSIONS:
        assert scope in r.output, scope


def test_every_command_that_takes_a_video_says_so_in_its_help():
    """Issue #24: `bank add-media` took videos while its help said images."""
    for command in (
        ["hash"],
        ["screen"],
        ["bank", "add-media"],
        ["bank", "disable-media"],
        ["bank", "enable-media"],
    ):
        r = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "400"})
        assert r.exit_code == 0 and "video" in r.output.lower(), command
    # The one-line help of `takedown bank --help` too, not only the full text.
    listing = runner.invoke(app, ["bank", "--help"], env={"COLUMNS": "400"}).output
    [line] = [x for x in listing.splitlines() if "add-media" in x]
    assert "video" in line


def test_cli_apikey_errors(cli_env):
    r = runner.invoke(app, ["apikey", "create", " ", "--scope", "screen"])
    assert r.exit_code == 2 and "invalid_name" in r.output
    r = runner.invoke(app, ["apikey", "revoke", "01NOSUCHKEY"])
    assert r.exit_code == 2 and "api_key_not_found" in r.output


def test_user_create_and_list(cli_env, tmp_path, monkeypatch):
    pw = tmp_path / "pw"
    pw.write_text("a long enough password\n")
    r = runner.invoke(
        app, ["user", "create", "Admin", "--role", "admin", "--password-file", str(pw)]
    )
    assert r.exit_code == 0 and "admin" in r.stdout
    monkeypatch.setenv("TAKEDOWN_NEW_PASSWORD", "another long password")
    r = runner.invoke(app, ["user", "create", "mod", "--role", "moderator"])
    assert r.exit_code == 0
    r = runner.invoke(app, ["user", "create", "x", "--role", "boss"])
    assert r.exit_code == 2 and "invalid_username" in r.output or "invalid_role" in r.output
    r = runner.invoke(app, ["user", "list"])
    assert "admin" in r.stdout and "mod" in r.stdout


def test_outbox_commands_and_worker_without_config(cli_env):
    r = runner.invoke(app, ["outbox", "list"])
    assert r.exit_code == 0
    r = runner.invoke(app, ["outbox", "list", "--state", "lost"])
    assert r.exit_code == 2 and "invalid_state" in r.output
    r = runner.invoke(app, ["outbox", "redeliver", "01NOSUCH"])
    assert r.exit_code == 2 and "outbox_not_found" in r.output
    # Without mail or webhooks a worker still runs retroactive scans (here: none due).
    r = runner.invoke(app, ["worker", "--once"])
    assert r.exit_code == 0 and "0 retroactive scan(s) run" in r.output


def test_the_cli_runs_as_a_module_too(tmp_path):
    """`python -m takedown.cli` (how the benchmarks start servers) loads every command
    group without a circular import."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "TAKEDOWN_DATA_DIR": str(tmp_path)}
    r = subprocess.run(
        [sys.executable, "-m", "takedown.cli", "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "at revision" in r.stdout


def test_list_commands_never_cut_ids_and_speak_json(cli_env, monkeypatch):
    """On a narrow terminal (or a pipe) every id a later command takes stays whole, and
    `--json` gives every field of every row."""
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    monkeypatch.setenv("TAKEDOWN_NEW_PASSWORD", "a long enough password")
    assert (
        runner.invoke(app, ["user", "create", "a-reviewer", "--role", "moderator"]).exit_code == 0
    )
    names = [f"platform-upload-service-{i}-with-a-long-name" for i in range(3)]
    for name in names:
        assert runner.invoke(app, ["apikey", "create", name, "--scope", "screen"]).exit_code == 0
    assert runner.invoke(app, ["bank", "create", "a-bank-with-a-rather-long-name"]).exit_code == 0
    narrow = {"COLUMNS": "40"}
    for command, key in (
        (["apikey", "list"], "id"),
        (["user", "list"], "id"),
        (["bank", "list"], "name"),
        (["outbox", "list"], "id"),
    ):
        r = runner.invoke(app, [*command, "--json"], env=narrow)
        assert r.exit_code == 0, (command, r.output)
        rows = [json.loads(line) for line in r.stdout.splitlines()]
        table = runner.invoke(app, command, env=narrow)
        assert table.exit_code == 0
        assert rows or command[0] == "outbox"  # no action was taken: an empty list
        for row in rows:
            assert row[key] in table.stdout, (command, row[key])
    keys = [
        json.loads(line)
        for line in runner.invoke(app, ["apikey", "list", "--json"]).stdout.splitlines()
    ]
    assert sorted(k["name"] for k in keys) == names
    assert all(set(k) >= {"id", "name", "prefix", "scopes", "created_at"} for k in keys)
    assert not any("secret" in k or "hash" in k for k in keys)


def test_hash_prints_a_videos_frame_hashes_as_vpdq_does(tmp_path):
    from tests.media.videos import make_video

    clip = tmp_path / "clip.mp4"  # a stand-in video: 2 s over two stand-in photos
    clip.write_bytes(make_video(("astronaut", "coffee"), 1.0, fps=10, size=(160, 120)))
    result = runner.invoke(app, ["hash", str(clip)])
    assert result.exit_code == 0, result.output
    header, *frames = result.stdout.splitlines()
    assert header.startswith(f"# {clip} md5=")
    numbers = []
    for line in frames:  # vpdq's hash-file form: frame_number,quality,pdq,timestamp
        number, quality, pdq, timestamp = line.split(",")
        assert len(pdq) == 64 and 0 <= int(quality) <= 100
        assert float(timestamp) == pytest.approx(int(number) / 10)
        numbers.append(int(number))
    assert numbers and numbers[0] == 0 and all(n % 10 == 0 for n in numbers)
    result = runner.invoke(app, ["hash", "--json", str(clip)])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["media_type"] == "video" and len(record["md5"]) == 32
    assert [f["frame_number"] for f in record["frames"]] == numbers
