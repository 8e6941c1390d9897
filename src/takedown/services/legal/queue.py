"""The legal queue: confirmed cases the law says must be reported, how long the
company has known, and an alert when one waits too long.

18 U.S.C. 2258A asks for a report "as soon as reasonably possible" after actual
knowledge, with no fixed hour limit; the alert threshold is the deployment's own
promise (``TAKEDOWN_LEGAL_ALERT_AFTER_HOURS``). Knowledge starts when the case opened:
the first report or hash match that brought the material to the company's attention.

A case is reported when the NCA has it (UK) or every reported account in it has a
finished CyberTipline report: content already reported to NCMEC need not go to the NCA
too, and an account's report is never filed twice (``legal_filings.dedupe_key``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from takedown.domain.cases import Outcome
from takedown.domain.cybertipline import REPORTABLE, suggest_escalation
from takedown.domain.reports import Category, ReporterRole
from takedown.ids import utcnow
from takedown.services.audit.chain import record
from takedown.services.cases.media import accounts_of_case
from takedown.services.legal.take_it_down import check_take_it_down
from takedown.services.outbound.mail import queue_mail
from takedown.store.db import unit_of_work
from takedown.store.models import Case, LegalAlert, LegalFiling, Report

OVERDUE = "report_overdue"


@dataclass(frozen=True)
class ReportedTo:
    body: str  # ncmec | nca
    external_id: str | None  # NCMEC report id or NCA reference
    subject: str  # the reported account ("" for the whole case)
    state: str
    filing_id: str
    # Why a filing stopped (``invalid``: the element and schema rule; ``failed``:
    # NCMEC's answer), for the person who fixes it.
    problem: str | None = None


@dataclass(frozen=True)
class LegalQueueEntry:
    case_id: str
    categories: list[str]
    knowledge_at: datetime
    hours_since_knowledge: float
    decided_at: datetime | None
    escalate_to_high_priority: bool
    overdue: bool
    needs_report: bool
    accounts_unreported: list[str]
    reported_to: list[ReportedTo]
    report_finished_at: datetime | None


class LegalService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        alert_after: timedelta = timedelta(hours=24),
        alert_email: str | None = None,
    ) -> None:
        self._sessions = sessions
        self.alert_after = alert_after
        self.alert_email = alert_email

    def queue(
        self, *, include_reported: bool = False, now: datetime | None = None
    ) -> list[LegalQueueEntry]:
        """Confirmed reportable cases, the longest-known first."""
        now = now or utcnow()
        with unit_of_work(self._sessions, write=False) as s:
            entries = [self._entry(s, c, now) for c in _reportable_cases(s)]
        if not include_reported:
            entries = [e for e in entries if e.needs_report]
        return sorted(entries, key=lambda e: (not e.escalate_to_high_priority, e.knowledge_at))

    def entry_for(self, case_id: str, now: datetime | None = None) -> LegalQueueEntry | None:
        """One case's queue entry (reported or not), or None when it is not a confirmed
        reportable case."""
        now = now or utcnow()
        with unit_of_work(self._sessions, write=False) as s:
            case = s.scalars(select(Case).where(Case.public_id == case_id)).first()
            if case is None or case.outcome != Outcome.VIOLATION.value:
                return None
            if not {Category(x) for x in case.categories.split(",") if x} & REPORTABLE:
                return None
            return self._entry(s, case, now)

    def _entry(self, s: Session, case: Case, now: datetime) -> LegalQueueEntry:
        cats = {Category(c) for c in case.categories.split(",") if c}
        roles = {
            ReporterRole(r)
            for r in s.scalars(select(Report.reporter_role).where(Report.case_id == case.id))
        }
        filings = list(
            s.scalars(
                select(LegalFiling)
                .where(LegalFiling.case_id == case.id, LegalFiling.state != "retracted")
                .order_by(LegalFiling.id)
            )
        )
        done = [f for f in filings if f.state == "finished"]
        nca = any(f.body == "nca" for f in done)
        unreported = sorted(
            accounts_of_case(s, case.id) - {f.subject for f in done if f.body == "ncmec"}
        )
        needs = not nca and bool(unreported)
        knowledge = case.opened_at
        waited = now - knowledge
        finished = [f.finished_at for f in done if f.finished_at is not None]
        return LegalQueueEntry(
            case_id=case.public_id,
            categories=sorted(c.value for c in cats),
            knowledge_at=knowledge,
            hours_since_knowledge=round(waited.total_seconds() / 3600, 2),
            decided_at=case.decided_at,
            escalate_to_high_priority=suggest_escalation(cats, roles)
            or any(f.escalate for f in filings),
            overdue=needs and waited > self.alert_after,
            needs_report=needs,
            accounts_unreported=[] if nca else unreported,
            reported_to=[
                ReportedTo(
                    f.body,
                    f.external_id,
                    f.subject,
                    f.state,
                    f.public_id,
                    f.last_error if f.state in ("invalid", "failed") else None,
                )
                for f in filings
            ],
            report_finished_at=max(finished) if finished and not needs else None,
        )

    def check_alerts(self, now: datetime | None = None) -> list[str]:
        """Alert once per case that waits longer than the threshold: an audit event and,
        when an address is configured, a mail through the mail outbox. The TAKE IT DOWN
        requests' 48 hours alert too (``take_it_down.py``)."""
        now = now or utcnow()
        alerted = []
        for entry in self.queue(now=now):
            if not entry.overdue:
                continue
            try:
                with unit_of_work(self._sessions) as s:
                    case = s.scalars(select(Case).where(Case.public_id == entry.case_id)).one()
                    if s.scalar(
                        select(LegalAlert.id).where(
                            LegalAlert.case_id == case.id, LegalAlert.kind == OVERDUE
                        )
                    ):
                        continue
                    s.add(LegalAlert(case_id=case.id, kind=OVERDUE, at=now))
                    record(
                        s,
                        "system",
                        "legal.report_overdue",
                        "case",
                        case.public_id,
                        {
                            "hours_since_knowledge": entry.hours_since_knowledge,
                            "threshold_hours": self.alert_after.total_seconds() / 3600,
                            "escalate": entry.escalate_to_high_priority,
                        },
                    )
                    if self.alert_email:
                        queue_mail(
                            s,
                            self.alert_email,
                            f"Overdue legal report: case {case.public_id}",
                            _alert_body(entry),
                            now,
                        )
            except IntegrityError:  # another worker alerted first
                continue
            alerted.append(entry.case_id)
        return alerted + check_take_it_down(self._sessions, self.alert_email, now)


def _reportable_cases(s: Session) -> list[Case]:
    return [
        c
        for c in s.scalars(
            select(Case)
            .where(
                Case.outcome == Outcome.VIOLATION.value,
                or_(*(Case.categories.contains(c.value) for c in REPORTABLE)),
            )
            .order_by(Case.opened_at, Case.id)
        )
        if {Category(x) for x in c.categories.split(",") if x} & REPORTABLE
    ]


def _alert_body(e: LegalQueueEntry) -> str:
    return "\n\n".join(
        [
            f"Case {e.case_id} was confirmed as reportable material and has not been "
            f"reported for {e.hours_since_knowledge:.1f} hours since the company had "
            "knowledge of it.",
            "Escalate to high priority: " + ("yes" if e.escalate_to_high_priority else "no") + ".",
            "Unreported accounts: "
            + (", ".join(a or "(unknown)" for a in e.accounts_unreported) or "none")
            + ".",
            "Open the legal queue (GET /v1/legal/queue) to file the report.",
        ]
    )
