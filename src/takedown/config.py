"""Configuration from the environment (``TAKEDOWN_*``) with safe defaults.

The default is the embedded set-up: SQLite in ``./takedown-data``, authentication on.
Secrets never live in code; API keys are created with ``takedown apikey create``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from takedown.media.limits import ImageLimits


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAKEDOWN_", extra="ignore")

    data_dir: Path = Field(
        default=Path("takedown-data"),
        description="Directory for the embedded SQLite database and local files.",
    )
    database_url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL. Unset: SQLite in the data directory. PostgreSQL: "
            "postgresql+psycopg://user@host:5432/dbname"
        ),
    )
    host: str = Field(default="127.0.0.1", description="Address `takedown serve` binds to.")
    port: int = Field(default=8000, description="Port `takedown serve` listens on.")
    max_upload_bytes: int = Field(
        default=50 * 1024 * 1024, description="Largest media file accepted, in bytes."
    )
    max_import_bytes: int = Field(
        default=512 * 1024 * 1024, description="Largest hash list accepted by the import API."
    )
    max_image_pixels: int = Field(
        default=50_000_000, description="Largest image accepted, in pixels (width × height)."
    )
    default_pdq_threshold: int = Field(
        default=31, ge=0, le=128, description="PDQ Hamming distance for new banks."
    )
    default_pdq_quality_floor: int = Field(
        default=50, ge=0, le=100, description="Lowest PDQ quality used for matching."
    )
    index_sync_interval_ms: int = Field(
        default=0,
        ge=0,
        description=(
            "How often a worker polls the database for bank changes made by other "
            "processes; 0 checks before every query."
        ),
    )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'takedown.sqlite3').resolve()}"

    @property
    def image_limits(self) -> ImageLimits:
        return ImageLimits(max_bytes=self.max_upload_bytes, max_pixels=self.max_image_pixels)
