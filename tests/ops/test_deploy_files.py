"""The systemd units shipped in deploy/systemd pass `systemd-analyze verify`: no
unknown or misspelt option (systemd would ignore it silently, hardening included), and
a command that exists."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).parents[2] / "deploy" / "systemd"
INSTALLED = "/opt/takedown/.venv/bin/takedown"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
@pytest.mark.parametrize("unit", ["takedown.service", "takedown-worker.service"])
def test_systemd_unit_verifies(unit: str, tmp_path: Path):
    text = (UNITS / unit).read_text()
    assert INSTALLED in text
    for option in ("User=takedown", "NoNewPrivileges=yes", "ProtectSystem=strict", "Restart="):
        assert option in text
    # The unit as installed here: this test's own `takedown` in place of /opt/takedown's.
    here = Path(sys.executable).parent / "takedown"
    (tmp_path / unit).write_text(text.replace(INSTALLED, str(here)))
    done = subprocess.run(
        ["systemd-analyze", "verify", f"./{unit}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr  # "Unknown key …, ignoring" is a warning
