"""reporter standing

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "reporter_standing",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("reporter_key", sa.String(length=400), nullable=False),
        sa.Column("unfounded", sa.Integer(), nullable=False),
        sa.Column("warned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("limited_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("reporter_key"),
    )
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "manifestly_unfounded", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )

    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "from_limited_reporter", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )


def downgrade() -> None:

    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.drop_column("from_limited_reporter")

    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_column("manifestly_unfounded")

    op.drop_table("reporter_standing")
