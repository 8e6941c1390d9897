"""SQLAlchemy 2 models. The schema itself is owned by the Alembic migrations in
``takedown/store/migrations``; a test checks that the two agree."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
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
    pdq_threshold: Mapped[int] = mapped_column(Integer)
    pdq_quality_floor: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text, nullable=True)

    entries: Mapped[list[BankEntry]] = relationship(back_populates="bank", lazy="raise")


class BankEntry(Base):
    __tablename__ = "bank_entries"
    __table_args__ = (
        UniqueConstraint("bank_id", "signal_type", "value", name="uq_bank_entries_signal"),
        Index("ix_bank_entries_lookup", "signal_type", "value"),
    )

    # The integer id doubles as the change cursor the in-memory index syncs on
    # (see services/matcher.py); it is never shown outside.
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(26), unique=True, default=new_id)
    bank_id: Mapped[int] = mapped_column(ForeignKey("banks.id"), index=True)
    signal_type: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(64))
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

    bank: Mapped[Bank] = relationship(back_populates="entries", lazy="raise")


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

    screening: Mapped[Screening] = relationship(back_populates="matches", lazy="raise")
