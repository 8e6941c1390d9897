"""hash-only reports: case locations name their report

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("case_locations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "report_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
            )
        )
        batch_op.create_index("ix_case_locations_report_id", ["report_id"], unique=False)
        batch_op.create_foreign_key(
            "fk_case_locations_report_id_reports", "reports", ["report_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("case_locations", schema=None) as batch_op:
        batch_op.drop_constraint("fk_case_locations_report_id_reports", type_="foreignkey")
        batch_op.drop_index("ix_case_locations_report_id")
        batch_op.drop_column("report_id")
