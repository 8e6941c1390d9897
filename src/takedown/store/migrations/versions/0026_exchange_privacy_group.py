"""exchanges.privacy_group: the ThreatExchange privacy group an exchange pulls

Revision ID: 0026_exchange_privacy_group
Revises: 0025_case_entries
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026_exchange_privacy_group"
down_revision = "0025_case_entries"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("exchanges") as b:
        b.add_column(sa.Column("privacy_group", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("exchanges") as b:
        b.drop_column("privacy_group")
