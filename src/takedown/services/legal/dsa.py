"""Statements of reasons for the DSA Transparency Database (Art. 24(5)).

``collect`` writes one statement per restricting action in the platform's outbox
(restrict, remove, demonetize an item; suspend, terminate an account) that has none
yet; the unique ``outbox_id`` and ``puid`` make that idempotent and every puid unique.
Each statement is checked against the database's current lists and rules
(``domain/dsa_lists.py``) before it may leave: one that fails is ``failed`` at once.

``submit_due`` sends the pending ones, through the batch endpoint (up to 100 a call)
when more than one is due. REQUIREMENTS (Art. 24(5)): only a 201 means stored, and
statements go "without undue delay"; issue #23 adds that a statement the database
refuses must not be retried blindly nor go unnoticed. What happens to each:

- 201: ``submitted``, with the database's uuid. A 422 saying the puid is already in the
  database also means stored (an earlier answer was lost).
- 429, 408, 5xx or no answer: still ``pending``, retried with backoff (30 s doubling, at
  most 6 h apart), for as long as it takes.
- 422 or any other 4xx: ``failed`` with the database's field errors; not retried. An
  audit event per statement and one alert (audit event and a mail to
  ``TAKEDOWN_LEGAL_ALERT_EMAIL``) tell the legal team, who fix the cause (a setting, the
  code) and requeue it (``requeue``: the statement is rebuilt and checked again).

In a batch the database stores all or nothing: the statements it names as wrong become
``failed`` and the rest are sent again at once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from takedown.config import Settings
from takedown.domain.dsa_lists import BATCH_MAX, Errors, validate_statement
from takedown.domain.reports import Category, ReporterRole
from takedown.domain.statements import (
    StatementOfReasons,
    restricts,
    statement_for,
    transparency_db_statement,
)
from takedown.errors import Conflict, NotFound
from takedown.ids import utcnow
from takedown.integrations.dsa_transparency import DsaAnswer, DsaClient
from takedown.services.audit.chain import record
from takedown.services.outbound.mail import queue_mail
from takedown.store import item_actions
from takedown.store.db import unit_of_work
from takedown.store.models import (
    Case,
    DsaStatement,
    Item,
    ItemMedia,
    Media,
    OutboxMessage,
    Report,
)

TOPICS = (
    "item.restrict",
    "item.remove",
    "item.demonetize",
    "account.suspend",
    "account.terminate",
)
STATES = ("pending", "submitted", "failed")
RETRY_BASE = timedelta(seconds=30)
RETRY_CAP = timedelta(hours=6)
CLAIM_LEASE = timedelta(minutes=5)
VALIDATOR = "takedown-validator"  # last_error of a statement refused before sending


@dataclass(frozen=True)
class DsaRun:
    created: int  # statements written for new actions
    submitted: int  # stored by the database
    retrying: int  # not stored this time (429, 5xx, no answer): sent again later
    refused: int  # failed: refused by the validator or the database, waits for a person


@dataclass(frozen=True)
class DsaStatementView:
    puid: str
    action: str  # the outbox topic: item.remove, account.suspend…
    state: str  # pending | submitted | failed
    action_at: datetime
    created_at: datetime
    attempts: int
    next_attempt_at: datetime | None  # pending only
    submitted_at: datetime | None
    db_uuid: str | None
    last_status: int | None  # the database's last HTTP status (None: no answer / not sent)
    errors: dict[str, list[str]] | None  # failed: field -> messages
    failed_at: datetime | None


@dataclass(frozen=True)
class DsaSummary:
    pending: int
    submitted: int
    failed: int
    oldest_unsent_action_at: datetime | None  # the oldest action whose statement is not stored
    oldest_unsent_age_seconds: float | None


class DsaService:
    def __init__(self, sessions: sessionmaker[Session], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings
        self.alert_email = settings.legal_alert_email

    # -- writing statements ------------------------------------------------------------
    def collect(self, limit: int = 1000, now: datetime | None = None) -> int:
        """Statements for actions that have none yet; returns how many were written.
        One the validator refuses is written as ``failed`` and alerted."""
        return self._collect(limit, now or utcnow())[0]

    def _collect(self, limit: int, now: datetime) -> tuple[int, int]:
        """(statements written, of which refused by the validator)."""
        refused = 0
        # A statement per action: those of a viral measure still in its fan-out
        # written out first (store/item_actions.py).
        item_actions.settle(self._sessions)
        with unit_of_work(self._sessions) as s:
            rows = list(
                s.scalars(
                    select(OutboxMessage)
                    .outerjoin(DsaStatement, DsaStatement.outbox_id == OutboxMessage.id)
                    .where(DsaStatement.id.is_(None), OutboxMessage.topic.in_(TOPICS))
                    .order_by(OutboxMessage.id)
                    .limit(limit)
                )
            )
            for msg in rows:
                body = self._statement(s, msg)
                row = DsaStatement(
                    puid=str(body["puid"]),
                    outbox_id=msg.id,
                    payload=json.dumps(body, sort_keys=True),
                    created_at=now,
                    next_attempt_at=msg.created_at,  # due since the action
                    attempts=0,
                    state="pending",
                )
                s.add(row)
                errors = validate_statement(body)
                if errors:
                    s.flush()
                    _fail(s, row, None, VALIDATOR, errors, now)
                    refused += 1
        if refused:
            self.alert_failures(now)
        return len(rows), refused

    def _statement(self, s: Session, msg: OutboxMessage) -> dict[str, object]:
        payload = json.loads(msg.full_payload)
        action = msg.topic.split(".", 1)[1]
        case = s.get(Case, msg.case_id) if msg.case_id else None
        cats = {Category(c) for c in (case.categories if case else "").split(",") if c}
        media_types: set[str] = set()
        content_date = msg.created_at
        told = payload.get("statement_of_reasons") or {}
        if msg.target_type == "item":
            # Rebuilt without the reviewer's free text: it may name people. The
            # territorial scope is the one the user was told (issue #23, point 9).
            sor = statement_for(
                action,
                cats,
                reason=str(payload.get("reason", "")),
                policy=case.outcome_policy if case else None,
                hash_match=bool(case and case.hash_sources),
            )
            sor = StatementOfReasons(
                **{
                    **sor.to_dict(),
                    "territorial_scope": told.get("territorial_scope", sor.territorial_scope),
                    "territorial_scope_countries": told.get(
                        "territorial_scope_countries", sor.territorial_scope_countries
                    ),
                }
            )
            item = s.scalars(select(Item).where(Item.platform_id == msg.target_platform_id)).first()
            if item is not None:
                content_date = item.posted_at or item.registered_at
                media_types = set(
                    s.scalars(
                        select(Media.media_type)
                        .join(ItemMedia, ItemMedia.media_id == Media.id)
                        .where(ItemMedia.item_id == item.id)
                    )
                )
        else:
            sor = StatementOfReasons(**told)
        assert restricts(action)
        return transparency_db_statement(
            sor,
            puid=f"takedown-{msg.public_id}",
            action=action,
            categories=cats,
            media_types=media_types,
            content_date=content_date.date().isoformat(),
            application_date=msg.created_at.date().isoformat(),
            source_type=_source_type(s, case, str(payload.get("reason", ""))),
        )

    # -- sending -------------------------------------------------------------------------
    def submit_due(self, now: datetime | None = None, limit: int = 10_000) -> DsaRun:
        token = self._settings.dsa_token_value()
        if not token:
            raise Conflict(
                "The DSA Transparency Database is not configured (TAKEDOWN_DSA_API_TOKEN).",
                code="dsa_not_configured",
            )
        now = now or utcnow()
        created, refused = self._collect(1000, now)
        client = DsaClient(
            self._settings.dsa_api_url, token, timeout_s=self._settings.dsa_timeout_s
        )
        tally = {"submitted": 0, "retrying": 0, "refused": refused}
        size = BATCH_MAX if client.batch_url else 1
        sent = 0
        try:
            while sent < limit:
                claimed = self._claim(now, min(size, limit - sent))
                if not claimed:
                    break
                sent += len(claimed)
                self._send(client, claimed, now, tally)
        finally:
            client.close()
            self.alert_failures(now)
        return DsaRun(created, tally["submitted"], tally["retrying"], tally["refused"])

    def _claim(self, now: datetime, n: int) -> list[tuple[int, dict[str, object]]]:
        with unit_of_work(self._sessions) as s:
            stmt = (
                select(DsaStatement)
                .where(DsaStatement.state == "pending", DsaStatement.next_attempt_at <= now)
                .order_by(DsaStatement.id)
                .limit(n)
            )
            if s.get_bind().dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            rows = list(s.scalars(stmt))
            for row in rows:
                row.attempts += 1
                row.next_attempt_at = now + CLAIM_LEASE
            return [(row.id, json.loads(row.payload)) for row in rows]

    def _send(
        self,
        client: DsaClient,
        claimed: list[tuple[int, dict[str, object]]],
        now: datetime,
        tally: dict[str, int],
    ) -> None:
        # Checked again before leaving: a row written by older code may be stale.
        refused = {sid: errs for sid, body in claimed if (errs := validate_statement(body))}
        if refused:
            self._settle(
                now, tally, failed={sid: (None, VALIDATOR, e) for sid, e in refused.items()}
            )
        valid = [(sid, body) for sid, body in claimed if sid not in refused]
        if len(valid) == 1:
            sid, body = valid[0]
            self._settle_one(sid, str(body["puid"]), client.submit(body), now, tally)
        elif valid:
            self._send_batch(client, valid, now, tally)

    def _settle_one(
        self, sid: int, puid: str, answer: DsaAnswer, now: datetime, tally: dict[str, int]
    ) -> None:
        if answer.stored:
            self._settle(now, tally, stored={sid: (answer.status, answer.uuid)})
        elif answer.status == 422 and puid in answer.existing_puids():
            self._settle(now, tally, stored={sid: (answer.status, None)})
        elif answer.refused:
            errs = answer.field_errors()
            self._settle(now, tally, failed={sid: (answer.status, answer.body, errs)})
        else:
            self._settle(now, tally, retry={sid: (answer.status, answer.body)})

    def _send_batch(
        self,
        client: DsaClient,
        batch: list[tuple[int, dict[str, object]]],
        now: datetime,
        tally: dict[str, int],
    ) -> None:
        for _ in range(3):  # the database names the wrong ones; the rest go again at once
            answer = client.submit_many([body for _, body in batch])
            if answer.stored:
                self._settle(
                    now,
                    tally,
                    stored={
                        sid: (answer.status, answer.stored_puids.get(str(body["puid"])))
                        for sid, body in batch
                    },
                )
                return
            if not answer.refused:
                self._settle(
                    now, tally, retry={sid: (answer.status, answer.body) for sid, _ in batch}
                )
                return
            wrong = answer.batch_errors() if answer.status == 422 else {}
            existing = answer.existing_puids() if answer.status == 422 else set()
            if not wrong and not existing:  # the call itself was refused (401, 413…)
                errs = answer.field_errors()
                self._settle(
                    now, tally, failed={sid: (answer.status, answer.body, errs) for sid, _ in batch}
                )
                return
            failed = {
                sid: (answer.status, answer.body, wrong[i])
                for i, (sid, _) in enumerate(batch)
                if i in wrong
            }
            stored = {
                sid: (answer.status, None)
                for i, (sid, body) in enumerate(batch)
                if i not in wrong and str(body["puid"]) in existing
            }
            self._settle(now, tally, stored=stored, failed=failed)
            batch = [(sid, body) for sid, body in batch if sid not in failed and sid not in stored]
            if not batch:
                return
        self._settle(
            now, tally, retry={sid: (None, "batch kept being refused") for sid, _ in batch}
        )

    def _settle(
        self,
        now: datetime,
        tally: dict[str, int],
        *,
        stored: Mapping[int, tuple[int | None, str | None]] | None = None,
        retry: Mapping[int, tuple[int | None, str]] | None = None,
        failed: Mapping[int, tuple[int | None, str, Errors]] | None = None,
    ) -> None:
        with unit_of_work(self._sessions) as s:
            for sid, (status, uuid) in (stored or {}).items():
                row = _row(s, sid)
                row.state, row.submitted_at, row.db_uuid = "submitted", now, uuid
                row.last_status, row.last_error, row.errors = status, None, None
                tally["submitted"] += 1
            for sid, (status, body) in (retry or {}).items():
                row = _row(s, sid)
                row.last_status, row.last_error = status, body[:1000]
                row.next_attempt_at = now + min(
                    RETRY_CAP, RETRY_BASE * 2 ** max(0, row.attempts - 1)
                )
                tally["retrying"] += 1
            for sid, (status, body, errs) in (failed or {}).items():
                _fail(s, _row(s, sid), status, body, errs, now)
                tally["refused"] += 1

    # -- failures: alert, requeue --------------------------------------------------------
    def alert_failures(self, now: datetime | None = None) -> list[str]:
        """One alert for the statements that failed since the last one: an audit event
        and, when ``TAKEDOWN_LEGAL_ALERT_EMAIL`` is set, a mail through the mail outbox.
        Returns the puids alerted."""
        now = now or utcnow()
        with unit_of_work(self._sessions) as s:
            stmt = (
                select(DsaStatement)
                .where(DsaStatement.state == "failed", DsaStatement.alerted_at.is_(None))
                .order_by(DsaStatement.id)
            )
            if s.get_bind().dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            rows = list(s.scalars(stmt))
            if not rows:
                return []
            for row in rows:
                row.alerted_at = now
            puids = [r.puid for r in rows]
            record(
                s,
                "system",
                "legal.dsa_statements_failed",
                "dsa_statement",
                puids[0],
                {"count": len(rows), "puids": puids[:100]},
            )
            if self.alert_email:
                queue_mail(
                    s,
                    self.alert_email,
                    f"DSA Transparency Database: {len(rows)} statement(s) refused",
                    _alert_body(rows),
                    now,
                )
            return puids

    def requeue(self, puid: str, actor: str, now: datetime | None = None) -> DsaStatementView:
        """Send a failed statement again, rebuilt from its action with today's code and
        settings. Refused (nothing changes) when it still does not pass the validator."""
        now = now or utcnow()
        with unit_of_work(self._sessions) as s:
            row = s.scalars(select(DsaStatement).where(DsaStatement.puid == puid)).first()
            if row is None:
                raise NotFound("No such DSA statement.", code="dsa_statement_not_found")
            if row.state != "failed":
                raise Conflict(
                    f"The statement is {row.state}; only a failed one can be requeued.",
                    code="dsa_statement_not_failed",
                )
            msg = s.get(OutboxMessage, row.outbox_id)
            assert msg is not None
            body = self._statement(s, msg)
            errors = validate_statement(body)
            if errors:
                raise Conflict(
                    "The statement still does not pass the checks: "
                    + "; ".join(f"{k}: {' '.join(v)}" for k, v in sorted(errors.items())),
                    code="dsa_statement_invalid",
                    errors=errors,
                )
            row.payload = json.dumps(body, sort_keys=True)
            row.state, row.next_attempt_at, row.attempts = "pending", now, 0
            row.errors = row.failed_at = row.alerted_at = None
            record(s, actor, "legal.dsa_statement_requeued", "dsa_statement", puid, {})
            s.flush()
            return _view(row, msg)

    # -- reading -----------------------------------------------------------------------
    def statements(self, state: str | None = None, limit: int = 100) -> list[DsaStatementView]:
        """The statements, failed and oldest first (or of one state)."""
        with unit_of_work(self._sessions, write=False) as s:
            stmt = select(DsaStatement, OutboxMessage).join(
                OutboxMessage, OutboxMessage.id == DsaStatement.outbox_id
            )
            if state:
                stmt = stmt.where(DsaStatement.state == state)
            stmt = stmt.order_by(
                (DsaStatement.state != "failed"), OutboxMessage.created_at, DsaStatement.id
            ).limit(limit)
            return [_view(row, msg) for row, msg in s.execute(stmt).all()]

    def summary(self, now: datetime | None = None) -> DsaSummary:
        """Counters for the legal queue and a future ``/metrics``."""
        now = now or utcnow()
        with unit_of_work(self._sessions, write=False) as s:
            counts = dict(
                s.execute(
                    select(DsaStatement.state, func.count()).group_by(DsaStatement.state)
                ).all()
            )
            oldest = s.scalar(
                select(func.min(OutboxMessage.created_at))
                .join(DsaStatement, DsaStatement.outbox_id == OutboxMessage.id)
                .where(DsaStatement.state != "submitted")
            )
            unwritten = s.scalar(
                select(func.min(OutboxMessage.created_at))
                .outerjoin(DsaStatement, DsaStatement.outbox_id == OutboxMessage.id)
                .where(DsaStatement.id.is_(None), OutboxMessage.topic.in_(TOPICS))
            )
        if unwritten is not None and (oldest is None or _aware(unwritten) < _aware(oldest)):
            oldest = unwritten
        oldest = _aware(oldest) if oldest is not None else None
        return DsaSummary(
            pending=int(counts.get("pending", 0)),
            submitted=int(counts.get("submitted", 0)),
            failed=int(counts.get("failed", 0)),
            oldest_unsent_action_at=oldest,
            oldest_unsent_age_seconds=(now - oldest).total_seconds() if oldest else None,
        )

    def counts(self) -> dict[str, int]:
        summary = self.summary()
        return {"pending": summary.pending, "submitted": summary.submitted}


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _row(s: Session, sid: int) -> DsaStatement:
    row = s.get(DsaStatement, sid)
    assert row is not None
    return row


def _fail(
    s: Session,
    row: DsaStatement,
    status: int | None,
    body: str,
    errors: Errors,
    now: datetime,
) -> None:
    row.state, row.failed_at, row.alerted_at = "failed", now, None
    row.last_status, row.last_error = status, body[:1000]
    row.errors = json.dumps(errors, sort_keys=True)
    record(
        s,
        "system",
        "legal.dsa_statement_failed",
        "dsa_statement",
        row.puid,
        {
            "status": status,
            "by": "validator" if body == VALIDATOR else "database",
            "fields": sorted(errors),
        },
    )


def _view(row: DsaStatement, msg: OutboxMessage) -> DsaStatementView:
    return DsaStatementView(
        puid=row.puid,
        action=msg.topic,
        state=row.state,
        action_at=_aware(msg.created_at),
        created_at=_aware(row.created_at),
        attempts=row.attempts,
        next_attempt_at=_aware(row.next_attempt_at) if row.state == "pending" else None,
        submitted_at=_aware(row.submitted_at) if row.submitted_at else None,
        db_uuid=row.db_uuid,
        last_status=row.last_status,
        errors=json.loads(row.errors) if row.errors else None,
        failed_at=_aware(row.failed_at) if row.failed_at else None,
    )


def _alert_body(rows: list[DsaStatement]) -> str:
    lines = [
        f"{len(rows)} statement(s) of reasons were refused and are not in the DSA "
        "Transparency Database (DSA art. 24(5)). They will not be sent again until "
        "someone fixes the cause and requeues them.",
        "",
    ]
    for row in rows[:50]:
        errors = json.loads(row.errors) if row.errors else {}
        by = "Takedown's checks" if row.last_error == VALIDATOR else f"HTTP {row.last_status}"
        fields = "; ".join(f"{k}: {' '.join(v)}" for k, v in sorted(errors.items()))
        lines.append(f"- {row.puid} ({by}): {fields}")
    if len(rows) > 50:
        lines.append(f"- and {len(rows) - 50} more")
    lines += [
        "",
        "See GET /v1/legal/dsa/statements?state=failed; requeue one with "
        "POST /v1/legal/dsa/statements/{puid}/retry.",
    ]
    return "\n".join(lines)


def _source_type(s: Session, case: Case | None, reason: str) -> str:
    if case is None or reason == "hash_match":
        return "SOURCE_VOLUNTARY"
    roles = set(s.scalars(select(Report.reporter_role).where(Report.case_id == case.id)))
    if ReporterRole.TRUSTED_FLAGGER.value in roles:
        return "SOURCE_TRUSTED_FLAGGER"
    if roles - {ReporterRole.LAW_ENFORCEMENT.value}:
        return "SOURCE_ARTICLE_16"
    if roles:
        return "SOURCE_TYPE_OTHER_NOTIFICATION"
    return "SOURCE_VOLUNTARY"
