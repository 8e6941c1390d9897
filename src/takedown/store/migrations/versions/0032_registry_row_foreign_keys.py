"""items, item_media and item_views: no foreign keys on the columns the registry writes
for every item (``items.account_id``, ``item_media.item_id``, ``item_media.media_id``,
``item_views.item_id``)

On PostgreSQL a foreign key is checked by a trigger per inserted row, which looks the
referred row up and locks it. A registry batch of 20,000 items writes 20,000 items,
~14,000 media links and ~21,000 view samples: four checks per item. Measured on the
2-core machine under load (``EXPLAIN ANALYZE``, 20,000 rows): inserting view samples
1.15-1.29 s with the check, 0.29 s without; media links 1.35-1.68 s with their two,
0.24 s without. The ids are those the same transaction has just inserted or read
(``services/registry``), and no code path deletes an account, an item or a media row, so
the checks guarded nothing the code does not already guarantee (``case_items`` and the
outbox lost theirs for the same reason, migration 0030).

SQLite cannot drop a constraint in place: the three tables are copied (batch mode), a
one-time cost proportional to their size.

Revision ID: 0032_registry_row_foreign_keys
Revises: 0031_outbox_fanouts
"""

from __future__ import annotations

from alembic import op

revision = "0032_registry_row_foreign_keys"
# 0031 is the lead's, written at the same time: set this to it when both are merged.
down_revision = "0031_outbox_fanouts"
branch_labels = None
depends_on = None

# SQLite's foreign keys have no names: batch mode names them by this convention when it
# reflects the table, so that they can be dropped. PostgreSQL's are named
# <table>_<column>_fkey by the server.
_NAMES = {"fk": "%(table_name)s_%(column_0_name)s_fkey"}
_DROPPED = {
    "items": ("account_id",),
    "item_media": ("item_id", "media_id"),
    "item_views": ("item_id",),
}
_REFERS = {
    "account_id": ("accounts", "id"),
    "item_id": ("items", "id"),
    "media_id": ("media", "id"),
}


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
