"""cybertipline_escalation: why a CyberTipline report was escalated

``escalateToHighPriority`` carries the reason NCMEC reads, so a filing keeps the
reason legal chose (``imminent_danger``, ``child_identifiable``, ``ongoing_abuse``) and
their note. Filings drafted before this revision keep ``escalate`` as it was and no
reason.

Revision ID: 0016_cybertipline_escalation
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_cybertipline_escalation"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("legal_filings") as batch:
        batch.add_column(sa.Column("escalation_reason", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("escalation_note", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("legal_filings") as batch:
        batch.drop_column("escalation_note")
        batch.drop_column("escalation_reason")
