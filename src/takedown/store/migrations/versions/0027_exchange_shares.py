"""bank_share_targets: the exchanges a bank's confirmed hashes may be shared to (off
unless set); exchange_shares: each of the platform's own confirmed files offered to an
exchange, waiting for the legal team's approval, then an outbox row, then the exchange's
provenance of what was shared (when, and the upstream id it answered)

Revision ID: 0027_exchange_shares
Revises: 0026_exchange_privacy_group
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0027_exchange_shares"
down_revision = "0026_exchange_privacy_group"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "bank_share_targets",
        sa.Column("bank_id", _ID, sa.ForeignKey("banks.id"), primary_key=True),
        sa.Column("exchange_id", _ID, sa.ForeignKey("exchanges.id"), primary_key=True),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "exchange_shares",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("public_id", sa.String(26), nullable=False, unique=True),
        sa.Column("exchange_id", _ID, sa.ForeignKey("exchanges.id"), nullable=False),
        sa.Column("bank_id", _ID, sa.ForeignKey("banks.id"), nullable=False),
        sa.Column("case_id", _ID, sa.ForeignKey("cases.id"), nullable=True),
        sa.Column("decision_id", sa.String(26), nullable=True),
        sa.Column("media_sha256", sa.String(64), nullable=False),
        sa.Column("media_type", sa.String(16), nullable=False),
        sa.Column("signals", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("decided_at", _AT, nullable=True),
        sa.Column("decided_by", sa.String(200), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("classification", sa.String(16), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _AT, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", _AT, nullable=True),
        sa.Column("upstream_id", sa.String(200), nullable=True),
        sa.Column("upstream_seen_at", _AT, nullable=True),
        sa.UniqueConstraint("exchange_id", "media_sha256", name="uq_exchange_shares_media"),
    )
    op.create_index("ix_exchange_shares_due", "exchange_shares", ["state", "next_attempt_at"])
    op.create_index(
        "ix_exchange_shares_upstream", "exchange_shares", ["exchange_id", "upstream_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_exchange_shares_upstream", table_name="exchange_shares")
    op.drop_index("ix_exchange_shares_due", table_name="exchange_shares")
    op.drop_table("exchange_shares")
    op.drop_table("bank_share_targets")
