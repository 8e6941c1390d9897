"""Video frame spans and crop windows

``end_ms`` (bank_video_frames, media_video_frames): how far a frame feature stands. A
frame hashed once a second stands for that second; a still scene collapsed into its
first hash stands for the whole run. Matches report time ranges to these spans. Rows
written before this migration (and features imported from exchanges) have none: their
span is taken as one sampling interval.

``crop_permille`` (bank_video_frames): a banked frame hashed again from a centred
window with this many thousandths cut off every edge (NULL: the frame itself). Such rows
are found by the index like any frame and stand for the frame they were cut from.

Revision ID: 0020_video_spans
Revises: 0019_clocks
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_video_spans"
down_revision = "0019_clocks"
branch_labels = None
depends_on = None

_TABLES = ("bank_video_frames", "media_video_frames")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("end_ms", sa.Integer(), nullable=True))
    with op.batch_alter_table("bank_video_frames") as batch:
        batch.add_column(sa.Column("crop_permille", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bank_video_frames") as batch:
        batch.drop_column("crop_permille")
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("end_ms")
