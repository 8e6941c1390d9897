"""Filing CyberTipline reports: draft from a confirmed case, then walk NCMEC's workflow.

    drafted ──submit──▶ submitted ──upload, fileinfo per file──▶ … ──finish──▶ finished
       │                    │                                   (preservation starts)
       └──── retract ───────┴──▶ retracted             any step ──▶ failed (a person looks)
       │                    │
       └── schema check ────┴──▶ invalid (nothing more is sent; a person fixes the data,
                                  then submits again or retracts and drafts anew)

Checked before it leaves: the report XML is checked against the schema's rules
(``domain/cybertipline_schema``) when drafted and again just before ``/submit``, and
each ``fileDetails`` just before ``/fileinfo``. A document that breaks a rule is not
sent: the filing becomes ``invalid`` with ``last_error`` naming the element and the
rule, and a ``cybertipline.invalid`` audit event.

One report per reported account of the case, covering all of that account's media in
the case. The report XML is built once, at drafting, and stored: what is sent is what
was drafted. Each ``fileDetails`` is built just before it is sent, so that
``fileViewedByEsp`` reflects the audit trail at that moment.

No transaction is held while talking to NCMEC. Each step's result is stored in its own
transaction together with the verbatim exchange (``legal_exchanges``), so a crash
between steps resumes where it stopped: a report with an id is never submitted again,
and a finished report is never touched again.

Retries: a step that got no answer, a 1000 server error or an HTTP 5xx is retried with
exponential backoff. While a report is open the next attempt is kept inside NCMEC's
expiry window (24 h after opening or 1 h after the last change, whichever is later,
less a safety margin); if the window has closed (or NCMEC answers 5001, no such
report), the unfinished report is gone on NCMEC's side and the filing starts over with
a new ``/submit`` — it was never finished, so nothing is reported twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from takedown.config import Settings
from takedown.domain import cybertipline as ct
from takedown.domain import cybertipline_schema as schema
from takedown.domain.access import Principal
from takedown.domain.cases import FileAnnotation, IndustryClassification, Outcome
from takedown.domain.reports import Category, ReporterRole
from takedown.errors import Conflict, InvalidRequest, NotFound
from takedown.ids import utcnow
from takedown.integrations import cybertipline as api
from takedown.integrations.cybertipline import CyberTiplineClient, Exchange
from takedown.services.audit.chain import record
from takedown.services.evidence.vault import EvidenceVault, ReportSent
from takedown.store import repositories as repo
from takedown.store.blobs import BlobStore
from takedown.store.db import unit_of_work
from takedown.store.models import (
    Account,
    AuditEvent,
    Case,
    CaseItem,
    Decision,
    IpEvent,
    Item,
    ItemMedia,
    LegalExchange,
    LegalFiling,
    LegalFilingFile,
    Media,
    Report,
)

OPEN_WINDOW = timedelta(hours=24)  # an unfinished report lives 24 h after opening…
CHANGE_WINDOW = timedelta(hours=1)  # …or 1 h after its last change, whichever is later
SAFETY_MARGIN = timedelta(minutes=5)
CLAIM_LEASE = timedelta(minutes=10)


class MediaBytes(Protocol):
    """Where the bytes of a media file come from (the evidence store, at merge)."""

    def read(self, media_public_id: str, sha256: str) -> bytes | None:
        """The file's bytes, or None when they are not held."""
        ...


@dataclass(frozen=True)
class FilerSettings:
    environment: str = "test"
    platform_name: str | None = None
    reporter_email: str | None = None
    reporter_first_name: str | None = None
    reporter_last_name: str | None = None
    terms_of_service_url: str | None = None
    legal_url: str | None = None
    retry_base: timedelta = timedelta(seconds=30)
    retry_cap: timedelta = timedelta(hours=1)
    viewed_scope: ct.ViewedScope = ct.ViewedScope.ACCOUNT


@dataclass(frozen=True)
class FilingFileView:
    media_id: str
    file_name: str
    state: str
    ncmec_file_id: str | None
    ncmec_hash: str | None


@dataclass(frozen=True)
class FilingView:
    id: str
    case_id: str
    body: str
    subject: str
    state: str
    environment: str | None
    external_id: str | None
    escalate: bool
    escalation_reason: str | None
    escalation_note: str | None
    prior_report_ids: list[str]
    attempts: int
    next_attempt_at: datetime
    last_code: int | None
    last_error: str | None
    created_by: str
    created_at: datetime
    submitted_at: datetime | None
    finished_at: datetime | None
    retracted_at: datetime | None
    files: list[FilingFileView] = field(default_factory=list)


@dataclass(frozen=True)
class ExchangeView:
    at: datetime
    step: str
    request: str
    http_status: int | None
    response: str | None
    response_code: int | None
    error: str | None


LIVE = ("drafted", "submitted", "failed", "invalid", "finished")


def backoff(attempts: int, base: timedelta, cap: timedelta) -> timedelta:
    return min(cap, base * (2 ** max(0, attempts - 1)))


def window_end(submitted_at: datetime, last_change_at: datetime | None) -> datetime:
    return max(submitted_at + OPEN_WINDOW, (last_change_at or submitted_at) + CHANGE_WINDOW)


class CyberTiplineService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: FilerSettings,
        client_factory: Callable[[], CyberTiplineClient] | None,
        media: MediaBytes | None,
        evidence: EvidenceVault | None = None,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._client_factory = client_factory
        self.media = media
        self.evidence = evidence

    def _preserve(self, s: Session, f: LegalFiling, actor: str, now: datetime) -> None:
        """A finished production report starts the evidence's preservation hold (at
        least a year, 18 U.S.C. 2258A(h)), with the exact XML sent, in the same
        transaction. Test-environment reports are not reports to NCMEC: no hold."""
        if self.evidence is None or f.environment != "production":
            return
        case = s.get_one(Case, f.case_id)
        sent = ReportSent("cybertipline-report.xml", (f.report_xml or "").encode())
        self.evidence.mark_reported_in(s, case, now, actor, reference=f.external_id, report=sent)

    # -- drafting ------------------------------------------------------------------------
    def draft(
        self,
        case_id: str,
        principal: Principal,
        *,
        escalation_reason: ct.EscalationReason | None = None,
        escalation_note: str | None = None,
    ) -> list[FilingView]:
        """One report per reported account of a confirmed case, each not yet filed.

        ``escalateToHighPriority`` is sent only with the reason legal gives here (the
        queue's suggestion is not a reason); each report is checked against the schema
        and lands ``invalid`` (never sent) when it breaks a rule."""
        escalated = ct.escalation_text(escalation_reason, escalation_note)
        note = " ".join((escalation_note or "").split()) or None
        with unit_of_work(self._sessions) as s:
            case = _case(s, case_id, for_update=True)
            cats = {Category(c) for c in case.categories.split(",") if c}
            if case.outcome != Outcome.VIOLATION.value or not cats & ct.REPORTABLE:
                raise Conflict(
                    "Only a case confirmed as child sexual abuse material or the sexual "
                    "exploitation of a minor is reported to the CyberTipline.",
                    code="not_reportable",
                )
            groups = _items_by_account(s, case.id)
            created = []
            for subject, items in groups.items():
                key = f"ncmec:{case.public_id}:{subject}"
                if s.scalar(select(LegalFiling.id).where(LegalFiling.dedupe_key == key)):
                    continue
                report = self._build_report(s, case, cats, subject, items, escalated)
                filing = LegalFiling(
                    case_id=case.id,
                    body="ncmec",
                    subject=subject,
                    dedupe_key=key,
                    state="drafted",
                    environment=self._settings.environment,
                    escalate=escalated is not None,
                    escalation_reason=escalation_reason.value if escalation_reason else None,
                    escalation_note=note if escalation_reason else None,
                    prior_report_ids=json.dumps(
                        list(report.reported_user.prior_report_ids) if report.reported_user else []
                    ),
                    report_xml=ct.report_xml(report),
                    created_by=principal.actor,
                )
                s.add(filing)
                s.flush()
                for media in _media_of(s, [i.id for i in items]):
                    s.add(
                        LegalFilingFile(
                            filing_id=filing.id, media_id=media.id, file_name=media.public_id
                        )
                    )
                record(
                    s,
                    principal.actor,
                    "cybertipline.drafted",
                    "case",
                    case.public_id,
                    {
                        "filing": filing.public_id,
                        "account": subject,
                        "escalate": escalated is not None,
                        "escalation_reason": filing.escalation_reason,
                        "escalation_note": filing.escalation_note,
                        "prior_reports": list(
                            report.reported_user.prior_report_ids if report.reported_user else []
                        ),
                    },
                )
                _check_schema(s, filing, "report", filing.report_xml or "", principal.actor)
                created.append(filing.id)
            if not created:
                raise Conflict(
                    "Every reported account of this case already has a CyberTipline report.",
                    code="already_reported",
                )
            s.flush()
            return [
                _view(s, f)
                for f in s.scalars(
                    select(LegalFiling).where(LegalFiling.id.in_(created)).order_by(LegalFiling.id)
                )
            ]

    def _build_report(
        self,
        s: Session,
        case: Case,
        cats: set[Category],
        subject: str,
        items: list[Item],
        escalate: str | None,
    ) -> ct.Report:
        cfg = self._settings
        posted = [i.posted_at for i in items if i.posted_at is not None]
        when, what = (
            (min(posted), "When the earliest reported item was posted on the platform.")
            if posted
            else (case.opened_at, "When the platform learned of the content.")
        )
        urls = tuple(sorted({i.url for i in items if i.url}))
        account = (
            s.scalars(select(Account).where(Account.platform_id == subject)).first()
            if subject
            else None
        )
        reported = None
        if account is not None:
            prior = _prior_report_ids(s, subject, [i.id for i in items])
            reported = ct.ReportedUser(
                esp_identifier=account.platform_id,
                esp_service=cfg.platform_name,
                screen_name=account.handle,
                prior_report_ids=prior,
                # Disabled by Takedown's measure or by the platform itself.
                temporarily_disabled="suspended" in (account.status, account.platform_status)
                or None,
                permanently_disabled="terminated" in (account.status, account.platform_status)
                or None,
                ip_captures=_ip_captures(s, IpEvent.account_id == account.id),
            )
        victims = _victims(s, case.id)
        return ct.Report(
            incident=ct.Incident(
                incident_type=ct.incident_type_for(cats),
                platform=cfg.platform_name,
                escalate_to_high_priority=escalate,
                annotations=ct.annotations_for(cats),
                date_time=when,
                date_time_description=what,
            ),
            internet_details=(ct.WebPageIncident(urls),) if urls else (),
            reporter=ct.Reporter(
                reporting_person=ct.Person(
                    first_name=cfg.reporter_first_name,
                    last_name=cfg.reporter_last_name,
                    email=cfg.reporter_email,
                ),
                terms_of_service=cfg.terms_of_service_url,
                legal_url=cfg.legal_url,
            ),
            reported_user=reported,
            victims=victims,
            additional_info=f"Platform case {case.public_id}: {len(items)} item(s) of this "
            f"account confirmed under policy {case.outcome_policy or 'n/a'}.",
        )

    # -- reading ----------------------------------------------------------------------------
    def for_case(self, case_id: str) -> list[FilingView]:
        with unit_of_work(self._sessions, write=False) as s:
            case = _case(s, case_id)
            return [
                _view(s, f)
                for f in s.scalars(
                    select(LegalFiling)
                    .where(LegalFiling.case_id == case.id)
                    .order_by(LegalFiling.id)
                )
            ]

    def get(self, filing_id: str) -> FilingView:
        with unit_of_work(self._sessions, write=False) as s:
            return _view(s, _filing(s, filing_id))

    def exchanges(self, filing_id: str) -> list[ExchangeView]:
        with unit_of_work(self._sessions, write=False) as s:
            f = _filing(s, filing_id)
            return [
                ExchangeView(
                    e.at, e.step, e.request, e.http_status, e.response, e.response_code, e.error
                )
                for e in s.scalars(
                    select(LegalExchange)
                    .where(LegalExchange.filing_id == f.id)
                    .order_by(LegalExchange.id)
                )
            ]

    # -- the workflow -----------------------------------------------------------------------
    def run(self, filing_id: str, actor: str, now: datetime | None = None) -> FilingView:
        """Take one filing as far through the workflow as NCMEC lets it go now."""
        if self._client_factory is None:
            raise Conflict(
                "The CyberTipline is not configured (TAKEDOWN_NCMEC_USERNAME, "
                "TAKEDOWN_NCMEC_PASSWORD, TAKEDOWN_NCMEC_REPORTER_EMAIL).",
                code="ncmec_not_configured",
            )
        now = now or utcnow()
        with unit_of_work(self._sessions) as s:
            f = _filing(s, filing_id, for_update=True)
            if f.body != "ncmec":
                raise Conflict("Only CyberTipline reports are filed here.", code="not_reportable")
            if f.state == "finished":
                raise Conflict(
                    "This report is finished; NCMEC accepts no change. File new facts as a "
                    "new report.",
                    code="filing_finished",
                )
            if f.state == "retracted":
                raise Conflict("This report was retracted.", code="filing_retracted")
            if f.external_id is None:  # bytes for every file before a report is opened
                for _ff, media in s.execute(
                    select(LegalFilingFile, Media)
                    .join(Media, Media.id == LegalFilingFile.media_id)
                    .where(LegalFilingFile.filing_id == f.id)
                ).all():
                    if self.media is None or self.media.read(media.public_id, media.sha256) is None:
                        raise Conflict(
                            f"The bytes of media {media.public_id} are not held; the report "
                            "cannot include the file.",
                            code="media_bytes_unavailable",
                            media=media.public_id,
                        )
            if f.external_id is None and _check_schema(s, f, "report", f.report_xml or "", actor):
                return _view(s, f)  # never sent: the report breaks the schema
            f.state = "submitted" if f.external_id else "drafted"
            f.attempts += 1
            f.next_attempt_at = now + CLAIM_LEASE
            f.updated_at = now
            pid = f.public_id
        client = self._client_factory()
        try:
            self._walk(client, pid, actor, now)
        finally:
            client.close()
        return self.get(pid)

    def run_due(self, now: datetime | None = None, limit: int = 20) -> int:
        """Filings whose retry is due (a background worker or ``takedown legal run``)."""
        now = now or utcnow()
        with unit_of_work(self._sessions, write=False) as s:
            due = list(
                s.scalars(
                    select(LegalFiling.public_id)
                    .where(
                        LegalFiling.body == "ncmec",
                        LegalFiling.state.in_(("submitted",))
                        | ((LegalFiling.state == "drafted") & (LegalFiling.attempts > 0)),
                        LegalFiling.next_attempt_at <= now,
                    )
                    .order_by(LegalFiling.next_attempt_at)
                    .limit(limit)
                )
            )
        for pid in due:
            self.run(pid, "system", now)
        return len(due)

    def _walk(self, client: CyberTiplineClient, pid: str, actor: str, now: datetime) -> None:
        with unit_of_work(self._sessions, write=False) as s:
            f = _filing(s, pid)
            report_id, xml = f.external_id, f.report_xml or ""
        if report_id is None:
            ex = client.submit(xml)
            if not self._after(pid, ex, actor, now):
                return
            report_id = ex.report_id
            if not report_id:
                self._fail(pid, ex, actor, now, "the answer to /submit had no reportId")
                return
            with unit_of_work(self._sessions) as s:
                f = _filing(s, pid, for_update=True)
                f.external_id, f.state = report_id, "submitted"
                f.submitted_at = f.last_change_at = now
                record(
                    s,
                    actor,
                    "cybertipline.submitted",
                    "case",
                    _case_pid(s, f),
                    {"filing": pid, "report_id": report_id, "environment": f.environment},
                )
        with unit_of_work(self._sessions, write=False) as s:
            f = _filing(s, pid)
            files = [
                (ff.id, ff.state, ff.file_name, m.public_id, m.sha256)
                for ff, m in s.execute(
                    select(LegalFilingFile, Media)
                    .join(Media, Media.id == LegalFilingFile.media_id)
                    .where(LegalFilingFile.filing_id == f.id)
                    .order_by(LegalFilingFile.id)
                ).all()
            ]
        for file_row, state, name, media_pid, sha in files:
            if state == "pending":
                data = self.media.read(media_pid, sha) if self.media else None
                if data is None:
                    self._fail(pid, None, actor, now, f"bytes of media {media_pid} not held")
                    return
                ex = client.upload(report_id, name, data)
                if not self._after(pid, ex, actor, now):
                    return
                with unit_of_work(self._sessions) as s:
                    ff = s.get(LegalFilingFile, file_row)
                    assert ff is not None
                    ff.ncmec_file_id, ff.ncmec_hash, ff.state = ex.file_id, ex.hash, "uploaded"
                    _touch(s, pid, now)
                state = "uploaded"
            if state == "uploaded":
                with unit_of_work(self._sessions, write=False) as s:
                    ff = s.get(LegalFilingFile, file_row)
                    assert ff is not None
                    details = ct.file_details_xml(
                        report_id, ff.ncmec_file_id or "", self._file_report(s, pid, ff)
                    )
                if self._invalid_details(pid, details, actor):
                    return
                ex = client.fileinfo(details)
                if not self._after(pid, ex, actor, now):
                    return
                with unit_of_work(self._sessions) as s:
                    ff = s.get(LegalFilingFile, file_row)
                    assert ff is not None
                    ff.fileinfo_xml, ff.state = details, "described"
                    _touch(s, pid, now)
        ex = client.finish(report_id)
        if self._after(pid, ex, actor, now):
            self._finished(pid, actor, now)

    def _after(self, pid: str, ex: Exchange, actor: str, now: datetime) -> bool:
        """Store the exchange; True to carry on. Decides retry, restart or stop."""
        with unit_of_work(self._sessions) as s:
            f = _filing(s, pid, for_update=True)
            s.add(
                LegalExchange(
                    filing_id=f.id,
                    at=now,
                    step=ex.step,
                    request=ex.request,
                    http_status=ex.http_status,
                    response=ex.response,
                    response_code=ex.code,
                    error=ex.error,
                )
            )
            f.last_code = ex.code
            if ex.ok:
                f.last_error = None
                return True
            f.last_error = ex.error or f"{ex.code}: {ex.description or ''}".strip()
            if ex.code == api.ALREADY_FINISHED:  # nothing is ever sent again
                f.state, f.finished_at = "finished", f.finished_at or now
                self._preserve(s, f, actor, now)
                record(
                    s,
                    actor,
                    "cybertipline.finished",
                    "case",
                    _case_pid(s, f),
                    {"filing": pid, "report_id": f.external_id, "code": ex.code},
                )
                return False
            if ex.code == api.ALREADY_RETRACTED:
                f.state, f.retracted_at, f.dedupe_key = "retracted", now, None
                return False
            if ex.code == api.NO_SUCH_REPORT and f.external_id:
                _restart(s, f, actor, now, "NCMEC no longer has the unfinished report")
                return False
            if ex.retryable:
                self._schedule(s, f, actor, now)
                return False
            f.state = "failed"
            f.next_attempt_at = now
            record(
                s,
                actor,
                "cybertipline.failed",
                "case",
                _case_pid(s, f),
                {"filing": pid, "step": ex.step, "code": ex.code},
            )
            return False

    def _invalid_details(self, pid: str, details: str, actor: str) -> bool:
        """Check one ``fileDetails`` before ``/fileinfo``; True (and the filing
        ``invalid``) when it breaks the schema."""
        with unit_of_work(self._sessions) as s:
            f = _filing(s, pid, for_update=True)
            return _check_schema(s, f, "fileDetails", details, actor)

    def _schedule(self, s: Session, f: LegalFiling, actor: str, now: datetime) -> None:
        delay = backoff(f.attempts, self._settings.retry_base, self._settings.retry_cap)
        if f.external_id and f.submitted_at is not None:
            latest = window_end(f.submitted_at, f.last_change_at) - SAFETY_MARGIN
            if latest <= now:
                _restart(s, f, actor, now, "the report expired before it could be finished")
                return
            delay = min(delay, latest - now)
        f.next_attempt_at = now + delay

    def _fail(self, pid: str, ex: Exchange | None, actor: str, now: datetime, why: str) -> None:
        with unit_of_work(self._sessions) as s:
            f = _filing(s, pid, for_update=True)
            f.state, f.last_error = "failed", why
            record(
                s,
                actor,
                "cybertipline.failed",
                "case",
                _case_pid(s, f),
                {"filing": pid, "why": why},
            )

    def _finished(self, pid: str, actor: str, now: datetime) -> None:
        with unit_of_work(self._sessions) as s:
            f = _filing(s, pid, for_update=True)
            f.state, f.finished_at, f.updated_at = "finished", now, now
            self._preserve(s, f, actor, now)
            record(
                s,
                actor,
                "cybertipline.finished",
                "case",
                _case_pid(s, f),
                {"filing": pid, "report_id": f.external_id, "environment": f.environment},
            )

    def _file_report(self, s: Session, pid: str, ff: LegalFilingFile) -> ct.FileReport:
        f = _filing(s, pid)
        media = s.get(Media, ff.media_id)
        assert media is not None
        case = s.get(Case, f.case_id)
        assert case is not None
        facts = _file_facts(s, f, media.id)
        own_items = _items_of_subject(s, f.subject, media.id)
        views = [
            (a, json.loads(d))
            for a, d in s.execute(
                select(AuditEvent.actor, AuditEvent.details).where(
                    AuditEvent.object_type == "media",
                    AuditEvent.object_id == media.public_id,
                    AuditEvent.action == "media.viewed",
                )
            ).all()
        ]
        review = _review_of(s, f.case_id, media.public_id)
        return ct.FileReport(
            file_name=ff.file_name,
            original_file_name=facts.original_file_name,
            uploaded_at=facts.uploaded_at,
            location=facts.location,
            viewed_by_esp=ct.viewed_in_full(views, self._settings.viewed_scope, own_items),
            publicly_available=facts.publicly_available,
            annotations=tuple(FileAnnotation(a) for a in review.get("annotations", [])),
            classification=IndustryClassification(review["classification"])
            if review.get("classification")
            else None,
            original_hash=media.md5 or media.sha256,
            hash_type="MD5" if media.md5 else "SHA256",
            ip_captures=facts.ip_captures,
        )

    # -- retraction --------------------------------------------------------------------------
    def retract(self, filing_id: str, actor: str, now: datetime | None = None) -> FilingView:
        now = now or utcnow()
        with unit_of_work(self._sessions) as s:
            f = _filing(s, filing_id, for_update=True)
            if f.state == "finished":
                raise Conflict("A finished report cannot be retracted.", code="filing_finished")
            if f.state == "retracted":
                raise Conflict("This report was retracted already.", code="filing_retracted")
            report_id = f.external_id
            if report_id is None:  # never sent: withdrawing the draft is local
                f.state, f.retracted_at, f.dedupe_key = "retracted", now, None
                record(
                    s,
                    actor,
                    "cybertipline.retracted",
                    "case",
                    _case_pid(s, f),
                    {"filing": f.public_id, "sent": False},
                )
                return _view(s, f)
        if self._client_factory is None:
            raise Conflict("The CyberTipline is not configured.", code="ncmec_not_configured")
        client = self._client_factory()
        try:
            ex = client.retract(report_id)
        finally:
            client.close()
        if self._after(filing_id, ex, actor, now):
            with unit_of_work(self._sessions) as s:
                f = _filing(s, filing_id, for_update=True)
                f.state, f.retracted_at, f.dedupe_key = "retracted", now, None
                record(
                    s,
                    actor,
                    "cybertipline.retracted",
                    "case",
                    _case_pid(s, f),
                    {"filing": f.public_id, "report_id": report_id},
                )
        if ex.code == api.ALREADY_FINISHED:
            raise Conflict(
                "NCMEC says this report is finished; it cannot be retracted.",
                code="filing_finished",
            )
        return self.get(filing_id)

    # -- other bodies -----------------------------------------------------------------------
    def record_nca(self, case_id: str, reference: str, actor: str) -> FilingView:
        """A report made to the UK's National Crime Agency, by its reference."""
        ref = (reference or "").strip()
        if not (1 <= len(ref) <= 100) or not all(c.isalnum() or c in "-_/." for c in ref):
            raise InvalidRequest(
                "The NCA reference is 1-100 letters, digits, '-', '_', '/' or '.'.",
                code="invalid_nca_reference",
            )
        with unit_of_work(self._sessions) as s:
            case = _case(s, case_id, for_update=True)
            key = f"nca:{case.public_id}"
            if s.scalar(select(LegalFiling.id).where(LegalFiling.dedupe_key == key)):
                raise Conflict(
                    "This case was reported to the NCA already.", code="already_reported"
                )
            now = utcnow()
            f = LegalFiling(
                case_id=case.id,
                body="nca",
                subject="",
                dedupe_key=key,
                state="finished",
                external_id=ref,
                created_by=actor,
                submitted_at=now,
                finished_at=now,
            )
            s.add(f)
            s.flush()
            record(
                s,
                actor,
                "nca.recorded",
                "case",
                case.public_id,
                {"filing": f.public_id, "reference": ref},
            )
            return _view(s, f)


# -- helpers --------------------------------------------------------------------------------
def _case(s: Session, case_id: str, *, for_update: bool = False) -> Case:
    return repo.get_case(s, case_id, for_update=for_update)


def _filing(s: Session, filing_id: str, *, for_update: bool = False) -> LegalFiling:
    stmt = select(LegalFiling).where(LegalFiling.public_id == filing_id)
    if for_update:
        stmt = stmt.with_for_update()
    f = s.scalars(stmt).first()
    if f is None:
        raise NotFound(f"No filing {filing_id[:40]!r}.", code="filing_not_found")
    return f


def _case_pid(s: Session, f: LegalFiling) -> str:
    return str(s.scalar(select(Case.public_id).where(Case.id == f.case_id)))


def _touch(s: Session, pid: str, now: datetime) -> None:
    s.execute(
        update(LegalFiling)
        .where(LegalFiling.public_id == pid)
        .values(last_change_at=now, updated_at=now)
    )


def _restart(s: Session, f: LegalFiling, actor: str, now: datetime, why: str) -> None:
    """The unfinished report is gone on NCMEC's side: open a new one next time."""
    record(
        s,
        actor,
        "cybertipline.expired",
        "case",
        _case_pid(s, f),
        {"filing": f.public_id, "report_id": f.external_id, "why": why},
    )
    f.external_id, f.submitted_at, f.last_change_at = None, None, None
    f.state, f.next_attempt_at = "drafted", now
    s.execute(
        update(LegalFilingFile)
        .where(LegalFilingFile.filing_id == f.id)
        .values(state="pending", ncmec_file_id=None, ncmec_hash=None, fileinfo_xml=None)
    )


def _check_schema(s: Session, f: LegalFiling, document: str, xml: str, actor: str) -> bool:
    """True when ``xml`` breaks the schema: the filing is then ``invalid``, with the
    element and the rule in ``last_error`` and a ``cybertipline.invalid`` audit event."""
    check = schema.check_report_xml if document == "report" else schema.check_file_details_xml
    problem = check(xml)
    if problem is None:
        return False
    f.state, f.last_code = "invalid", None
    f.last_error = f"{document} fails the CyberTipline schema at {problem}"
    f.updated_at = utcnow()
    record(
        s,
        actor,
        "cybertipline.invalid",
        "case",
        _case_pid(s, f),
        {
            "filing": f.public_id,
            "document": document,
            "element": problem.path,
            "rule": problem.rule,
        },
    )
    return True


def _prior_report_ids(s: Session, subject: str, item_ids: list[int]) -> tuple[str, ...]:
    """Every earlier finished CyberTipline report about the same account or about the
    same files (the same bytes by SHA-256 or MD5 in any finished report: another case's,
    or this case's report about another account, e.g. a later copy that joined the
    confirmed case), once each, oldest first. The report being drafted is not finished,
    so it never names itself."""
    media = _media_of(s, item_ids)
    shas = {m.sha256 for m in media if m.sha256}
    md5s = {m.md5 for m in media if m.md5}
    done = (
        LegalFiling.body == "ncmec",
        LegalFiling.state == "finished",
        LegalFiling.external_id.is_not(None),
    )
    found = list(
        s.execute(
            select(LegalFiling.finished_at, LegalFiling.external_id).where(
                *done, LegalFiling.subject == subject
            )
        ).all()
    )
    same_bytes = []
    if shas:
        same_bytes.append(Media.sha256.in_(sorted(shas)))
    if md5s:
        same_bytes.append(Media.md5.in_(sorted(md5s)))
    if same_bytes:
        found += s.execute(
            select(LegalFiling.finished_at, LegalFiling.external_id)
            .join(LegalFilingFile, LegalFilingFile.filing_id == LegalFiling.id)
            .join(Media, Media.id == LegalFilingFile.media_id)
            .where(*done, or_(*same_bytes))
        ).all()
    return ct.prior_reports((at, rid) for at, rid in found)


def _items_of_subject(s: Session, subject: str, media_id: int) -> list[str]:
    """The platform ids of the reported account's items (in any case) that carry the
    file: the copies a view must have been of to count under the ``account`` scope."""
    stmt = (
        select(Item.platform_id)
        .join(ItemMedia, ItemMedia.item_id == Item.id)
        .outerjoin(Account, Account.id == Item.account_id)
        .where(ItemMedia.media_id == media_id)
    )
    stmt = stmt.where(Account.platform_id == subject if subject else Item.account_id.is_(None))
    return list(s.scalars(stmt))


def _items_by_account(s: Session, case_id: int) -> dict[str, list[Item]]:
    groups: dict[str, list[Item]] = {}
    for item, account in s.execute(
        select(Item, Account.platform_id)
        .join(CaseItem, CaseItem.item_id == Item.id)
        .outerjoin(Account, Account.id == Item.account_id)
        .where(CaseItem.case_id == case_id)
        .order_by(Item.id)
    ).all():
        groups.setdefault(account or "", []).append(item)
    return groups or {"": []}


def _media_of(s: Session, item_ids: list[int]) -> list[Media]:
    if not item_ids:
        return []
    return list(
        s.scalars(
            select(Media)
            .join(ItemMedia, ItemMedia.media_id == Media.id)
            .where(ItemMedia.item_id.in_(item_ids))
            .distinct()
            .order_by(Media.id)
        )
    )


def _review_of(s: Session, case_id: int, media_pid: str) -> dict[str, Any]:
    """The latest effective violation decision's finding on this file."""
    for raw in s.scalars(
        select(Decision.media_review)
        .where(
            Decision.case_id == case_id,
            Decision.effective.is_(True),
            Decision.outcome == Outcome.VIOLATION.value,
            Decision.media_review.is_not(None),
        )
        .order_by(Decision.decided_at.desc(), Decision.id.desc())
    ):
        for entry in json.loads(raw or "[]"):
            if entry.get("media_id") == media_pid:
                return dict(entry)
    return {}


IP_CAPTURES_PER_REPORT = 100  # an account's events in one report
IP_CAPTURES_PER_FILE = 20  # the reported items' events in one file's details


def _ip_captures(
    s: Session, owner: Any, limit: int = IP_CAPTURES_PER_REPORT
) -> tuple[ct.IpCapture, ...]:
    """The IP events the platform registered for an account or items (``owner`` is the
    condition on ``ip_events``): the registration, then the newest others up to
    ``limit`` (a long-lived account may have thousands of log-ins); sent oldest first,
    those without a time last."""
    newest = (IpEvent.at.is_(None), IpEvent.at.desc(), IpEvent.id.desc())
    first = list(
        s.scalars(
            select(IpEvent)
            .where(owner, IpEvent.event == "registration")
            .order_by(IpEvent.at.is_(None), IpEvent.at, IpEvent.id)
            .limit(2)
        )
    )
    rest = list(
        s.scalars(
            select(IpEvent)
            .where(owner, IpEvent.event != "registration")
            .order_by(*newest)
            .limit(limit - len(first))
        )
    )
    rows = sorted(first + rest, key=lambda e: (e.at is None, e.at or e.received_at, e.id))
    return tuple(ct.IpCapture(e.ip, ct.ip_event(e.event), e.at, e.port) for e in rows)


@dataclass(frozen=True)
class _FileFacts:
    """What the registry knows of a file as the reported account posted it."""

    uploaded_at: datetime | None
    location: str | None
    original_file_name: str | None
    publicly_available: bool | None
    ip_captures: tuple[ct.IpCapture, ...]


def _file_facts(s: Session, f: LegalFiling, media_id: int) -> _FileFacts:
    """From the filing's account's items in the case that hold this file: the earliest
    post's address and time, the name it was uploaded with, whether it was public when
    found, and the items' upload addresses."""
    rows = sorted(
        s.execute(
            select(
                Item.id,
                Item.url,
                Item.posted_at,
                ItemMedia.file_name,
                CaseItem.publicly_available,
            )
            .join(ItemMedia, ItemMedia.item_id == Item.id)
            .join(CaseItem, CaseItem.item_id == Item.id)
            .outerjoin(Account, Account.id == Item.account_id)
            .where(CaseItem.case_id == f.case_id, ItemMedia.media_id == media_id)
            .where(Account.platform_id == f.subject if f.subject else Item.account_id.is_(None))
        ).all(),
        key=lambda r: (r.posted_at is None, r.posted_at or utcnow(), r.id),
    )
    posted = [r.posted_at for r in rows if r.posted_at is not None]
    return _FileFacts(
        uploaded_at=min(posted) if posted else None,
        location=next((r.url for r in rows if r.url), None),
        original_file_name=next((r.file_name for r in rows if r.file_name), None),
        publicly_available=ct.publicly_available(r.publicly_available for r in rows),
        ip_captures=_ip_captures(s, IpEvent.item_id.in_([r.id for r in rows]), IP_CAPTURES_PER_FILE)
        if rows
        else (),
    )


def _victims(s: Session, case_id: int) -> tuple[ct.Victim, ...]:
    """The victim section: only what a person depicted or a parent or guardian gave
    and agreed to send to NCMEC (reports withdrawn since are left out). Without their
    consent nothing of theirs is sent, not even their name as the reporter."""
    out = []
    for r in s.scalars(
        select(Report)
        .where(
            Report.case_id == case_id,
            Report.victim_consent.is_(True),
            Report.withdrawn_at.is_(None),
            Report.reporter_role.in_(
                (ReporterRole.PERSON_DEPICTED.value, ReporterRole.PARENT_GUARDIAN.value)
            ),
        )
        .order_by(Report.id)
    ):
        person = ct.Person(
            first_name=r.victim_first_name,
            last_name=r.victim_last_name,
            phone=r.victim_phone,
            email=r.victim_email,
            age=r.victim_age,
            date_of_birth=r.victim_date_of_birth,
        )
        if person == ct.Person():
            continue  # consent, but nothing given
        who = (
            "the person depicted"
            if r.reporter_role == ReporterRole.PERSON_DEPICTED.value
            else "a parent or guardian"
        )
        out.append(
            ct.Victim(
                person=person,
                additional_info=f"Given by {who}, who reported the content and consented "
                "to these details being shared with NCMEC.",
            )
        )
    return tuple(out)


def _view(s: Session, f: LegalFiling) -> FilingView:
    files = [
        FilingFileView(m, ff.file_name, ff.state, ff.ncmec_file_id, ff.ncmec_hash)
        for ff, m in s.execute(
            select(LegalFilingFile, Media.public_id)
            .join(Media, Media.id == LegalFilingFile.media_id)
            .where(LegalFilingFile.filing_id == f.id)
            .order_by(LegalFilingFile.id)
        ).all()
    ]
    return FilingView(
        id=f.public_id,
        case_id=_case_pid(s, f),
        body=f.body,
        subject=f.subject,
        state=f.state,
        environment=f.environment,
        external_id=f.external_id,
        escalate=f.escalate,
        escalation_reason=f.escalation_reason,
        escalation_note=f.escalation_note,
        prior_report_ids=json.loads(f.prior_report_ids or "[]"),
        attempts=f.attempts,
        next_attempt_at=f.next_attempt_at,
        last_code=f.last_code,
        last_error=f.last_error,
        created_by=f.created_by,
        created_at=f.created_at,
        submitted_at=f.submitted_at,
        finished_at=f.finished_at,
        retracted_at=f.retracted_at,
        files=files,
    )


class StoredMediaBytes:
    """Media bytes from the encrypted store (``media.blob_id``, kept when the platform
    sent the file), checked against the SHA-256 the report names."""

    def __init__(self, sessions: sessionmaker[Session], blobs: BlobStore) -> None:
        self._sessions = sessions
        self._blobs = blobs

    def read(self, media_public_id: str, sha256: str) -> bytes | None:
        with unit_of_work(self._sessions, write=False) as s:
            blob_id = s.scalar(select(Media.blob_id).where(Media.public_id == media_public_id))
            if blob_id is None:
                return None
            data = self._blobs.get(s, blob_id)
        return data if hashlib.sha256(data).hexdigest() == sha256 else None


def cybertipline_service(
    sessions: sessionmaker[Session],
    settings: Settings,
    blobs: BlobStore,
    evidence: EvidenceVault | None = None,
) -> CyberTiplineService:
    """From the settings: a client only when credentials and the reporter's email are
    set (otherwise filing answers ``ncmec_not_configured``); the test environment unless
    TAKEDOWN_NCMEC_ENVIRONMENT=production. Files come from the encrypted media store."""
    password = settings.ncmec_password_value()
    factory = None
    if settings.ncmec_username and password and settings.ncmec_reporter_email:
        username, url, timeout = (
            settings.ncmec_username,
            settings.ncmec_url,
            settings.ncmec_timeout_s,
        )

        def factory() -> CyberTiplineClient:
            return CyberTiplineClient(url, username, password, timeout_s=timeout)

    return CyberTiplineService(
        sessions,
        FilerSettings(
            environment=settings.ncmec_environment,
            platform_name=settings.ncmec_platform_name,
            reporter_email=settings.ncmec_reporter_email,
            reporter_first_name=settings.ncmec_reporter_first_name,
            reporter_last_name=settings.ncmec_reporter_last_name,
            terms_of_service_url=settings.ncmec_terms_of_service_url,
            legal_url=settings.ncmec_legal_url,
            viewed_scope=ct.ViewedScope(settings.ncmec_viewed_scope),
        ),
        factory,
        StoredMediaBytes(sessions, blobs),
        evidence,
    )
