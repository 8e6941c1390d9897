"""Decisions and appeals: deciding a case (the four-eyes rule in ``domain/cases``),
what an effective decision does to the case's items (removed, banked and counted against
the accounts, or restored), and appeals by the reporter or the uploader.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from takedown.domain.access import Principal
from takedown.domain.cases import (
    PUBLIC_STATUS,
    CaseFacts,
    CaseState,
    DecisionInput,
    ItemEffect,
    Outcome,
    PublicStatus,
    check_appeal,
    decide,
    validate_media_review,
)
from takedown.domain.triage import decision_target
from takedown.errors import Forbidden, InvalidRequest
from takedown.ids import utcnow
from takedown.services.audit.chain import record
from takedown.services.banks.feedback import queue_opinion
from takedown.services.cases.base import _categories
from takedown.services.cases.copies import chunks
from takedown.services.cases.enforcement import (
    apply_account_measures,
    bank_confirmed_media,
    count_unfounded,
    disable_banked_media,
    undo_account_measures,
)
from takedown.services.cases.media import check_media_in_case
from takedown.services.cases.status import CaseStatus
from takedown.services.cases.views import DecisionView, PublicStatusView, _decision_view
from takedown.store.db import unit_of_work
from takedown.store.models import Appeal, BankEntry, Case, CaseEntry, CaseItem, Decision


class CaseDecisions(CaseStatus):
    """Decisions (four eyes) and their effect on the items, and appeals."""

    # -- decisions and appeals -------------------------------------------------------
    def decide(
        self,
        case_id: str,
        *,
        outcome: str,
        reasons: str,
        principal: Principal,
        policy: str | None = None,
        internal_note: str | None = None,
        manifestly_unfounded: bool = False,
        media_review: list[dict[str, object]] | None = None,
    ) -> DecisionView:
        if principal.kind != "user" or principal.role is None:
            raise Forbidden("Cases are decided by people, not API keys.", code="forbidden")
        if manifestly_unfounded and outcome != Outcome.NO_VIOLATION.value:
            raise InvalidRequest(
                "Only a 'no_violation' decision can find the reports manifestly unfounded.",
                code="invalid_request",
            )
        try:
            parsed = Outcome(outcome)
        except ValueError:
            raise InvalidRequest(
                "outcome is violation, no_violation or needs_info.", code="invalid_outcome"
            ) from None
        if parsed is Outcome.VIOLATION and not (policy and policy.strip()):
            raise InvalidRequest(
                "Say which policy the content violates (policy).", code="policy_required"
            )
        reviews = validate_media_review(parsed, media_review)
        with unit_of_work(self._sessions) as s:
            case = self._get(s, case_id, for_update=True)
            check_media_in_case(s, case.id, [r.media_id for r in reviews])
            deciders = frozenset(
                s.scalars(select(Decision.user_id).where(Decision.case_id == case.id))
            )
            appeal_open = s.scalar(
                select(func.count())
                .select_from(Appeal)
                .where(Appeal.case_id == case.id, Appeal.decided_at.is_(None))
            )
            facts = CaseFacts(
                CaseState(case.state),
                case.minor_safety,
                case.pending_dismissal_by,
                # the pending dismisser is checked on its own; the others stand aside
                deciders - {case.pending_dismissal_by or ""},
                bool(appeal_open),
            )
            effect = decide(facts, DecisionInput(parsed, principal.id, principal.role, reasons))
            now = utcnow()
            row = Decision(
                case_id=case.id,
                kind=effect.kind.value,
                outcome=parsed.value,
                policy=policy,
                reasons=reasons.strip(),
                internal_note=internal_note,
                manifestly_unfounded=manifestly_unfounded,
                user_id=principal.id,
                user_role=principal.role.value,
                effective=effect.effective,
                decided_at=now,
                media_review=json.dumps([r.to_dict() for r in reviews]) if reviews else None,
            )
            s.add(row)
            before = PUBLIC_STATUS[CaseState(case.state)]
            case.state = effect.new_state.value
            case.pending_dismissal_by = (
                principal.id
                if effect.new_state is CaseState.AWAITING_SECOND_REVIEW
                and parsed is Outcome.NO_VIOLATION
                else case.pending_dismissal_by
                if effect.new_state is CaseState.AWAITING_SECOND_REVIEW
                else None
            )
            if effect.effective:
                case.outcome = parsed.value
                case.outcome_policy = policy
                case.public_reasons = reasons.strip()
                case.decided_at = now
                s.execute(
                    update(Appeal)
                    .where(Appeal.case_id == case.id, Appeal.decided_at.is_(None))
                    .values(decided_at=now)
                )
            if effect.effect is not None:
                s.flush()  # the decision's public id, for provenance
                self._apply_effect(s, case, effect.effect, principal.actor, now, row.public_id)
            if effect.effective and parsed in (Outcome.VIOLATION, Outcome.NO_VIOLATION):
                s.flush()
                self._write_back(s, case, parsed is Outcome.VIOLATION, principal.actor, now, row)
            if (
                effect.effective
                and parsed is Outcome.NO_VIOLATION
                and (
                    manifestly_unfounded
                    or s.scalar(
                        select(func.count())
                        .select_from(Decision)
                        .where(Decision.case_id == case.id, Decision.manifestly_unfounded.is_(True))
                    )
                )
            ):
                count_unfounded(s, case, principal.actor, self._policy.reporters, now)
            case.updated_at = now
            s.flush()
            record(
                s,
                principal.actor,
                f"decision.{effect.kind.value}",
                "case",
                case.public_id,
                {
                    "decision": row.public_id,
                    "outcome": parsed.value,
                    "effective": effect.effective,
                    "policy": policy,
                },
            )
            after = PUBLIC_STATUS[CaseState(case.state)]
            if after != before or effect.effective:
                self._mail_status_change(s, case, after, now)
            return _decision_view(row)

    def _write_back(
        self, s: Session, case: Case, confirmed: bool, actor: str, now: datetime, row: Decision
    ) -> None:
        """An effective decision goes back to the exchanges of the bank entries whose
        matches brought items into the case: a violation confirms them (StopNCII
        Blocked, NCMEC upvote), no violation rejects them (NotBlocked, downvote). Once
        per entry and outcome: a decision repeating the case's outcome queues nothing,
        one overturning it on appeal queues the opposite opinion."""
        opinion = "confirmed" if confirmed else "rejected"
        links = s.scalars(
            select(CaseEntry)
            .where(CaseEntry.case_id == case.id)
            .where(or_(CaseEntry.opinion.is_(None), CaseEntry.opinion != opinion))
            .order_by(CaseEntry.entry_id)
        ).all()
        for link in links:
            entry = s.get_one(BankEntry, link.entry_id)
            queue_opinion(
                s,
                entry,
                confirmed=confirmed,
                actor=actor,
                now=now,
                case=case.public_id,
                decision=row.public_id,
            )
            link.opinion, link.opinion_decision = opinion, row.public_id

    def _apply_effect(
        self,
        s: Session,
        case: Case,
        effect: ItemEffect,
        actor: str,
        now: datetime,
        decision_id: str = "",
    ) -> None:
        if effect is ItemEffect.REMOVE:
            removed = set(self._case_item_ids(s, case, visibility="removed"))
            all_ids = self._case_item_ids(s, case)
            ids = [i for i in all_ids if i not in removed]
            self._set_items(
                s,
                case,
                ids,
                "removed",
                True,
                "item.remove",
                actor,
                "confirmed_violation",
                now,
                decision_id,
            )
            # Re-uploads are blocked: the media go into the platform's own bank.
            bank_confirmed_media(s, case, all_ids, actor, decision_id)
            apply_account_measures(
                s,
                case,
                all_ids,
                actor,
                self._policy.accounts,
                now,
                decision_id,
                scope=self._policy.territorial_scope,
            )
        else:
            paused = set(self._paused_ids(s, case, paused=True))
            ids = self._case_item_ids(s, case, visibility="restricted")
            # Demonetized-only copies get their monetization back too.
            ids += [i for i in self._case_item_ids(s, case, visibility="visible") if i in paused]
            self._set_items(
                s,
                case,
                ids,
                "visible",
                False,
                "item.restore",
                actor,
                "no_violation",
                now,
                decision_id,
            )
            self._undo_violation(s, case, actor, now, decision_id)

    def _undo_violation(
        self, s: Session, case: Case, actor: str, now: datetime, decision_id: str
    ) -> None:
        """A violation decision overturned (an upheld appeal): every item it removed is
        restored (unless another confirmed case holds it), every account measure it
        took is undone, and its media no longer block uploads. Each restored item and
        reinstated account goes to the platform with its statement of reasons."""
        removed = self._case_item_ids(s, case, visibility="removed")
        held: set[int] = set()
        for part in chunks(removed):
            held.update(
                s.scalars(
                    select(CaseItem.item_id)
                    .join(Case, Case.id == CaseItem.case_id)
                    .where(
                        CaseItem.item_id.in_(part),
                        CaseItem.case_id != case.id,
                        Case.outcome == Outcome.VIOLATION.value,
                    )
                )
            )
        restored = self._set_items(
            s,
            case,
            [i for i in removed if i not in held],
            "visible",
            False,
            "item.restore",
            actor,
            "appeal_upheld",
            now,
            decision_id,
        )
        undone = undo_account_measures(
            s, case, actor, now, decision_id, self._policy.territorial_scope
        )
        disabled = disable_banked_media(
            s, case, actor, now, f"decision overturned on appeal ({decision_id})"
        )
        if restored or undone["strikes"] or undone["reinstated"] or disabled:
            record(
                s,
                actor,
                "decision.undone",
                "case",
                case.public_id,
                {
                    "decision": decision_id,
                    "items_restored": restored,
                    "items_still_held": len(held),
                    "strikes_withdrawn": undone["strikes"],
                    "accounts_reinstated": undone["reinstated"],
                    "bank_entries_disabled": disabled,
                },
            )

    def appeal_as_reporter(self, case_number: str, token: str, reason: str) -> PublicStatusView:
        with unit_of_work(self._sessions) as s:
            case = self._case_for_token(s, case_number, token)
            self._open_appeal(s, case, "reporter", reason, "reporter")
        return self.public_status(case_number, token)

    def appeal_as_uploader(self, case_id: str, reason: str, principal: Principal) -> str:
        with unit_of_work(self._sessions) as s:
            case = self._get(s, case_id, for_update=True)
            self._open_appeal(s, case, "uploader", reason, principal.actor)
            return case.state

    def _open_appeal(self, s: Session, case: Case, appellant: str, reason: str, actor: str) -> None:
        if len(reason.strip()) < 10:
            raise InvalidRequest("Explain why the decision should change.", code="reasons_required")
        now = utcnow()
        check_appeal(CaseState(case.state), case.decided_at, now)
        s.add(Appeal(case_id=case.id, appellant=appellant, reason=reason.strip(), opened_at=now))
        case.state = CaseState.APPEALED.value
        case.updated_at = now
        case.decision_due_at = now + decision_target(
            _categories(case),
            self._policy.decision_target_minor_hours,
            self._policy.decision_target_hours,
        )
        record(s, actor, "appeal.opened", "case", case.public_id, {"appellant": appellant})
        self._mail_status_change(s, case, PublicStatus.APPEAL_OPEN, now)
