"""applied_messages: stream messages already applied (takedown consume)

A message redelivered by the stream (the consumer stopped after its commit, before its
acknowledgement) is recognised by its id and applied once.

Revision ID: 0022_stream_messages
Revises: 0021_retroscan
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022_stream_messages"
down_revision = "0021_retroscan"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "applied_messages",
        sa.Column("message_id", sa.String(200), primary_key=True),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("applied_messages")
