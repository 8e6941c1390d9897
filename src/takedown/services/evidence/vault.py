"""The evidence vault: preserve a case, hold it, let legal staff read or export it for
law enforcement with a stated purpose, delete it when no hold remains, destroy it when
law enforcement asks.

Everything preserved is an encrypted blob (store/blobs.py): the context document is
sealed as its own object; media bytes the platform sent are the registry's blobs,
referenced rather than copied (media are stored once per SHA-256, and a reference
cannot drift from what the registry holds). Every use case here writes an audit event,
reads included, with the caller's purpose.
"""

from __future__ import annotations

import hashlib
import io
import json
import mimetypes
import zipfile
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from takedown.domain.evidence import (
    EvidenceState,
    Hold,
    HoldKind,
    check_completed_at,
    check_deletable,
    check_destroyable,
    check_new_until,
    check_open,
    clean_purpose,
    preservation_until,
    sha256sum_lines,
)
from takedown.errors import Conflict, InvalidRequest, NotFound
from takedown.ids import utcnow
from takedown.services.audit.chain import record
from takedown.services.evidence.context import FORMAT, case_context
from takedown.store import repositories as repo
from takedown.store.blobs import BlobStore
from takedown.store.db import unit_of_work
from takedown.store.models import Case, Evidence, EvidenceFile, EvidenceHold, Media

CONTEXT_NAME = "context.json"


@dataclass(frozen=True)
class ReportSent:
    """The exact report sent to an authority (e.g. the CyberTipline XML)."""

    name: str  # e.g. "cybertipline-report.xml"
    body: bytes
    content_type: str = "text/xml"


@dataclass(frozen=True)
class HoldView:
    id: str
    kind: str
    reason: str
    until: datetime
    created_at: datetime
    created_by: str
    released_at: datetime | None
    released_by: str | None


@dataclass(frozen=True)
class FileView:
    name: str
    role: str
    sha256: str
    size: int


@dataclass(frozen=True)
class EvidenceView:
    id: str
    case_id: str
    state: str
    created_at: datetime
    created_by: str
    reported_at: datetime | None
    held_until: datetime | None  # end of the latest active hold
    holds: list[HoldView]
    files: list[FileView]
    closed_at: datetime | None
    closed_by: str | None
    closed_reason: str | None
    le_requested_by: str | None
    le_reference: str | None


@dataclass(frozen=True)
class EvidenceExport:
    filename: str
    data: bytes
    manifest_sha256: str


class EvidenceVault:
    def __init__(
        self, sessions: sessionmaker[Session], blobs: BlobStore, preservation: timedelta
    ) -> None:
        self._sessions = sessions
        self._blobs = blobs
        self._preservation = preservation

    # -- preserving ----------------------------------------------------------------------
    def preserve(self, case_id: str, actor: str, purpose: str) -> EvidenceView:
        why = clean_purpose(purpose)
        with unit_of_work(self._sessions) as s:
            ev = self.preserve_in(s, _case(s, case_id), actor, why)
            return self._view(s, ev)

    def preserve_in(
        self, s: Session, case: Case, actor: str, purpose: str, report: ReportSent | None = None
    ) -> Evidence:
        """Snapshot ``case`` now, in the caller's transaction."""
        ev = Evidence(case_id=case.id, created_by=actor, state=EvidenceState.PRESERVED.value)
        s.add(ev)
        s.flush()
        doc, media = case_context(s, case)
        doc.update(evidence_id=ev.public_id, preserved_at=ev.created_at.isoformat())
        doc.update(preserved_by=actor, purpose=purpose)
        body = json.dumps(doc, indent=1, sort_keys=True).encode()
        info = self._blobs.put(s, body, kind="evidence", content_type="application/json")
        files = [
            EvidenceFile(
                role="context",
                name=CONTEXT_NAME,
                blob_id=info.public_id,
                sha256=info.sha256,
                size=info.size,
                owned=True,
            )
        ]
        for m in sorted(media, key=lambda m: m.sha256):
            if m.blob_id is None:
                continue  # only hashes were sent; the context names them
            blob = self._blobs.info(s, m.blob_id)
            ext = mimetypes.guess_extension(blob.content_type) or ".bin"
            files.append(
                EvidenceFile(
                    role="media",
                    name=f"media/{m.sha256}{ext}",
                    blob_id=blob.public_id,
                    sha256=blob.sha256,
                    size=blob.size,
                    owned=False,
                )
            )
        for f in files:
            f.evidence_id = ev.id
        s.add_all(files)
        if report is not None:
            self._attach_report(s, ev, report)
        record(
            s,
            actor,
            "evidence.preserved",
            "evidence",
            ev.public_id,
            {"case": case.public_id, "purpose": purpose, "files": len(files)},
        )
        return ev

    def mark_reported(
        self,
        case_id: str,
        completed_at: datetime,
        actor: str,
        *,
        reference: str | None = None,
        report: ReportSent | None = None,
    ) -> list[EvidenceView]:
        with unit_of_work(self._sessions) as s:
            held = self.mark_reported_in(
                s, _case(s, case_id), completed_at, actor, reference=reference, report=report
            )
            return [self._view(s, ev) for ev in held]

    def mark_reported_in(
        self,
        s: Session,
        case: Case,
        completed_at: datetime,
        actor: str,
        *,
        reference: str | None = None,
        report: ReportSent | None = None,
    ) -> list[Evidence]:
        """A report about ``case`` was completed (e.g. CyberTipline ``/finish``): hold
        its evidence for the preservation period from ``completed_at``, preserving it
        first if nothing is preserved yet. Call it in the reporting transaction."""
        now = utcnow()
        check_completed_at(completed_at, now)
        live = list(
            s.scalars(
                select(Evidence)
                .where(Evidence.case_id == case.id, Evidence.state == EvidenceState.PRESERVED.value)
                .order_by(Evidence.id)
            )
        )
        if not live:
            why = "preserved when the report was completed"
            live = [self.preserve_in(s, case, actor, why, report)]
        elif report is not None:
            self._attach_report(s, live[-1], report)
        until = preservation_until(completed_at, self._preservation)
        reason = f"18 U.S.C. 2258A(h): report completed {completed_at.isoformat()}"
        if reference:
            reason += f" (reference {reference[:200]})"
        for ev in live:
            if ev.reported_at is None or completed_at > ev.reported_at:
                ev.reported_at = completed_at
            hold = s.scalars(
                select(EvidenceHold).where(
                    EvidenceHold.evidence_id == ev.id,
                    EvidenceHold.kind == HoldKind.PRESERVATION.value,
                )
            ).first()
            if hold is None:
                s.add(
                    EvidenceHold(
                        evidence_id=ev.id,
                        kind=HoldKind.PRESERVATION.value,
                        reason=reason,
                        until=until,
                        created_by=actor,
                    )
                )
            elif until > hold.until:
                hold.until, hold.reason = until, reason
            record(
                s,
                actor,
                "evidence.reported",
                "evidence",
                ev.public_id,
                {
                    "case": case.public_id,
                    "completed_at": completed_at.isoformat(),
                    "held_until": until.isoformat(),
                    "reference": reference,
                },
            )
        s.flush()
        return live

    def _attach_report(self, s: Session, ev: Evidence, report: ReportSent) -> None:
        name = report.name.replace("/", "_")[:150] or "report"
        info = self._blobs.put(s, report.body, kind="evidence", content_type=report.content_type)
        s.add(
            EvidenceFile(
                evidence_id=ev.id,
                role="report",
                name=f"reports/{name}",
                blob_id=info.public_id,
                sha256=info.sha256,
                size=info.size,
                owned=True,
            )
        )

    # -- reading (every read is logged with its purpose) --------------------------------
    def list_for_case(self, case_id: str, actor: str, purpose: str) -> list[EvidenceView]:
        why = clean_purpose(purpose)
        with unit_of_work(self._sessions) as s:
            case = _case(s, case_id)
            rows = s.scalars(
                select(Evidence).where(Evidence.case_id == case.id).order_by(Evidence.id)
            ).all()
            record(s, actor, "evidence.listed", "case", case.public_id, {"purpose": why})
            return [self._view(s, ev) for ev in rows]

    def get(self, evidence_id: str, actor: str, purpose: str) -> EvidenceView:
        why = clean_purpose(purpose)
        with unit_of_work(self._sessions) as s:
            ev = _evidence(s, evidence_id)
            record(s, actor, "evidence.viewed", "evidence", ev.public_id, {"purpose": why})
            return self._view(s, ev)

    def context(self, evidence_id: str, actor: str, purpose: str) -> dict[str, object]:
        """The decrypted context document."""
        why = clean_purpose(purpose)
        with unit_of_work(self._sessions) as s:
            ev = _evidence(s, evidence_id)
            check_open(EvidenceState(ev.state))
            f = s.scalars(
                select(EvidenceFile).where(
                    EvidenceFile.evidence_id == ev.id, EvidenceFile.role == "context"
                )
            ).one()
            doc: dict[str, object] = json.loads(self._blobs.get(s, f.blob_id))
            record(s, actor, "evidence.context_read", "evidence", ev.public_id, {"purpose": why})
            return doc

    def export(
        self, evidence_id: str, actor: str, purpose: str, *, le_reference: str | None = None
    ) -> EvidenceExport:
        """A zip for law enforcement: every file decrypted, ``manifest.json`` (what, why,
        for whom) and ``SHA256SUMS`` (``sha256sum -c`` checks it). Built in memory; the
        plaintext touches no disk here."""
        why = clean_purpose(purpose)
        with unit_of_work(self._sessions) as s:
            ev = _evidence(s, evidence_id)
            check_open(EvidenceState(ev.state))
            case_public = s.scalar(select(Case.public_id).where(Case.id == ev.case_id))
            files = _files(s, ev)
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
                for f in files:
                    zf.writestr(f.name, self._blobs.get(s, f.blob_id))  # checks the SHA-256
                sums = sha256sum_lines((f.name, f.sha256) for f in files)
                zf.writestr("SHA256SUMS", sums)
                manifest = {
                    "format": FORMAT,
                    "evidence_id": ev.public_id,
                    "case_id": case_public,
                    "preserved_at": ev.created_at.isoformat(),
                    "reported_at": ev.reported_at.isoformat() if ev.reported_at else None,
                    "exported_at": utcnow().isoformat(),
                    "exported_by": actor,
                    "purpose": why,
                    "law_enforcement_reference": le_reference,
                    "files": [
                        {"name": f.name, "role": f.role, "sha256": f.sha256, "size": f.size}
                        for f in files
                    ],
                    "sha256sums_sha256": hashlib.sha256(sums.encode()).hexdigest(),
                }
                manifest_bytes = json.dumps(manifest, indent=1).encode()
                zf.writestr("manifest.json", manifest_bytes)
            digest = hashlib.sha256(manifest_bytes).hexdigest()
            record(
                s,
                actor,
                "evidence.exported",
                "evidence",
                ev.public_id,
                {
                    "purpose": why,
                    "le_reference": le_reference,
                    "manifest_sha256": digest,
                    "files": len(files),
                },
            )
            return EvidenceExport(f"evidence-{ev.public_id}.zip", buf.getvalue(), digest)

    # -- holds ---------------------------------------------------------------------------
    def add_hold(self, evidence_id: str, actor: str, *, until: datetime, reason: str) -> HoldView:
        with unit_of_work(self._sessions) as s:
            ev = _evidence(s, evidence_id, for_update=True)
            check_open(EvidenceState(ev.state))
            check_new_until(until, utcnow())
            hold = EvidenceHold(
                evidence_id=ev.id,
                kind=HoldKind.LEGAL.value,
                reason=_reason(reason),
                until=until,
                created_by=actor,
            )
            s.add(hold)
            s.flush()
            record(
                s,
                actor,
                "evidence.hold_added",
                "evidence",
                ev.public_id,
                {"hold": hold.public_id, "until": until.isoformat(), "reason": hold.reason},
            )
            return _hold_view(hold)

    def extend_hold(
        self, evidence_id: str, hold_id: str, actor: str, *, until: datetime, reason: str
    ) -> HoldView:
        with unit_of_work(self._sessions) as s:
            ev, hold = _hold(s, evidence_id, hold_id)
            check_open(EvidenceState(ev.state))
            if hold.released_at is not None:
                raise Conflict("This hold was released; add a new one.", code="hold_released")
            check_new_until(until, utcnow(), hold.until)
            old, hold.until = hold.until, until
            record(
                s,
                actor,
                "evidence.hold_extended",
                "evidence",
                ev.public_id,
                {
                    "hold": hold.public_id,
                    "from": old.isoformat(),
                    "until": until.isoformat(),
                    "reason": _reason(reason),
                },
            )
            return _hold_view(hold)

    def release_hold(self, evidence_id: str, hold_id: str, actor: str, *, reason: str) -> HoldView:
        with unit_of_work(self._sessions) as s:
            ev, hold = _hold(s, evidence_id, hold_id)
            if hold.kind != HoldKind.LEGAL.value:
                raise Conflict(
                    "The statutory preservation hold cannot be released; it ends by itself "
                    "(or the evidence is destroyed on a law-enforcement request).",
                    code="hold_not_releasable",
                )
            if hold.released_at is None:
                hold.released_at, hold.released_by = utcnow(), actor
                record(
                    s,
                    actor,
                    "evidence.hold_released",
                    "evidence",
                    ev.public_id,
                    {"hold": hold.public_id, "reason": _reason(reason)},
                )
            return _hold_view(hold)

    # -- ending --------------------------------------------------------------------------
    def delete(self, evidence_id: str, actor: str, *, reason: str) -> EvidenceView:
        """Retention is over: delete what this evidence owns (refused while held). The
        registry's media bytes stay; they are the registry's."""
        why = _reason(reason)
        with unit_of_work(self._sessions) as s:
            ev = _evidence(s, evidence_id, for_update=True)
            check_deletable(EvidenceState(ev.state), _holds(s, ev), utcnow())
            destroyed = self._destroy_owned(s, ev)
            _close(ev, EvidenceState.DELETED, actor, why)
            record(
                s,
                actor,
                "evidence.deleted",
                "evidence",
                ev.public_id,
                {"reason": why, "blobs_destroyed": destroyed},
            )
            return self._view(s, ev)

    def destroy(
        self, evidence_id: str, actor: str, *, requested_by: str, reference: str, reason: str = ""
    ) -> EvidenceView:
        """Destroy on a law-enforcement request (18 U.S.C. 2258B(c)): the context, the
        reports and the media bytes themselves (the registry keeps only hashes), except
        media another live evidence record still holds. Who asked and their reference
        are recorded."""
        requester, ref = " ".join(requested_by.split()), " ".join(reference.split())
        if not requester or not ref:
            raise InvalidRequest(
                "A destruction needs who requested it (agency, officer) and their reference.",
                code="destruction_request_required",
            )
        with unit_of_work(self._sessions) as s:
            ev = _evidence(s, evidence_id, for_update=True)
            now = utcnow()
            check_destroyable(EvidenceState(ev.state), _holds(s, ev), now)
            destroyed = self._destroy_owned(s, ev)
            kept: list[str] = []
            for f in _files(s, ev):
                if f.owned:
                    continue
                if _still_held_elsewhere(s, f.blob_id, ev.id):
                    kept.append(f.sha256)
                    continue
                s.execute(update(Media).where(Media.blob_id == f.blob_id).values(blob_id=None))
                if _blob_exists(self._blobs, s, f.blob_id):
                    self._blobs.destroy(s, f.blob_id)
                    destroyed += 1
            for h in s.scalars(
                select(EvidenceHold).where(
                    EvidenceHold.evidence_id == ev.id, EvidenceHold.released_at.is_(None)
                )
            ):
                h.released_at, h.released_by = now, actor
            _close(ev, EvidenceState.DESTROYED, actor, _reason(reason or "law-enforcement request"))
            ev.le_requested_by, ev.le_reference = requester[:300], ref[:200]
            record(
                s,
                actor,
                "evidence.destroyed",
                "evidence",
                ev.public_id,
                {
                    "requested_by": requester,
                    "reference": ref,
                    "blobs_destroyed": destroyed,
                    "media_kept_for_other_evidence": kept,
                },
            )
            return self._view(s, ev)

    def _destroy_owned(self, s: Session, ev: Evidence) -> int:
        n = 0
        for f in _files(s, ev):
            if f.owned and _blob_exists(self._blobs, s, f.blob_id):
                self._blobs.destroy(s, f.blob_id)
                n += 1
        return n

    def _view(self, s: Session, ev: Evidence) -> EvidenceView:
        holds = s.scalars(
            select(EvidenceHold).where(EvidenceHold.evidence_id == ev.id).order_by(EvidenceHold.id)
        ).all()
        now = utcnow()
        active = [h.until for h in holds if h.released_at is None and h.until > now]
        return EvidenceView(
            id=ev.public_id,
            case_id=s.scalar(select(Case.public_id).where(Case.id == ev.case_id)) or "",
            state=ev.state,
            created_at=ev.created_at,
            created_by=ev.created_by,
            reported_at=ev.reported_at,
            held_until=max(active) if active else None,
            holds=[_hold_view(h) for h in holds],
            files=[FileView(f.name, f.role, f.sha256, f.size) for f in _files(s, ev)],
            closed_at=ev.closed_at,
            closed_by=ev.closed_by,
            closed_reason=ev.closed_reason,
            le_requested_by=ev.le_requested_by,
            le_reference=ev.le_reference,
        )


def _case(s: Session, case_id: str) -> Case:
    return repo.get_case(s, case_id)


def _evidence(s: Session, evidence_id: str, *, for_update: bool = False) -> Evidence:
    stmt = select(Evidence).where(Evidence.public_id == evidence_id)
    if for_update:
        stmt = stmt.with_for_update()
    ev = s.scalars(stmt).first()
    if ev is None:
        raise NotFound(f"No evidence {evidence_id[:40]!r}.", code="evidence_not_found")
    return ev


def _hold(s: Session, evidence_id: str, hold_id: str) -> tuple[Evidence, EvidenceHold]:
    ev = _evidence(s, evidence_id, for_update=True)
    hold = s.scalars(
        select(EvidenceHold).where(
            EvidenceHold.public_id == hold_id, EvidenceHold.evidence_id == ev.id
        )
    ).first()
    if hold is None:
        raise NotFound(f"No hold {hold_id[:40]!r} on this evidence.", code="hold_not_found")
    return ev, hold


def _holds(s: Session, ev: Evidence) -> list[Hold]:
    return [
        Hold(HoldKind(h.kind), h.until, h.released_at is not None)
        for h in s.scalars(select(EvidenceHold).where(EvidenceHold.evidence_id == ev.id))
    ]


def _files(s: Session, ev: Evidence) -> list[EvidenceFile]:
    return list(
        s.scalars(
            select(EvidenceFile).where(EvidenceFile.evidence_id == ev.id).order_by(EvidenceFile.id)
        )
    )


def _still_held_elsewhere(s: Session, blob_id: str, evidence_id: int) -> bool:
    return (
        s.scalar(
            select(EvidenceFile.id)
            .join(Evidence, Evidence.id == EvidenceFile.evidence_id)
            .where(
                EvidenceFile.blob_id == blob_id,
                Evidence.id != evidence_id,
                Evidence.state == EvidenceState.PRESERVED.value,
            )
            .limit(1)
        )
        is not None
    )


def _blob_exists(blobs: BlobStore, s: Session, blob_id: str) -> bool:
    try:
        blobs.info(s, blob_id)
    except NotFound:
        return False
    return True


def _close(ev: Evidence, state: EvidenceState, actor: str, reason: str) -> None:
    ev.state, ev.closed_at, ev.closed_by, ev.closed_reason = state.value, utcnow(), actor, reason


def _reason(text: str) -> str:
    cleaned = " ".join((text or "").split())
    if not cleaned:
        raise InvalidRequest(
            "Give a reason (it is written to the audit log).", code="reason_required"
        )
    return cleaned[:2000]


def _hold_view(h: EvidenceHold) -> HoldView:
    return HoldView(
        h.public_id,
        h.kind,
        h.reason,
        h.until,
        h.created_at,
        h.created_by,
        h.released_at,
        h.released_by,
    )
