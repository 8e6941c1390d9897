"""banks: settings per signal type instead of PDQ-named columns; longer entry values

Each bank keeps one row per signal type it has settings for (``bank_signal_settings``:
threshold, quality floor, and for vPDQ the share of frames that must match). Every
bank's settings move over as they were: ``pdq_threshold`` and ``pdq_quality_floor``
become its ``pdq`` row, ``video_frame_threshold`` and ``video_match_percent`` (with the
PDQ quality floor, which the video rule used) its ``vpdq`` row. A type without a row
uses its own defaults (a plug-in type installed after the bank was made).

``bank_entries.value`` grows from 64 to 512 characters so types with longer values
(PhotoDNA: 288 hex digits) can be banked; values longer still (TMK, ~176,000
characters) are kept whole in ``bank_entry_payloads``, the entry valued by their
SHA-256.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bank_signal_settings",
        sa.Column(
            "bank_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("banks.id"),
            primary_key=True,
        ),
        sa.Column("signal_type", sa.String(16), primary_key=True),
        sa.Column("threshold", sa.Integer(), nullable=True),
        sa.Column("quality_floor", sa.Integer(), nullable=True),
        sa.Column("match_percent", sa.Integer(), nullable=True),
    )
    op.execute(
        "INSERT INTO bank_signal_settings (bank_id, signal_type, threshold, quality_floor) "
        "SELECT id, 'pdq', pdq_threshold, pdq_quality_floor FROM banks"
    )
    op.execute(
        "INSERT INTO bank_signal_settings "
        "(bank_id, signal_type, threshold, quality_floor, match_percent) "
        "SELECT id, 'vpdq', video_frame_threshold, pdq_quality_floor, video_match_percent "
        "FROM banks"
    )
    with op.batch_alter_table("banks") as batch:
        batch.drop_column("pdq_threshold")
        batch.drop_column("pdq_quality_floor")
        batch.drop_column("video_match_percent")
        batch.drop_column("video_frame_threshold")
    with op.batch_alter_table("bank_entries") as batch:
        batch.alter_column("value", type_=sa.String(512), existing_type=sa.String(64))
    op.create_table(
        "bank_entry_payloads",
        sa.Column(
            "entry_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("bank_entries.id"),
            primary_key=True,
        ),
        sa.Column("payload", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("bank_entry_payloads")
    with op.batch_alter_table("bank_entries") as batch:
        batch.alter_column("value", type_=sa.String(64), existing_type=sa.String(512))
    with op.batch_alter_table("banks") as batch:
        for column, default in (
            ("pdq_threshold", "31"),
            ("pdq_quality_floor", "50"),
            ("video_match_percent", "80"),
            ("video_frame_threshold", "31"),
        ):
            batch.add_column(
                sa.Column(column, sa.Integer(), nullable=False, server_default=default)
            )
    for column, signal_type, setting in (
        ("pdq_threshold", "pdq", "threshold"),
        ("pdq_quality_floor", "pdq", "quality_floor"),
        ("video_frame_threshold", "vpdq", "threshold"),
        ("video_match_percent", "vpdq", "match_percent"),
    ):
        op.execute(
            f"UPDATE banks SET {column} = COALESCE((SELECT s.{setting} FROM "
            "bank_signal_settings s WHERE s.bank_id = banks.id AND s.signal_type = "
            f"'{signal_type}'), {column})"
        )
    op.drop_table("bank_signal_settings")
