"""cases: ``priority_stale_since``, a large case's priority recomputed in the background

A case's priority counts its copies' views (now and an hour ago) and their accounts'
strikes: one pass over every copy. The registry recomputed it in the request that
changed a view count, for every case the changed items are in; with a viral item's case
of 100,000 copies live that pass ran in every batch chunk touching it (measured on the
2-core machine: 0.13 s on SQLite, 0.4-0.65 s on PostgreSQL, each time), and a batch of
30,000 items fell from ~15,000 to ~8,300 items/s on SQLite and to ~4,300 on PostgreSQL.
A case with more copies than ``TAKEDOWN_PRIORITY_INLINE_COPIES`` is now marked here and
recomputed by a background round (``takedown serve``, ``takedown worker``) every
``TAKEDOWN_PRIORITY_REFRESH_SECONDS``. The partial index holds the marked cases only.

Revision ID: 0035_case_priority_stale
Revises: 0034_exchange_entry_foreign_keys
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0035_case_priority_stale"
down_revision = "0034_exchange_entry_foreign_keys"
branch_labels = None
depends_on = None

_STALE = sa.text("priority_stale_since IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(
            sa.Column("priority_stale_since", sa.DateTime(timezone=True), nullable=True)
        )
    op.create_index(
        "ix_cases_priority_stale",
        "cases",
        ["priority_stale_since"],
        postgresql_where=_STALE,
        sqlite_where=_STALE,
    )


def downgrade() -> None:
    op.drop_index("ix_cases_priority_stale", table_name="cases")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("priority_stale_since")
