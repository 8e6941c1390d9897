"""The architecture holds itself: the pure layers import without the heavy libraries.

``takedown.signals`` and ``takedown.domain`` are the rules and the vocabulary: they must
import (every module of them) with Pillow, PyAV and numba unavailable, so that tools,
plug-ins and tests can use them without the media stack. The import contracts between
packages (layers, no cycles) are checked by ``lint-imports`` in the test command.
"""

from __future__ import annotations

import subprocess
import sys

BLOCKED = ("PIL", "av", "numba", "llvmlite")

SCRIPT = f"""
import importlib, importlib.abc, pkgutil, sys

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError(f"{{name}} is blocked in this test")
        return None

sys.meta_path.insert(0, Blocked())
import takedown.signals, takedown.domain
loaded = []
for package in (takedown.signals, takedown.domain):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(info.name)
        loaded.append(info.name)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r})
print(len(loaded), heavy)
"""


def test_domain_and_signals_import_without_pillow_pyav_or_numba():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    count, heavy = done.stdout.split(" ", 1)
    assert int(count) >= 15 and heavy.strip() == "[]"


def test_the_blocker_blocks():
    """The check above would catch a module that needs Pillow."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT.replace("import takedown.signals,", "import PIL, takedown.signals,"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "PIL is blocked" in done.stderr


def test_the_connectors_contract_forbids_every_other_part_of_takedown():
    """Contract `connectors` lists what the connectors may not import by name: a
    package added to Takedown later must be added there too, and a new connector
    module to its sources, or the contract would silently let it through."""
    import pkgutil
    import tomllib
    from pathlib import Path

    import takedown
    import takedown.connectors

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    contracts = tomllib.loads(pyproject.read_text())["tool"]["importlinter"]["contracts"]
    [contract] = [c for c in contracts if c["id"] == "connectors"]
    assert contract["type"] == "forbidden"
    others = {f"takedown.{m.name}" for m in pkgutil.iter_modules(takedown.__path__)} - {
        "takedown.connectors"
    }
    assert others - set(contract["forbidden_modules"]) == set()
    connectors = {
        f"takedown.connectors.{m.name}" for m in pkgutil.iter_modules(takedown.connectors.__path__)
    }
    assert connectors - set(contract["source_modules"]) == set()
