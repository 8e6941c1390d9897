"""Statements of reasons for the DSA Transparency Database (Art. 24(5)).

``collect`` writes one statement per restricting action in the platform's outbox
(restrict, remove, demonetize an item; suspend, terminate an account) that has none
yet; the unique ``outbox_id`` and ``puid`` make that idempotent and every puid unique.
``submit_due`` sends the pending ones; only a 201 marks a statement stored, anything
else is retried with backoff (30 s doubling, at most 6 h apart), forever: the Commission
wants every statement, late rather than never.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from takedown.config import Settings
from takedown.domain.reports import Category, ReporterRole
from takedown.domain.statements import (
    StatementOfReasons,
    restricts,
    statement_for,
    transparency_db_statement,
)
from takedown.errors import Conflict
from takedown.ids import utcnow
from takedown.integrations.dsa_transparency import DsaClient
from takedown.store.db import unit_of_work
from takedown.store.models import Case, DsaStatement, Item, ItemMedia, Media, OutboxMessage, Report

TOPICS = (
    "item.restrict",
    "item.remove",
    "item.demonetize",
    "account.suspend",
    "account.terminate",
)
RETRY_BASE = timedelta(seconds=30)
RETRY_CAP = timedelta(hours=6)
CLAIM_LEASE = timedelta(minutes=5)


@dataclass(frozen=True)
class DsaRun:
    created: int
    submitted: int
    failed: int


class DsaService:
    def __init__(self, sessions: sessionmaker[Session], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings
        scope = [c.strip().upper() for c in settings.dsa_territorial_scope.split(",") if c.strip()]
        self._scope = scope or None

    def collect(self, limit: int = 1000) -> int:
        """Statements for actions that have none yet; returns how many were written."""
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
                s.add(
                    DsaStatement(
                        puid=str(body["puid"]),
                        outbox_id=msg.id,
                        payload=json.dumps(body, sort_keys=True),
                        created_at=utcnow(),
                        next_attempt_at=msg.created_at,  # due since the action
                    )
                )
            return len(rows)

    def _statement(self, s: Session, msg: OutboxMessage) -> dict[str, object]:
        payload = json.loads(msg.payload)
        action = msg.topic.split(".", 1)[1]
        case = s.get(Case, msg.case_id) if msg.case_id else None
        cats = {Category(c) for c in (case.categories if case else "").split(",") if c}
        media_types: set[str] = set()
        content_date = msg.created_at
        if msg.target_type == "item":
            # Rebuilt without the reviewer's free text: it may name people.
            sor = statement_for(
                action,
                cats,
                reason=str(payload.get("reason", "")),
                policy=case.outcome_policy if case else None,
                hash_match=bool(case and case.hash_sources),
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
            sor = StatementOfReasons(**payload["statement_of_reasons"])
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
            territorial_scope=self._scope,
        )

    def submit_due(self, now: datetime | None = None, limit: int = 100) -> DsaRun:
        token = self._settings.dsa_token_value()
        if not token:
            raise Conflict(
                "The DSA Transparency Database is not configured (TAKEDOWN_DSA_API_TOKEN).",
                code="dsa_not_configured",
            )
        created = self.collect()
        now = now or utcnow()
        client = DsaClient(
            self._settings.dsa_api_url, token, timeout_s=self._settings.dsa_timeout_s
        )
        stored = failed = 0
        try:
            for _ in range(limit):
                claim = self._claim(now)
                if claim is None:
                    break
                sid, body = claim
                answer = client.submit(json.loads(body))
                with unit_of_work(self._sessions) as s:
                    row = s.get(DsaStatement, sid)
                    assert row is not None
                    row.last_status = answer.status
                    if answer.stored:
                        row.state, row.submitted_at, row.db_uuid = "submitted", now, answer.uuid
                        row.last_error = None
                        stored += 1
                    else:
                        row.last_error = answer.body[:1000]
                        row.next_attempt_at = now + min(
                            RETRY_CAP, RETRY_BASE * 2 ** max(0, row.attempts - 1)
                        )
                        failed += 1
        finally:
            client.close()
        return DsaRun(created, stored, failed)

    def _claim(self, now: datetime) -> tuple[int, str] | None:
        with unit_of_work(self._sessions) as s:
            stmt = (
                select(DsaStatement)
                .where(DsaStatement.state == "pending", DsaStatement.next_attempt_at <= now)
                .order_by(DsaStatement.id)
                .limit(1)
            )
            if s.get_bind().dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            row = s.scalars(stmt).first()
            if row is None:
                return None
            row.attempts += 1
            row.next_attempt_at = now + CLAIM_LEASE
            return row.id, row.payload

    def counts(self) -> dict[str, int]:
        with unit_of_work(self._sessions, write=False) as s:
            states = list(s.scalars(select(DsaStatement.state)))
        return {st: states.count(st) for st in ("pending", "submitted")}


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
