"""The exchange tests' runtime: as an operator who keeps the exchanges' credentials files
in the test's own directory and allows the local protocol servers' host
(TAKEDOWN_EXCHANGE_CREDENTIALS_DIR and TAKEDOWN_EXCHANGE_BASE_URLS), so exchanges can be
added through the API. tests/exchanges/test_api_confinement.py checks the defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from takedown.config import Settings


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        exchange_credentials_dir=tmp_path,
        exchange_base_urls="http://127.0.0.1",
    )
