"""The reporter's side of a case: withdrawing a report, the public status, finding a
case and report by case number and status token, and the mail to reporters.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from takedown.domain.cases import (
    APPEAL_WINDOW,
    PUBLIC_STATUS,
    CaseState,
    PublicStatus,
    public_text,
)
from takedown.errors import NotFound
from takedown.ids import utcnow
from takedown.services.audit.chain import record
from takedown.services.cases.base import CaseBase, _token_hash
from takedown.services.cases.views import PublicDecision, PublicStatusView
from takedown.services.outbound.mail import queue_mail
from takedown.store.db import unit_of_work
from takedown.store.models import Appeal, Case, CaseItem, CaseLocation, Item, Report


class CaseStatus(CaseBase):
    """What a reporter can do and see with their case number and token, and their mail."""

    def withdraw(self, case_number: str, token: str) -> PublicStatusView:
        """The reporter withdraws their report (idempotent).

        What changes: their report no longer counts as a TAKE IT DOWN request (the
        48-hour clock stops if no other request remains), the hashes and places it
        named stop pulling later uploads into the case, and the timeline says so.
        What does not: content already hidden stays hidden until a reviewer decides,
        and the case stays in review. A withdrawal can be coerced (an abuser making the
        victim take it back), and material of a minor must be reviewed (and reported
        where the law requires) whoever withdraws."""
        with unit_of_work(self._sessions) as s:
            case, report = self._report_for_token(s, case_number, token)
            if report.withdrawn_at is None:
                now = utcnow()
                report.withdrawn_at = now
                s.execute(delete(CaseLocation).where(CaseLocation.report_id == report.id))
                still_requested = s.scalar(
                    select(func.count())
                    .select_from(Report)
                    .where(
                        Report.case_id == case.id,
                        Report.takedown_request.is_(True),
                        Report.withdrawn_at.is_(None),
                    )
                )
                if report.takedown_request and not still_requested and case.decided_at is None:
                    case.takedown_due_at = None
                case.updated_at = now
                record(
                    s,
                    f"reporter:{report.reporter_role}",
                    "report.withdrawn",
                    "case",
                    case.public_id,
                    {"report": report.public_id, "takedown_request": report.takedown_request},
                )
                self._refresh_priority(s, case, now)
        return self.public_status(case_number, token)

    def public_status(self, case_number: str, token: str) -> PublicStatusView:
        with unit_of_work(self._sessions, write=False) as s:
            case, report = self._report_for_token(s, case_number, token)
            # This reporter's own report: a later report of the same content joins the
            # case, and what happened before it came stays in the timeline before it.
            received = report.received_at
            status = PUBLIC_STATUS[CaseState(case.state)]
            timeline = [{"at": received.isoformat(), "event": "received"}]
            if case.restricted_at:
                timeline.append(
                    {"at": case.restricted_at.isoformat(), "event": "content_restricted"}
                )
            decision = None
            if case.decided_at and case.outcome:
                decision = PublicDecision(
                    case.outcome,
                    case.public_reasons or "",
                    case.decided_at,
                    case.decided_at + APPEAL_WINDOW,
                )
                timeline.append({"at": case.decided_at.isoformat(), "event": "decided"})
            for appeal in s.scalars(select(Appeal).where(Appeal.case_id == case.id)):
                timeline.append({"at": appeal.opened_at.isoformat(), "event": "appeal_opened"})
            if report.withdrawn_at:
                timeline.append({"at": report.withdrawn_at.isoformat(), "event": "withdrawn"})
            timeline.sort(key=lambda e: e["at"])
            restricted = s.scalar(
                select(func.count())
                .select_from(CaseItem)
                .join(Item, Item.id == CaseItem.item_id)
                .where(CaseItem.case_id == case.id, Item.visibility != "visible")
            )
            return PublicStatusView(
                case_number=case.public_id,
                status=status.value,
                status_text=public_text(
                    status,
                    decided_before_report=case.decided_at is not None
                    and case.decided_at <= received,
                ),
                content_restricted=bool(restricted),
                received_at=received,
                restricted_at=case.restricted_at,
                decision=decision,
                timeline=timeline,
                withdrawn_at=report.withdrawn_at,
                hashed_files=len(json.loads(report.locations).get("hashes", [])),
            )

    def _case_for_token(self, s: Session, case_number: str, token: str) -> Case:
        return self._report_for_token(s, case_number, token)[0]

    def _report_for_token(self, s: Session, case_number: str, token: str) -> tuple[Case, Report]:
        row = s.execute(
            select(Case, Report)
            .join(Report, Report.case_id == Case.id)
            .where(
                Case.public_id == case_number.strip(),
                Report.status_token_hash == _token_hash(token.strip()),
            )
        ).first()
        if row is None:
            # One answer for "no such case" and "wrong token": a case number alone
            # reveals nothing.
            raise NotFound("No report matches that case number and token.", code="report_not_found")
        return row[0], row[1]

    # -- mail ------------------------------------------------------------------------------
    def _mail(
        self, s: Session, case: Case, reports: Iterable[Report], event: str, now: datetime
    ) -> None:
        status = PUBLIC_STATUS[CaseState(case.state)]
        for report in reports:
            if not report.reporter_email:
                continue
            queue_mail(
                s,
                report.reporter_email,
                f"Your report {case.public_id}: {status.value.replace('_', ' ')}",
                _mail_body(case, status, event, self._policy.public_base_url),
                now,
            )

    def _mail_status_change(
        self,
        s: Session,
        case: Case,
        status: PublicStatus,
        now: datetime,
        exclude: int | None = None,
    ) -> None:
        reports = [
            r for r in s.scalars(select(Report).where(Report.case_id == case.id)) if r.id != exclude
        ]
        self._mail(s, case, reports, "status", now)


def _mail_body(case: Case, status: PublicStatus, event: str, base: str) -> str:
    lines = []
    if event == "received":
        lines.append(f"We have received your report. Your case number is {case.public_id}.")
    lines.append(public_text(status, decided_before_report=event == "received"))
    if status is PublicStatus.DECIDED and case.outcome:
        lines.append(f"Decision: {case.outcome.replace('_', ' ')}.")
        if case.public_reasons:
            lines.append(f"Reasons: {case.public_reasons}")
        if event == "received" and case.decided_at:  # decided before this report came
            until = case.decided_at + APPEAL_WINDOW
            lines.append(f"You can appeal this decision until {until:%d %B %Y}.")
        else:
            lines.append("You can appeal this decision for six months from today.")
    lines.append(
        f"Follow your report at {base}/status with your case number and the "
        "status token you were given when you reported (we never send it by mail)."
    )
    return "\n\n".join(lines)
