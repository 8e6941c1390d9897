"""`takedown --help` (every command's) and light commands start without loading the
settings, the database, the media code or the web framework (those imports are what
made `takedown --help` take 3.6 s), nor rich, asyncio or the domain's models (a tenth
of a second more), and `takedown --help` without importing the command groups' modules
(cli/main.py builds a group when it is invoked). Checked by which modules a fresh
interpreter holds after running them (the time itself is measured by
bench/cli_start.py)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = (
    "sqlalchemy",
    "pydantic",  # typer 0.29 loads it for every option (hence typer<0.29)
    "pydantic_settings",
    "numpy",
    "numba",
    "PIL",
    "av",
    "cryptography",
    "fastapi",
    "alembic",
    "takedown.config",
    "takedown.runtime",
    "takedown.services",
    "takedown.store.blobs",
    "takedown.media",
    # Imported by the commands that use them, never at start (cli/common.py's consoles
    # make their rich Console at first use).
    "rich",
    "asyncio",
    "takedown.domain.access",
    "takedown.domain.cases",
)

# The modules of the command groups (cli/main.py's GROUPS, but for main itself).
GROUP_MODULES = (
    "takedown.cli.access",
    "takedown.cli.audit",
    "takedown.cli.banks",
    "takedown.cli.clock",
    "takedown.cli.connector",
    "takedown.cli.exchanges",
    "takedown.cli.legal",
    "takedown.cli.outbox",
)

_PROBE = r"""
import io, json, sys
from contextlib import redirect_stdout
import typer
from takedown.cli.main import app

def commands(cmd, path):
    yield path
    if hasattr(cmd, "list_commands"):
        ctx = typer.Context(cmd)
        for name in cmd.list_commands(ctx):
            yield from commands(cmd.get_command(ctx, name), path + [name])

results = {}
root = typer.main.get_command(app)
for path in [[]] + [p for p in commands(root, []) if p]:
    buf = io.StringIO()
    with redirect_stdout(buf):
        try:
            app(path + ["--help"], standalone_mode=False)
        except SystemExit:
            pass
    results[" ".join(path) or "takedown"] = len(buf.getvalue())
print(json.dumps({"helps": results, "heavy": heavy()}))
"""


def _probe(code: str) -> dict:
    roots = tuple(h for h in HEAVY if not h.startswith("takedown"))
    prefixes = tuple(h for h in HEAVY if h.startswith("takedown"))
    header = (
        "import sys\n"
        "def heavy():\n"
        f"    return sorted(m for m in sys.modules if m.split('.')[0] in {roots!r}\n"
        f"                  or m.startswith({prefixes!r}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", header + code],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "100", **_pythonpath()},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _pythonpath() -> dict[str, str]:
    import os

    return {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}


def test_every_help_starts_without_the_heavy_parts():
    found = _probe(_PROBE)
    helps = found["helps"]
    # Every group and command was asked (serve, bank import, legal run…) and answered.
    assert {"takedown", "serve", "bank", "bank import", "legal run", "key new"} <= set(helps)
    assert all(size > 0 for size in helps.values()), helps
    assert found["heavy"] == []


def test_a_new_master_key_is_a_light_command():
    code = r"""
import io, json, sys
from contextlib import redirect_stdout
from takedown.cli.main import app
buf = io.StringIO()
with redirect_stdout(buf):
    try:
        app(["key", "new"], standalone_mode=False)
    except SystemExit:
        pass
groups = sorted(m for m in sys.modules if m.startswith("takedown.cli."))
print(json.dumps({"key": buf.getvalue().strip(), "heavy": heavy(), "cli": groups}))
"""
    found = _probe(code)
    assert len(found["key"]) == 44  # 32 bytes, URL-safe base64
    assert found["heavy"] == []
    assert not set(found["cli"]) & set(GROUP_MODULES), found["cli"]


def test_the_top_help_lists_every_group_without_importing_them():
    code = r"""
import io, json, sys
from contextlib import redirect_stdout
from takedown.cli.main import GROUPS, app
buf = io.StringIO()
with redirect_stdout(buf):
    try:
        app(["--help"], standalone_mode=False)
    except SystemExit:
        pass
groups = sorted(m for m in sys.modules if m.startswith("takedown.cli."))
print(json.dumps({"help": buf.getvalue(), "groups": list(GROUPS), "heavy": heavy(), "cli": groups}))
"""
    found = _probe(code)
    listed = [line.split()[0] for line in found["help"].split("Commands:")[1].splitlines() if line]
    assert found["groups"] and set(found["groups"]) <= set(listed), listed
    assert {"serve", "status", "hash", "screen", "worker", "retroscan", "consume"} <= set(listed)
    assert found["heavy"] == []
    assert not set(found["cli"]) & set(GROUP_MODULES), found["cli"]
