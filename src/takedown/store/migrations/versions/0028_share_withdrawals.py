"""exchange_shares: a share withdrawn when the decision that confirmed its file is
overturned (or the file is otherwise found not violating): when it was withdrawn from
the exchange, and why (the states ``cancelled``, ``withdrawing``, ``withdrawn`` and
``withdraw_failed`` fit the existing state column)

Revision ID: 0028_share_withdrawals
Revises: 0027_exchange_shares
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0028_share_withdrawals"
down_revision = "0027_exchange_shares"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("exchange_shares") as batch:
        batch.add_column(sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("withdraw_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("exchange_shares") as batch:
        batch.drop_column("withdraw_reason")
        batch.drop_column("withdrawn_at")
