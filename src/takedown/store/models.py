"""SQLAlchemy 2 models. The schema itself is owned by the Alembic migrations in
``takedown/store/migrations``; a test checks that the two agree."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from takedown.ids import new_id, utcnow

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a real bigint.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware UTC datetimes; SQLite drops the zone, so it is put back on read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            from datetime import UTC

            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    pass


class Bank(Base):
    __tablename__ = "banks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(26), unique=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(32))
    match_action: Mapped[str] = mapped_column(String(16))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # A match against this bank restricts the content at once, pending review.
    restrict_on_match: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Threshold, quality floor and (vPDQ) share of frames per signal type (migration
    # 0012); a type without a row uses its defaults (takedown.signals).
    signal_settings: Mapped[list[BankSignalSetting]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", order_by="BankSignalSetting.signal_type"
    )

    entries: Mapped[list[BankEntry]] = relationship(back_populates="bank", lazy="raise")
    # The exchanges its confirmed hashes may be offered to (migration 0026), read when
    # asked for (a bank's view), never on the screening path.
    share_targets: Mapped[list[BankShareTarget]] = relationship(
        lazy="select", cascade="all, delete-orphan", order_by="BankShareTarget.exchange_id"
    )

    def setting(self, signal_type: str) -> BankSignalSetting:
        """This bank's row for ``signal_type``, added (empty: the type's defaults) if
        it has none yet."""
        for row in self.signal_settings:
            if row.signal_type == signal_type:
                return row
        row = BankSignalSetting(signal_type=signal_type)
        self.signal_settings.append(row)
        return row

    def settings_by_type(self) -> dict[str, BankSignalSetting]:
        return {row.signal_type: row for row in self.signal_settings}


class BankSignalSetting(Base):
    """A bank's setting for one signal type; null columns mean the type's default."""

    __tablename__ = "bank_signal_settings"

    bank_id: Mapped[int] = mapped_column(BigId, ForeignKey("banks.id"), primary_key=True)
    signal_type: Mapped[str] = mapped_column(String(16), primary_key=True)
    threshold: Mapped[int | None] = mapped_column(Integer, nullable=True)
    quality_floor: Mapped[int | None] = mapped_column(Integer, nullable=True)
    match_percent: Mapped[int | None] = mapped_column(Integer, nullable=True)


class BankEntry(Base):
    __tablename__ = "bank_entries"
    __table_args__ = (
        # Also the index of exact lookups, which name the banks (see matcher.py).
        UniqueConstraint("bank_id", "signal_type", "value", name="uq_bank_entries_signal"),
        # The signals banked from one file (migration 0014). Partial: entries imported
        # from hash lists have no file, and a million-line import pays nothing for it.
        Index(
            "ix_bank_entries_media",
            "bank_id",
            "media_sha256",
            postgresql_where=text("media_sha256 IS NOT NULL"),
            sqlite_where=text("media_sha256 IS NOT NULL"),
        ),
    )

    # The integer id doubles as the change cursor the in-memory index syncs on
    # (see services/screening/matcher.py); it is never shown outside.
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(26), unique=True, default=new_id)
    # No index of its own: the unique constraint's index leads with it.
    bank_id: Mapped[int] = mapped_column(ForeignKey("banks.id"))
    signal_type: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(512))  # 64 until migration 0012
    quality: Mapped[int | None] = mapped_column(Integer, nullable=True)
    source: Mapped[str] = mapped_column(String(32))
    source_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    category: Mapped[str | None] = mapped_column(String(100), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    added_by: Mapped[str] = mapped_column(String(200))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    disabled_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The SHA-256 of the file this entry was hashed from, when it was banked from a file
    # (POST /v1/banks/{bank}/media): its PDQ, MD5, SHA-256 and other signals share it, so
    # disabling one of them as a false positive can disable them all.
    media_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)

    bank: Mapped[Bank] = relationship(back_populates="entries", lazy="raise")


class BankEntryPayload(Base):
    """The whole value of an entry whose type is stored by digest (TMK, ~176,000
    characters): the entry's ``value`` is the SHA-256 of this (migration 0012)."""

    __tablename__ = "bank_entry_payloads"

    entry_id: Mapped[int] = mapped_column(BigId, ForeignKey("bank_entries.id"), primary_key=True)
    payload: Mapped[str] = mapped_column(Text)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(26), unique=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100))
    # SHA-256 of the whole key: keys are 256-bit random, so a slow password hash adds
    # nothing but latency on every request.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Screening(Base):
    """A screening that matched something. Clean uploads are not stored: at thousands
    of uploads a second that would be a table of noise about innocent users."""

    __tablename__ = "screenings"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(26), unique=True, default=new_id)
    screened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    requested_by: Mapped[str] = mapped_column(String(200))
    content_ref: Mapped[str | None] = mapped_column(String(500), nullable=True)
    verdict: Mapped[str] = mapped_column(String(16))
    md5: Mapped[str | None] = mapped_column(String(32), nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pdq: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pdq_quality: Mapped[int | None] = mapped_column(Integer, nullable=True)

    matches: Mapped[list[ScreeningMatch]] = relationship(back_populates="screening", lazy="raise")


class ScreeningMatch(Base):
    __tablename__ = "screening_matches"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    screening_id: Mapped[int] = mapped_column(ForeignKey("screenings.id"), index=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("bank_entries.id"), index=True)
    bank_id: Mapped[int] = mapped_column(ForeignKey("banks.id"))
    signal_type: Mapped[str] = mapped_column(String(16))
    distance: Mapped[int] = mapped_column(Integer)
    threshold: Mapped[int | None] = mapped_column(Integer, nullable=True)
    variant: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # For a video match: JSON of the matched fractions and time ranges (migration 0009).
    video_match: Mapped[str | None] = mapped_column(Text, nullable=True)

    screening: Mapped[Screening] = relationship(back_populates="matches", lazy="raise")


# --------------------------------------------------------------------------------------
# Content registry, reports, cases (migration 0002)
# --------------------------------------------------------------------------------------


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(26), unique=True, default=new_id)
    platform_id: Mapped[str] = mapped_column(String(200), unique=True)
    handle: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # What the platform says of the account (active, suspended, terminated, deleted);
    # a sync changes only this, never Takedown's own measure below (migration 0013).
    platform_status: Mapped[str] = mapped_column(String(16), default="active")
    # Takedown's measure: active, suspended or terminated (by a confirmed decision).
    status: Mapped[str] = mapped_column(String(16), default="active")
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)  # known for sharing abuse
    flag_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    flag_source: Mapped[str | None] = mapped_column(String(200), nullable=True)
    confirmed_violations: Mapped[int] = mapped_column(Integer, default=0)  # strikes here
    # Confirmed violations the platform knew of before (its own moderation, a hash
    # exchange...), with where the count comes from.
    prior_violations: Mapped[int] = mapped_column(Integer, default=0)
    prior_violations_source: Mapped[str | None] = mapped_column(String(200), nullable=True)
    platform_reinstated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AppliedMeasure(Base):
    """What one effective decision did to one account: its part in the case (uploader,
    re-uploader, reposter, quoter), the measure and whether it counted as a strike.
    An overturned decision reverses exactly these rows (migration 0013)."""

    __tablename__ = "account_measures"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    part: Mapped[str] = mapped_column(String(16))
    measure: Mapped[str] = mapped_column(String(16))  # none | warn | suspend | terminate
    strike: Mapped[bool] = mapped_column(Boolean)
    decision: Mapped[str] = mapped_column(String(26))  # the decision's public id
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reversed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reversed_by: Mapped[str | None] = mapped_column(String(26), nullable=True)


class Item(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(26), unique=True, default=new_id)
    platform_id: Mapped[str] = mapped_column(String(200), unique=True)
    # No foreign key (migration 0032): a trigger per row on PostgreSQL, for every item a
    # registry batch writes with the id of an account its transaction holds; nothing
    # deletes accounts.
    account_id: Mapped[int | None] = mapped_column(BigId, nullable=True, index=True)
    url: Mapped[str | None] = mapped_column(String(2000), nullable=True, index=True)
    # Edges of the copy graph by the platform's ids, so an item may name one that has
    # not been registered yet (events arrive out of order).
    reposts_platform_id: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    quotes_platform_id: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    replies_to_platform_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    posted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    monetized: Mapped[bool] = mapped_column(Boolean, default=False)  # as the platform says
    monetization_paused: Mapped[bool] = mapped_column(Boolean, default=False)
    visibility: Mapped[str] = mapped_column(String(16), default="visible")
    view_count: Mapped[int] = mapped_column(BigInteger, default=0)
    # The platform's own visibility of the item: public, restricted or private (0018).
    platform_visibility: Mapped[str | None] = mapped_column(String(16), nullable=True)


class Media(Base):
    __tablename__ = "media"

    # The integer id is the cursor the in-memory media PDQ index follows.
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(26), unique=True, default=new_id)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    md5: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    pdq: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pdq_quality: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The 8 dihedral PDQ variants, comma-separated, first = pdq (migration 0013); None
    # when the platform sent only the one PDQ.
    pdq_dihedral: Mapped[str | None] = mapped_column(Text, nullable=True)
    media_type: Mapped[str] = mapped_column(String(16), default="image")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The bytes, encrypted (store/blobs.py), when the platform sent the file itself.
    blob_id: Mapped[str | None] = mapped_column(String(26), nullable=True)


class ItemMedia(Base):
    __tablename__ = "item_media"

    # No foreign keys (migration 0032): a trigger per row on PostgreSQL, and a registry
    # batch writes a link per item's file from ids its transaction has just inserted or
    # read; nothing deletes items or media.
    item_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    media_id: Mapped[int] = mapped_column(BigId, primary_key=True, index=True)
    # The name the file was uploaded with, as the platform says (migration 0018).
    file_name: Mapped[str | None] = mapped_column(String(255), nullable=True)


class IpEvent(Base):
    """An IP address the platform saw for an account (registration, login, purchase,
    other) or an item (its upload), for the CyberTipline's ``ipCaptureEvent``. Personal
    data: read only by those who may read evidence (migration 0018)."""

    __tablename__ = "ip_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id"), nullable=True, index=True
    )
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"), nullable=True, index=True)
    ip: Mapped[str] = mapped_column(String(45))  # canonical text (ipaddress)
    event: Mapped[str] = mapped_column(String(16))  # registration|login|upload|purchase|other
    at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # owner, address, event and time: the same event sent again adds nothing.
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    received_by: Mapped[str] = mapped_column(String(200))


class AppliedMessage(Base):
    """A stream message applied (``takedown consume``), by its id: a redelivery of it
    (the consumer stopped between its commit and its acknowledgement) applies nothing."""

    __tablename__ = "applied_messages"

    message_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ItemViews(Base):
    """View-count samples, for growth and for exposure after the first report."""

    __tablename__ = "item_views"
    __table_args__ = (Index("ix_item_views_item_at", "item_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    item_id: Mapped[int] = mapped_column(BigId)  # no foreign key (migration 0032)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    view_count: Mapped[int] = mapped_column(BigInteger)


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(26), unique=True, default=new_id)
    state: Mapped[str] = mapped_column(String(32), index=True)
    categories: Mapped[str] = mapped_column(String(200), default="")  # comma-separated
    hash_sources: Mapped[str] = mapped_column(String(200), default="")  # banks' sources
    minor_safety: Mapped[bool] = mapped_column(Boolean, default=False)
    # Restrict-first fired: copies found later are restricted too, pending review.
    restrict_first: Mapped[bool] = mapped_column(Boolean, default=False)
    priority: Mapped[int] = mapped_column(Integer, default=0, index=True)
    priority_factors: Mapped[str] = mapped_column(Text, default="[]")  # JSON
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    first_report_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    restricted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # When the case's content was first removed (a violation confirmed): the time the
    # TAKE IT DOWN Act's 48 hours are judged on. Restoring later does not clear it.
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decision_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    takedown_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    takedown_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(32), nullable=True)
    outcome_policy: Mapped[str | None] = mapped_column(String(100), nullable=True)
    public_reasons: Mapped[str | None] = mapped_column(Text, nullable=True)
    pending_dismissal_by: Mapped[str | None] = mapped_column(String(26), nullable=True)
    views_at_first_report: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A large case's copies, or their views or accounts, changed since its priority was
    # worked out: recomputed in the background (CaseIntake.refresh_stale_priorities),
    # not by the request that changed them (CaseIntake._rerank). NULL: up to date.
    priority_stale_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        # The stale cases only: what the background refresh looks for.
        Index(
            "ix_cases_priority_stale",
            "priority_stale_since",
            sqlite_where=text("priority_stale_since IS NOT NULL"),
            postgresql_where=text("priority_stale_since IS NOT NULL"),
        ),
    )


class CaseItem(Base):
    __tablename__ = "case_items"

    # No foreign keys (migration 0030): each is a trigger per row on PostgreSQL, ~0.7 s
    # per 100,000 rows measured, and a viral item's report writes 100,000 of these rows
    # in one go. The rows come from INSERT … SELECT over existing items, into a case of
    # the same transaction, and nothing deletes cases or items.
    case_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    item_id: Mapped[int] = mapped_column(BigId, primary_key=True, index=True)
    # Why the item is in the case: reported, repost, quote, same_bytes, pdq, hash_match.
    reason: Mapped[str] = mapped_column(String(32))
    distance: Mapped[int | None] = mapped_column(Integer, nullable=True)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Was the item public on the platform when it joined the case (restrict-first hides
    # it right after)? None: the platform had not said (migration 0018).
    publicly_available: Mapped[bool | None] = mapped_column(Boolean, nullable=True)


class CaseLocation(Base):
    """Where reports said the content is, including places not registered yet: an
    item registered later at one of these joins the case."""

    __tablename__ = "case_locations"
    __table_args__ = (Index("ix_case_locations_value", "kind", "value"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # url | item | md5 | pdq (hash-only reports)
    value: Mapped[str] = mapped_column(String(2000))
    # The report that named it: withdrawing a report deletes its locations.
    report_id: Mapped[int | None] = mapped_column(
        ForeignKey("reports.id"), nullable=True, index=True
    )


class Report(Base):
    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(26), unique=True, default=new_id)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))  # api | web
    submitted_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    category: Mapped[str] = mapped_column(String(32))
    reporter_role: Mapped[str] = mapped_column(String(32))
    explanation: Mapped[str] = mapped_column(Text)
    locations: Mapped[str] = mapped_column(Text)  # JSON {"urls": [...], "item_ids": [...]}
    reporter_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reporter_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    contact: Mapped[str | None] = mapped_column(String(500), nullable=True)
    signature: Mapped[str | None] = mapped_column(String(200), nullable=True)
    good_faith: Mapped[bool] = mapped_column(Boolean)
    not_consensual: Mapped[bool] = mapped_column(Boolean)
    takedown_request: Mapped[bool] = mapped_column(Boolean)
    # The reporter's standing was limited when this came in: no restrict-first.
    from_limited_reporter: Mapped[bool] = mapped_column(Boolean, default=False)
    status_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # What a person depicted or a parent gave about the victim, and whether they agreed
    # to it going to NCMEC (the CyberTipline's victim section; migration 0018).
    victim_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    victim_first_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    victim_last_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    victim_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    victim_phone: Mapped[str | None] = mapped_column(String(50), nullable=True)
    victim_age: Mapped[int | None] = mapped_column(Integer, nullable=True)
    victim_date_of_birth: Mapped[date | None] = mapped_column(Date, nullable=True)


class Decision(Base):
    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(26), unique=True, default=new_id)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16))
    policy: Mapped[str | None] = mapped_column(String(100), nullable=True)
    reasons: Mapped[str] = mapped_column(Text)
    internal_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    manifestly_unfounded: Mapped[bool] = mapped_column(Boolean, default=False)
    user_id: Mapped[str] = mapped_column(String(26))
    user_role: Mapped[str] = mapped_column(String(32))
    effective: Mapped[bool] = mapped_column(Boolean)
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Per media: industry classification (A1..B2) and file annotations, JSON (0007).
    media_review: Mapped[str | None] = mapped_column(Text, nullable=True)


class Appeal(Base):
    __tablename__ = "appeals"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(26), unique=True, default=new_id)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    appellant: Mapped[str] = mapped_column(String(16))  # reporter | uploader
    reason: Mapped[str] = mapped_column(Text)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class OutboxMessage(Base):
    """An action for the platform, written in the same transaction as the decision
    that caused it; delivered (webhooks, retries) by a separate worker."""

    __tablename__ = "outbox"
    __table_args__ = (
        # The rows not yet acknowledged, by state (the figures at /metrics, the dead
        # letters an admin lists): an acknowledged row leaves it, so delivering an
        # action writes one index entry fewer and the index stays small.
        Index(
            "ix_outbox_unfinished",
            "state",
            sqlite_where=text("state IN ('pending', 'delivering', 'dead_letter')"),
            postgresql_where=text("state IN ('pending', 'delivering', 'dead_letter')"),
        ),
        # Order per target: "is there an earlier undelivered action for this item?"
        # Open rows only (migration 0033): an acknowledged row writes no entry here.
        Index(
            "ix_outbox_target_order",
            "target_type",
            "target_platform_id",
            "id",
            sqlite_where=text("state IN ('pending', 'delivering')"),
            postgresql_where=text("state IN ('pending', 'delivering')"),
        ),
        # What is left to deliver, oldest first (services/outbound/delivery.py).
        Index(
            "ix_outbox_open",
            "next_attempt_at",
            "id",
            sqlite_where=text("state IN ('pending', 'delivering')"),
            postgresql_where=text("state IN ('pending', 'delivering')"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(26), unique=True, default=new_id)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    topic: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(16))  # item | account
    target_platform_id: Mapped[str] = mapped_column(String(200))
    # No foreign key (migration 0030), for the reason ``statement_id`` has none: a
    # trigger per row on PostgreSQL; cases are never deleted.
    case_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    # JSON. Where ``statement_id`` is set (the actions one measure wrote for many items)
    # the statement of reasons they share is stored once, in ``outbox_statements``, and
    # ``action_payload`` puts it back: ``full_payload`` is what the platform gets.
    payload: Mapped[str] = mapped_column(Text)
    # No foreign key: its check is a trigger per row on PostgreSQL (~0.9 s for a viral
    # item's 100,000 actions, measured); statements are written with their actions and
    # never deleted.
    statement_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)  # HTTP status
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    statement: Mapped[OutboxStatement | None] = relationship(
        primaryjoin="foreign(OutboxMessage.statement_id) == OutboxStatement.id", lazy="select"
    )

    @property
    def full_payload(self) -> str:
        """The action's JSON as the platform receives it (statement included)."""
        return action_payload(self.payload, self.statement.body if self.statement else None)


class OutboxStatement(Base):
    """The statement of reasons (DSA art. 17) shared by the actions of one measure on
    many items: a report about an item with 100,000 copies writes it once, not 100,000
    times (1.3 kB each)."""

    __tablename__ = "outbox_statements"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    body: Mapped[str] = mapped_column(Text)  # JSON


class OutboxFanout(Base):
    """A measure on many items whose outbox actions are written after its transaction
    (store/item_actions.py): the items, the parts every action's row is made of, and how
    many of the actions are written so far. A report about an item with 100,000 copies
    writes this one row instead of 100,000 actions (~2 s of PostgreSQL's time)."""

    __tablename__ = "outbox_fanouts"
    __table_args__ = (
        # The few not yet written out, oldest first (the delivery worker's question
        # before each claim).
        Index(
            "ix_outbox_fanouts_open",
            "id",
            sqlite_where=text("finished_at IS NULL"),
            postgresql_where=text("finished_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # The actions' ids and idempotency keys: this prefix + each item's id (ten digits),
    # as if written at once.
    key_prefix: Mapped[str] = mapped_column(String(16))
    topic: Mapped[str] = mapped_column(String(64))
    case_id: Mapped[int] = mapped_column(BigId)  # no foreign key, as outbox.case_id
    payload_head: Mapped[str] = mapped_column(Text)
    payload_tail: Mapped[str] = mapped_column(Text)
    statement_id: Mapped[int] = mapped_column(BigId)
    item_ids: Mapped[str] = mapped_column(Text)  # JSON array of item ids, ascending
    total: Mapped[int] = mapped_column(Integer)
    written: Mapped[int] = mapped_column(Integer, default=0)  # item_ids[:written] are
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the actions' too
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


def action_payload(payload: str, statement: str | None) -> str:
    """An outbox row's payload with its shared statement of reasons put back as the
    last key (both are JSON objects written by Takedown: no parsing needed)."""
    if statement is None:
        return payload
    head = payload.rstrip()[:-1].rstrip()
    comma = "" if head.endswith("{") else ","
    return f'{head}{comma}"statement_of_reasons":{statement}}}'


class MailMessage(Base):
    __tablename__ = "mail_outbox"
    __table_args__ = (Index("ix_mail_outbox_pending", "sent_at", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    to_address: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class AuditEvent(Base):
    """Append-only record of every state change (hash chaining is a later step)."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_object", "object_type", "object_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(200))
    details: Mapped[str] = mapped_column(Text, default="{}")  # JSON
    # The hash chain (migration 0009; domain/audit_chain.py). The id is the chain
    # position, assigned by the appender; NULL only on events older than the chain.
    prev_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    event_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(26), unique=True, default=new_id)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))  # argon2id
    role: Mapped[str] = mapped_column(String(32))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UserToken(Base):
    __tablename__ = "user_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ReporterStanding(Base):
    """How often a reporter's notices were manifestly unfounded (DSA Art. 23(2)).

    Keyed by what identifies a reporter across reports: a channel's API key name, or the
    email address a reporter gave (lower-cased). Anonymous reports have no standing."""

    __tablename__ = "reporter_standing"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    reporter_key: Mapped[str] = mapped_column(String(400), unique=True)
    unfounded: Mapped[int] = mapped_column(Integer, default=0)
    warned_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    limited_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Blob(Base):
    """An encrypted object (media bytes, evidence): see store/blobs.py. Never plaintext."""

    __tablename__ = "blobs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(26), unique=True)
    kind: Mapped[str] = mapped_column(String(32))  # "media", "evidence", ...
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), index=True)  # of the plaintext
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# --------------------------------------------------------------------------------------
# Legal filings: CyberTipline, NCA references, DSA statements, alerts (migration 0007)
# --------------------------------------------------------------------------------------


class LegalFiling(Base):
    """One report to one body: a CyberTipline report (one per reported account) or a
    recorded NCA reference. ``dedupe_key`` makes a second live filing for the same case,
    body and account impossible; it is cleared when a report is retracted."""

    __tablename__ = "legal_filings"
    __table_args__ = (Index("ix_legal_filings_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(26), unique=True, default=new_id)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    body: Mapped[str] = mapped_column(String(16))  # ncmec | nca
    subject: Mapped[str] = mapped_column(String(200), default="")  # account platform id
    dedupe_key: Mapped[str | None] = mapped_column(String(500), unique=True, nullable=True)
    state: Mapped[str] = mapped_column(String(16))
    environment: Mapped[str | None] = mapped_column(String(16), nullable=True)
    external_id: Mapped[str | None] = mapped_column(String(100), nullable=True, index=True)
    escalate: Mapped[bool] = mapped_column(Boolean, default=False)
    # Why legal escalated (domain.cybertipline.EscalationReason) and their note; sent
    # as the text of escalateToHighPriority. None: not escalated.
    escalation_reason: Mapped[str | None] = mapped_column(String(40), nullable=True)
    escalation_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    prior_report_ids: Mapped[str] = mapped_column(Text, default="[]")  # JSON
    report_xml: Mapped[str | None] = mapped_column(Text, nullable=True)  # exactly as sent
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_code: Mapped[int | None] = mapped_column(Integer, nullable=True)  # NCMEC code
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_change_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    retracted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LegalFilingFile(Base):
    __tablename__ = "legal_filing_files"
    __table_args__ = (UniqueConstraint("filing_id", "media_id", name="uq_legal_filing_files"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    filing_id: Mapped[int] = mapped_column(ForeignKey("legal_filings.id"), index=True)
    media_id: Mapped[int] = mapped_column(ForeignKey("media.id"))
    state: Mapped[str] = mapped_column(String(16), default="pending")  # uploaded | described
    file_name: Mapped[str] = mapped_column(String(200))
    details: Mapped[str] = mapped_column(Text, default="{}")  # JSON: what fileinfo says
    ncmec_file_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    ncmec_hash: Mapped[str | None] = mapped_column(String(128), nullable=True)
    fileinfo_xml: Mapped[str | None] = mapped_column(Text, nullable=True)  # exactly as sent


class LegalExchange(Base):
    """Every request to a reporting body and its answer, kept verbatim."""

    __tablename__ = "legal_exchanges"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    filing_id: Mapped[int] = mapped_column(ForeignKey("legal_filings.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    step: Mapped[str] = mapped_column(String(16))
    request: Mapped[str] = mapped_column(Text)
    http_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response: Mapped[str | None] = mapped_column(Text, nullable=True)
    response_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class LegalAlert(Base):
    __tablename__ = "legal_alerts"
    __table_args__ = (UniqueConstraint("case_id", "kind", name="uq_legal_alerts"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DsaStatement(Base):
    """A statement of reasons for the EU Transparency Database, one per action."""

    __tablename__ = "dsa_statements"
    __table_args__ = (Index("ix_dsa_statements_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    puid: Mapped[str] = mapped_column(String(500), unique=True)
    outbox_id: Mapped[int] = mapped_column(ForeignKey("outbox.id"), unique=True)
    payload: Mapped[str] = mapped_column(Text)  # JSON, exactly as sent
    # pending (to send) | submitted (stored: the database answered 201) | failed (refused
    # by the validator or the database; waits for a person to fix and requeue it)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    db_uuid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # migration 0017_dsa_failed: why a statement failed, and when an alert went out
    errors: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON field -> messages
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    alerted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


# --------------------------------------------------------------------------------------
# Video frames (migration 0009)
# --------------------------------------------------------------------------------------


class BankVideoFrame(Base):
    """One vPDQ feature of a banked video. The video itself is a ``vpdq`` bank entry;
    its frames follow here. The integer id is a cursor the bank index follows (frame
    hashes share the index with image hashes, see services/screening/matcher.py)."""

    __tablename__ = "bank_video_frames"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("bank_entries.id"), index=True)
    frame_number: Mapped[int] = mapped_column(Integer)
    timestamp_ms: Mapped[int] = mapped_column(Integer)
    quality: Mapped[int] = mapped_column(Integer)
    pdq: Mapped[str] = mapped_column(String(64))
    # Where the feature stops standing for the video (a still run collapsed into it
    # stands for the whole run); None: one sampling interval (older rows, imports).
    end_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Set: the frame hashed again from a centred window with this many thousandths cut
    # off every edge (VideoSampling.crop_windows); it stands for the frame itself.
    crop_permille: Mapped[int | None] = mapped_column(Integer, nullable=True)


class MediaVideoFrame(Base):
    """One vPDQ feature of a registered video (``media.media_type == "video"``); the
    media index follows these ids as well, for the copy graph."""

    __tablename__ = "media_video_frames"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    media_id: Mapped[int] = mapped_column(ForeignKey("media.id"), index=True)
    frame_number: Mapped[int] = mapped_column(Integer)
    timestamp_ms: Mapped[int] = mapped_column(Integer)
    quality: Mapped[int] = mapped_column(Integer)
    pdq: Mapped[str] = mapped_column(String(64))
    # Where the feature stops standing for the video (a still run collapsed into it
    # stands for the whole run); None: one sampling interval (older rows, imports).
    end_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)


# --------------------------------------------------------------------------------------
# Audit checkpoints and the evidence vault (migration 0009)
# --------------------------------------------------------------------------------------


class AuditCheckpoint(Base):
    """The audit chain reached ``event_id`` with ``event_hash``: MACed, append-only."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)  # 1, 2, 3… (chained MACs)
    event_id: Mapped[int] = mapped_column(BigInteger)
    event_hash: Mapped[str] = mapped_column(String(64))
    made_at: Mapped[datetime] = mapped_column(UTCDateTime)
    made_by: Mapped[str] = mapped_column(String(200))
    mac: Mapped[str] = mapped_column(String(64))


class MasterKeyFingerprint(Base):
    """A master key this database was used with, by its fingerprint (store/blobs.py):
    a process with none of them is refused at start instead of sealing and chaining
    under a key the others do not have (migration 0015)."""

    __tablename__ = "master_key_fingerprints"

    fingerprint: Mapped[str] = mapped_column(String(16), primary_key=True)
    first_used_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Evidence(Base):
    """A preserved snapshot of a case (services/evidence/vault.py): its files are encrypted
    blobs, listed in ``evidence_files``."""

    __tablename__ = "evidence"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(26), unique=True, default=new_id)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), default="preserved")  # | deleted | destroyed
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    closed_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    closed_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # A destruction on a law-enforcement request: who asked, and their reference.
    le_requested_by: Mapped[str | None] = mapped_column(String(300), nullable=True)
    le_reference: Mapped[str | None] = mapped_column(String(200), nullable=True)


class EvidenceFile(Base):
    __tablename__ = "evidence_files"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    evidence_id: Mapped[int] = mapped_column(ForeignKey("evidence.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))  # context | media | report
    name: Mapped[str] = mapped_column(String(200))  # its path inside an export
    blob_id: Mapped[str] = mapped_column(String(26), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    # False: the registry's media blob, referenced (media are stored once per SHA-256).
    owned: Mapped[bool] = mapped_column(Boolean)


class EvidenceHold(Base):
    __tablename__ = "evidence_holds"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(26), unique=True, default=new_id)
    evidence_id: Mapped[int] = mapped_column(ForeignKey("evidence.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # preservation | legal
    reason: Mapped[str] = mapped_column(Text)
    until: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    released_by: Mapped[str | None] = mapped_column(String(200), nullable=True)


# --------------------------------------------------------------------------------------
# Review console (migration 0010)
# --------------------------------------------------------------------------------------


class CaseLock(Base):
    """Who is working a case now. One row per case at most (the primary key), claimed
    with a conditional write so that two reviewers never hold it at once, in any number
    of worker processes; a lock past ``expires_at`` is free to be taken over."""

    __tablename__ = "case_locks"

    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(26), index=True)  # the user's public id
    username: Mapped[str] = mapped_column(String(100))
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ReviewerSettings(Base):
    """A reviewer's wellness settings, and when their current stretch of review began."""

    __tablename__ = "reviewer_settings"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    blur_strength: Mapped[int] = mapped_column(Integer)
    greyscale: Mapped[bool] = mapped_column(Boolean)
    break_minutes: Mapped[int] = mapped_column(Integer)
    stretch_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# --------------------------------------------------------------------------------------
# Retroactive matching (migration 0021)
# --------------------------------------------------------------------------------------


class RetroscanJob(Base):
    """A scan of the registered media against a bank's entries with ids in
    ``(after_entry_id, through_entry_id]`` -- those one addition brought, or the whole
    bank on demand. ``checkpoint_media_id``: media up to this id are done (their matches
    acted on in the same transaction), so a scan killed midway resumes after it."""

    __tablename__ = "retroscan_jobs"
    __table_args__ = (Index("ix_retroscan_jobs_state", "state", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(26), unique=True, default=new_id)
    bank_id: Mapped[int] = mapped_column(ForeignKey("banks.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # new_entries | whole_bank
    after_entry_id: Mapped[int] = mapped_column(BigInteger)
    through_entry_id: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16), default="queued")  # queued|running|done|failed
    checkpoint_media_id: Mapped[int] = mapped_column(BigInteger, default=0)
    media_total: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    media_scanned: Mapped[int] = mapped_column(BigInteger, default=0)
    matches: Mapped[int] = mapped_column(Integer, default=0)
    cases: Mapped[int] = mapped_column(Integer, default=0)
    requested_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class RetroscanMatch(Base):
    """A (bank entry, registered media) pair found by retroactive matching, acted on
    once: the unique constraint keeps a rescan or a resumed scan from acting twice."""

    __tablename__ = "retroscan_matches"
    __table_args__ = (UniqueConstraint("entry_id", "media_id", name="uq_retroscan_pair"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("bank_entries.id"))
    media_id: Mapped[int] = mapped_column(ForeignKey("media.id"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("retroscan_jobs.id"), nullable=True)
    source: Mapped[str] = mapped_column(String(16))  # database | ingested
    distance: Mapped[int] = mapped_column(Integer)
    found_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# Hash-list exchanges (migration 0024)
# --------------------------------------------------------------------------------------


class Exchange(Base):
    """A hash list pulled from an exchange (NCMEC, StopNCII, ThreatExchange, TCAP) into
    a bank. ``credentials`` names where the secret is (``file:/path`` or ``env:NAME``),
    never the secret itself. ``checkpoint`` is the exchange's own cursor (JSON), written
    in the same transaction as the entries of the page it follows, and ``version`` grows
    with every page so that two syncs of one exchange never both apply a page."""

    __tablename__ = "exchanges"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(26), unique=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    type: Mapped[str] = mapped_column(String(32))
    bank_id: Mapped[int] = mapped_column(ForeignKey("banks.id"))
    base_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    credentials: Mapped[str] = mapped_column(String(600))
    interval_seconds: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    checkpoint: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON
    version: Mapped[int] = mapped_column(BigInteger, default=0)
    entries_added: Mapped[int] = mapped_column(BigInteger, default=0)
    entries_disabled: Mapped[int] = mapped_column(BigInteger, default=0)
    entries_rejected: Mapped[int] = mapped_column(BigInteger, default=0)
    last_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    next_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # When the legal team was alerted that it had not synced for 24 hours (once per
    # stretch without a successful sync).
    stale_alerted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    # The exchange's own threshold and action for its entries (migration 0025): the
    # stricter of this and the bank's threshold applies; the action replaces the bank's.
    threshold: Mapped[int | None] = mapped_column(Integer, nullable=True)
    action: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # ThreatExchange: the privacy group pulled (migration 0026); None for the others.
    privacy_group: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class CaseEntry(Base):
    """A bank entry whose match brought items into a case (migration 0025), and the
    opinion last queued for its exchanges from the case's decisions (``confirmed`` or
    ``rejected``, by decision ``opinion_decision``): once per entry and outcome, the
    opposite one when an appeal overturns it."""

    __tablename__ = "case_entries"
    __table_args__ = (Index("ix_case_entries_entry", "entry_id"),)

    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("bank_entries.id"), primary_key=True)
    first_matched_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    opinion: Mapped[str | None] = mapped_column(String(16), nullable=True)
    opinion_decision: Mapped[str | None] = mapped_column(String(26), nullable=True)


class ExchangeEntry(Base):
    """One signal of one upstream entry, and the bank entry that holds it: provenance
    (exchange, upstream id, labels, first and last seen). A bank entry pulled from an
    exchange stays enabled while any live row still carries it, so a hash shared by two
    upstream entries survives the deletion of one."""

    __tablename__ = "exchange_entries"
    __table_args__ = (
        UniqueConstraint(
            "exchange_id", "upstream_id", "signal_type", name="uq_exchange_entries_upstream"
        ),
        Index("ix_exchange_entries_entry", "entry_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # No foreign keys (migration 0034): each is a trigger per row on PostgreSQL, ~7 µs
    # a row, and a first sync writes two million of these rows. The ids are the synced
    # exchange's and the bank entries the same transaction wrote or read, and nothing
    # deletes exchanges, bank entries or these rows.
    exchange_id: Mapped[int] = mapped_column(BigId)
    upstream_id: Mapped[str] = mapped_column(String(200))
    signal_type: Mapped[str] = mapped_column(String(16))
    entry_id: Mapped[int] = mapped_column(BigId)
    labels: Mapped[str] = mapped_column(Text, default="{}")  # JSON
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class EntryQuarantine(Base):
    """A bank entry that matched too many distinct uploads in an hour (a flood: most
    likely a benign picture on a list by mistake): disabled at once, waiting for a child
    safety specialist, who restores it or leaves it disabled."""

    __tablename__ = "entry_quarantines"
    __table_args__ = (Index("ix_entry_quarantines_entry", "entry_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(26), unique=True, default=new_id)
    entry_id: Mapped[int] = mapped_column(ForeignKey("bank_entries.id"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    uploads: Mapped[int] = mapped_column(Integer)  # distinct uploads in the hour before
    state: Mapped[str] = mapped_column(String(16))  # pending | restored | disabled
    decided_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ExchangeFeedback(Base):
    """An opinion on an upstream entry to send back to its exchange (StopNCII Blocked or
    NotBlocked, an NCMEC upvote or downvote): an outbox row, sent and retried by
    ``takedown worker`` (the clients never retry PUT or POST)."""

    __tablename__ = "exchange_feedback"
    __table_args__ = (Index("ix_exchange_feedback_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(26), unique=True, default=new_id)
    exchange_id: Mapped[int] = mapped_column(ForeignKey("exchanges.id"))
    upstream_id: Mapped[str] = mapped_column(String(200))
    signal_type: Mapped[str] = mapped_column(String(16))  # ours
    value: Mapped[str] = mapped_column(Text)  # the upstream value as sent to us
    positive: Mapped[bool] = mapped_column(Boolean)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|sent|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class BankShareTarget(Base):
    """An exchange this bank's confirmed hashes may be offered to (migration 0026): off
    unless set, and each offer still waits for the legal team's approval."""

    __tablename__ = "bank_share_targets"

    bank_id: Mapped[int] = mapped_column(ForeignKey("banks.id"), primary_key=True)
    exchange_id: Mapped[int] = mapped_column(ForeignKey("exchanges.id"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    exchange: Mapped[Exchange] = relationship(lazy="joined")


class ExchangeShare(Base):
    """One of the platform's own confirmed files offered to an exchange (migration
    0026): ``pending`` until the legal team approves (``approved``: an outbox row, sent
    and retried by ``takedown worker``) or refuses it with a reason; then ``sent`` (the
    exchange's provenance of what it holds from us: ``signals``, ``sent_at``, the
    ``upstream_id`` it answered, ``upstream_seen_at`` when a sync last saw it) or
    ``failed`` with the exchange's reason. When its file is found not violating after
    all: ``cancelled`` if nothing was sent, else ``withdrawing`` (an outbox row again)
    then ``withdrawn`` or ``withdraw_failed``."""

    __tablename__ = "exchange_shares"
    __table_args__ = (
        UniqueConstraint("exchange_id", "media_sha256", name="uq_exchange_shares_media"),
        Index("ix_exchange_shares_due", "state", "next_attempt_at"),
        Index("ix_exchange_shares_upstream", "exchange_id", "upstream_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(26), unique=True, default=new_id)
    exchange_id: Mapped[int] = mapped_column(ForeignKey("exchanges.id"))
    bank_id: Mapped[int] = mapped_column(ForeignKey("banks.id"))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), nullable=True)
    decision_id: Mapped[str | None] = mapped_column(String(26), nullable=True)
    media_sha256: Mapped[str] = mapped_column(String(64))
    media_type: Mapped[str] = mapped_column(String(16))  # image | video
    signals: Mapped[str] = mapped_column(Text)  # JSON {our signal type: value}
    state: Mapped[str] = mapped_column(String(16))  # domain/sharing.ShareState
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    classification: Mapped[str | None] = mapped_column(String(16), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    upstream_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    upstream_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Withdrawn (migration 0028): the decision that confirmed the file was overturned,
    # or the file was otherwise found not violating.
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    withdraw_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
