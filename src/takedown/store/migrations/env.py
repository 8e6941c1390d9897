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
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
