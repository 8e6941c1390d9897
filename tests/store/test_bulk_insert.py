"""store.db.bulk_insert stores exactly what SQLAlchemy's own executemany stores, on
both databases (it reuses SQLAlchemy's statement and type converters)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select

from takedown.runtime import Runtime
from takedown.store.db import bulk_insert, unit_of_work
from takedown.store.models import Bank, BankEntry, Base


def _rows(bank_id: int, tag: str) -> list[dict[str, object]]:
    now = datetime(2026, 11, 26, 1, 2, 3, 456789, tzinfo=UTC)
    return [
        {
            "public_id": f"{tag}{i:024d}",
            "bank_id": bank_id,
            "signal_type": "pdq",
            "value": f"{tag}{i:063x}"[:64],
            "quality": i if i % 2 else None,
            "source": "own",
            "source_id": None,
            "category": "c" if i % 3 else None,
            "note": "é ünïcode" if i == 1 else None,
            "added_by": "t",
            "added_at": now + timedelta(seconds=i % 2),  # two distinct values
            "enabled": bool(i % 4),
        }
        for i in range(10)
    ]


def test_bulk_insert_stores_what_sqlalchemy_stores(rt: Runtime):
    rt.banks.create_bank("b", actor="t")
    table = Base.metadata.tables["bank_entries"]
    with unit_of_work(rt.sessions) as s:
        bank_id = s.scalar(select(Bank.id))
        connection = s.connection()
        connection.execute(insert(table), _rows(bank_id, "a"))
        bulk_insert(connection, table, _rows(bank_id, "b"))
        bulk_insert(connection, table, [])
    with rt.sessions() as s:
        entries = s.scalars(select(BankEntry).order_by(BankEntry.id)).all()
    fields = ["quality", "source", "category", "note", "added_by", "added_at", "enabled"]
    by_sqlalchemy = [[getattr(e, f) for f in fields] for e in entries[:10]]
    by_bulk = [[getattr(e, f) for f in fields] for e in entries[10:]]
    assert len(entries) == 20 and by_bulk == by_sqlalchemy
    assert entries[11].added_at == datetime(2026, 11, 26, 1, 2, 4, 456789, tzinfo=UTC)


def test_postgresql_copies_in_binary_only_types_it_dumps_exactly():
    # COPY's binary format needs each column's exact type; a type without one here (a
    # date, say) makes the whole COPY text, as before.
    from sqlalchemy import Column, Date, Integer, MetaData, Table
    from sqlalchemy.dialects import postgresql

    from takedown.store.db import _binary_copy_types

    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    entries = Base.metadata.tables["bank_entries"]
    keys = ["id", "public_id", "quality", "note", "added_at", "enabled"]
    assert _binary_copy_types(dialect, entries, keys) == [
        "int8",
        "varchar",
        "int4",
        "text",
        "timestamptz",
        "bool",
    ]
    other = Table("t", MetaData(), Column("id", Integer), Column("born", Date))
    assert _binary_copy_types(dialect, other, ["id"]) == ["int4"]
    assert _binary_copy_types(dialect, other, ["id", "born"]) is None
