"""outbox: ``ix_outbox_target_order`` holds the open actions only (pending, delivering)

The index answers one question, the delivery claim's "is an earlier action for this
target still undelivered?" (``services/outbound/delivery.py``), whose condition names
the same two states. Over every row it grew with each action ever written, and an
acknowledgement (a non-HOT update: ``state`` is indexed) wrote a new entry in it for a
row that no claim would look for again. Measured on PostgreSQL (2 cores, 2,000
acknowledgements a statement): 168 ms and 12,300 WAL records with the full index, 115 ms
and 10,200 with the partial one.

Revision ID: 0033_outbox_open_target_order
Revises: 0032_registry_row_foreign_keys
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0033_outbox_open_target_order"
down_revision = "0032_registry_row_foreign_keys"
branch_labels = None
depends_on = None

_NAME = "ix_outbox_target_order"
_COLUMNS = ["target_type", "target_platform_id", "id"]
_OPEN = sa.text("state IN ('pending', 'delivering')")


def upgrade() -> None:
    op.drop_index(_NAME, table_name="outbox")
    op.create_index(_NAME, "outbox", _COLUMNS, postgresql_where=_OPEN, sqlite_where=_OPEN)


def downgrade() -> None:
    op.drop_index(_NAME, table_name="outbox")
    op.create_index(_NAME, "outbox", _COLUMNS)
