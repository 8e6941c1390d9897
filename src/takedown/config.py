"""Configuration: the environment (``TAKEDOWN_*``) and a config file, with safe defaults.

Where a setting comes from, strongest first: what the caller passes (the CLI's
``--data-dir`` and ``--config``), the environment, the config file named by
``TAKEDOWN_CONFIG`` (or ``--config``), the default. Nothing depends on the directory a
command runs in, so the server and every command agree on the database, the data
directory and the master key wherever they run:

- the default data directory is ``$XDG_DATA_HOME/takedown`` (``~/.local/share/takedown``),
  not one under the current directory;
- in a config file, relative paths are relative to the file's directory;
- in the environment, paths must be absolute (a relative one is refused: it would mean
  something else in every directory); in code and on the command line they are taken
  from the current directory once, at start.

A config file is TOML when its name ends in ``.toml`` (``database_url = "…"``, the
setting names below) and otherwise ``TAKEDOWN_…=value`` lines, as in the environment
(a systemd ``EnvironmentFile`` can be the same file). An unknown setting in it is
refused, naming the setting meant.

The default is the embedded set-up: SQLite in the data directory, authentication on.
Secrets never live in code; API keys are created with ``takedown apikey create``.
"""

from __future__ import annotations

import difflib
import io
import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import Field, PrivateAttr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from takedown.domain.enforcement import part_measures
from takedown.domain.statements import territorial_scope
from takedown.errors import ConfigError
from takedown.media.limits import ImageLimits
from takedown.media.video_limits import VideoLimits, VideoSampling

PREFIX = "TAKEDOWN_"
CONFIG_ENV = "TAKEDOWN_CONFIG"
DATABASE_FILE = "takedown.sqlite3"  # the embedded database, in the data directory
MIN_WEBHOOK_SECRET = 16  # characters of a webhook signing secret


def absolute(path: Path) -> Path:
    """``path`` from the current directory, ``..`` folded away (symbolic links kept)."""
    return Path(os.path.normpath(path.absolute()))


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/takedown``, else ``~/.local/share/takedown``: one place per user,
    wherever a command runs."""
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "takedown"


# The Commission's production DSA Transparency Database (its sandbox is elsewhere).
DSA_PRODUCTION_HOST = "transparency.dsa.ec.europa.eu"
# NCMEC's CyberTipline environments (integrations/cybertipline.py speaks to them).
NCMEC_ENVIRONMENTS = {
    "test": "https://exttest.cybertip.org/ispws",
    "production": "https://report.cybertip.org/ispws",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore")

    config: Path | None = Field(
        default=None,
        description="Config file (TOML, or TAKEDOWN_…=value lines) read beneath the "
        "environment; relative paths in it are relative to its directory.",
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Directory for the embedded SQLite database, the master key file "
        "(embedded set-up) and the index snapshot. Default: ~/.local/share/takedown.",
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
    access_log: bool = Field(
        default=True,
        description=(
            "Log one line per HTTP request (uvicorn's access log). Off when a proxy in "
            "front logs requests: at thousands of screenings a second it costs a few "
            "percent of a worker."
        ),
    )
    proxy_headers: bool = Field(
        default=True,
        description="Take the client address and scheme from X-Forwarded-For and "
        "X-Forwarded-Proto, but only on connections from an address in "
        "forwarded_allow_ips (uvicorn's proxy headers).",
    )
    forwarded_allow_ips: str = Field(
        default="127.0.0.1,::1",
        description="Comma-separated addresses or networks of the reverse proxies whose "
        "X-Forwarded-* headers are believed; '*' trusts every peer (only when nothing "
        "but the proxy can reach the port). Default: a proxy on this machine only.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description=(
            "`text`: uvicorn's usual lines. `json`: one JSON object a line (time, level, "
            "logger, message, request_id; the access line's fields by name), for a log "
            "collector."
        ),
    )
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
    outbox_fanout_min: int = Field(
        default=10_000,
        ge=1,
        description="A measure on this many items or more (a viral item's copies) writes "
        "its outbox actions after its transaction, in large chunks, instead of inside it: "
        "the items are restricted at once either way. See docs/scaling.md.",
    )
    priority_inline_copies: int = Field(
        default=1_000,
        ge=0,
        description="A case with more copies than this (a viral item's) has its priority "
        "recomputed in the background when copies join it or their view counts or accounts "
        "change, within TAKEDOWN_PRIORITY_REFRESH_SECONDS, not in the request that changed "
        "them (one pass over every copy each time). See docs/operations.md.",
    )
    priority_refresh_seconds: float = Field(
        default=10,
        gt=0,
        description="How often `takedown serve` and `takedown worker` recompute the "
        "priorities that wait for it (TAKEDOWN_PRIORITY_INLINE_COPIES).",
    )
    account_measures_minor_safety: str = Field(
        default="uploader=suspend,reuploader=suspend,quoter=warn,reposter=warn",
        description="First measure per part in a confirmed minor-safety case (part=measure; "
        "parts uploader, reuploader, quoter, reposter; measures none, strike, warn, "
        "suspend). See docs/operations.md, 'Account measures'.",
    )
    account_measures_ncii: str = Field(
        default="uploader=warn,reuploader=warn,quoter=warn,reposter=none",
        description="First measure per part in a confirmed intimate-imagery case.",
    )
    account_measures_other: str = Field(
        default="uploader=strike,reuploader=strike,quoter=none,reposter=none",
        description="First measure per part in other confirmed cases.",
    )
    minor_safety_strikes_to_terminate: int = Field(
        default=2,
        ge=1,
        description="Minor-safety strikes at which a suspending part's account is terminated.",
    )
    strikes_to_suspend: int = Field(
        default=2,
        ge=1,
        description="Strikes at which a warned account is suspended (the ones before it "
        "are warnings, DSA art. 23).",
    )

    @field_validator(
        "account_measures_minor_safety", "account_measures_ncii", "account_measures_other"
    )
    @classmethod
    def _part_measures(cls, value: str) -> str:
        part_measures(value)  # a ValueError names what is wrong
        return value

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
    nats_url: str = Field(
        default="nats://127.0.0.1:4222",
        description="NATS server that takedown consume reads registry events from.",
    )
    nats_stream: str = Field(
        default="TAKEDOWN_REGISTRY",
        description="JetStream stream of registry events (made with its subject if missing).",
    )
    nats_subject: str = Field(
        default="takedown.registry.>",
        description="Subjects of registry events: takedown.registry.account, .item, .views.",
    )
    nats_durable: str = Field(
        default="takedown-registry",
        description="Durable pull consumer's name: where takedown consume resumes.",
    )
    nats_ack_wait_s: float = Field(
        default=30.0,
        gt=0,
        description="Seconds before JetStream redelivers a message not acknowledged (a "
        "consumer stopped mid-batch): longer than a batch takes to commit.",
    )
    nats_batch: int = Field(
        default=5000,
        ge=1,
        le=10_000,
        description="Messages fetched and applied in one transaction by takedown consume "
        "(as many events as a POST /v1/registry/batch chunk).",
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
    retroscan_poll_seconds: float = Field(
        default=5, gt=0, description="How often a worker looks for retroactive scans to run."
    )
    retroscan_lease_seconds: float = Field(
        default=60,
        gt=0,
        description="A running retroactive scan silent this long (its worker killed) is "
        "taken over by another worker, from its checkpoint.",
    )
    retroscan_chunk: int = Field(
        default=50_000, ge=1, description="Registered media read per retroactive-scan step."
    )
    retroscan_in_serve: bool = Field(
        default=False,
        description="Also run retroactive scans in `takedown serve` (else `takedown worker`).",
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
    webhook_batch_max: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description="Actions per webhook request (or JetStream batch); 1 sends one action "
        "a request in the original form.",
    )
    delivery_poll_seconds: float = Field(
        default=0.5, gt=0, description="How often due actions are looked for, in s."
    )
    actions_nats_url: str | None = Field(
        default=None,
        description="Publish the platform's actions to NATS JetStream at this URL "
        "(e.g. nats://127.0.0.1:4222) instead of posting webhooks.",
    )
    actions_nats_stream: str = Field(
        default="TAKEDOWN_ACTIONS", description="The JetStream stream holding the actions."
    )
    actions_nats_subject: str = Field(
        default="takedown.actions",
        description="Subject prefix: actions go to <prefix>.<partition>.",
    )
    actions_nats_partitions: int = Field(
        default=1,
        ge=1,
        le=1024,
        description="Subjects the actions are spread over by target (one target's "
        "actions always on one subject, in order).",
    )
    exchange_credentials_dir: Path | None = Field(
        default=None,
        description="The directory the credentials files of exchanges added through the "
        "API must be in (default: exchange-credentials in the data directory); the CLI "
        "may name any file. Variables named through the API must start with "
        "TAKEDOWN_EXCHANGE_CREDENTIALS_.",
    )
    exchange_base_urls: str = Field(
        default="",
        description="Comma-separated base URLs an exchange added through the API may use "
        "besides its own default (e.g. another NCMEC environment, or a test server); "
        "without a port, any port on that host. The CLI may name any.",
    )
    exchange_poll_seconds: float = Field(
        default=30,
        gt=0,
        description="How often `takedown worker` looks for hash exchanges due to sync.",
    )
    public_base_url: str = Field(
        default="http://127.0.0.1:8000", description="Base URL used in links sent by mail."
    )
    index_sync_interval_ms: int = Field(
        default=250,
        ge=0,
        le=1000,
        description=(
            "How often a worker polls the database for bank entries added by other "
            "processes (at most 1000: adds are searchable everywhere within a second); "
            "0 checks before every query. Entries added by the same process, disables "
            "and policy changes apply on the next query regardless."
        ),
    )
    index_snapshot_rows: int = Field(
        default=100_000,
        ge=0,
        description=(
            "A serving process writes a new bank index snapshot (which workers start "
            "from) once its index holds this many hashes more than the snapshot on disk; "
            "one process on the machine at a time. 0: only `takedown index snapshot` "
            "writes one."
        ),
    )
    index_snapshot_check_seconds: float = Field(
        default=60,
        gt=0,
        description="How often a serving process checks whether a new snapshot is due.",
    )
    # -- legal reporting (CyberTipline, alerts, DSA Transparency Database) ------------
    ncmec_environment: Literal["test", "production"] = Field(
        default="test",
        description="CyberTipline environment: test (exttest.cybertip.org) unless you "
        "mean to file real reports.",
    )
    ncmec_base_url: str | None = Field(
        default=None, description="Override the environment's URL (a local test server)."
    )
    ncmec_username: str | None = Field(default=None, description="CyberTipline API user.")
    ncmec_password: str | None = Field(default=None, description="CyberTipline password.")
    ncmec_password_file: Path | None = Field(
        default=None, description="File holding the CyberTipline password."
    )
    ncmec_timeout_s: float = Field(default=30, gt=0, description="CyberTipline HTTP timeout.")
    ncmec_platform_name: str | None = Field(
        default=None, description="incidentSummary/platform: the service's name."
    )
    ncmec_reporter_email: str | None = Field(
        default=None, description="reporter/reportingPerson/email (required to file)."
    )
    ncmec_reporter_first_name: str | None = Field(default=None, description="Reporting person.")
    ncmec_reporter_last_name: str | None = Field(default=None, description="Reporting person.")
    ncmec_terms_of_service_url: str | None = Field(
        default=None, description="reporter/termsOfService: the platform's terms."
    )
    ncmec_legal_url: str | None = Field(
        default=None, description="reporter/legalURL: where law enforcement sends process."
    )
    ncmec_viewed_scope: Literal["account", "file"] = Field(
        default="account",
        description="Which full views make fileViewedByEsp true in an account's report: "
        "'account' (default) only a view of that account's own copy of the file (US v. "
        "Wilson, 9th Cir. 2021); 'file' any full view of the same bytes. Counsel decides.",
    )
    legal_alert_after_hours: float = Field(
        default=24,
        gt=0,
        description="Alert when a confirmed reportable case has waited this long since "
        "the company had knowledge without being reported.",
    )
    flood_quarantine_uploads: int = Field(
        default=100,
        ge=2,
        description="A bank entry matching this many distinct uploads within an hour is "
        "quarantined (stops blocking) until a child-safety specialist decides.",
    )
    specialist_alert_email: str | None = Field(
        default=None, description="Where flood-quarantine alerts are mailed (mail outbox)."
    )
    legal_alert_email: str | None = Field(
        default=None, description="Where overdue-report alerts are mailed (mail outbox)."
    )
    dsa_api_url: str = Field(
        default="https://transparency.dsa.ec.europa.eu/api/v1/statement",
        description="The DSA Transparency Database's statement endpoint.",
    )
    dsa_api_token: str | None = Field(default=None, description="DSA database bearer token.")
    dsa_api_token_file: Path | None = Field(
        default=None, description="File holding the DSA database token."
    )
    dsa_timeout_s: float = Field(default=30, gt=0, description="DSA database HTTP timeout.")
    dsa_territorial_scope: str = Field(
        default="worldwide",
        description="Where Takedown's measures apply, told to the user in the statement of "
        "reasons and sent to the DSA database alike: worldwide (default; the database "
        "gets every EU/EEA state), eea, eu, or comma-separated ISO codes of EU/EEA states.",
    )

    @field_validator("dsa_territorial_scope")
    @classmethod
    def _territorial_scope(cls, value: str) -> str:
        territorial_scope(value)  # a ValueError names what is wrong
        return value

    allow_clock_override: bool = Field(
        default=False,
        description="Test and staging only: let admins set a report's received time or a "
        "decision's time (POST /v1/admin/clock/..., `takedown clock`) to exercise the "
        "48-hour and appeal clocks. Refused whatever this says while the CyberTipline "
        "or the DSA database in use is the production one.",
    )

    def clock_override_refusal(self) -> tuple[str, str] | None:
        """Why the clock override is refused here (code, sentence), or None."""
        if not self.allow_clock_override:
            return (
                "clock_override_disabled",
                "Setting times by hand is off; it is for test and staging deployments "
                "(TAKEDOWN_ALLOW_CLOCK_OVERRIDE=1).",
            )
        dsa_production = (
            self.dsa_token_value() is not None
            and urlsplit(self.dsa_api_url).hostname == DSA_PRODUCTION_HOST
        )
        if self.ncmec_environment == "production" or dsa_production:
            return (
                "clock_override_production",
                "Setting times by hand is refused while filings go to the production "
                "CyberTipline or DSA Transparency Database: it could alter real records.",
            )
        return None

    def ncmec_password_value(self) -> str | None:
        if self.ncmec_password_file is not None:
            return _secret_file("ncmec_password_file", self.ncmec_password_file) or None
        return self.ncmec_password or None

    def dsa_token_value(self) -> str | None:
        if self.dsa_api_token_file is not None:
            return _secret_file("dsa_api_token_file", self.dsa_api_token_file) or None
        return self.dsa_api_token or None

    @property
    def ncmec_url(self) -> str:
        return self.ncmec_base_url or NCMEC_ENVIRONMENTS[self.ncmec_environment]

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

    # -- video (media/video.py) ------------------------------------------------------------
    max_video_bytes: int = Field(
        default=200 * 1024 * 1024, ge=1, description="Largest video file accepted, in bytes."
    )
    max_video_seconds: int = Field(
        default=3600, ge=1, description="Longest video accepted, in seconds."
    )
    max_video_pixels: int = Field(
        default=4096 * 2160, ge=1, description="Largest video frame accepted (width × height)."
    )
    video_decode_seconds: float = Field(
        default=300,
        gt=0,
        description="Wall-clock budget to decode and hash one video; the decoding process "
        "is killed past it.",
    )
    video_seconds_per_hash: float = Field(
        default=1.0, gt=0, description="One frame hash per this many seconds of video (vPDQ)."
    )
    video_bank_seconds_per_hash: float = Field(
        default=0.25,
        gt=0,
        le=1,
        description="Banked videos: one frame hash per this many seconds (4 a second by "
        "default), so a clip cut anywhere lands near a banked frame.",
    )
    video_bank_crop_windows: str = Field(
        default="0.03,0.06",
        description="Banked videos: each sampled frame is also hashed from centred windows "
        "with this share cut off every edge, so copies cropped by about 2-8 % match "
        "(comma-separated shares under 0.25; empty for none).",
    )

    @field_validator("video_bank_crop_windows")
    @classmethod
    def _crop_windows(cls, value: str) -> str:
        VideoSampling(crop_windows=_shares(value))  # a ValueError names what is wrong
        return value

    default_video_match_percent: int = Field(
        default=80,
        ge=1,
        le=100,
        description="For new banks: share of a banked video's frames (or of a clip's) that "
        "must match.",
    )
    default_video_frame_threshold: int = Field(
        default=31, ge=0, le=128, description="For new banks: PDQ distance for video frames."
    )

    @property
    def video_limits(self) -> VideoLimits:
        return VideoLimits(
            max_bytes=self.max_video_bytes,
            max_seconds=self.max_video_seconds,
            max_pixels=self.max_video_pixels,
            max_decode_seconds=self.video_decode_seconds,
        )

    @property
    def video_sampling(self) -> VideoSampling:
        return VideoSampling(seconds_per_hash=self.video_seconds_per_hash)

    @property
    def video_bank_sampling(self) -> VideoSampling:
        return VideoSampling(
            seconds_per_hash=self.video_bank_seconds_per_hash,
            crop_windows=_shares(self.video_bank_crop_windows),
        )

    @property
    def max_media_bytes(self) -> int:
        """The largest upload a media endpoint reads: an image or a video."""
        return max(self.max_upload_bytes, self.max_video_bytes)

    audit_checkpoint_events: int = Field(
        default=10_000,
        ge=1,
        description="Write an audit checkpoint at least every this many events.",
    )
    audit_checkpoint_minutes: float = Field(
        default=60,
        gt=0,
        description="Write an audit checkpoint with the first event after this many "
        "minutes without one.",
    )
    evidence_preservation_days: int = Field(
        default=365,
        ge=365,
        description="Preservation hold after a report is completed (18 U.S.C. 2258A(h): "
        "at least one year; never shorter than one calendar year).",
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
        "HTTPS (behind a proxy: the proxy's X-Forwarded-Proto, from an address in "
        "forwarded_allow_ips).",
    )
    console_media_link_seconds: int = Field(
        default=300,
        ge=10,
        le=3600,
        description="How long a signed media link in the console stays valid.",
    )

    @property
    def exchange_credentials_directory(self) -> Path:
        """Where credentials files named through the API must be."""
        return self.exchange_credentials_dir or self.data_dir / "exchange-credentials"

    @property
    def exchange_allowed_base_urls(self) -> list[str]:
        return [u.strip() for u in self.exchange_base_urls.split(",") if u.strip()]

    def webhook_secret_value(self) -> str:
        """The webhook secret from the environment or its file; ConfigError (naming the
        setting) when it is missing, unreadable or shorter than 16 characters."""
        if self.webhook_secret_file is not None:
            secret = _secret_file("webhook_secret_file", self.webhook_secret_file)
            where = f"The file {PREFIX}WEBHOOK_SECRET_FILE={self.webhook_secret_file} holds"
        elif self.webhook_secret:
            secret, where = self.webhook_secret, f"{PREFIX}WEBHOOK_SECRET is"
        else:
            raise ConfigError(
                f"{PREFIX}WEBHOOK_URL is set but there is no webhook secret: set "
                f"{PREFIX}WEBHOOK_SECRET or {PREFIX}WEBHOOK_SECRET_FILE "
                f"(at least {MIN_WEBHOOK_SECRET} characters)."
            )
        if len(secret) < MIN_WEBHOOK_SECRET:
            raise ConfigError(
                f"{where} a webhook secret of {len(secret)} characters: it needs at least "
                f"{MIN_WEBHOOK_SECRET}."
            )
        return secret

    def check_for_serving(self) -> None:
        """Raise ConfigError for a setting that is read only when the work it belongs to
        starts (webhook delivery, the CyberTipline, the DSA database), so that ``takedown
        serve`` and ``takedown worker`` refuse it at start with one sentence instead of
        failing later inside the running server."""
        if self.webhook_url:
            self.webhook_secret_value()
        self.ncmec_password_value()
        self.dsa_token_value()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / DATABASE_FILE}"

    @property
    def image_limits(self) -> ImageLimits:
        return ImageLimits(max_bytes=self.max_upload_bytes, max_pixels=self.max_image_pixels)

    @property
    def embedded_database(self) -> bool:
        """SQLite (a local file): the set-up where a master key may be created."""
        return make_url(self.resolved_database_url).get_backend_name() == "sqlite"

    @property
    def database_display(self) -> str:
        """The database URL with its password hidden, for logs and ``takedown status``."""
        return make_url(self.resolved_database_url).render_as_string(hide_password=True)

    # -- where settings come from --------------------------------------------------------
    _given: frozenset[str] = PrivateAttr(default=frozenset())

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        self._given = frozenset(k for k, v in values.items() if v is not None)
        self._absolute_paths()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        assert isinstance(init_settings, InitSettingsSource)
        return init_settings, env_settings, _ConfigFileSource(settings_cls, init_settings)

    def _absolute_paths(self) -> None:
        """Make every path absolute once, at start (see the module docstring); paths
        from a config file are absolute already."""
        for name in _path_fields():
            value = getattr(self, name)
            if value is None or value.is_absolute():
                continue
            if name not in self._given and _from_environment(name):
                raise ConfigError(
                    f"{PREFIX}{name.upper()}={value} is a relative path, which would mean "
                    "another file in every directory a command runs in: give an absolute "
                    "path (or set it in the config file, relative to the file)."
                )
            object.__setattr__(self, name, absolute(value))
        url = self.database_url
        if url and _relative_sqlite(url):
            if "database_url" not in self._given and _from_environment("database_url"):
                raise ConfigError(
                    f"{PREFIX}DATABASE_URL={url} names a SQLite file by a relative path: "
                    "give an absolute one (sqlite:////var/lib/takedown/takedown.sqlite3)."
                )
            object.__setattr__(self, "database_url", _sqlite_under(url, Path.cwd()))

    def origin(self, name: str) -> str:
        """Where the value of setting ``name`` came from, for ``takedown status``."""
        if name in self._given:
            return "--" + name.replace("_", "-") if name in ("config", "data_dir") else "given"
        if _from_environment(name):
            return f"{PREFIX}{name.upper()}"
        if self.config is not None and name in _config_values(self.config):
            return f"config file {self.config}"
        return "default"


def _shares(text: str) -> tuple[float, ...]:
    """ "0.03, 0.06" -> (0.03, 0.06); "" -> ()."""
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(
            f"expected comma-separated shares such as 0.03,0.06; got {text!r}"
        ) from None


def _secret_file(name: str, path: Path) -> str:
    """The secret in the file named by setting ``name``; ConfigError naming the setting
    when the file cannot be read."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{PREFIX}{name.upper()}={path} cannot be read: {reason}.") from exc


def _path_fields() -> list[str]:
    return [
        name
        for name, info in Settings.model_fields.items()
        if info.annotation in (Path, Path | None)
    ]


def _from_environment(name: str) -> bool:
    wanted = f"{PREFIX}{name}".upper()
    return any(key.upper() == wanted for key in os.environ)


def _relative_sqlite(url: str) -> bool:
    try:
        parsed = make_url(url)
    except ArgumentError:
        return False
    database = parsed.database
    return (
        parsed.get_backend_name() == "sqlite"
        and bool(database)
        and database != ":memory:"
        and not Path(str(database)).is_absolute()
    )


def _sqlite_under(url: str, base: Path) -> str:
    parsed = make_url(url)
    path = absolute(base / str(parsed.database))
    return parsed.set(database=str(path)).render_as_string(hide_password=False)


class _ConfigFileSource(PydanticBaseSettingsSource):
    """The config file named by ``config`` (given) or ``TAKEDOWN_CONFIG``, beneath the
    environment."""

    def __init__(self, settings_cls: type[BaseSettings], init: InitSettingsSource) -> None:
        super().__init__(settings_cls)
        self._init = init

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ gives every value at once

    def __call__(self) -> dict[str, Any]:
        given = self._init.init_kwargs.get("config")
        if given is not None:
            path = absolute(Path(given))
        else:
            named = next((v for k, v in os.environ.items() if k.upper() == CONFIG_ENV), "")
            if not named:
                return {}
            path = Path(named)
            if not path.is_absolute():
                raise ConfigError(
                    f"{CONFIG_ENV}={named} is a relative path, which would mean another "
                    "file in every directory a command runs in: give an absolute path."
                )
        return {"config": path, **_config_values(path)}


def _config_values(path: Path) -> dict[str, Any]:
    stat = _stat(path)
    return dict(_read_config(path, stat))


def _stat(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(
            f"Cannot read the config file {path} (named by --config or {CONFIG_ENV}): "
            f"{exc.strerror or exc}."
        ) from exc
    return st.st_mtime_ns, st.st_size


@lru_cache(maxsize=8)
def _read_config(path: Path, _stat: tuple[int, int]) -> tuple[tuple[str, Any], ...]:
    """The settings in the file, relative paths made absolute against its directory
    (cached while the file is unchanged)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read the config file {path}: {exc}.") from exc
    known = {n for n in Settings.model_fields if n != "config"}
    values: dict[str, Any] = {}
    if path.suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"The config file {path} is not valid TOML: {exc}.") from exc
        for key, value in data.items():
            if isinstance(value, dict):
                raise ConfigError(
                    f"The config file {path} has a table [{key}]: settings are plain "
                    '`name = value` lines (database_url = "…", data_dir = "…").'
                )
            _check_known(path, key, known, key)
            values[key] = value
    else:
        for key, value in dotenv_values(stream=io.StringIO(text)).items():
            if not key.upper().startswith(PREFIX):
                continue  # another program's variable in a shared environment file
            name = key[len(PREFIX) :].lower()
            _check_known(path, name, known, key)
            if value is not None:
                values[name] = value
    base = path.parent.absolute()
    for name in _path_fields():
        if name in values and values[name] not in (None, ""):
            values[name] = absolute(base / Path(str(values[name])))
    url = values.get("database_url")
    if isinstance(url, str) and _relative_sqlite(url):
        values["database_url"] = _sqlite_under(url, base)
    return tuple(values.items())


def _check_known(path: Path, name: str, known: set[str], shown: str) -> None:
    if name in known:
        return
    if name == "config":
        raise ConfigError(f"The config file {path} names another config file ({shown}).")
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = ""
    if close:
        hint = f" Did you mean {PREFIX + close[0].upper() if shown.isupper() else close[0]}?"
    raise ConfigError(f"The config file {path} sets {shown}, which is not a setting.{hint}")
