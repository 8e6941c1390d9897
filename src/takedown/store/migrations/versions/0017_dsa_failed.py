"""dsa_failed: statements of reasons the DSA Transparency Database refused

A statement the validator or the database refuses (a 422, or another 4xx than 429/408)
is no longer retried blindly: it becomes ``failed`` with the field errors, an alert
goes out once, and a person requeues it after fixing the cause. ``state`` gains the
value ``failed`` (the column is a free string); the new columns hold the errors (JSON),
when it failed and when the alert went out.

Revision ID: 0017_dsa_failed
Revises: 0016_cybertipline_escalation
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_dsa_failed"
down_revision = "0016_cybertipline_escalation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dsa_statements", schema=None) as batch_op:
        batch_op.add_column(sa.Column("errors", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("alerted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # A failed statement goes back to pending: the older code retries it.
    op.execute("UPDATE dsa_statements SET state = 'pending' WHERE state = 'failed'")
    with op.batch_alter_table("dsa_statements", schema=None) as batch_op:
        batch_op.drop_column("alerted_at")
        batch_op.drop_column("failed_at")
        batch_op.drop_column("errors")
