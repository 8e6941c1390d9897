"""video frames: vPDQ features of banked and registered videos, per-bank video rule

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _frame_columns() -> list[sa.Column]:
    return [
        sa.Column("frame_number", sa.Integer(), nullable=False),
        sa.Column("timestamp_ms", sa.Integer(), nullable=False),
        sa.Column("quality", sa.Integer(), nullable=False),
        sa.Column("pdq", sa.String(length=64), nullable=False),
    ]


def upgrade() -> None:
    with op.batch_alter_table("banks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("video_match_percent", sa.Integer(), nullable=False, server_default="80")
        )
        batch_op.add_column(
            sa.Column("video_frame_threshold", sa.Integer(), nullable=False, server_default="31")
        )
    with op.batch_alter_table("screening_matches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("video_match", sa.Text(), nullable=True))
    op.create_table(
        "bank_video_frames",
        sa.Column("id", _ID, nullable=False),
        sa.Column("entry_id", _ID, nullable=False),
        *_frame_columns(),
        sa.ForeignKeyConstraint(["entry_id"], ["bank_entries.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_bank_video_frames_entry_id", "bank_video_frames", ["entry_id"])
    op.create_table(
        "media_video_frames",
        sa.Column("id", _ID, nullable=False),
        sa.Column("media_id", _ID, nullable=False),
        *_frame_columns(),
        sa.ForeignKeyConstraint(["media_id"], ["media.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_media_video_frames_media_id", "media_video_frames", ["media_id"])


def downgrade() -> None:
    op.drop_index("ix_media_video_frames_media_id", table_name="media_video_frames")
    op.drop_table("media_video_frames")
    op.drop_index("ix_bank_video_frames_entry_id", table_name="bank_video_frames")
    op.drop_table("bank_video_frames")
    with op.batch_alter_table("screening_matches", schema=None) as batch_op:
        batch_op.drop_column("video_match")
    with op.batch_alter_table("banks", schema=None) as batch_op:
        batch_op.drop_column("video_frame_threshold")
        batch_op.drop_column("video_match_percent")
