"""outbox: a partial index over the rows still to deliver

Delivery claims the oldest due rows (next_attempt_at, id); with millions of acknowledged rows
before them, the index over only pending and delivering rows keeps each claim a short
index walk instead of a scan past everything delivered.

Revision ID: 0023_outbox_open
Revises: 0022_stream_messages
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023_outbox_open"
down_revision = "0022_stream_messages"
branch_labels = None
depends_on = None

OPEN = sa.text("state IN ('pending', 'delivering')")


def upgrade() -> None:
    op.create_index(
        "ix_outbox_open",
        "outbox",
        ["next_attempt_at", "id"],
        sqlite_where=OPEN,
        postgresql_where=OPEN,
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_open", table_name="outbox")
