"""master_key_fingerprints: the master keys a database was used with

A process whose master key is none of these is refused at start (runtime/setup.py)
instead of sealing media and chaining audit events under a key the other processes do
not have. The keys that sealed the blobs already stored are recorded here from the
blobs themselves (each names its key by fingerprint, bytes 5-12); a database without
blobs records its key at the next start, once the key verifies the audit chain's head.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "master_key_fingerprints",
        sa.Column("fingerprint", sa.String(length=16), nullable=False),
        sa.Column("first_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("fingerprint"),
    )
    # substr() takes a BLOB on SQLite and a bytea on PostgreSQL alike; "TDE1" comes first.
    key_ids = op.get_bind().execute(sa.text("SELECT DISTINCT substr(sealed, 5, 8) FROM blobs"))
    now = datetime.now(UTC)
    rows = [{"fingerprint": bytes(r[0]).hex(), "first_used_at": now} for r in key_ids if r[0]]
    if rows:
        op.bulk_insert(table, rows)


def downgrade() -> None:
    op.drop_table("master_key_fingerprints")
