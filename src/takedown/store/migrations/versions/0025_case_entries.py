"""case_entries: the bank entries whose matches brought items into a case, and the
opinion last sent back to their exchanges from the case's decisions; exchanges.threshold
and exchanges.action: an exchange's own threshold and action for its entries

Revision ID: 0025_case_entries
Revises: 0024_exchanges
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025_case_entries"
down_revision = "0024_exchanges"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "case_entries",
        sa.Column("case_id", _ID, sa.ForeignKey("cases.id"), primary_key=True),
        sa.Column("entry_id", _ID, sa.ForeignKey("bank_entries.id"), primary_key=True),
        sa.Column("first_matched_at", _AT, nullable=False),
        sa.Column("opinion", sa.String(16), nullable=True),
        sa.Column("opinion_decision", sa.String(26), nullable=True),
    )
    op.create_index("ix_case_entries_entry", "case_entries", ["entry_id"])
    with op.batch_alter_table("exchanges") as b:
        b.add_column(sa.Column("threshold", sa.Integer(), nullable=True))
        b.add_column(sa.Column("action", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("exchanges") as b:
        b.drop_column("action")
        b.drop_column("threshold")
    op.drop_index("ix_case_entries_entry", table_name="case_entries")
    op.drop_table("case_entries")
