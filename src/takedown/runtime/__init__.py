"""Wires the pieces together once per process: settings → database → services.

The API and the CLI both start from :func:`open_runtime`, so they share one set of use
cases and one set of in-memory indexes per process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from takedown.config import Settings
from takedown.domain.enforcement import AccountPolicy, ReporterPolicy, part_measures
from takedown.domain.statements import territorial_scope
from takedown.matching.mih import compile_kernels
from takedown.memory import drop_clean_library_pages
from takedown.runtime import setup
from takedown.services.audit.chain import AuditChain, attach
from takedown.services.audit.log import AuditLog
from takedown.services.banks.quarantine import QuarantineService
from takedown.services.banks.service import BankService, BankSettings
from takedown.services.cases.copies import MEDIA_MORE_ROWS, MEDIA_ROWS, CopyFinder
from takedown.services.cases.reported_hashes import REPORTED_PDQ_ROWS, ReportedHashes
from takedown.services.cases.service import CasePolicy, CaseService
from takedown.services.evidence.vault import EvidenceVault
from takedown.services.exchanges.service import ExchangeService
from takedown.services.exchanges.sharing import ShareService
from takedown.services.identity.apikeys import ApiKeyService
from takedown.services.identity.users import UserService
from takedown.services.index import snapshot as index_snapshot
from takedown.services.index.follower import IndexFollower
from takedown.services.legal.cybertipline import CyberTiplineService, cybertipline_service
from takedown.services.legal.dsa import DsaService
from takedown.services.legal.queue import LegalService
from takedown.services.legal.transparency import TransparencyService
from takedown.services.outbound.delivery import OutboxService
from takedown.services.registry.retroscan import RetroscanService
from takedown.services.registry.service import RegistryService
from takedown.services.review.service import ReviewService
from takedown.services.screening.matcher import Matcher
from takedown.services.screening.service import ScreeningService
from takedown.store.blobs import BlobStore, EnvelopeCipher, KeySource
from takedown.store.db import make_engine, make_session_factory, upgrade

# FAISS, numba and BLAS start one busy thread per core in every process; with several
# workers on few cores they spin and waste the CPU (measured on HMA). One thread each.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


@dataclass
class Runtime:
    settings: Settings
    key_source: KeySource  # where the master key came from (takedown status, server logs)
    engine: Engine
    sessions: sessionmaker[Session]
    matcher: Matcher
    media_index: IndexFollower
    reported_hashes: IndexFollower
    banks: BankService
    screening: ScreeningService
    api_keys: ApiKeyService
    users: UserService
    cases: CaseService
    registry: RegistryService
    outbox: OutboxService
    exchanges: ExchangeService
    shares: ShareService  # own confirmed hashes shared out to exchanges, legal approval
    quarantine: QuarantineService
    blobs: BlobStore
    cybertipline: CyberTiplineService
    legal: LegalService
    dsa: DsaService
    transparency: TransparencyService
    audit: AuditLog
    evidence: EvidenceVault
    review: ReviewService  # the review console's use cases (locks, media views, wellness)
    retroscan: RetroscanService  # retroactive matching: new bank entries vs registered media

    def warm_up(self) -> None:
        """Compile the index kernels and load the in-memory indexes now rather than on
        the first request (or the first large import)."""
        compile_kernels()
        # The bank index starts from its snapshot when there is one (mapped, shared
        # between workers), then reads only the rows added since.
        index_snapshot.load(
            self.matcher.follower, index_snapshot.snapshot_path(self.settings.data_dir)
        )
        self.matcher.sync(force=True)
        self.media_index.sync(force=True)
        self.reported_hashes.sync(force=True)
        # LLVM was needed to load the kernels, and is not again (takedown/memory.py).
        drop_clean_library_pages("libllvmlite")

    def close(self) -> None:
        self.screening.close()  # writes matched screenings still queued
        self.matcher.close()
        for follower in (self.media_index, self.reported_hashes):
            follower.close()
        self.api_keys.close()
        self.engine.dispose()


def open_runtime(
    settings: Settings | None = None, *, migrate: bool = True, create: bool = True
) -> Runtime:
    """Open the database (``migrate``: applying migrations), check the master key
    against it and build the services. ``create=False`` (every command but ``takedown
    serve``) refuses a database that does not exist yet instead of making an empty one
    (runtime/setup.py); ConfigError says what is wrong and how to fix it."""
    settings = settings or Settings()
    setup.check_database(settings, create=create)
    engine = make_engine(settings.resolved_database_url)
    try:
        setup.check_schema(engine, settings, create=create, migrate=migrate)
        if migrate:
            upgrade(engine)
        sessions = make_session_factory(engine)
        keyring, key_source = setup.open_keyring(settings, sessions)
    except BaseException:
        engine.dispose()
        raise
    interval = settings.index_sync_interval_ms / 1000
    matcher = Matcher(sessions, sync_interval_s=interval)
    # The registry's followers check on every use: a copy registered a moment ago by
    # another worker must not escape a report (restrict first), and they are off the
    # screening hot path.
    media_index = IndexFollower(sessions, MEDIA_ROWS, more_rows=MEDIA_MORE_ROWS)
    limits = settings.image_limits
    blobs = BlobStore(EnvelopeCipher(keyring))
    audit_chain = AuditChain.from_master_keys(
        keyring.keys,
        checkpoint_every_events=settings.audit_checkpoint_events,
        checkpoint_every=timedelta(minutes=settings.audit_checkpoint_minutes),
    )
    reported_hashes = IndexFollower(sessions, REPORTED_PDQ_ROWS)
    attach(sessions, audit_chain)
    evidence = EvidenceVault(sessions, blobs, timedelta(days=settings.evidence_preservation_days))
    cases = CaseService(
        sessions,
        CopyFinder(media_index),
        CasePolicy(
            decision_target_minor_hours=settings.decision_target_minor_hours,
            decision_target_hours=settings.decision_target_hours,
            restrict_first_minor_safety=settings.restrict_first_minor_safety,
            restrict_first_takedown_requests=settings.restrict_first_takedown_requests,
            outbox_fanout_min=settings.outbox_fanout_min,
            priority_inline_copies=settings.priority_inline_copies,
            public_base_url=settings.public_base_url,
            territorial_scope=territorial_scope(settings.dsa_territorial_scope),
            accounts=AccountPolicy(
                minor_safety=part_measures(settings.account_measures_minor_safety),
                ncii=part_measures(settings.account_measures_ncii),
                other=part_measures(settings.account_measures_other),
                minor_safety_strikes_to_terminate=settings.minor_safety_strikes_to_terminate,
                strikes_to_suspend=settings.strikes_to_suspend,
            ),
            reporters=ReporterPolicy(
                warn_after=settings.unfounded_reports_to_warn,
                limit_after=settings.unfounded_reports_to_limit,
                limit_days=settings.unfounded_limit_days,
            ),
            clock_override_refusal=settings.clock_override_refusal(),
        ),
        ReportedHashes(media_index, reported_hashes, matcher),
    )
    registry = RegistryService(
        sessions,
        matcher,
        cases,
        limits,
        blobs,
        settings.video_limits,
        settings.video_sampling,
    )
    exchanges = ExchangeService(sessions)
    return Runtime(
        settings=settings,
        key_source=key_source,
        engine=engine,
        sessions=sessions,
        matcher=matcher,
        media_index=media_index,
        reported_hashes=reported_hashes,
        banks=BankService(
            sessions,
            BankSettings(
                settings.default_pdq_threshold,
                settings.default_pdq_quality_floor,
                settings.default_video_match_percent,
                settings.default_video_frame_threshold,
            ),
            limits,
            on_policy_change=matcher.invalidate,
            video_limits=settings.video_limits,
            video_sampling=settings.video_bank_sampling,
        ),
        screening=ScreeningService(
            sessions, matcher, limits, settings.video_limits, settings.video_sampling
        ),
        api_keys=ApiKeyService(sessions),
        users=UserService(sessions, timedelta(hours=settings.user_token_hours)),
        cases=cases,
        registry=registry,
        outbox=OutboxService(sessions),
        exchanges=exchanges,
        shares=ShareService(
            sessions,
            credentials=exchanges.read_credentials,
            alert_email=settings.legal_alert_email,
        ),
        quarantine=QuarantineService(
            sessions,
            uploads=settings.flood_quarantine_uploads,
            alert_to=settings.specialist_alert_email,
        ),
        blobs=blobs,
        cybertipline=cybertipline_service(sessions, settings, blobs, evidence),
        legal=LegalService(
            sessions,
            alert_after=timedelta(hours=settings.legal_alert_after_hours),
            alert_email=settings.legal_alert_email,
        ),
        dsa=DsaService(sessions, settings),
        transparency=TransparencyService(sessions),
        audit=AuditLog(sessions, audit_chain),
        evidence=evidence,
        review=ReviewService(
            sessions,
            cases,
            matcher,
            blobs,
            lock_ttl=timedelta(minutes=settings.console_lock_minutes),
            break_minutes=settings.console_break_minutes,
        ),
        retroscan=RetroscanService(
            sessions,
            registry,
            chunk=settings.retroscan_chunk,
            lease=timedelta(seconds=settings.retroscan_lease_seconds),
        ),
    )
