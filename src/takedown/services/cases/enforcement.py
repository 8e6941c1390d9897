"""After a confirmed violation: re-upload blocking and account measures.

Called inside the decision's transaction, so the bank entries, account states and the
platform's account actions are written together with the decision or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, insert, select, update
from sqlalchemy.orm import Session

from takedown.domain.banks import MatchAction
from takedown.domain.enforcement import (
    AccountMeasure,
    AccountPolicy,
    Part,
    PostedItem,
    ReporterMeasure,
    ReporterPolicy,
    measure_for,
    parts_of,
    reporter_measure,
)
from takedown.domain.enforcement import Outcome as MeasureOutcome
from takedown.domain.hashlists import HashRecord
from takedown.domain.reports import Category
from takedown.domain.statements import REDRESS, WORLDWIDE, TerritorialScope
from takedown.domain.transparency import automation
from takedown.ids import new_id, utcnow
from takedown.services.audit.chain import record, record_many
from takedown.services.banks.service import _insert_records, apply_settings, setting_changes
from takedown.services.banks.sharing import queue_shares, withdraw_shares
from takedown.services.cases.copies import chunks
from takedown.services.outbound.mail import queue_mail
from takedown.store import repositories as repo
from takedown.store.models import (
    Account,
    AppliedMeasure,
    Bank,
    BankEntry,
    Case,
    CaseItem,
    Item,
    ItemMedia,
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
    bank = own_bank(s, actor)
    result = _insert_records(s, bank, records, actor, None)
    # Offered to the exchanges the bank shares to (none unless set), for legal approval.
    queue_shares(
        s, bank, sorted(media), case=case, decision_id=decision_id, actor=actor, now=utcnow()
    )
    return result.added


@dataclass(frozen=True)
class PlannedMeasure:
    account_id: int
    platform_id: str
    part: Part
    strikes: int  # strikes once this one counts
    outcome: MeasureOutcome


def account_parts(s: Session, item_ids: Sequence[int]) -> dict[int, Part]:
    """Each posting account's part in these items (domain/enforcement.parts_of)."""
    posted: list[PostedItem] = []
    for part in chunks(list(item_ids)):
        for account, reposts, quotes, posted_at, registered_at in s.execute(
            select(
                Item.account_id,
                Item.reposts_platform_id,
                Item.quotes_platform_id,
                Item.posted_at,
                Item.registered_at,
            ).where(Item.id.in_(part), Item.account_id.is_not(None))
        ).all():
            if account is not None:  # (filtered above; for the type checker)
                at = posted_at or registered_at
                posted.append(PostedItem(account, bool(reposts), bool(quotes), at))
    return parts_of(posted)


def plan_account_measures(
    s: Session,
    case: Case,
    item_ids: Sequence[int],
    policy: AccountPolicy,
    only_accounts: set[int] | None = None,
) -> list[PlannedMeasure]:
    """What confirming the case would do to each posting account; reads only, so the
    console can show it before the decision is confirmed. With ``only_accounts``: the
    accounts of late copies of a confirmed case (``item_ids`` are those copies), those
    not measured in this case yet; the case was uploaded before, so an own copy is a
    re-upload (and a large case is not read again for each late copy)."""
    parts = account_parts(s, item_ids)
    if only_accounts is not None:
        parts = {a: Part.REUPLOADER if p is Part.UPLOADER else p for a, p in parts.items()}
        done = set(
            s.scalars(
                select(AppliedMeasure.account_id).where(
                    AppliedMeasure.case_id == case.id, AppliedMeasure.reversed_at.is_(None)
                )
            )
        )
        parts = {a: p for a, p in parts.items() if a in only_accounts and a not in done}
    return plan_for_parts(s, case, parts, policy)


def plan_for_parts(
    s: Session, case: Case, parts: dict[int, Part], policy: AccountPolicy
) -> list[PlannedMeasure]:
    """What the policy does to these accounts (id -> part) in this case."""
    categories = {Category(c) for c in case.categories.split(",") if c}
    planned: list[PlannedMeasure] = []
    for part in chunks(sorted(parts)):
        for acc_id, pid, strikes, status, platform_status in s.execute(
            select(
                Account.id,
                Account.platform_id,
                Account.confirmed_violations,
                Account.status,
                Account.platform_status,
            ).where(Account.id.in_(part))
        ).all():
            outcome = measure_for(
                categories, parts[acc_id], strikes, _severer(status, platform_status), policy
            )
            planned.append(
                PlannedMeasure(acc_id, pid, parts[acc_id], strikes + outcome.strike, outcome)
            )
    return planned


def _severer(status: str, platform_status: str) -> str:
    order = ("deleted", "terminated", "suspended", "active")
    known = [x for x in (status, platform_status) if x in order]
    return min(known, key=order.index) if known else "active"


def preview_account_measures(
    s: Session, case: Case, parts: dict[int, Part], policy: AccountPolicy
) -> dict[str, dict[str, int]]:
    """part -> measure -> accounts, for the case page before the decision; ``parts``
    as :func:`account_parts` gives them (the page shows them too)."""
    out: dict[str, dict[str, int]] = {}
    for p in plan_for_parts(s, case, parts, policy):
        measure = p.outcome.measure.value
        if p.outcome.measure is AccountMeasure.NONE and p.outcome.strike:
            measure = "strike"  # counted, nothing else
        row = out.setdefault(p.part.value, {})
        row[measure] = row.get(measure, 0) + 1
    return out


def apply_account_measures(
    s: Session,
    case: Case,
    item_ids: Sequence[int],
    actor: str,
    policy: AccountPolicy,
    now: datetime,
    decision_id: str = "",
    only_accounts: set[int] | None = None,
    scope: TerritorialScope = WORLDWIDE,
    reason: str = "confirmed_violation",
) -> dict[str, str]:
    """Strike, warn, suspend or terminate each posting account by its part in the case;
    returns account id -> measure taken. Each account acted on gets a row in
    ``account_measures`` (undone if the decision is overturned). Suspended accounts'
    other items are queued for checking in a case of their own. In bulk: a case of
    100,000 copies may involve 100,000 accounts. ``reason`` says what caused it, as
    the items' actions do: a reviewer's decision, or a copy of confirmed material joining
    the case (no person looked at it: the transparency report counts it as solely
    automated)."""
    planned = plan_account_measures(s, case, item_ids, policy, only_accounts)
    struck = [p.account_id for p in planned if p.outcome.strike]
    for part in chunks(sorted(struck)):
        s.execute(
            update(Account)
            .where(Account.id.in_(part))
            .values(confirmed_violations=Account.confirmed_violations + 1, updated_at=now)
        )
    for status, measure in (
        ("suspended", AccountMeasure.SUSPEND),
        ("terminated", AccountMeasure.TERMINATE),
    ):
        ids = [p.account_id for p in planned if p.outcome.measure is measure]
        for part in chunks(sorted(ids)):
            s.execute(update(Account).where(Account.id.in_(part)).values(status=status))
    acted = [p for p in planned if p.outcome.strike or p.outcome.measure is not AccountMeasure.NONE]
    rows = [
        {
            "case_id": case.id,
            "account_id": p.account_id,
            "part": p.part.value,
            "measure": p.outcome.measure.value,
            "strike": p.outcome.strike,
            "decision": decision_id,
            "applied_at": now,
        }
        for p in acted
    ]
    for part in chunks(rows, 5000):  # type: ignore[arg-type]
        s.execute(insert(AppliedMeasure), part)
    taken = {
        p.platform_id: p.outcome.measure.value
        for p in planned
        if p.outcome.measure is not AccountMeasure.NONE
    }
    outbox = [
        _account_action(
            p.platform_id,
            p.strikes,
            p.outcome.measure,
            p.part,
            case,
            now,
            scope,
            decision_id,
            reason,
        )
        for p in planned
        if p.outcome.measure is not AccountMeasure.NONE
    ]
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


def undo_account_measures(
    s: Session,
    case: Case,
    actor: str,
    now: datetime,
    decision_id: str,
    scope: TerritorialScope = WORLDWIDE,
) -> dict[str, int]:
    """An overturned decision: its strikes taken back, and every account it suspended
    or terminated reinstated (unless another confirmed case still holds it), each with
    a statement of reasons for the platform to pass on. Returns counts."""
    rows = s.execute(
        select(
            AppliedMeasure.id,
            AppliedMeasure.account_id,
            AppliedMeasure.measure,
            AppliedMeasure.strike,
        ).where(AppliedMeasure.case_id == case.id, AppliedMeasure.reversed_at.is_(None))
    ).all()
    if not rows:
        return {"strikes": 0, "reinstated": 0}
    struck = sorted({r[1] for r in rows if r[3]})
    for part in chunks(struck):
        s.execute(
            update(Account)
            .where(Account.id.in_(part), Account.confirmed_violations > 0)
            .values(confirmed_violations=Account.confirmed_violations - 1, updated_at=now)
        )
    for part in chunks([r[0] for r in rows]):
        s.execute(
            update(AppliedMeasure)
            .where(AppliedMeasure.id.in_(part))
            .values(reversed_at=now, reversed_by=decision_id)
        )
    lifted = sorted({r[1] for r in rows if r[2] in ("suspend", "terminate")})
    still_held: set[int] = set()
    for part in chunks(lifted):  # suspended by another case that still stands
        still_held.update(
            s.scalars(
                select(AppliedMeasure.account_id).where(
                    AppliedMeasure.account_id.in_(part),
                    AppliedMeasure.reversed_at.is_(None),
                    AppliedMeasure.measure.in_(("suspend", "terminate")),
                )
            )
        )
    reinstate = [a for a in lifted if a not in still_held]
    pids: list[str] = []
    for part in chunks(reinstate):
        s.execute(
            update(Account).where(Account.id.in_(part)).values(status="active", updated_at=now)
        )
        pids += s.scalars(select(Account.platform_id).where(Account.id.in_(part)))
    outbox = [_reinstate_action(pid, case, now, decision_id, scope) for pid in pids]
    for part in chunks(outbox, 5000):  # type: ignore[arg-type]
        s.execute(insert(OutboxMessage), part)
    if pids:
        record_many(
            s,
            actor,
            "account.reinstate",
            "account",
            pids,
            {"case": case.public_id, "decision": decision_id},
        )
    return {"strikes": len(struck), "reinstated": len(pids)}


def disable_banked_media(s: Session, case: Case, actor: str, now: datetime, why: str) -> int:
    """The entries banked from the case (provenance: the case) disabled, so its media
    upload again once a decision is overturned; their shares to exchanges cancelled or
    withdrawn (``services/banks/sharing.withdraw_shares``)."""
    rows = list(
        s.execute(
            select(BankEntry.id, BankEntry.bank_id, BankEntry.signal_type, BankEntry.value)
            .join(Bank, Bank.id == BankEntry.bank_id)
            .where(
                Bank.name == OWN_BANK,
                BankEntry.source_id == case.public_id,
                BankEntry.enabled.is_(True),
            )
        )
    )
    ids = [r[0] for r in rows]
    for part in chunks(ids):
        s.execute(
            update(BankEntry)
            .where(BankEntry.id.in_(part))
            .values(enabled=False, disabled_at=now, disabled_by=actor, disabled_reason=why)
        )
    # Its files shared to exchanges: cancelled if not sent yet, else taken back.
    by_bank: dict[int, set[tuple[str, str]]] = {}
    for _, bank_id, stype, value in rows:
        by_bank.setdefault(bank_id, set()).add((stype, value))
    for bank_id, pairs in by_bank.items():
        withdraw_shares(s, bank_id, pairs, actor=actor, now=now, why=why)
    if ids:
        record(
            s,
            actor,
            "entry.disabled",
            "case",
            case.public_id,
            {"bank": OWN_BANK, "entries": len(ids), "reason": why},
        )
    return len(ids)


def _account_action(
    platform_id: str,
    strikes: int,
    measure: AccountMeasure,
    part: Part,
    case: Case,
    now: datetime,
    scope: TerritorialScope = WORLDWIDE,
    decision_id: str = "",
    reason: str = "confirmed_violation",
) -> dict[str, object]:
    statement = {
        "measure": {
            AccountMeasure.SUSPEND: "Account suspended.",
            AccountMeasure.TERMINATE: "Account terminated (repeated violations).",
        }.get(measure, "Warning: a further violation of this kind will suspend the account."),
        "territorial_scope": scope.sentence,
        "territorial_scope_countries": list(scope.countries),
        "duration": "Until reviewed on appeal."
        if measure in (AccountMeasure.SUSPEND, AccountMeasure.TERMINATE)
        else "Not applicable.",
        "facts": f"Content this account {_PART_FACT[part]} was confirmed as violating (case "
        f"{case.public_id}); strikes: {strikes}.",
        "automated_detection": False,
        # after a reviewer's decision, partially (a person confirmed, the rule chose the
        # measure); for a late copy's account, fully (domain/transparency.automation)
        "automated_decision": automation(f"account.{measure.value}", reason),
        "ground": "The platform's repeat-violation policy (DSA art. 23).",
        "ground_type": "incompatible_content",
        "redress": REDRESS,
    }
    return _outbox_row(
        f"account.{measure.value}",
        platform_id,
        case,
        now,
        {
            "action": measure.value,
            "account_id": platform_id,
            "case": case.public_id,
            "part": part.value,
            "strikes": strikes,
            "reason": reason,
            "decision": decision_id or None,
            "statement_of_reasons": statement,
        },
    )


_PART_FACT = {
    Part.UPLOADER: "uploaded",
    Part.REUPLOADER: "uploaded again",
    Part.QUOTER: "quoted",
    Part.REPOSTER: "reposted",
}


def _reinstate_action(
    platform_id: str,
    case: Case,
    now: datetime,
    decision_id: str,
    scope: TerritorialScope = WORLDWIDE,
) -> dict[str, object]:
    statement = {
        "measure": "Account reinstated: the suspension is lifted.",
        "territorial_scope": scope.sentence,
        "territorial_scope_countries": list(scope.countries),
        "duration": "Not applicable.",
        "facts": f"On appeal, a second review found that the content of case "
        f"{case.public_id} does not violate the rules; the measure it caused is undone "
        "and the strike withdrawn.",
        "automated_detection": False,
        "automated_decision": "not_automated",
        "ground": "The decision that caused the suspension was overturned on appeal.",
        "ground_type": "incompatible_content",
        "redress": REDRESS,
    }
    return _outbox_row(
        "account.reinstate",
        platform_id,
        case,
        now,
        {
            "action": "reinstate",
            "account_id": platform_id,
            "case": case.public_id,
            "decision": decision_id,
            "statement_of_reasons": statement,
        },
    )


def _outbox_row(
    topic: str, platform_id: str, case: Case, now: datetime, payload: dict[str, object]
) -> dict[str, object]:
    key = new_id()
    return {
        "public_id": key,
        "idempotency_key": key,
        "topic": topic,
        "target_type": "account",
        "target_platform_id": platform_id,
        "case_id": case.id,
        "payload": json.dumps(payload),
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
            .where(
                Account.platform_id.in_(part),
                ~exists().where(CaseItem.case_id == case.id, CaseItem.item_id == Item.id),
            )
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
        public = repo.public_when_found(s, items)
        s.execute(
            insert(CaseItem),
            [
                {
                    "case_id": sweep.id,
                    "item_id": i,
                    "reason": "same_account",
                    "added_at": now,
                    "publicly_available": public.get(i),
                }
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
            queue_mail(
                s,
                report.reporter_email,
                "About your reports"
                if measure is ReporterMeasure.WARN
                else "Your reports are limited",
                _reporter_mail(measure, policy),
                now,
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
