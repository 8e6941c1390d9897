"""Alembic environment: the engine comes from the caller (``takedown db upgrade`` or
start-up), never from an ini file, so the same migrations serve SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import context

from takedown.store.models import Base

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # pragma: no cover - only when someone runs bare `alembic`
    from takedown.config import Settings
    from takedown.store.db import make_engine

    engine = make_engine(Settings().resolved_database_url)

with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    raw = connection.connection.driver_connection if sqlite else None
    if raw is not None:
        # SQLite changes a table's columns by rebuilding it (batch mode: copy, drop,
        # rename), which must not trip the foreign keys of rows pointing at it. The
        # pragma only applies outside a transaction, so it is set before Alembic's
        # begins; every key is checked before the migration commits.
        raw.execute("PRAGMA foreign_keys=OFF")
    try:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=sqlite,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"foreign keys broken by the migration: {broken[:5]}")
        connection.commit()
    finally:
        if raw is not None:
            raw.execute("PRAGMA foreign_keys=ON")
