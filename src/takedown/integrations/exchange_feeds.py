"""Every exchange's feed, built from its type, credentials, base URL and (ThreatExchange)
privacy group: NCMEC and StopNCII (``hash_exchanges``), ThreatExchange
(``threatexchange_feed``), TCAP (``tat_feed``). A feed pulls pages with checkpoints and
sends opinions back (``send_feedback``)."""

from __future__ import annotations

from takedown.domain.exchanges import (
    Credentials,
    ExchangeType,
    NcmecCredentials,
    StopNciiCredentials,
    TatCredentials,
    ThreatExchangeCredentials,
)
from takedown.integrations.hash_exchanges import FeedError, NcmecFeed, StopNciiFeed
from takedown.integrations.tat_feed import TatFeed
from takedown.integrations.threatexchange_feed import ThreatExchangeFeed

Feed = NcmecFeed | StopNciiFeed | ThreatExchangeFeed | TatFeed


def open_feed(
    kind: ExchangeType, creds: Credentials, base_url: str | None, privacy_group: int | None = None
) -> Feed:
    if kind is ExchangeType.NCMEC and isinstance(creds, NcmecCredentials):
        return NcmecFeed(creds, base_url)
    if kind is ExchangeType.STOPNCII and isinstance(creds, StopNciiCredentials):
        return StopNciiFeed(creds, base_url)
    if kind is ExchangeType.THREATEXCHANGE and isinstance(creds, ThreatExchangeCredentials):
        return ThreatExchangeFeed(creds, base_url, privacy_group)
    if kind is ExchangeType.TAT and isinstance(creds, TatCredentials):
        return TatFeed(creds, base_url)
    raise FeedError(f"{kind.value} cannot be pulled here.")
