"""Which exchanges a bank's confirmed hashes may be offered to (off unless set), and the
offers themselves: each file a decision confirmed and banked becomes one pending share
per such exchange, waiting for the legal team (``services/exchanges/sharing.py``
approves, refuses and sends). Shared by the bank settings (``BankService.update_bank``)
and by case decisions (``services/cases/enforcement.py``), in their transactions; and
the way back: a file found not violating after all (its decision overturned, its entry
disabled as a false positive) has its shares cancelled or queued for withdrawal
(``withdraw_shares``), and offered again when it is confirmed again (an entry
re-enabled, a new decision: ``reoffer_shares``, ``queue_shares``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

from sqlalchemy import or_, select, tuple_
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from takedown.domain.cases import Outcome
from takedown.domain.exchanges import ExchangeType
from takedown.domain.sharing import ShareState, accepts_shares, shareable
from takedown.errors import NotFound
from takedown.services.audit.chain import record
from takedown.store.models import (
    Bank,
    BankEntry,
    BankShareTarget,
    Case,
    Exchange,
    ExchangeEntry,
    ExchangeShare,
    Media,
)

_CHUNK = 500


def set_share_targets(s: Session, bank: Bank, names: Sequence[str], actor: str) -> list[str]:
    """The exchanges ``bank`` offers its confirmed hashes to, replaced by ``names`` (an
    empty list: sharing off); each must exist and take submissions. Audited when it
    changes. Returns the names, sorted."""
    wanted: dict[int, Exchange] = {}
    for name in dict.fromkeys(n.strip() for n in names):
        ex = s.scalars(
            select(Exchange).where((Exchange.name == name) | (Exchange.public_id == name))
        ).first()
        if ex is None:
            raise NotFound(f"No exchange named {name[:100]!r}.", code="exchange_not_found")
        accepts_shares(ExchangeType(ex.type), ex.name)
        wanted[ex.id] = ex
    before = sorted(t.exchange.name for t in bank.share_targets)
    after = sorted(ex.name for ex in wanted.values())
    if before == after:
        return after
    bank.share_targets = [t for t in bank.share_targets if t.exchange_id in wanted]
    have = {t.exchange_id for t in bank.share_targets}
    for ex_id, ex in wanted.items():
        if ex_id not in have:
            bank.share_targets.append(
                BankShareTarget(exchange_id=ex_id, exchange=ex, created_by=actor)
            )
    record(
        s,
        actor,
        "bank.sharing_changed",
        "bank",
        bank.public_id,
        {"name": bank.name, "before": before, "share_to": after},
    )
    return after


def queue_shares(
    s: Session,
    bank: Bank,
    media_ids: Sequence[int],
    *,
    case: Case,
    decision_id: str,
    actor: str,
    now: datetime,
) -> int:
    """One pending share per file and per exchange the bank shares to, for the files a
    decision confirmed and banked here (only their signals the bank holds, enabled, and
    the exchange takes). A file already offered to that exchange, or one the exchange
    itself gave us, is not offered again. Audited per exchange; returns how many."""
    targets = list(
        s.scalars(
            select(Exchange)
            .join(BankShareTarget, BankShareTarget.exchange_id == Exchange.id)
            .where(BankShareTarget.bank_id == bank.id)
            .order_by(Exchange.id)
        )
    )
    if not targets or not media_ids:
        return 0
    files: list[tuple[str, str, dict[str, str]]] = []  # (sha256, type, {signal: value})
    for i in range(0, len(media_ids), _CHUNK):
        for sha, md5, pdq, media_type in s.execute(
            select(Media.sha256, Media.md5, Media.pdq, Media.media_type)
            .where(Media.id.in_(media_ids[i : i + _CHUNK]))
            .order_by(Media.id)
        ):
            files.append((sha, media_type or "image", {"md5": md5 or "", "pdq": pdq or ""}))
    banked = _enabled_in_bank(s, bank.id, files)
    total = 0
    for ex in targets:
        kind = ExchangeType(ex.type)
        offers = {
            sha: (media_type, held)
            for sha, media_type, signals in files
            if (held := shareable(kind, {t: v for t, v in signals.items() if (t, v) in banked}))
        }
        if not offers:
            continue
        for sha, earlier in _already_offered(s, ex.id, list(offers)).items():
            media_type, held = offers.pop(sha)
            if earlier.state in _GONE and not _carried_by(s, ex.id, set(held.items())):
                # Cancelled or withdrawn before (found not violating), now confirmed
                # again: offered again, for the legal team to decide anew.
                reopen(s, earlier, held, case=case, decision_id=decision_id,
                       actor=actor, now=now)  # fmt: skip
                total += 1
        theirs = _carried_by(
            s, ex.id, {(t, v) for _, held in offers.values() for t, v in held.items()}
        )
        ids: list[str] = []
        for sha, (media_type, held) in offers.items():
            if any((t, v) in theirs for t, v in held.items()):
                continue  # the exchange gave it to us: the decision went back as a vote
            share = ExchangeShare(
                exchange_id=ex.id,
                bank_id=bank.id,
                case_id=case.id,
                decision_id=decision_id,
                media_sha256=sha,
                media_type=media_type,
                signals=json.dumps(held, sort_keys=True),
                state=ShareState.PENDING.value,
                created_at=now,
                created_by=actor,
                attempts=0,
            )
            s.add(share)
            s.flush()
            ids.append(share.public_id)
        if ids:
            record(
                s,
                actor,
                "exchange.shares_proposed",
                "case",
                case.public_id,
                {"exchange": ex.name, "bank": bank.name, "decision": decision_id,
                 "count": len(ids), "shares": ids[:100]},
            )  # fmt: skip
            total += len(ids)
    return total


def _enabled_in_bank(
    s: Session, bank_id: int, files: list[tuple[str, str, dict[str, str]]]
) -> set[tuple[str, str]]:
    pairs = sorted({(t, v) for _, _, signals in files for t, v in signals.items() if v})
    out: set[tuple[str, str]] = set()
    for i in range(0, len(pairs), _CHUNK):
        out.update(
            (t, v)
            for t, v in s.execute(
                select(BankEntry.signal_type, BankEntry.value).where(
                    BankEntry.bank_id == bank_id,
                    BankEntry.enabled.is_(True),
                    tuple_(BankEntry.signal_type, BankEntry.value).in_(pairs[i : i + _CHUNK]),
                )
            )
        )
    return out


def _already_offered(s: Session, exchange_id: int, shas: list[str]) -> dict[str, ExchangeShare]:
    """The shares these files have with the exchange (one per file and exchange)."""
    out: dict[str, ExchangeShare] = {}
    for i in range(0, len(shas), _CHUNK):
        out.update(
            (sh.media_sha256, sh)
            for sh in s.scalars(
                select(ExchangeShare).where(
                    ExchangeShare.exchange_id == exchange_id,
                    ExchangeShare.media_sha256.in_(shas[i : i + _CHUNK]),
                )
            )
        )
    return out


# Shares that ended because their file was found not violating, and that the exchange
# does not hold: offered again when the file is confirmed again. (``withdraw_failed``
# is not among them: the exchange may still hold it.)
_GONE = (ShareState.CANCELLED.value, ShareState.WITHDRAWN.value)


def reopen(
    s: Session,
    sh: ExchangeShare,
    held: dict[str, str],
    *,
    case: Case,
    decision_id: str | None,
    actor: str,
    now: datetime,
) -> None:
    """A cancelled or withdrawn share offered again (its file confirmed again): pending,
    for the legal team to approve or refuse anew, with the signals the bank holds now.
    What it was before stays in the audit log (``exchange.share_reoffered``)."""
    ex = s.get_one(Exchange, sh.exchange_id)
    before = {"state": sh.state, "upstream_id": sh.upstream_id,
              "withdraw_reason": sh.withdraw_reason}  # fmt: skip
    sh.state = ShareState.PENDING.value
    sh.case_id, sh.decision_id = case.id, decision_id
    sh.signals = json.dumps(held, sort_keys=True)
    sh.created_at, sh.created_by = now, actor
    sh.decided_at = sh.decided_by = sh.reason = sh.classification = None
    sh.attempts, sh.next_attempt_at, sh.last_error = 0, None, None
    sh.sent_at = sh.upstream_id = sh.upstream_seen_at = None
    sh.withdrawn_at = sh.withdraw_reason = None
    record(s, actor, "exchange.share_reoffered", "exchange_share", sh.public_id,
           {"exchange": ex.name, "media_sha256": sh.media_sha256, "case": case.public_id,
            "decision": decision_id, "before": before})  # fmt: skip


def reoffer_shares(
    s: Session, bank_id: int, signals: set[tuple[str, str]], *, actor: str, now: datetime
) -> int:
    """Entries enabled again (a false positive that was not one): the bank's cancelled or
    withdrawn shares offering any of these (type, value) are offered again, pending the
    legal team, when the case that confirmed the file still stands as a violation and
    the bank still shares to that exchange. Returns how many."""
    values = sorted({v for _, v in signals})
    if not values:
        return 0
    targets = set(
        s.scalars(select(BankShareTarget.exchange_id).where(BankShareTarget.bank_id == bank_id))
    )
    if not targets:
        return 0
    changed = 0
    for shares in _shares_offering(
        s, bank_id, values, _GONE, ExchangeShare.exchange_id.in_(targets)
    ):
        for sh in shares:
            offered = json.loads(sh.signals)
            if not set(offered.items()) & signals:
                continue
            case = s.get(Case, sh.case_id) if sh.case_id is not None else None
            if case is None or case.outcome != Outcome.VIOLATION.value:
                continue  # the decision that confirmed it no longer stands
            ex = s.get_one(Exchange, sh.exchange_id)
            enabled = _enabled_in_bank(s, bank_id, [(sh.media_sha256, sh.media_type, offered)])
            held = shareable(ExchangeType(ex.type), {t: v for t, v in offered.items()
                                                      if (t, v) in enabled})  # fmt: skip
            if not held or _carried_by(s, ex.id, set(held.items())):
                continue
            reopen(s, sh, held, case=case, decision_id=sh.decision_id, actor=actor, now=now)
            changed += 1
    return changed


def _shares_offering(
    s: Session,
    bank_id: int,
    values: Sequence[str],
    states: Iterable[str],
    *more: ColumnElement[bool],
) -> Iterator[list[ExchangeShare]]:
    """The bank's shares in ``states`` whose signals mention any of ``values`` (the
    caller checks the exact (type, value) pairs), locked, 50 values a query."""
    for i in range(0, len(values), 50):
        part = values[i : i + 50]
        yield list(
            s.scalars(
                select(ExchangeShare)
                .where(
                    ExchangeShare.bank_id == bank_id,
                    ExchangeShare.state.in_(tuple(states)),
                    or_(*(ExchangeShare.signals.contains(v) for v in part)),
                    *more,
                )
                .order_by(ExchangeShare.id)
                .with_for_update()
            )
        )


def _carried_by(s: Session, exchange_id: int, pairs: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of these (type, value) a live upstream entry of the exchange carries."""
    ordered = sorted(pairs)
    out: set[tuple[str, str]] = set()
    for i in range(0, len(ordered), _CHUNK):
        out.update(
            (t, v)
            for t, v in s.execute(
                select(BankEntry.signal_type, BankEntry.value)
                .join(ExchangeEntry, ExchangeEntry.entry_id == BankEntry.id)
                .where(
                    ExchangeEntry.exchange_id == exchange_id,
                    ExchangeEntry.removed_at.is_(None),
                    tuple_(BankEntry.signal_type, BankEntry.value).in_(ordered[i : i + _CHUNK]),
                )
            )
        )
    return out


# Shares the exchange holds, or may hold (an approved one's lost answer, learnt by a
# sync: its upstream id is known), and those not sent yet.
_HELD = (ShareState.SENT.value, ShareState.APPROVED.value, ShareState.FAILED.value)
_NOT_SENT = (ShareState.PENDING.value, ShareState.APPROVED.value)


def withdraw_shares(
    s: Session,
    bank_id: int,
    signals: set[tuple[str, str]],
    *,
    actor: str,
    now: datetime,
    why: str,
) -> int:
    """The bank's shares offering any of these (type, value), now no longer confirmed:
    one not sent yet is cancelled (never sent); one the exchange holds is queued for
    withdrawal (``withdrawing``, sent by the outbox like a share, retried). Audited per
    share. Returns how many changed."""
    values = sorted({v for _, v in signals})
    if not values:
        return 0
    changed = 0
    for shares in _shares_offering(s, bank_id, values, {*_HELD, *_NOT_SENT}):
        for sh in shares:
            offered = set(json.loads(sh.signals).items())
            if not offered & signals:
                continue
            ex = s.get_one(Exchange, sh.exchange_id)
            details = {"exchange": ex.name, "media_sha256": sh.media_sha256,
                       "decision": sh.decision_id, "reason": why}  # fmt: skip
            if sh.upstream_id is None and sh.state in _NOT_SENT:
                sh.state = ShareState.CANCELLED.value
                sh.withdrawn_at, sh.withdraw_reason = now, why
                sh.next_attempt_at = None
                record(s, actor, "exchange.share_cancelled", "exchange_share", sh.public_id,
                       details)  # fmt: skip
            elif sh.upstream_id is not None:
                sh.state = ShareState.WITHDRAWING.value
                sh.withdraw_reason = why
                sh.attempts, sh.next_attempt_at, sh.last_error = 0, now, None
                record(s, actor, "exchange.share_withdrawal_queued", "exchange_share",
                       sh.public_id, {**details, "upstream_id": sh.upstream_id})  # fmt: skip
            else:
                continue  # failed without reaching the exchange: nothing to take back
            changed += 1
    return changed
