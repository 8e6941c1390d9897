"""exchanges, exchange_entries: hash lists pulled from NCMEC, StopNCII, ThreatExchange;
entry_quarantines: entries that matched a flood of uploads, waiting for a specialist;
exchange_feedback: opinions to send back to the exchanges (an outbox)

Revision ID: 0024_exchanges
Revises: 0023_outbox_open
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024_exchanges"
down_revision = "0023_outbox_open"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "exchanges",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("public_id", sa.String(26), nullable=False, unique=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("bank_id", _ID, sa.ForeignKey("banks.id"), nullable=False),
        sa.Column("base_url", sa.String(500), nullable=True),
        sa.Column("credentials", sa.String(600), nullable=False),
        sa.Column("interval_seconds", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("checkpoint", sa.Text(), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("entries_added", sa.BigInteger(), nullable=False),
        sa.Column("entries_disabled", sa.BigInteger(), nullable=False),
        sa.Column("entries_rejected", sa.BigInteger(), nullable=False),
        sa.Column("last_sync_at", _AT, nullable=True),
        sa.Column("last_success_at", _AT, nullable=True),
        sa.Column("next_sync_at", _AT, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("stale_alerted_at", _AT, nullable=True),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "exchange_entries",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("exchange_id", _ID, sa.ForeignKey("exchanges.id"), nullable=False),
        sa.Column("upstream_id", sa.String(200), nullable=False),
        sa.Column("signal_type", sa.String(16), nullable=False),
        sa.Column("entry_id", _ID, sa.ForeignKey("bank_entries.id"), nullable=False),
        sa.Column("labels", sa.Text(), nullable=False),
        sa.Column("first_seen_at", _AT, nullable=False),
        sa.Column("last_seen_at", _AT, nullable=False),
        sa.Column("removed_at", _AT, nullable=True),
        sa.UniqueConstraint(
            "exchange_id", "upstream_id", "signal_type", name="uq_exchange_entries_upstream"
        ),
    )
    op.create_index("ix_exchange_entries_entry", "exchange_entries", ["entry_id"])
    op.create_table(
        "entry_quarantines",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("public_id", sa.String(26), nullable=False, unique=True),
        sa.Column("entry_id", _ID, sa.ForeignKey("bank_entries.id"), nullable=False),
        sa.Column("started_at", _AT, nullable=False),
        sa.Column("uploads", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.String(200), nullable=True),
        sa.Column("decided_at", _AT, nullable=True),
    )
    op.create_index("ix_entry_quarantines_entry", "entry_quarantines", ["entry_id"])
    op.create_table(
        "exchange_feedback",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("public_id", sa.String(26), nullable=False, unique=True),
        sa.Column("exchange_id", _ID, sa.ForeignKey("exchanges.id"), nullable=False),
        sa.Column("upstream_id", sa.String(200), nullable=False),
        sa.Column("signal_type", sa.String(16), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("positive", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("next_attempt_at", _AT, nullable=False),
        sa.Column("sent_at", _AT, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
    )
    op.create_index("ix_exchange_feedback_due", "exchange_feedback", ["state", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_exchange_feedback_due", table_name="exchange_feedback")
    op.drop_table("exchange_feedback")
    op.drop_index("ix_entry_quarantines_entry", table_name="entry_quarantines")
    op.drop_table("entry_quarantines")
    op.drop_index("ix_exchange_entries_entry", table_name="exchange_entries")
    op.drop_table("exchange_entries")
    op.drop_table("exchanges")
