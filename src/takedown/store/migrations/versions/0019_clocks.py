"""cases.removed_at: when a case's content was first removed

The TAKE IT DOWN Act's 48 hours run to removal, not to the provisional restriction, so
the case's clock and the compliance report need the time the content was removed. Cases
decided before this migration get it from their first removal action in the outbox.

Revision ID: 0019_clocks
Revises: 0018_ip_events_file_facts
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019_clocks"
down_revision = "0018_ip_events_file_facts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE cases SET removed_at = (SELECT MIN(outbox.created_at) FROM outbox "
        "WHERE outbox.case_id = cases.id AND outbox.topic = 'item.remove')"
    )


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("removed_at")
