"""Reports, cases and decisions: the heart of the product.

The rules themselves live in ``domain/`` (report validity, priority, clocks, the
four-eyes rule); ``CaseService`` applies them to the database, one transaction per use
case, writing the audit events, the platform's actions (outbox) and the reporters'
mail in the same transaction as the change they describe.

``CaseService`` is composed from its parts, each a mixin over the shared ``CaseBase``
(``base.py``: settings, state, shared helpers): intake and restriction (``intake.py``),
decisions and appeals (``decisions.py``), the reporter's status and mail
(``status.py``), reads for reviewers and the API (``reads.py``), and clocks set by
hand in test and staging deployments (``clock.py``). The values it
answers with are in ``views.py``; they are named here too, for callers.
"""

from __future__ import annotations

from takedown.domain.reports import AUTHENTICATED_ROLES
from takedown.services.cases.base import ACTIVE_STATES, CaseBase, CasePolicy
from takedown.services.cases.clock import CaseClocks, ClockChange
from takedown.services.cases.decisions import CaseDecisions
from takedown.services.cases.intake import CaseIntake
from takedown.services.cases.reads import CaseReads
from takedown.services.cases.status import CaseStatus
from takedown.services.cases.views import (
    CaseDetail,
    CaseSummary,
    ClockView,
    CopyView,
    DecisionView,
    PublicDecision,
    PublicStatusView,
    ReportReceipt,
    ReportView,
)


class CaseService(CaseIntake, CaseDecisions, CaseStatus, CaseReads, CaseClocks):
    """Intake and restriction, decisions and appeals, the reporter's status, reads, and
    clocks set by hand (test and staging deployments):
    one service over one set of sessions, copy finder, policy and reported hashes
    (``CaseBase.__init__``)."""


__all__ = [
    "ACTIVE_STATES",
    "AUTHENTICATED_ROLES",
    "CaseBase",
    "CaseClocks",
    "CaseDetail",
    "CaseDecisions",
    "CaseIntake",
    "CasePolicy",
    "CaseReads",
    "CaseService",
    "CaseStatus",
    "CaseSummary",
    "ClockChange",
    "ClockView",
    "CopyView",
    "DecisionView",
    "PublicDecision",
    "PublicStatusView",
    "ReportReceipt",
    "ReportView",
]
