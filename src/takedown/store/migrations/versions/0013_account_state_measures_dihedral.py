"""accounts: the platform's state kept apart from Takedown's; measures per case; media
carry their PDQ dihedral variants

- ``accounts.platform_status`` is what the platform says of the account (active,
  suspended, terminated, deleted); ``accounts.status`` is now only Takedown's own
  measure (active, suspended, terminated), so a platform sync can no longer lift a
  suspension. Existing rows keep their status as both (nothing tells them apart).
- What the platform knows of an account: ``flag_reason`` and ``flag_source`` with
  ``flagged``; ``prior_violations`` and ``prior_violations_source`` (confirmed before
  Takedown); ``platform_reinstated_at`` when the platform reactivated an account that
  Takedown had suspended.
- ``account_measures``: one row per account a decision acted on (its part in the case,
  the measure, whether it counted as a strike), so an overturned decision undoes
  exactly what it did.
- ``media.pdq_dihedral``: the 8 dihedral PDQ variants (comma-separated, first = pdq),
  so near-duplicate lookups find rotated and mirrored copies.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(
            sa.Column("platform_status", sa.String(16), nullable=False, server_default="active")
        )
        batch.add_column(sa.Column("flag_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("flag_source", sa.String(200), nullable=True))
        batch.add_column(
            sa.Column("prior_violations", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("prior_violations_source", sa.String(200), nullable=True))
        batch.add_column(
            sa.Column("platform_reinstated_at", sa.DateTime(timezone=True), nullable=True)
        )
    op.execute("UPDATE accounts SET platform_status = status")
    op.execute("UPDATE accounts SET status = 'active' WHERE status = 'deleted'")
    op.execute("UPDATE accounts SET flag_source = 'platform' WHERE flagged")
    op.create_table(
        "account_measures",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("case_id", _ID, sa.ForeignKey("cases.id"), nullable=False, index=True),
        sa.Column("account_id", _ID, sa.ForeignKey("accounts.id"), nullable=False, index=True),
        sa.Column("part", sa.String(16), nullable=False),
        sa.Column("measure", sa.String(16), nullable=False),
        sa.Column("strike", sa.Boolean(), nullable=False),
        sa.Column("decision", sa.String(26), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reversed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reversed_by", sa.String(26), nullable=True),
    )
    with op.batch_alter_table("media") as batch:
        batch.add_column(sa.Column("pdq_dihedral", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("media") as batch:
        batch.drop_column("pdq_dihedral")
    op.drop_table("account_measures")
    op.execute(
        "UPDATE accounts SET status = platform_status WHERE status = 'active' "
        "AND platform_status <> 'active'"
    )
    with op.batch_alter_table("accounts") as batch:
        for column in (
            "platform_reinstated_at",
            "prior_violations_source",
            "prior_violations",
            "flag_source",
            "flag_reason",
            "platform_status",
        ):
            batch.drop_column(column)
