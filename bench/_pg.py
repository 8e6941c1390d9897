"""A fresh PostgreSQL database for one benchmark run, dropped after it: a run never
writes into the database it is pointed at (the server's ``postgres`` database, say), and
every run starts from an empty schema."""

from __future__ import annotations

import uuid

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def fresh_postgres(server_url: str) -> tuple[str, str]:
    """A new database on ``server_url``'s server: (its URL, its name)."""
    name = f"takedown_bench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(server_url).set(database=name).render_as_string(False), name


def drop_postgres(server_url: str, name: str) -> None:
    """Drop the database ``fresh_postgres`` made (its connections closed first)."""
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()
