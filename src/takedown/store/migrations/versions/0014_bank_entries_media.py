"""bank entries: the file an entry was banked from (media_sha256)

A file banked with ``POST /v1/banks/{bank}/media`` becomes several entries (PDQ, MD5,
SHA-256, plug-in signals; for a video MD5, SHA-256 and its frame set). Nothing linked
them, so disabling one of them as a false positive left the others matching. Each entry
now keeps the SHA-256 of its file (NULL for entries from hash lists), indexed per bank
where it is set, so imports pay nothing for it. Of the entries banked before, only a
``vpdq`` entry knows its file for certain (it is valued by the video's SHA-256); the
others are found by the file's signals when it is disabled by media.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("bank_entries") as batch:
        batch.add_column(sa.Column("media_sha256", sa.String(64), nullable=True))
    op.create_index(
        "ix_bank_entries_media",
        "bank_entries",
        ["bank_id", "media_sha256"],
        postgresql_where=sa.text("media_sha256 IS NOT NULL"),
        sqlite_where=sa.text("media_sha256 IS NOT NULL"),
    )
    op.execute("UPDATE bank_entries SET media_sha256 = value WHERE signal_type = 'vpdq'")


def downgrade() -> None:
    op.drop_index("ix_bank_entries_media", table_name="bank_entries")
    with op.batch_alter_table("bank_entries") as batch:
        batch.drop_column("media_sha256")
