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
    user_token_hours: float = Field(
        default=8, gt=0, description="How long a user's sign-in token is valid."
    )
    decision_target_minor_hours: float = Field(
        default=4, gt=0, description="Decision target for minor-safety cases, in hours."
    )
    decision_target_hours: float = Field(
        default=72, gt=0, description="Decision target for other cases, in hours."
    )
    restrict_first_minor_safety: bool = Field(
        default=True,
        description="Restrict every known copy at once on a minor-safety report.",
    )
    restrict_first_takedown_requests: bool = Field(
        default=True,
        description="Restrict at once on a valid TAKE IT DOWN request (intimate imagery).",
    )
    suspend_on_minor_safety: bool = Field(
        default=True,
        description="Suspend at once an account that posted confirmed minor-safety material.",
    )
    minor_safety_strikes_to_terminate: int = Field(
        default=2,
        ge=1,
        description="Confirmed minor-safety violations at which an account is terminated.",
    )
    ncii_strikes_to_suspend: int = Field(
        default=2,
        ge=1,
        description="Confirmed intimate-imagery violations before suspension (the ones "
        "before it are warnings, DSA art. 23).",
    )
    unfounded_reports_to_warn: int = Field(
        default=2, ge=1, description="Manifestly unfounded reports before a reporter is warned."
    )
    unfounded_reports_to_limit: int = Field(
        default=3,
        ge=1,
        description="Manifestly unfounded reports (after the warning) before a reporter's "
        "reports stop hiding content before review.",
    )
    unfounded_limit_days: int = Field(default=30, ge=1, description="How long a limit lasts.")
    report_rate_limit_per_hour: int = Field(
        default=20, ge=1, description="Public report form submissions per address per hour."
    )
    smtp_host: str | None = Field(default=None, description="SMTP server for reporter mail.")
    smtp_port: int = Field(default=25, description="SMTP port.")
    smtp_username: str | None = Field(default=None, description="SMTP user (optional).")
    smtp_password: str | None = Field(default=None, description="SMTP password (optional).")
    smtp_starttls: bool = Field(default=False, description="Use STARTTLS.")
    mail_from: str = Field(default="takedown@localhost", description="Sender address.")
    mail_poll_seconds: float = Field(
        default=5, gt=0, description="How often the mail worker looks for mail to send, in s."
    )
    webhook_url: str | None = Field(
        default=None, description="The platform's endpoint for actions (restrict, remove…)."
    )
    webhook_secret: str | None = Field(
        default=None, description="Shared secret for webhook signatures (or a file below)."
    )
    webhook_secret_file: Path | None = Field(
        default=None, description="File holding the webhook secret."
    )
    webhook_timeout_s: float = Field(default=10, gt=0, description="Webhook HTTP timeout.")
    webhook_give_up_hours: float = Field(
        default=72, ge=72, description="Retry an action this long before dead-lettering it."
    )
    delivery_poll_seconds: float = Field(
        default=2, gt=0, description="How often due actions are delivered."
    )
    public_base_url: str = Field(
        default="http://127.0.0.1:8000", description="Base URL used in links sent by mail."
    )
    index_sync_interval_ms: int = Field(
        default=0,
        ge=0,
        description=(
            "How often a worker polls the database for bank changes made by other "
            "processes; 0 checks before every query."
        ),
    )

    master_key: str | None = Field(
        default=None,
        description="Master key sealing stored media and evidence (base64 of 32 bytes). "
        "Prefer the file below; unset both on the embedded default and a key file is "
        "created in the data directory.",
    )
    master_key_file: Path | None = Field(
        default=None,
        description="File with the master key, one base64 key per line: the first seals, "
        "the others still open older objects (rotation).",
    )

    # -- review console -------------------------------------------------------------
    console_lock_minutes: float = Field(
        default=30,
        gt=0,
        description="How long a claimed case stays locked to its reviewer without activity.",
    )
    console_break_minutes: int = Field(
        default=90,
        ge=10,
        le=600,
        description="Default minutes of review before the console suggests a break "
        "(each reviewer can change their own).",
    )
    console_cookie_secure: bool | None = Field(
        default=None,
        description="Mark the console's cookies Secure. Unset: when the request came over "
        "HTTPS (behind a proxy, run uvicorn with --proxy-headers).",
    )
    console_media_link_seconds: int = Field(
        default=300,
        ge=10,
        le=3600,
        description="How long a signed media link in the console stays valid.",
    )

    def webhook_secret_value(self) -> str:
        """The webhook secret from the environment or its file; refuses to run without."""
        if self.webhook_secret_file is not None:
            secret = self.webhook_secret_file.read_text(encoding="utf-8").strip()
        else:
            secret = self.webhook_secret or ""
        if len(secret) < 16:
            raise ValueError(
                "TAKEDOWN_WEBHOOK_URL is set but the webhook secret is missing or shorter "
                "than 16 characters (TAKEDOWN_WEBHOOK_SECRET or TAKEDOWN_WEBHOOK_SECRET_FILE)."
            )
        return secret

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'takedown.sqlite3').resolve()}"

    @property
    def image_limits(self) -> ImageLimits:
        return ImageLimits(max_bytes=self.max_upload_bytes, max_pixels=self.max_image_pixels)
