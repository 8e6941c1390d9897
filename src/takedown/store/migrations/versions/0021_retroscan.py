"""retroscan_jobs and retroscan_matches: retroactive matching

A bank that learns a hash looks for the registered media that match it: one job per
addition (entry-id range) with a checkpoint, and each (entry, media) pair acted on once.

Revision ID: 0021_retroscan
Revises: 0020_video_spans
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021_retroscan"
down_revision = "0020_video_spans"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "retroscan_jobs",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("public_id", sa.String(26), nullable=False, unique=True),
        sa.Column("bank_id", BigId, sa.ForeignKey("banks.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("after_entry_id", sa.BigInteger(), nullable=False),
        sa.Column("through_entry_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("checkpoint_media_id", sa.BigInteger(), nullable=False),
        sa.Column("media_total", sa.BigInteger(), nullable=True),
        sa.Column("media_scanned", sa.BigInteger(), nullable=False),
        sa.Column("matches", sa.Integer(), nullable=False),
        sa.Column("cases", sa.Integer(), nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("started_at", When, nullable=True),
        sa.Column("updated_at", When, nullable=True),
        sa.Column("finished_at", When, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index("ix_retroscan_jobs_state", "retroscan_jobs", ["state", "id"])
    op.create_index("ix_retroscan_jobs_bank_id", "retroscan_jobs", ["bank_id"])
    op.create_table(
        "retroscan_matches",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("entry_id", BigId, sa.ForeignKey("bank_entries.id"), nullable=False),
        sa.Column("media_id", BigId, sa.ForeignKey("media.id"), nullable=False),
        sa.Column("job_id", BigId, sa.ForeignKey("retroscan_jobs.id"), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("distance", sa.Integer(), nullable=False),
        sa.Column("found_at", When, nullable=False),
        sa.UniqueConstraint("entry_id", "media_id", name="uq_retroscan_pair"),
    )
    op.create_index("ix_retroscan_matches_media_id", "retroscan_matches", ["media_id"])


def downgrade() -> None:
    op.drop_table("retroscan_matches")
    op.drop_table("retroscan_jobs")
