"""Engines, sessions and migrations for SQLite (embedded) and PostgreSQL (scale)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, Table, TextClause, create_engine, event, insert
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# A request thread may hold two connections at once (its transaction, and an index
# follower's short read of new rows), and the web thread pool has 40 threads: the pool
# must be able to give every thread two without waiting on itself. Idle overflow
# connections are closed again.
POOL_SIZE = 10
POOL_OVERFLOW = 80


def make_engine(url: str) -> Engine:
    """Create an engine with the settings each backend needs.

    SQLite runs in WAL mode (readers never wait for the writer), with foreign keys on
    and a busy timeout so concurrent writers queue instead of failing.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=POOL_SIZE,
            max_overflow=POOL_OVERFLOW,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    engine = create_engine(url, pool_pre_ping=True, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW)
    event.listen(engine, "connect", _postgres_settings)
    return engine


def many_rows(session: Session) -> None:
    """Mark this transaction as one that reads and writes rows by the hundred thousand
    (a report about a viral item): on PostgreSQL it gets memory for hash tables and
    sorts of that many ids (``work_mem`` 64 MB for this transaction only; at the
    default 4 MB the copy walk and the triage figures spilled them to disk)."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection().exec_driver_sql("SET LOCAL work_mem = '64MB'")


def _postgres_settings(dbapi_conn: Any, _record: object) -> None:
    """No JIT compilation. PostgreSQL compiles a statement it estimates costly (over
    ``jit_above_cost``) to machine code before running it; the copy walk of a report
    about an item with 100,000 copies spent 0.8 s of its 1.9 s compiling (measured on
    the 2-core machine), to run a plan of index look-ups JIT does not speed up. The
    statements here are short-lived and many; none gains from it."""
    with dbapi_conn.cursor() as cur:
        cur.execute("SET jit = off")
    dbapi_conn.commit()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own handling would
    # start transactions lazily and defeat BEGIN IMMEDIATE).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    # Writers take the write lock at BEGIN (IMMEDIATE) so that two writers queue on the
    # busy timeout instead of failing when one upgrades a read lock; readers stay
    # DEFERRED and never wait in WAL mode.
    if conn.get_execution_options().get("takedown_write"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def unit_of_work(
    factory: sessionmaker[Session], *, write: bool = True, bind: Connection | None = None
) -> Iterator[Session]:
    """One use case, one transaction: commit on success, roll back on any error.

    ``write=False`` marks a read-only use case (no write lock on SQLite). ``bind``: a
    connection held by the caller (see :func:`bulk_writer`) instead of one from the pool.
    """
    session = factory() if bind is None else factory(bind=bind)
    try:
        with session.begin():
            session.connection(execution_options={"takedown_write": write})
            yield session
    finally:
        session.close()


@contextmanager
def bulk_writer(factory: sessionmaker[Session]) -> Iterator[Connection]:
    """A connection held for a long run of large write transactions (an exchange's
    sync), for :func:`unit_of_work`'s ``bind``. On SQLite it keeps a large page cache
    while it is held (pages stay cached from one transaction to the next: nobody else
    writes in between, or SQLite drops them), and gets its setting back before it
    returns to the pool.

    Random keys (hash values) are inserted all over the bank's unique index: with
    SQLite's default 2 MB cache nearly every insert reads its index page back from the
    file (measured at a million NCMEC entries, with checkpoints also held off then: 23 s
    of system time before, 10 s).
    Checkpoints stay SQLite's default (after a commit past 1,000 WAL pages): held off,
    the log they leave would be copied at some other writer's commit (an upload's)."""
    engine: Engine = factory.kw["bind"]
    with engine.connect() as connection, bulk_cache(connection):
        try:
            yield connection
        finally:
            if connection.in_transaction():
                connection.rollback()


@contextmanager
def bulk_cache(connection: Connection) -> Iterator[None]:
    """On SQLite, a page cache of ``BULK_CACHE_KIB`` for this connection while the block
    runs, then its own setting back (large imports and syncs: random index keys would
    otherwise spill pages at every insert). Set through the driver's cursor, so it
    neither begins nor joins a transaction."""
    if connection.dialect.name != "sqlite":
        yield
        return
    cursor = connection.connection.cursor()
    before = cursor.execute("PRAGMA cache_size").fetchone()[0]
    try:
        cursor.execute(f"PRAGMA cache_size=-{BULK_CACHE_KIB}")
        yield
    finally:
        cursor.execute(f"PRAGMA cache_size={int(before)}")
        cursor.close()


BULK_CACHE_KIB = 256 * 1024  # SQLite's page cache for bulk writes (see bulk_writer)


@contextmanager
def read_connection(factory: sessionmaker[Session]) -> Iterator[Connection]:
    """A Core connection for a hot read that needs no ORM objects (the upload path's
    check of index candidates). On SQLite it reads in a reader's transaction, rolled
    back when the block ends; on PostgreSQL in none (one statement is consistent on its
    own), and the pool gets the connection back transactional as before. Opening,
    beginning and closing a Session instead costs ~70 us (measured), three times as
    much."""
    engine: Engine = factory.kw["bind"]
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            # One statement needs no transaction of its own: without BEGIN and
            # ROLLBACK the read is one round trip to the server instead of three.
            connection.execution_options(isolation_level="AUTOCOMMIT")
        yield connection


def raw_rows(session: Session, statement: TextClause, params: dict[str, Any]) -> list[Any]:
    """Rows of ``statement`` as the driver returns them (tuples), inside the session's
    transaction. For bulk reads of up to millions of rows (the index followers), where
    SQLAlchemy's per-row Result processing costs about a microsecond a row: a million
    rows, 1.1 s of a 1.8 s read. Only for statements whose columns need no conversion
    (integers and text)."""
    connection = session.connection()
    compiled = statement.compile(dialect=connection.dialect)
    values = compiled.construct_params(params)
    dbapi_params: Any = (
        tuple(values[name] for name in compiled.positiontup or ())
        if compiled.positional
        else values
    )
    cursor = connection.connection.cursor()
    try:
        cursor.execute(str(compiled), dbapi_params)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def bulk_insert(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys) with one DBAPI ``executemany`` (on
    PostgreSQL, one ``COPY``).

    ``connection.execute(insert(table), rows)`` does the same, but converts every value
    of every row through its column type one call at a time: a sixth of a million-row
    import, a third of it re-formatting the one timestamp all rows share. Here each
    column's converter runs once per distinct value. The statement and converters are
    SQLAlchemy's own, so what is stored is identical."""
    if not rows:
        return
    keys = list(rows[0])
    dialect = connection.dialect
    compiled = insert(table).compile(dialect=dialect, column_keys=keys)
    converted: dict[str, list[Any]] = {}
    for key in keys:
        column_values = [row[key] for row in rows]
        process = table.c[key].type._cached_bind_processor(dialect)
        if process is not None:
            column_values = _convert(process, column_values)
        converted[key] = column_values
    if dialect.name == "postgresql":
        _copy(connection, table, keys, converted)
        return
    if compiled.positional:
        order = [converted[name] for name in compiled.positiontup or ()]
        params: list[Any] = list(zip(*order, strict=True))
    else:
        columns = zip(*converted.values(), strict=True)
        params = [dict(zip(keys, values, strict=True)) for values in columns]
    cursor = connection.connection.cursor()
    try:
        cursor.executemany(str(compiled), params)
    finally:
        cursor.close()


def _copy(
    connection: Connection, table: Table, keys: list[str], converted: dict[str, list[Any]]
) -> None:
    """PostgreSQL: ``COPY ... FROM STDIN``, its bulk-loading protocol (psycopg writes the
    rows with its own adapters). An ``executemany`` of a million rows, pipelined, loaded
    about 25,000 rows a second on this machine.

    In COPY's binary format when every column's type has one here (see
    :func:`_binary_copy_types`): psycopg then writes each value's bytes as they are
    instead of formatting text, and PostgreSQL parses no text back (timestamps, numbers).
    Measured on 200,000 bank-entry rows: 0.05 CPU-s in this process instead of 0.30, and
    0.11 in PostgreSQL's instead of 0.17 -- an exchange's first sync of a million entries
    copies four million rows. Other types (dates, JSON, ...) are copied as text."""
    quote = connection.dialect.identifier_preparer.quote
    columns = ", ".join(quote(key) for key in keys)
    types = _binary_copy_types(connection.dialect, table, keys)
    binary = " (FORMAT BINARY)" if types else ""
    cursor = connection.connection.cursor()
    try:
        with cursor.copy(f"COPY {quote(table.name)} ({columns}) FROM STDIN{binary}") as copy:
            if types:
                copy.set_types(types)
            for values in zip(*converted.values(), strict=True):
                copy.write_row(values)
    finally:
        cursor.close()


# Column types COPY's binary format is used for: those psycopg dumps exactly from what
# SQLAlchemy's bind processors hand it (int, str, bool, aware datetime, bytes); a value of
# another Python type is refused by the dumper, never stored as something else.
_BINARY_COPY = {
    "BIGINT": "int8",
    "INTEGER": "int4",
    "SMALLINT": "int2",
    "BOOLEAN": "bool",
    "TEXT": "text",
    "VARCHAR": "varchar",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "BYTEA": "bytea",
}


def _binary_copy_types(dialect: Dialect, table: Table, keys: list[str]) -> list[str] | None:
    """The PostgreSQL type of each of ``keys``' columns, as psycopg names it for a binary
    COPY, or None when one has no entry in ``_BINARY_COPY`` (then the COPY is text)."""
    names: list[str] = []
    for key in keys:
        compiled = table.c[key].type.compile(dialect=dialect)
        name = _BINARY_COPY.get(compiled.partition("(")[0].strip().upper())
        if name is None:
            return None
        names.append(name)
    return names


def refresh_statistics(connection: Connection, table: Table) -> bool:
    """PostgreSQL: ``ANALYZE`` the table now, so the planner knows its current size.

    Why by hand: autovacuum re-analyzes a table only after it notices 10 % of it
    changed, up to a minute later. Until then the planner plans from the old figures,
    and for a bank that grew from nothing to a million entries it does the wrong thing:
    asked whether 500 values are in the bank, it reads the whole bank through the
    index on (bank, signal type) and filters (0.4 s per question, measured) instead of
    looking the 500 values up (3 ms). ANALYZE samples 30,000 rows whatever the size
    (~0.1-0.5 s). Returns False on SQLite, whose planner has no such figures."""
    if connection.dialect.name != "postgresql":
        return False
    quote = connection.dialect.identifier_preparer.quote
    connection.exec_driver_sql(f"ANALYZE {quote(table.name)}")
    return True


def _convert(process: Callable[[Any], Any], values: list[Any]) -> list[Any]:
    # Most often one value for every row (the time of the insert, a flag): converted
    # once. ``count`` compares in C, and an object with itself by identity.
    if values.count(values[0]) == len(values):
        return [process(values[0])] * len(values)
    memo: dict[Any, Any] = {}
    out = []
    for v in values:
        try:
            if v not in memo:
                memo[v] = process(v)
            out.append(memo[v])
        except TypeError:  # unhashable (a JSON value): converted on its own
            out.append(process(v))
    return out


def alembic_config(engine: Engine) -> AlembicConfig:
    # Alembic is imported only to migrate: serving workers never do (12 MB each).
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (idempotent; runs at start-up)."""
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def head_revision() -> str | None:
    """The revision this version of Takedown migrates to."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
