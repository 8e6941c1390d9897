"""The platform's own confirmed hashes shared out to exchanges (NCMEC's list for
industry, ThreatExchange): the legal team's queue of pending shares,
its approval or refusal (with a reason), both audited; approved shares sent through an
outbox retried like webhooks (the clients never retry a POST); and, for the sync, which
upstream entries are our own shares (recognised, never pulled back in as foreign
entries); shares taken back when their file turns out not violating (``withdraw_due``).
Shares are proposed, cancelled and queued for withdrawal by
``services/banks/sharing.py``."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from takedown.domain.exchanges import Credentials, ExchangeType
from takedown.domain.sharing import (
    MAX_ATTEMPTS,
    ShareState,
    check_pending,
    parse_classification,
    refusal_reason,
    retry_after_s,
)
from takedown.errors import Conflict, InvalidRequest, NotFound, TakedownError
from takedown.ids import utcnow
from takedown.integrations.hash_sharing import (
    ShareError,
    Sharer,
    ShareRequest,
    open_sharer,
)
from takedown.services.audit.chain import record
from takedown.services.outbound.mail import queue_mail
from takedown.store.db import unit_of_work
from takedown.store.models import Bank, BankEntry, Case, Exchange, ExchangeShare

log = logging.getLogger(__name__)
SharerFactory = Callable[[ExchangeType, Credentials, str | None, int | None], Sharer]
CredentialsReader = Callable[[ExchangeType, str], Credentials]
_CHUNK = 1000


@dataclass(frozen=True)
class ShareView:
    id: str
    exchange: str
    exchange_type: str
    bank: str
    case_id: str | None
    decision_id: str | None
    media_sha256: str
    media_type: str
    signals: dict[str, str]  # our signal type -> value, as offered (and sent)
    state: str
    created_at: datetime
    created_by: str
    decided_at: datetime | None
    decided_by: str | None
    reason: str | None  # the legal team's reason for a refusal (or note on an approval)
    classification: str | None
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    sent_at: datetime | None
    upstream_id: str | None  # what the exchange calls it (NCMEC: member-entry)
    upstream_seen_at: datetime | None  # when a sync of the exchange last listed it
    withdrawn_at: datetime | None  # cancelled (nothing sent) or taken back from the exchange
    withdraw_reason: str | None  # why: the decision overturned, the entry disabled

    @classmethod
    def of(cls, sh: ExchangeShare, ex: Exchange, bank: str, case: str | None) -> ShareView:
        return cls(
            id=sh.public_id,
            exchange=ex.name,
            exchange_type=ex.type,
            bank=bank,
            case_id=case,
            decision_id=sh.decision_id,
            media_sha256=sh.media_sha256,
            media_type=sh.media_type,
            signals=json.loads(sh.signals),
            state=sh.state,
            created_at=sh.created_at,
            created_by=sh.created_by,
            decided_at=sh.decided_at,
            decided_by=sh.decided_by,
            reason=sh.reason,
            classification=sh.classification,
            attempts=sh.attempts,
            next_attempt_at=sh.next_attempt_at,
            last_error=sh.last_error,
            sent_at=sh.sent_at,
            upstream_id=sh.upstream_id,
            upstream_seen_at=sh.upstream_seen_at,
            withdrawn_at=sh.withdrawn_at,
            withdraw_reason=sh.withdraw_reason,
        )


class ShareService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        credentials: CredentialsReader,
        sharer_factory: SharerFactory = open_sharer,
        alert_email: str | None = None,
    ) -> None:
        self._sessions = sessions
        self._credentials = credentials
        self._sharer_factory = sharer_factory
        # The legal team's address (TAKEDOWN_LEGAL_ALERT_EMAIL): told when a share
        # could not be taken back (withdraw_failed), since then they must ask the
        # exchange by hand.
        self._alert_email = alert_email

    # -- the legal team's queue ----------------------------------------------------
    def list(
        self, *, state: str | None = None, limit: int = 200, decided: bool = False
    ) -> list[ShareView]:
        """Shares, oldest first; ``state`` (pending: the legal team's queue) filters.
        ``decided``: the shares no longer pending instead, the latest decided first."""
        if state is not None and state not in {s.value for s in ShareState}:
            raise InvalidRequest(
                f"A share's state is one of {', '.join(s.value for s in ShareState)}; got "
                f"{state[:30]!r}.",
                code="invalid_share_state",
            )
        with unit_of_work(self._sessions, write=False) as s:
            stmt = _joined().order_by(ExchangeShare.id).limit(limit)
            if state is not None:
                stmt = stmt.where(ExchangeShare.state == state)
            if decided:
                stmt = (
                    _joined()
                    .where(ExchangeShare.state != ShareState.PENDING.value)
                    .order_by(ExchangeShare.decided_at.desc(), ExchangeShare.id.desc())
                    .limit(limit)
                )
            return [ShareView.of(*row) for row in s.execute(stmt)]

    def get(self, share_id: str) -> ShareView:
        with unit_of_work(self._sessions, write=False) as s:
            row = s.execute(_joined().where(ExchangeShare.public_id == share_id)).first()
            if row is None:
                raise _not_found(share_id)
            return ShareView.of(*row)

    def approve(
        self,
        share_id: str,
        *,
        actor: str,
        classification: str | None = None,
        note: str | None = None,
    ) -> ShareView:
        """The legal team approves a pending share: it goes into the outbox at once.
        Refused (409) when the file's entries are no longer enabled in the bank (a
        false positive, a decision overturned since). Audited."""
        cls = parse_classification(classification)
        now = utcnow()
        with unit_of_work(self._sessions) as s:
            sh = _locked(s, share_id)
            check_pending(sh.state, sh.public_id)
            if not _still_confirmed(s, sh):
                raise Conflict(
                    f"Share {sh.public_id}'s file is no longer an enabled entry of its bank "
                    "(disabled as a false positive, or its decision overturned): refuse it.",
                    code="share_not_confirmed",
                )
            sh.state = ShareState.APPROVED.value
            sh.decided_at, sh.decided_by = now, actor
            sh.classification = cls
            sh.reason = (note or "").strip()[:5000] or None
            sh.next_attempt_at = now
            record(s, actor, "exchange.share_approved", "exchange_share", sh.public_id,
                   _details(s, sh, classification=cls, note=sh.reason))  # fmt: skip
        return self.get(share_id)

    def refuse(self, share_id: str, *, actor: str, reason: str | None) -> ShareView:
        """The legal team refuses a pending share, saying why: nothing is sent. Audited."""
        why = refusal_reason(reason)
        with unit_of_work(self._sessions) as s:
            sh = _locked(s, share_id)
            check_pending(sh.state, sh.public_id)
            sh.state = ShareState.REFUSED.value
            sh.decided_at, sh.decided_by, sh.reason = utcnow(), actor, why
            record(s, actor, "exchange.share_refused", "exchange_share", sh.public_id,
                   _details(s, sh, reason=why))  # fmt: skip
        return self.get(share_id)

    def mark_withdrawn(self, share_id: str, *, actor: str, note: str | None) -> ShareView:
        """The legal team says the exchange removed a share Takedown could not take back
        itself (``withdraw_failed``: NCMEC has no call for it, or every retry failed),
        e.g. after asking NCMEC by hand; with a note on how (required). Audited as
        ``exchange.share_withdrawn`` with ``by_hand``."""
        why = (note or "").strip()[:5000]
        if not why:
            raise InvalidRequest(
                "Say how the exchange removed the entry (note), e.g. 'NCMEC confirmed the "
                "removal by mail on 2026-12-01': it stays in the audit log.",
                code="note_required",
            )
        with unit_of_work(self._sessions) as s:
            sh = _locked(s, share_id)
            if sh.state != ShareState.WITHDRAW_FAILED.value:
                raise Conflict(
                    f"Share {sh.public_id} is {sh.state}: only a share whose withdrawal "
                    "failed is marked withdrawn by hand.",
                    code="share_not_withdraw_failed",
                )
            sh.state, sh.withdrawn_at = ShareState.WITHDRAWN.value, utcnow()
            sh.last_error = f"{sh.last_error or ''} Removed by hand: {why}".strip()[:2000]
            record(s, actor, "exchange.share_withdrawn", "exchange_share", sh.public_id,
                   _details(s, sh, upstream_id=sh.upstream_id, by_hand=True, note=why))  # fmt: skip
        return self.get(share_id)

    # -- the outbox ----------------------------------------------------------------
    def send_due(self, now: datetime | None = None, limit: int = 100) -> int:
        """Send approved shares whose time has come; returns how many were taken. A
        failure the exchange may get over (5xx, 429, unreachable, refused credentials)
        is tried again with backoff (5 s doubling, at most an hour apart) up to
        ``MAX_ATTEMPTS`` tries; a refusal (another 4xx) fails the share at once, with
        the exchange's reason, and so does a share whose file was disabled in its bank
        since its approval (it is not sent). A share taken is the exchange's provenance
        from then on: what was sent, when, and the upstream id it answered."""
        now = now or utcnow()
        with unit_of_work(self._sessions, write=False) as s:
            due = _due(s, ShareState.APPROVED, now, limit)
            work = [
                (
                    sh.id,
                    _still_confirmed(s, sh),
                    ShareRequest(
                        sh.public_id, sh.media_type, json.loads(sh.signals), sh.classification
                    ),
                    ex.type,
                    ex.credentials,
                    ex.base_url,
                    ex.privacy_group,
                )
                for sh, ex in due
            ]
        sent = 0
        sharers = _Sharers(self._sharer_factory, self._credentials)
        for row_id, confirmed, request, kind_name, ref, url, group in work:
            upstream: str | None = None
            error: str | None = None
            permanent = False
            try:
                if not confirmed:
                    raise ShareError(_NO_LONGER, permanent=True)
                upstream = sharers.get(kind_name, ref, url, group).share(request).upstream_id
            except ShareError as exc:
                error, permanent = str(exc)[:2000], exc.permanent
            except TakedownError as exc:  # the credentials cannot be read
                error = exc.message[:2000]
            with unit_of_work(self._sessions) as s:
                sh = s.get_one(ExchangeShare, row_id)
                if sh.state == ShareState.CANCELLED.value and upstream is not None:
                    # Cancelled while it was being sent, and the exchange took it: the
                    # withdrawal follows.
                    sh.state, sh.sent_at, sh.upstream_id = (
                        ShareState.WITHDRAWING.value,
                        utcnow(),
                        upstream,
                    )
                    sh.withdrawn_at, sh.attempts, sh.next_attempt_at = None, 0, now
                    record(s, "worker", "exchange.share_withdrawal_queued", "exchange_share",
                           sh.public_id, _details(s, sh, upstream_id=upstream,
                                                  reason=sh.withdraw_reason))  # fmt: skip
                    continue
                if sh.state != ShareState.APPROVED.value:
                    continue
                sh.attempts += 1
                at = utcnow()
                if upstream is not None:
                    sh.state, sh.sent_at, sh.upstream_id, sh.last_error = (
                        ShareState.SENT.value,
                        at,
                        upstream,
                        None,
                    )
                    sent += 1
                    record(s, "worker", "exchange.share_sent", "exchange_share", sh.public_id,
                           _details(s, sh, upstream_id=upstream, attempts=sh.attempts))  # fmt: skip
                    continue
                sh.last_error = error
                if permanent or sh.attempts >= MAX_ATTEMPTS:
                    sh.state = ShareState.FAILED.value
                    record(s, "worker", "exchange.share_failed", "exchange_share", sh.public_id,
                           _details(s, sh, error=error, attempts=sh.attempts))  # fmt: skip
                else:
                    sh.next_attempt_at = now + timedelta(seconds=retry_after_s(sh.attempts))
        return sent

    def withdraw_due(self, now: datetime | None = None, limit: int = 100) -> int:
        """Take back shares whose file was found not violating after all (queued by
        ``services/banks/sharing.withdraw_shares``): each exchange's own way (the
        sharer's ``withdraw``), retried as sending is; ``withdrawn`` once the exchange
        has deleted it, ``withdraw_failed`` when it cannot (NCMEC offers no call for
        it: the error says what to do) or every retry failed. Audited. Returns how many
        were withdrawn."""
        now = now or utcnow()
        with unit_of_work(self._sessions, write=False) as s:
            work = [
                (
                    sh.id,
                    sh.upstream_id or "",
                    ex.type,
                    ex.credentials,
                    ex.base_url,
                    ex.privacy_group,
                )  # fmt: skip
                for sh, ex in _due(s, ShareState.WITHDRAWING, now, limit)
            ]
        done = 0
        sharers = _Sharers(self._sharer_factory, self._credentials)
        for row_id, upstream, kind_name, ref, url, group in work:
            error: str | None = None
            permanent = False
            try:
                sharers.get(kind_name, ref, url, group).withdraw(upstream)
            except ShareError as exc:
                error, permanent = str(exc)[:2000], exc.permanent
            except TakedownError as exc:  # the credentials cannot be read
                error = exc.message[:2000]
            with unit_of_work(self._sessions) as s:
                sh = s.get_one(ExchangeShare, row_id)
                if sh.state != ShareState.WITHDRAWING.value:
                    continue
                sh.attempts += 1
                if error is None:
                    sh.state, sh.withdrawn_at, sh.last_error = (
                        ShareState.WITHDRAWN.value, utcnow(), None)  # fmt: skip
                    sh.next_attempt_at = None
                    done += 1
                    record(s, "worker", "exchange.share_withdrawn", "exchange_share",
                           sh.public_id, _details(s, sh, upstream_id=sh.upstream_id,
                                                  reason=sh.withdraw_reason,
                                                  attempts=sh.attempts))  # fmt: skip
                    continue
                sh.last_error = error
                if permanent or sh.attempts >= MAX_ATTEMPTS:
                    sh.state, sh.next_attempt_at = ShareState.WITHDRAW_FAILED.value, None
                    record(s, "worker", "exchange.share_withdraw_failed", "exchange_share",
                           sh.public_id, _details(s, sh, upstream_id=sh.upstream_id,
                                                  error=error, attempts=sh.attempts))  # fmt: skip
                    if self._alert_email:
                        _alert_withdraw_failed(s, sh, self._alert_email, error, now)
                else:
                    sh.next_attempt_at = now + timedelta(seconds=retry_after_s(sh.attempts))
        return done


def _alert_withdraw_failed(
    s: Session, sh: ExchangeShare, to: str, error: str, now: datetime
) -> None:
    """Mail the legal team that a share could not be taken back: the exchange still
    holds the file's hashes, and someone must ask it to remove them by hand."""
    ex = s.get_one(Exchange, sh.exchange_id)
    queue_mail(
        s,
        to,
        f"Hash share {sh.public_id} to {ex.name} could not be withdrawn",
        f"The {ex.type} exchange {ex.name} still holds the hashes of file "
        f"{sh.media_sha256} that this platform shared (share {sh.public_id}, upstream id "
        f"{sh.upstream_id or 'unknown'}), although the file was found not violating "
        f"({sh.withdraw_reason or 'no reason recorded'}). Takedown could not take it back: "
        f"{error} Ask {ex.name} to remove the entry, then mark the share as withdrawn on "
        "the console's Hash shares page (or POST /v1/exchange-shares/"
        f"{sh.public_id}/withdrawn).",
        now,
    )


class _Sharers:
    """One sharer per exchange for a round of the outbox."""

    def __init__(self, factory: SharerFactory, credentials: CredentialsReader) -> None:
        self._factory, self._credentials = factory, credentials
        self._open: dict[tuple[str, str, str | None, int | None], Sharer] = {}

    def get(self, kind_name: str, ref: str, url: str | None, group: int | None) -> Sharer:
        key = (kind_name, ref, url, group)
        if key not in self._open:
            kind = ExchangeType(kind_name)
            self._open[key] = self._factory(kind, self._credentials(kind, ref), url, group)
        return self._open[key]


# Shares the exchange may hold (an approved one's answer may have been lost).
_SENT_STATES = (ShareState.APPROVED.value, ShareState.SENT.value, ShareState.FAILED.value)

# Shares a sync may find upstream: every one that may ever have been sent.
_RECOGNISED = (
    *_SENT_STATES,
    ShareState.CANCELLED.value,
    ShareState.WITHDRAWING.value,
    ShareState.WITHDRAWN.value,
    ShareState.WITHDRAW_FAILED.value,
)

_NO_LONGER = (
    "Not sent: the file is no longer an enabled entry of its bank (disabled as a false "
    "positive, or its decision overturned) since the share was approved."
)


def _still_confirmed(s: Session, sh: ExchangeShare) -> bool:
    """Whether every hash the share offers is still an enabled entry of its bank."""
    signals: dict[str, str] = json.loads(sh.signals)
    enabled = {
        (t, v)
        for t, v in s.execute(
            select(BankEntry.signal_type, BankEntry.value).where(
                BankEntry.bank_id == sh.bank_id,
                BankEntry.enabled.is_(True),
                BankEntry.value.in_(sorted(signals.values())),
            )
        )
    }
    return all((t, v) in enabled for t, v in signals.items())


def recognise_own(
    s: Session, exchange_id: int, upstream_ids: Iterable[str], now: datetime
) -> set[str]:
    """Which of these upstream ids are our own shares to this exchange (a sync lists
    them like anyone's): marked as seen and returned, so the sync leaves them out of
    the exchange's bank instead of pulling our own hashes back in as foreign entries.
    Known by the upstream id the exchange answered, or, when its answer was lost (a
    timeout after it took the entry, a sync between its answer and our commit), by our
    entry id, the share's id, at the end of the upstream id (NCMEC: member-entry); the
    upstream id is then learnt from the sync. A share cancelled after such a lost
    answer (its file found not violating) is then held by the exchange after all: it
    goes on to be withdrawn."""
    sent = _RECOGNISED
    shared = s.scalar(
        select(ExchangeShare.id)
        .where(ExchangeShare.exchange_id == exchange_id, ExchangeShare.state.in_(sent))
        .limit(1)
    )
    if shared is None:  # the usual case: one cheap read per page
        return set()
    ids = set(upstream_ids)
    by_share = {u[-26:]: u for u in ids if len(u) > 26}
    ours: set[str] = set()
    for column, keys in ((ExchangeShare.upstream_id, sorted(ids)),
                         (ExchangeShare.public_id, sorted(by_share))):  # fmt: skip
        for i in range(0, len(keys), _CHUNK):
            for sh in s.scalars(
                select(ExchangeShare).where(
                    ExchangeShare.exchange_id == exchange_id,
                    ExchangeShare.state.in_(sent),
                    column.in_(keys[i : i + _CHUNK]),
                )
            ):
                upstream = sh.upstream_id or by_share[sh.public_id]
                if sh.upstream_id is None:
                    sh.upstream_id = upstream
                    if sh.state == ShareState.CANCELLED.value:
                        sh.state, sh.withdrawn_at = ShareState.WITHDRAWING.value, None
                        sh.attempts, sh.next_attempt_at = 0, now
                        record(s, "worker", "exchange.share_withdrawal_queued",
                               "exchange_share", sh.public_id,
                               _details(s, sh, upstream_id=upstream,
                                        reason=sh.withdraw_reason))  # fmt: skip
                sh.upstream_seen_at = now
                ours.add(upstream)
    return ours & ids


def recognise_own_values(
    s: Session, exchange_id: int, values: Iterable[str], now: datetime
) -> None:
    """Shares to this exchange carrying these values, listed by a sync as entries only
    we vouch for (ThreatExchange: only our app's descriptors): marked as seen."""
    wanted = set(values)
    if not wanted:
        return
    for sh in s.scalars(
        select(ExchangeShare).where(
            ExchangeShare.exchange_id == exchange_id,
            ExchangeShare.state.in_(_RECOGNISED),
        )
    ):
        if wanted & set(json.loads(sh.signals).values()):
            sh.upstream_seen_at = now


def _joined() -> Any:
    return (
        select(ExchangeShare, Exchange, Bank.name, Case.public_id)
        .join(Exchange, Exchange.id == ExchangeShare.exchange_id)
        .join(Bank, Bank.id == ExchangeShare.bank_id)
        .outerjoin(Case, Case.id == ExchangeShare.case_id)
    )


def _locked(s: Session, share_id: str) -> ExchangeShare:
    sh = s.scalars(
        select(ExchangeShare).where(ExchangeShare.public_id == share_id).with_for_update()
    ).first()
    if sh is None:
        raise _not_found(share_id)
    return sh


def _details(s: Session, sh: ExchangeShare, **extra: object) -> dict[str, object]:
    ex = s.get_one(Exchange, sh.exchange_id)
    case = s.get(Case, sh.case_id) if sh.case_id is not None else None
    return {
        "exchange": ex.name,
        "case": case.public_id if case else None,
        "decision": sh.decision_id,
        "media_sha256": sh.media_sha256,
        "signals": json.loads(sh.signals),
        **extra,
    }


def _not_found(share_id: str) -> NotFound:
    return NotFound(f"No share {share_id[:60]!r}.", code="share_not_found")


def _due(s: Session, state: ShareState, now: datetime, limit: int) -> Sequence[Any]:
    """Shares in ``state`` whose next try is due, oldest first, with their exchange."""
    return s.execute(
        select(ExchangeShare, Exchange)
        .join(Exchange, Exchange.id == ExchangeShare.exchange_id)
        .where(ExchangeShare.state == state.value, ExchangeShare.next_attempt_at <= now)
        .order_by(ExchangeShare.id)
        .limit(limit)
    ).all()
