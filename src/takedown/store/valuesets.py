"""Many values as one bound parameter: ``column IN (SELECT value FROM <the values>)``.

A report about an item with 100,000 copies walks, updates and inserts rows for all of
them. Passing the ids as ``IN (:p1, …, :p5000)`` in chunks makes SQLAlchemy build and
bind 100,000 parameters per statement (seconds of CPU before the database sees the
query); here the whole set is one parameter: a JSON array read by ``json_each`` on
SQLite, an array read by ``unnest`` on PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from sqlalchemy import BigInteger, String, Text, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql import ColumnElement, Select


def value_set(session: Session, values: Collection[int] | Collection[str]) -> Select[Any]:
    """A one-column ``SELECT value`` of ``values`` (all ints or all strings)."""
    if session.get_bind().dialect.name == "postgresql":
        ints = all(isinstance(v, int) for v in values)
        param = bindparam(None, list(values), type_=ARRAY(BigInteger() if ints else Text()))
        table = func.unnest(param).table_valued("value").render_derived()
    else:
        param = bindparam(None, json.dumps(list(values)), type_=String())
        table = func.json_each(param).table_valued("value")
    return select(table.c.value)


def in_values(
    session: Session,
    column: ColumnElement[Any] | InstrumentedAttribute[Any],
    values: Collection[int] | Collection[str],
) -> ColumnElement[bool]:
    """``column IN (the values)``, one bound parameter however many values."""
    return column.in_(value_set(session, values))


def named_value_set(dialect: str, name: str) -> Select[Any]:
    """``SELECT value`` of the integers bound later as ``name`` (pass
    :func:`value_set_argument`): for statements built once and run many times."""
    if dialect == "postgresql":
        param = bindparam(name, type_=ARRAY(BigInteger()))
        table = func.unnest(param).table_valued("value").render_derived()
    else:
        table = func.json_each(bindparam(name, type_=String())).table_valued("value")
    return select(table.c.value)


def value_set_argument(dialect: str, values: Collection[int]) -> object:
    """The value of a :func:`named_value_set` parameter."""
    return list(values) if dialect == "postgresql" else json.dumps(list(values))
