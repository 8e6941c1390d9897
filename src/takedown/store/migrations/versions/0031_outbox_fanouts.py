"""outbox_fanouts: a measure on many items writes one row, and its outbox actions are
written from it after its transaction, a chunk per transaction (store/item_actions.py)

Measured on the 2-core machine, a report about an item with 100,000 copies on
PostgreSQL: writing its 100,000 actions (a row and six index entries each) took 1.9 s
of the server's CPU inside the report's transaction, 2.8-4.0 s of its 5-10 s.

Revision ID: 0031_outbox_fanouts
Revises: 0030_bulk_row_foreign_keys
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0031_outbox_fanouts"
down_revision = "0030_bulk_row_foreign_keys"
branch_labels = None
depends_on = None

_BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_OPEN = "finished_at IS NULL"
_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "outbox_fanouts",
        sa.Column("id", _BIG, primary_key=True, autoincrement=True),
        sa.Column("key_prefix", sa.String(16), nullable=False),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("case_id", _BIG, nullable=False),
        sa.Column("payload_head", sa.Text(), nullable=False),
        sa.Column("payload_tail", sa.Text(), nullable=False),
        sa.Column("statement_id", _BIG, nullable=False),
        sa.Column("item_ids", sa.Text(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("written", sa.Integer(), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("finished_at", _AT, nullable=True),
    )
    op.create_index(
        "ix_outbox_fanouts_open",
        "outbox_fanouts",
        ["id"],
        sqlite_where=sa.text(_OPEN),
        postgresql_where=sa.text(_OPEN),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_fanouts_open", table_name="outbox_fanouts")
    op.drop_table("outbox_fanouts")
