"""review console: case locks and reviewers' wellness settings

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "case_locks",
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("user_id", sa.String(length=26), nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("case_id"),
    )
    op.create_index("ix_case_locks_user_id", "case_locks", ["user_id"], unique=False)
    op.create_table(
        "reviewer_settings",
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("blur_strength", sa.Integer(), nullable=False),
        sa.Column("greyscale", sa.Boolean(), nullable=False),
        sa.Column("break_minutes", sa.Integer(), nullable=False),
        sa.Column("stretch_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("user_id"),
    )


def downgrade() -> None:
    op.drop_table("reviewer_settings")
    op.drop_index("ix_case_locks_user_id", table_name="case_locks")
    op.drop_table("case_locks")
