"""Alerts on the TAKE IT DOWN Act's 48 hours: one when a request's clock enters its
last quarter (12 hours left) with the content not removed, one when it has run out.

Each is raised once per case (``legal_alerts``): an audit event and, when
``TAKEDOWN_LEGAL_ALERT_EMAIL`` is set, a mail. The clock is the case's (from the first
valid request, ``takedown_due_at``) and is met by removal, as on the case page and in
the compliance report. A case a reviewer found not to be intimate imagery raises none:
a person has answered the request, and the compliance report says why it was not
removed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from takedown.domain.cases import Outcome
from takedown.domain.triage import TAKE_IT_DOWN_WINDOW, Clock, ClockState
from takedown.services.audit.chain import record
from takedown.services.outbound.mail import queue_mail
from takedown.store.db import unit_of_work
from takedown.store.models import Case, LegalAlert

DUE_SOON = "take_it_down_due_soon"
OVERDUE = "take_it_down_overdue"


def check_take_it_down(
    sessions: sessionmaker[Session], alert_email: str | None, now: datetime
) -> list[str]:
    """Raise the alerts that are due; returns the case numbers alerted."""
    with unit_of_work(sessions, write=False) as s:
        running = list(
            s.execute(
                select(Case.id, Case.takedown_requested_at, Case.takedown_due_at).where(
                    Case.takedown_due_at.is_not(None),
                    Case.takedown_due_at <= now + TAKE_IT_DOWN_WINDOW / 4,
                    Case.removed_at.is_(None),
                    (Case.outcome.is_(None)) | (Case.outcome != Outcome.NO_VIOLATION.value),
                )
            ).all()
        )
    alerted = []
    for case_id, started, due in running:
        if started is None or due is None:
            continue
        state = Clock("take_it_down_48h", started, due, None).state(now)
        kind = OVERDUE if state is ClockState.OVERDUE else DUE_SOON
        try:
            with unit_of_work(sessions) as s:
                if s.scalar(
                    select(LegalAlert.id).where(
                        LegalAlert.case_id == case_id, LegalAlert.kind == kind
                    )
                ):
                    continue
                case = s.get_one(Case, case_id)
                s.add(LegalAlert(case_id=case_id, kind=kind, at=now))
                hours_left = round((due - now).total_seconds() / 3600, 2)
                record(
                    s,
                    "system",
                    f"legal.{kind}",
                    "case",
                    case.public_id,
                    {"due_at": due.isoformat(), "hours_left": hours_left},
                )
                if alert_email:
                    queue_mail(
                        s,
                        alert_email,
                        f"TAKE IT DOWN request {_WHAT[kind]}: case {case.public_id}",
                        _body(case.public_id, kind, due),
                        now,
                    )
        except IntegrityError:  # another worker alerted first
            continue
        alerted.append(case.public_id)
    return alerted


_WHAT = {DUE_SOON: "due soon", OVERDUE: "overdue"}


def _body(case_id: str, kind: str, due: datetime) -> str:
    when = "ran out" if kind == OVERDUE else "runs out"
    return "\n\n".join(
        [
            f"Case {case_id} holds a valid TAKE IT DOWN Act request whose 48 hours {when} "
            f"at {due.isoformat()}, and the content is not removed yet.",
            "The Act asks for removal within 48 hours of the request (47 U.S.C. 223a). "
            "Open the case and decide it (GET /v1/cases/" + case_id + ").",
        ]
    )
