"""Every error code the code base can return is exercised by some test.

Codes are collected from the source (``code="..."`` arguments, class-level ``code =``
attributes, the framework error table and the enum parser's codes), so a new code
without a test fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "takedown"
TESTS = ROOT / "tests"

# Base classes' codes: only their subclasses are raised.
ABSTRACT = {"bad_request", "media_invalid", "conflict"}
# Codes built from a template in domain/banks.parse_enum ("invalid_" + what).
TEMPLATED = {"invalid_match_action", "invalid_bank_source"}


def _source_codes() -> set[str]:
    codes: set[str] = set(TEMPLATED)
    pattern = re.compile(r'code(?:=| = )"([a-z_]+)"')
    for path in SRC.rglob("*.py"):
        codes.update(pattern.findall(path.read_text()))
    table = (SRC / "api" / "errors.py").read_text()
    codes.update(re.findall(r'\d{3}: "([a-z_]+)"', table))
    codes.add("internal_error")
    return codes - ABSTRACT


def test_every_error_code_is_tested():
    tests_text = "\n".join(
        p.read_text() for p in TESTS.rglob("*.py") if p.name != "test_error_codes.py"
    )
    untested = sorted(c for c in _source_codes() if f'"{c}"' not in tests_text)
    assert untested == [], f"error codes without a test: {untested}"


def test_every_error_code_is_documented():
    doc = (ROOT / "docs" / "api.md").read_text() + (ROOT / "README.md").read_text()
    cli_only = {
        "invalid_scope",
        "invalid_name",
        "api_key_not_found",
        "invalid_limit",
        "invalid_radius",
    }
    undocumented = sorted(c for c in _source_codes() - cli_only if f"`{c}`" not in doc)
    assert undocumented == [], f"error codes missing from docs/api.md: {undocumented}"
