"""Hash-list exchanges: which there are, how one is named and configured, what a page
pulled from one holds, and how an upstream signal type maps onto ours. Pure rules."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit

from takedown.domain.banks import MatchAction, validate_pdq_threshold
from takedown.errors import InvalidRequest


class ExchangeType(StrEnum):
    NCMEC = "ncmec"  # NCMEC's hash sharing (XML, paging by next links)
    STOPNCII = "stopncii"  # StopNCII.org (JSON, checkpoint timestamps, hashStatus)
    THREATEXCHANGE = "threatexchange"  # Meta's ThreatExchange (Graph API, threat_updates)
    TAT = "tat"  # Tech Against Terrorism's TCAP hash list (JSON, "after" checkpoints)


# Types whose API takes no opinion on an entry (nothing is queued for them).
NO_FEEDBACK = frozenset({ExchangeType.TAT})

EXCHANGE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,199}$")
MIN_INTERVAL_S = 60
MAX_INTERVAL_S = 7 * 24 * 3600
DEFAULT_INTERVAL_S = 3600
STALE_AFTER_S = 24 * 3600  # an exchange not synced for this long alerts the legal queue

# Upstream signal type names -> ours (the rest are counted as rejected).
SIGNAL_NAMES: dict[ExchangeType, dict[str, str]] = {
    ExchangeType.NCMEC: {"pdq": "pdq", "md5": "md5", "pdna": "photodna", "tmk_pdqf": "tmk"},
    ExchangeType.STOPNCII: {"ImagePDQ": "pdq", "VideoMD5": "md5", "VideoTMK": "tmk"},
    # ThreatExchange's indicator types (ThreatType); our MD5 and SHA-256 are any file's.
    ExchangeType.THREATEXCHANGE: {
        "HASH_PDQ": "pdq",
        "HASH_MD5": "md5",
        "HASH_VIDEO_MD5": "md5",
        "HASH_SHA256": "sha256",
        "HASH_VIDEO_SHA256": "sha256",
        "HASH_TMK": "tmk",
        "HASH_PHOTODNA": "photodna",
    },
    ExchangeType.TAT: {"PDQ": "pdq", "MD5": "md5"},
}
# A Meta app access token, "app_id|secret" (python-threatexchange's is_valid_app_token).
_APP_TOKEN = re.compile(r"^[0-9]{8,}(?:%7C|\|)[a-zA-Z0-9_\-]{20,}$")


def validate_exchange_name(name: str) -> str:
    if not EXCHANGE_NAME.match(name):
        raise InvalidRequest(
            "An exchange name is 1 to 100 characters: lowercase letters, digits, '-', '_' "
            f"or '.', starting with a letter or digit; got {name[:120]!r}.",
            code="invalid_exchange_name",
        )
    return name


def parse_exchange_type(value: str) -> ExchangeType:
    try:
        kind = ExchangeType(value.strip().lower())
    except ValueError:
        allowed = ", ".join(t.value for t in ExchangeType)
        raise InvalidRequest(
            f"Unknown exchange type {value[:60]!r}; use one of: {allowed}.",
            code="invalid_exchange_type",
        ) from None
    return kind


def validate_interval(seconds: int) -> int:
    if not MIN_INTERVAL_S <= seconds <= MAX_INTERVAL_S:
        raise InvalidRequest(
            f"An exchange syncs every {MIN_INTERVAL_S} s to {MAX_INTERVAL_S} s "
            f"(a week); got {seconds}.",
            code="invalid_exchange_interval",
        )
    return seconds


def credentials_ref(*, file: str | None = None, env: str | None = None) -> str:
    """Where an exchange's secret is: ``file:/absolute/path`` or ``env:NAME``. Never
    the secret itself."""
    if (file is None) == (env is None):
        raise InvalidRequest(
            "Give the credentials as a file path or an environment variable's name (one of them).",
            code="invalid_credentials_source",
        )
    if env is not None:
        if not ENV_NAME.match(env):
            raise InvalidRequest(
                f"{env[:60]!r} is not an environment variable's name.",
                code="invalid_credentials_source",
            )
        return f"env:{env}"
    assert file is not None
    if not file.startswith("/") or "\x00" in file or len(file) > 500:
        raise InvalidRequest(
            "The credentials file must be given by its absolute path.",
            code="invalid_credentials_source",
        )
    return f"file:{file}"


# What an API caller may make the server read and where it may make it send it. The
# CLI runs on the server as its operator and may name any file or variable; a remote
# caller with banks:write could otherwise point an exchange at the database URL's
# variable (it parses as user:password) and at its own host, and receive it.
API_CREDENTIALS_ENV_PREFIX = "TAKEDOWN_EXCHANGE_CREDENTIALS_"


def check_api_credentials_env(env: str) -> str:
    """A credentials variable named through the API must be one of the exchange-
    credentials ones, never another of the server's own."""
    if not env.startswith(API_CREDENTIALS_ENV_PREFIX):
        raise InvalidRequest(
            f"Through the API and the console the credentials' variable must be named "
            f"{API_CREDENTIALS_ENV_PREFIX}…; other variables are the server's own "
            "(the CLI on the server may name any).",
            code="credentials_source_not_allowed",
        )
    return env


# Each exchange's own hosts: an API caller may pick any of their environments.
OFFICIAL_BASE_URLS: dict[ExchangeType, tuple[str, ...]] = {
    ExchangeType.NCMEC: (
        "https://report.cybertip.org/hashsharing",
        "https://hashsharing.ncmec.org",
        "https://exttest.cybertip.org/hashsharing",
    ),
    ExchangeType.STOPNCII: ("https://api.stopncii.org",),
    ExchangeType.THREATEXCHANGE: ("https://graph.facebook.com",),
    ExchangeType.TAT: ("https://app.terrorismanalytics.org",),
}


def check_api_base_url(kind: ExchangeType, url: str, allowed: Sequence[str]) -> str:
    """A base URL named through the API: one of the exchange's own environments or one
    the operator allowed (TAKEDOWN_EXCHANGE_BASE_URLS); never just any host, which would
    receive the exchange's credentials."""
    if base_url_allowed(url, [*OFFICIAL_BASE_URLS.get(kind, ()), *allowed]):
        return url
    raise InvalidRequest(
        "Through the API and the console an exchange's base URL must be one of "
        f"{kind.value}'s own or one allowed by the setting TAKEDOWN_EXCHANGE_BASE_URLS "
        "(the CLI on the server may name any).",
        code="exchange_url_not_allowed",
    )


def base_url_allowed(url: str, allowed: Sequence[str]) -> bool:
    """Whether ``url`` is one of the operator's allowed base URLs: same scheme and host,
    the same port when the allowed one names a port, and under its path."""
    got = urlsplit(url)
    try:
        got_port = got.port
    except ValueError:  # not a number
        return False
    for entry in allowed:
        want = urlsplit(entry.strip().rstrip("/"))
        if not want.scheme or not want.hostname:
            continue
        if (got.scheme, got.hostname) != (want.scheme, want.hostname):
            continue
        if want.port is not None and got_port != want.port:
            continue
        path = want.path.rstrip("/")
        if got.path == path or got.path.startswith(path + "/") or not path:
            return True
    return False


@dataclass(frozen=True)
class NcmecCredentials:
    user: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class StopNciiCredentials:
    fetch_key: str = field(repr=False)
    subscription_key: str = field(repr=False)
    feedback_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ThreatExchangeCredentials:
    api_token: str = field(repr=False)

    @property
    def app_id(self) -> int:
        return int(self.api_token.partition("|")[0])


@dataclass(frozen=True)
class TatCredentials:
    username: str
    password: str = field(repr=False)


Credentials = NcmecCredentials | StopNciiCredentials | ThreatExchangeCredentials | TatCredentials


def parse_credentials(kind: ExchangeType, text: str) -> Credentials:
    """python-threatexchange's credential formats: NCMEC ``user:password``; StopNCII
    ``fetch_key,subscription_key`` and optionally a third field, the feedback key;
    ThreatExchange the app access token ``app_id|secret``; TCAP ``username:password``.
    The error never repeats the text (it is a secret)."""
    text = text.strip()
    if kind is ExchangeType.NCMEC:
        user, _, password = text.partition(":")
        if user and password and "\n" not in text:
            return NcmecCredentials(user, password)
        raise _bad_credentials("NCMEC credentials are one line, user:password")
    if kind is ExchangeType.STOPNCII:
        parts = [p.strip() for p in text.split(",")]
        if len(parts) in (2, 3) and all(parts) and "\n" not in text:
            return StopNciiCredentials(parts[0], parts[1], parts[2] if len(parts) == 3 else None)
        raise _bad_credentials(
            "StopNCII credentials are one line, fetch_key,subscription_key[,feedback_key]"
        )
    if kind is ExchangeType.THREATEXCHANGE:
        if _APP_TOKEN.match(text):
            return ThreatExchangeCredentials(text.replace("%7C", "|"))
        raise _bad_credentials(
            "ThreatExchange credentials are one line, the app access token app_id|secret"
        )
    if kind is ExchangeType.TAT:
        user, _, password = text.partition(":")
        if user and password and "\n" not in text:
            return TatCredentials(user, password)
        raise _bad_credentials("TCAP credentials are one line, username:password")
    raise _bad_credentials(f"{kind.value} takes no credentials here")


def validate_privacy_group(kind: ExchangeType, value: int | None) -> int | None:
    """ThreatExchange needs the privacy group (ThreatPrivacyGroup id) it pulls from;
    the other exchanges take none."""
    if kind is ExchangeType.THREATEXCHANGE:
        if value is None or not 0 < value < 2**63:
            raise InvalidRequest(
                "A ThreatExchange exchange pulls one privacy group: give its id "
                "(--privacy-group, a positive integer).",
                code="invalid_exchange_privacy_group",
            )
        return value
    if value is not None:
        raise InvalidRequest(
            f"Only ThreatExchange takes a privacy group; {kind.value} does not.",
            code="invalid_exchange_privacy_group",
        )
    return None


def _bad_credentials(what: str) -> InvalidRequest:
    return InvalidRequest(f"{what}; the given ones are not.", code="invalid_exchange_credentials")


@dataclass(frozen=True)
class UpstreamEntry:
    """One upstream entry as it is now: its signals (upstream type name, value), which
    replace whatever the entry carried before, and its labels."""

    upstream_id: str
    signals: tuple[tuple[str, str], ...]
    labels: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Page:
    """One page of changes and the checkpoint to store with them (in one transaction):
    entries added or changed, and upstream ids removed (deleted, withdrawn)."""

    entries: list[UpstreamEntry]
    removed: list[str]
    checkpoint: dict[str, object]
    done: bool  # the last page of this sync


def merge_pages(pages: list[Page]) -> Page:
    """Consecutive pages as one, applied in one transaction with the last page's
    checkpoint. Each change is an upstream entry's whole new state, so the last change
    of an entry wins (added on one page, deleted on a later one: deleted)."""
    if len(pages) == 1:
        return pages[0]
    last: dict[str, UpstreamEntry | None] = {}
    for page in pages:
        for e in page.entries:
            last.pop(e.upstream_id, None)  # keep the order of the latest change
            last[e.upstream_id] = e
        for upstream_id in page.removed:
            last.pop(upstream_id, None)
            last[upstream_id] = None
    return Page(
        [e for e in last.values() if e is not None],
        [i for i, e in last.items() if e is None],
        pages[-1].checkpoint,
        pages[-1].done,
    )


def our_signal_type(kind: ExchangeType, upstream: str) -> str | None:
    """Our signal type's name for an upstream one, or None (rejected)."""
    return SIGNAL_NAMES.get(kind, {}).get(upstream)


EXCHANGE_ACTIONS = (MatchAction.BLOCK, MatchAction.REVIEW, MatchAction.RECORD)


def parse_exchange_action(value: str | None) -> MatchAction | None:
    """An exchange's own action for its entries (None: its bank's)."""
    if value is None:
        return None
    try:
        action = MatchAction(value)
    except ValueError:
        action = None
    if action not in EXCHANGE_ACTIONS:
        raise InvalidRequest(
            "An exchange's action is block, review or record (a negative list is a bank "
            f"of its own); got {value[:40]!r}.",
            code="invalid_exchange_action",
        )
    return action


def validate_exchange_threshold(value: int | None) -> int | None:
    """An exchange's own PDQ threshold (None: its bank's); the stricter one applies."""
    return None if value is None else validate_pdq_threshold(value)
