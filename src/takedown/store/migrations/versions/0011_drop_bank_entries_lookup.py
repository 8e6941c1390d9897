"""bank entries: one index on (bank_id, signal_type, value), not three

The unique constraint's index already serves exact lookups once the query names the
enabled banks (``bank_id IN (...)``); keeping a second index on (signal_type, value) of
random hash values cost a sixth of a million-hash import. The index on bank_id alone
is the leading column of that same index, and worse, PostgreSQL's planner picked it
for "which of these 500 values are already in this bank?" while a large import was
filling the table (statistics from when it was empty): every such query then walked
the whole bank, and the import of a million hashes into a non-empty bank crawled.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_bank_entries_lookup", table_name="bank_entries")
    op.drop_index("ix_bank_entries_bank_id", table_name="bank_entries")


def downgrade() -> None:
    op.create_index("ix_bank_entries_bank_id", "bank_entries", ["bank_id"])
    op.create_index("ix_bank_entries_lookup", "bank_entries", ["signal_type", "value"])
