"""`bash scripts/demo` installs the service's own dependencies only (never the test
extras, a browser or system packages), says what it does, skips the install when
pyproject.toml has not changed, and then starts `takedown serve --demo`.

Run in a copy of the scripts with a stand-in ``.venv``: its ``python`` records pip
calls instead of installing (any other call runs the real interpreter), its
``takedown`` records the arguments it was started with."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "demo", project / "scripts" / "demo")
    shutil.copy(ROOT / "pyproject.toml", project / "pyproject.toml")
    bin_ = project / ".venv" / "bin"
    bin_.mkdir(parents=True)
    calls = tmp_path / "calls"
    (bin_ / "python").write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then\n'
        f'  echo "pip $*" >> {calls}\n'
        '  echo "Collecting fastapi>=0.115 (from takedown==0.1.0)"\n'
        '  echo "Successfully installed takedown-0.1.0"\n'
        "  exit 0\n"
        "fi\n"
        f'exec {sys.executable} "$@"\n'
    )
    (bin_ / "takedown").write_text(f'#!/bin/sh\necho "takedown $*" >> {calls}\n')
    for exe in bin_.iterdir():
        exe.chmod(0o755)
    return project


def _demo(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(project / "scripts" / "demo"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )


def test_the_demo_installs_the_service_once_and_then_only_starts(tmp_path: Path):
    project = _project(tmp_path)
    calls = tmp_path / "calls"
    first = _demo(project, "--port", "8123")
    assert first.returncode == 0, first.stderr
    assert "installing Takedown and the service's dependencies" in first.stderr
    assert "Collecting fastapi" in first.stderr  # pip's progress is shown
    lines = calls.read_text().splitlines()
    assert len(lines) == 2, lines
    pip, serve = lines
    assert pip.endswith("-e .") and "[test]" not in pip  # no test extras
    assert serve == "takedown serve --demo --port 8123"

    calls.unlink()
    again = _demo(project)
    assert again.returncode == 0, again.stderr
    assert "dependencies already installed" in again.stderr
    assert calls.read_text().splitlines() == ["takedown serve --demo"]  # no pip at all

    with (project / "pyproject.toml").open("a") as fh:
        fh.write("\n# a changed dependency list\n")
    calls.unlink()
    changed = _demo(project)
    assert changed.returncode == 0, changed.stderr
    assert [c.split()[0] for c in calls.read_text().splitlines()] == ["pip", "takedown"]


def test_the_demo_needs_no_browser_and_no_system_packages():
    script = (ROOT / "scripts" / "demo").read_text()
    for word in ("apt", "chromium", "playwright", "[test]", "scripts/install", "sudo"):
        assert word not in script, word
