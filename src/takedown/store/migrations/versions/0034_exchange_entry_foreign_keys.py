"""exchange_entries: no foreign keys on ``exchange_id`` and ``entry_id``

An exchange's first sync writes one provenance row per signal of each upstream entry:
two million rows for a list of a million entries, each checked on PostgreSQL by two
triggers that look the referred rows up and lock them. Measured on the 2-core machine
(copies of 800,000 rows into scratch databases): 8.4 CPU-seconds with the checks,
2.7-3.2 without, about 7 µs a row -- some 14 CPU-seconds of a million-entry sync. The
ids are those the same transaction has just inserted or read (the exchange it syncs,
the bank entries it wrote or found; ``services/exchanges``), and no code path deletes
an exchange, a bank entry or a provenance row, so the checks guarded nothing the code
does not already guarantee (the registry's and the outbox's rows lost theirs for the
same reason, migrations 0030 and 0032).

SQLite cannot drop a constraint in place: the table is copied (batch mode), a one-time
cost proportional to its size.

Revision ID: 0034_exchange_entry_foreign_keys
Revises: 0033_outbox_open_target_order
"""

from __future__ import annotations

from alembic import op

revision = "0034_exchange_entry_foreign_keys"
down_revision = "0033_outbox_open_target_order"
branch_labels = None
depends_on = None

# SQLite's foreign keys have no names: batch mode names them by this convention when it
# reflects the table, so that they can be dropped. PostgreSQL's are named
# <table>_<column>_fkey by the server.
_NAMES = {"fk": "%(table_name)s_%(column_0_name)s_fkey"}
_REFERS = {"exchange_id": ("exchanges", "id"), "entry_id": ("bank_entries", "id")}


def upgrade() -> None:
    with op.batch_alter_table("exchange_entries", naming_convention=_NAMES) as batch:
        for column in _REFERS:
            batch.drop_constraint(f"exchange_entries_{column}_fkey", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("exchange_entries") as batch:
        for column, (referred, key) in _REFERS.items():
            batch.create_foreign_key(f"exchange_entries_{column}_fkey", referred, [column], [key])
