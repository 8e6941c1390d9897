"""After a confirmed violation: re-upload blocking and account measures.

Called inside the decision's transaction, so the bank entries, account states and the
platform's account actions are written together with the decision or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from takedown.domain.banks import MatchAction
from takedown.domain.enforcement import (
    AccountMeasure,
    AccountPolicy,
    ReporterMeasure,
    ReporterPolicy,
    measure_for,
    reporter_measure,
)
from takedown.domain.hashlists import HashRecord
from takedown.domain.reports import Category
from takedown.domain.statements import REDRESS
from takedown.ids import new_id
from takedown.services.audit.chain import record, record_many
from takedown.services.banks.service import _insert_records, apply_settings, setting_changes
from takedown.services.cases.copies import chunks
from takedown.store.models import (
    Account,
    Bank,
    Case,
    CaseItem,
    Item,
    ItemMedia,
    MailMessage,
    Media,
    OutboxMessage,
    Report,
    ReporterStanding,
)

OWN_BANK = "own-confirmed"
PDQ_QUALITY_FLOOR = 50


def own_bank(s: Session, actor: str) -> Bank:
    """The platform's bank of its own confirmed material, created on first use."""
    bank = s.scalars(select(Bank).where(Bank.name == OWN_BANK)).first()
    if bank is None:
        bank = Bank(
            name=OWN_BANK,
            description="Media confirmed by this platform's own "
            "reviewers; uploads matching them are blocked.",
            source="own",
            match_action=MatchAction.BLOCK.value,
            restrict_on_match=True,
            created_by=actor,
        )
        apply_settings(
            bank,
            setting_changes(
                pdq_threshold=31,
                pdq_quality_floor=PDQ_QUALITY_FLOOR,
                video_match_percent=80,
                video_frame_threshold=31,
            ),
        )
        s.add(bank)
        s.flush()
        record(s, actor, "bank.created", "bank", bank.public_id, {"name": OWN_BANK})
    return bank


def bank_confirmed_media(
    s: Session, case: Case, item_ids: Sequence[int], actor: str, decision_id: str
) -> int:
    """Every media file of the case's copies into the own bank, with the case as
    provenance. Disabling such an entry (a false positive) lets uploads through again."""
    media: set[int] = set()
    for part in chunks(list(item_ids)):
        media.update(s.scalars(select(ItemMedia.media_id).where(ItemMedia.item_id.in_(part))))
    rows: list[tuple[str, str | None, str | None, int | None]] = []
    for part in chunks(sorted(media)):
        rows += s.execute(
            select(Media.sha256, Media.md5, Media.pdq, Media.pdq_quality).where(Media.id.in_(part))
        ).all()
    if not rows:
        return 0
    category = case.categories.split(",")[0] or None
    note = f"confirmed by decision {decision_id}"
    records: list[HashRecord] = []
    for sha, md5, pdq, quality in rows:
        records.append(HashRecord("sha256", sha, None, "own", case.public_id, category, note))
        if md5:
            records.append(HashRecord("md5", md5, None, "own", case.public_id, category, note))
        if pdq and (quality is None or quality >= PDQ_QUALITY_FLOOR):
            records.append(HashRecord("pdq", pdq, quality, "own", case.public_id, category, note))
    result = _insert_records(s, own_bank(s, actor), records, actor, None)
    return result.added


def apply_account_measures(
    s: Session,
    case: Case,
    item_ids: Sequence[int],
    actor: str,
    policy: AccountPolicy,
    now: datetime,
) -> dict[str, str]:
    """Strike, warn or suspend each posting account; returns account id -> measure.
    Suspended accounts' other items are queued for checking in a case of their own."""
    accounts: set[int] = set()
    for part in chunks(list(item_ids)):
        accounts.update(
            a for a in s.scalars(select(Item.account_id).where(Item.id.in_(part))) if a is not None
        )
    categories = {Category(c) for c in case.categories.split(",") if c}
    taken: dict[str, str] = {}
    outbox = []
    to_suspend: list[int] = []
    statuses: dict[int, str] = {}
    # In bulk (a case of 100,000 copies may involve 100,000 accounts): one UPDATE for the
    # strikes, one read, one UPDATE for the suspensions, per chunk.
    for part in chunks(sorted(accounts)):
        s.execute(
            update(Account)
            .where(Account.id.in_(part))
            .values(confirmed_violations=Account.confirmed_violations + 1, updated_at=now)
        )
        for acc_id, pid, strikes, status in s.execute(
            select(
                Account.id, Account.platform_id, Account.confirmed_violations, Account.status
            ).where(Account.id.in_(part))
        ).all():
            measure = measure_for(categories, strikes, status, policy)
            if measure is AccountMeasure.NONE:
                continue
            if measure in (AccountMeasure.SUSPEND, AccountMeasure.TERMINATE):
                to_suspend.append(acc_id)
                statuses[acc_id] = (
                    "terminated" if measure is AccountMeasure.TERMINATE else "suspended"
                )
            taken[pid] = measure.value
            outbox.append(_account_action(pid, strikes, measure, case, now))
    for status in ("suspended", "terminated"):
        ids = [i for i in to_suspend if statuses[i] == status]
        for part in chunks(ids):
            s.execute(update(Account).where(Account.id.in_(part)).values(status=status))
    for part in chunks(outbox, 5000):  # type: ignore[arg-type]
        s.execute(insert(OutboxMessage), part)
    by_measure: dict[str, list[str]] = {}
    for platform_id, done_measure in taken.items():
        by_measure.setdefault(done_measure, []).append(platform_id)
    for done_measure, pids in by_measure.items():
        record_many(s, actor, f"account.{done_measure}", "account", pids, {"case": case.public_id})
    suspended = by_measure.get(AccountMeasure.SUSPEND.value, []) + by_measure.get(
        AccountMeasure.TERMINATE.value, []
    )
    if suspended:
        _queue_other_items(s, case, suspended, set(item_ids), actor, now)
    return taken


def _account_action(
    platform_id: str, strikes: int, measure: AccountMeasure, case: Case, now: datetime
) -> dict[str, object]:
    key = new_id()
    statement = {
        "measure": {
            AccountMeasure.SUSPEND: "Account suspended.",
            AccountMeasure.TERMINATE: "Account terminated (repeated violations).",
        }.get(measure, "Warning: a further violation of this kind will suspend the account."),
        "territorial_scope": "Worldwide.",
        "duration": "Until reviewed on appeal."
        if measure in (AccountMeasure.SUSPEND, AccountMeasure.TERMINATE)
        else "Not applicable.",
        "facts": f"Content posted by this account was confirmed as violating (case "
        f"{case.public_id}); strikes: {strikes}.",
        "automated_detection": False,
        "automated_decision": "partially",  # a person confirmed; the rule applied the measure
        "ground": "The platform's repeat-violation policy (DSA art. 23).",
        "ground_type": "incompatible_content",
        "redress": REDRESS,
    }
    return {
        "public_id": key,
        "idempotency_key": key,
        "topic": f"account.{measure.value}",
        "target_type": "account",
        "target_platform_id": platform_id,
        "case_id": case.id,
        "payload": json.dumps(
            {
                "action": measure.value,
                "account_id": platform_id,
                "case": case.public_id,
                "strikes": strikes,
                "statement_of_reasons": statement,
            }
        ),
        "state": "pending",
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": now,
    }


def _queue_other_items(
    s: Session, case: Case, account_pids: list[str], done: set[int], actor: str, now: datetime
) -> None:
    """One case per suspended account holding its other items, open for a reviewer.
    Queried in batches: a case of 100,000 copies may suspend 100,000 accounts."""
    others: dict[str, list[int]] = {}
    for part in chunks(account_pids):
        for item_id, pid in s.execute(
            select(Item.id, Account.platform_id)
            .join(Account, Account.id == Item.account_id)
            .where(Account.platform_id.in_(part))
        ).all():
            if item_id not in done:
                others.setdefault(pid, []).append(item_id)
    for pid, items in others.items():
        sweep = Case(
            state="open",
            categories=case.categories,
            minor_safety=case.minor_safety,
            opened_at=now,
            updated_at=now,
            decision_due_at=case.decision_due_at,
        )
        s.add(sweep)
        s.flush()
        s.execute(
            insert(CaseItem),
            [
                {"case_id": sweep.id, "item_id": i, "reason": "same_account", "added_at": now}
                for i in items
            ],
        )
        record(
            s,
            actor,
            "case.opened",
            "case",
            sweep.public_id,
            {
                "reason": "account_sweep",
                "account": pid,
                "from_case": case.public_id,
                "items": len(items),
            },
        )


def reporter_key(submitted_by: str | None, email: str | None) -> str | None:
    """What identifies a reporter across reports; None for anonymous reporters."""
    if submitted_by:
        return submitted_by
    if email:
        return "email:" + email.strip().lower()
    return None


def is_limited(s: Session, key: str | None, now: datetime) -> bool:
    if key is None:
        return False
    until = s.scalar(
        select(ReporterStanding.limited_until).where(ReporterStanding.reporter_key == key)
    )
    return until is not None and until > now


def count_unfounded(
    s: Session, case: Case, actor: str, policy: ReporterPolicy, now: datetime
) -> dict[str, str]:
    """A manifestly unfounded outcome counts against each identifiable reporter of the
    case; returns reporter key -> measure taken (warn or limit)."""
    taken: dict[str, str] = {}
    for report in s.scalars(select(Report).where(Report.case_id == case.id)):
        key = reporter_key(report.submitted_by, report.reporter_email)
        if key is None or key in taken:
            continue
        standing = s.scalars(
            select(ReporterStanding).where(ReporterStanding.reporter_key == key)
        ).first()
        if standing is None:
            standing = ReporterStanding(reporter_key=key, unfounded=0)
            s.add(standing)
        standing.unfounded += 1
        standing.updated_at = now
        measure = reporter_measure(standing.unfounded, standing.warned_at is not None, policy)
        if measure is ReporterMeasure.WARN:
            standing.warned_at = now
        elif measure is ReporterMeasure.LIMIT:
            standing.limited_until = now + timedelta(days=policy.limit_days)
        else:
            continue
        taken[key] = measure.value
        record(
            s,
            actor,
            f"reporter.{measure.value}",
            "reporter",
            key,
            {"case": case.public_id, "unfounded": standing.unfounded},
        )
        if report.reporter_email:
            s.add(
                MailMessage(
                    to_address=report.reporter_email,
                    subject="About your reports"
                    if measure is ReporterMeasure.WARN
                    else "Your reports are limited",
                    body=_reporter_mail(measure, policy),
                    created_at=now,
                    next_attempt_at=now,
                )
            )
    return taken


def _reporter_mail(measure: ReporterMeasure, policy: ReporterPolicy) -> str:
    if measure is ReporterMeasure.WARN:
        return (
            "Several of your recent reports were found, on review, to be manifestly "
            "unfounded. Please report only content you believe in good faith to be "
            "illegal or harmful. If this continues, your reports will no longer hide "
            "content before it is reviewed."
        )
    return (
        f"Because your reports were repeatedly found manifestly unfounded, for "
        f"{policy.limit_days} days they will still be reviewed but will no longer hide "
        "content before review. You can contest this through an appeal."
    )
