"""ip_events, file names and visibility, victim details given with consent

- ``ip_events``: the IP addresses and times the platform saw for an account (sign-up,
  log-ins, purchases) or an item (its upload), for the CyberTipline's
  ``ipCaptureEvent``s. One row per (owner, address, event, time): ``dedupe_key`` makes
  a re-sent event add nothing.
- ``item_media.file_name``: the name the file was uploaded with (``originalFileName``).
- ``items.platform_visibility``: the platform's visibility of the item (public,
  restricted, private); ``case_items.publicly_available``: whether it was public when
  it joined the case (restrict-first hides it right after), null when not known.
- ``reports.victim_*``: what a person depicted or a parent gave about the victim, and
  whether they consented to it going to NCMEC.

Revision ID: 0018_ip_events_file_facts
Revises: 0017_dsa_failed
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018_ip_events_file_facts"
down_revision = "0017_dsa_failed"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ip_events",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("account_id", _ID, sa.ForeignKey("accounts.id"), nullable=True, index=True),
        sa.Column("item_id", _ID, sa.ForeignKey("items.id"), nullable=True, index=True),
        sa.Column("ip", sa.String(45), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("dedupe_key", sa.String(200), nullable=False, unique=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_by", sa.String(200), nullable=False),
    )
    with op.batch_alter_table("item_media") as batch:
        batch.add_column(sa.Column("file_name", sa.String(255), nullable=True))
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("platform_visibility", sa.String(16), nullable=True))
    with op.batch_alter_table("case_items") as batch:
        batch.add_column(sa.Column("publicly_available", sa.Boolean(), nullable=True))
    with op.batch_alter_table("reports") as batch:
        batch.add_column(
            sa.Column("victim_consent", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("victim_first_name", sa.String(100), nullable=True))
        batch.add_column(sa.Column("victim_last_name", sa.String(100), nullable=True))
        batch.add_column(sa.Column("victim_email", sa.String(320), nullable=True))
        batch.add_column(sa.Column("victim_phone", sa.String(50), nullable=True))
        batch.add_column(sa.Column("victim_age", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("victim_date_of_birth", sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reports") as batch:
        for column in (
            "victim_date_of_birth",
            "victim_age",
            "victim_phone",
            "victim_email",
            "victim_last_name",
            "victim_first_name",
            "victim_consent",
        ):
            batch.drop_column(column)
    with op.batch_alter_table("case_items") as batch:
        batch.drop_column("publicly_available")
    with op.batch_alter_table("items") as batch:
        batch.drop_column("platform_visibility")
    with op.batch_alter_table("item_media") as batch:
        batch.drop_column("file_name")
    op.drop_table("ip_events")
