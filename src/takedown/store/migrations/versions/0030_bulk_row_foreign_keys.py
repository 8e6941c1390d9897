"""case_items and outbox: no foreign keys on the columns a report writes for every copy
(``case_items.case_id``, ``case_items.item_id``, ``outbox.case_id``)

On PostgreSQL a foreign key is checked by a trigger per inserted row; a report about an
item with 100,000 copies inserts 100,000 case items (two checks each) and 100,000
outbox actions: measured on the 2-core machine, ~0.7 s per 100,000 rows and key, about
2 s of that report. The rows are written by INSERT … SELECT over existing items, into
a case the same transaction holds, and no code path deletes a case or an item, so the
checks guarded nothing the code does not already guarantee (``outbox.statement_id``
went without one for the same reason, migration 0029).

SQLite cannot drop a constraint in place: the two tables are copied (batch mode), a
one-time cost proportional to their size.

Revision ID: 0030_bulk_row_foreign_keys
Revises: 0029_outbox_statements
"""

from __future__ import annotations

from alembic import op

revision = "0030_bulk_row_foreign_keys"
down_revision = "0029_outbox_statements"
branch_labels = None
depends_on = None

# SQLite's foreign keys have no names: batch mode names them by this convention when it
# reflects the table, so that they can be dropped. PostgreSQL's are named
# <table>_<column>_fkey by the server.
_NAMES = {"fk": "%(table_name)s_%(column_0_name)s_fkey"}
_DROPPED = {"case_items": ("case_id", "item_id"), "outbox": ("case_id",)}
_REFERS = {"case_id": ("cases", "id"), "item_id": ("items", "id")}


def upgrade() -> None:
    for table, columns in _DROPPED.items():
        with op.batch_alter_table(table, naming_convention=_NAMES) as batch:
            for column in columns:
                batch.drop_constraint(f"{table}_{column}_fkey", type_="foreignkey")


def downgrade() -> None:
    for table, columns in _DROPPED.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                referred, key = _REFERS[column]
                batch.create_foreign_key(f"{table}_{column}_fkey", referred, [column], [key])
