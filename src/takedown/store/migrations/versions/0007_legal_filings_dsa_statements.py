"""legal filings dsa statements

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "legal_alerts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id", "kind", name="uq_legal_alerts"),
    )
    op.create_table(
        "legal_filings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("public_id", sa.String(length=26), nullable=False),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("body", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("dedupe_key", sa.String(length=500), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("environment", sa.String(length=16), nullable=True),
        sa.Column("external_id", sa.String(length=100), nullable=True),
        sa.Column("escalate", sa.Boolean(), nullable=False),
        sa.Column("prior_report_ids", sa.Text(), nullable=False),
        sa.Column("report_xml", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_change_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retracted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key"),
        sa.UniqueConstraint("public_id"),
    )
    with op.batch_alter_table("legal_filings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_legal_filings_case_id"), ["case_id"], unique=False)
        batch_op.create_index("ix_legal_filings_due", ["state", "next_attempt_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_legal_filings_external_id"), ["external_id"], unique=False
        )

    op.create_table(
        "dsa_statements",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("puid", sa.String(length=500), nullable=False),
        sa.Column(
            "outbox_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("db_uuid", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["outbox_id"],
            ["outbox.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("outbox_id"),
        sa.UniqueConstraint("puid"),
    )
    with op.batch_alter_table("dsa_statements", schema=None) as batch_op:
        batch_op.create_index("ix_dsa_statements_due", ["state", "next_attempt_at"], unique=False)

    op.create_table(
        "legal_exchanges",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "filing_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("step", sa.String(length=16), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("response_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["filing_id"],
            ["legal_filings.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("legal_exchanges", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_legal_exchanges_filing_id"), ["filing_id"], unique=False
        )

    op.create_table(
        "legal_filing_files",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "filing_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("media_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("file_name", sa.String(length=200), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("ncmec_file_id", sa.String(length=100), nullable=True),
        sa.Column("ncmec_hash", sa.String(length=128), nullable=True),
        sa.Column("fileinfo_xml", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["filing_id"],
            ["legal_filings.id"],
        ),
        sa.ForeignKeyConstraint(
            ["media_id"],
            ["media.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("filing_id", "media_id", name="uq_legal_filing_files"),
    )
    with op.batch_alter_table("legal_filing_files", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_legal_filing_files_filing_id"), ["filing_id"], unique=False
        )

    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("media_review", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_column("media_review")

    with op.batch_alter_table("legal_filing_files", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_legal_filing_files_filing_id"))

    op.drop_table("legal_filing_files")
    with op.batch_alter_table("legal_exchanges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_legal_exchanges_filing_id"))

    op.drop_table("legal_exchanges")
    with op.batch_alter_table("dsa_statements", schema=None) as batch_op:
        batch_op.drop_index("ix_dsa_statements_due")

    op.drop_table("dsa_statements")
    with op.batch_alter_table("legal_filings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_legal_filings_external_id"))
        batch_op.drop_index("ix_legal_filings_due")
        batch_op.drop_index(batch_op.f("ix_legal_filings_case_id"))

    op.drop_table("legal_filings")
    op.drop_table("legal_alerts")
