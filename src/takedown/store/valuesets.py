"""Many values as one bound parameter: ``column IN (SELECT value FROM <the values>)``.

A report about an item with 100,000 copies walks, updates and inserts rows for all of
them. Passing the ids as ``IN (:p1, …, :p5000)`` in chunks makes SQLAlchemy build and
bind 100,000 parameters per statement (seconds of CPU before the database sees the
query); here the whole set is one parameter: a JSON array read by ``json_each`` on
SQLite; on PostgreSQL an array literal (``'{1,2,3}'``) cast to ``bigint[]`` and read by
``unnest``, or for text a JSON array read by ``json_array_elements_text``. One text
parameter, not a Python list: psycopg adapts a list element by element in Python (about
1.7 ms of CPU for 2,000 values, ten times the text's).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from sqlalchemy import JSON, BigInteger, String, any_, bindparam, cast, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql import ColumnElement, Select


def value_set(session: Session, values: Collection[int] | Collection[str]) -> Select[Any]:
    """A one-column ``SELECT value`` of ``values`` (all ints or all strings)."""
    if session.get_bind().dialect.name == "postgresql":
        if all(isinstance(v, int) for v in values):
            param = bindparam(None, _int_array(values), type_=String())  # type: ignore[arg-type]
            ints = cast(param, ARRAY(BigInteger()))
            table = func.unnest(ints).table_valued("value").render_derived()
        else:
            text = cast(bindparam(None, json.dumps(list(values)), type_=String()), JSON())
            table = func.json_array_elements_text(text).table_valued("value")
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


def in_ids(
    session: Session,
    column: ColumnElement[Any] | InstrumentedAttribute[Any],
    ids: Collection[int],
) -> ColumnElement[bool]:
    """``column`` is one of ``ids`` (integers), one bound parameter however many: on
    PostgreSQL ``column = ANY(CAST(:ids AS BIGINT[]))``, which the planner reads as a
    primary-key lookup of exactly ``len(ids)`` rows (``IN (SELECT unnest(...))`` is
    estimated at 200 rows whatever it holds, and with stale statistics on the other
    conditions it chose a nested loop comparing every row with every id: 0.25 s to
    acknowledge 2,000 outbox rows instead of a few ms); on SQLite :func:`in_values`."""
    if session.get_bind().dialect.name == "postgresql":
        param = bindparam(None, _int_array(ids), type_=String())
        return column == any_(cast(param, ARRAY(BigInteger())))
    return in_values(session, column, ids)


def named_value_set(dialect: str, name: str) -> Select[Any]:
    """``SELECT value`` of the integers bound later as ``name`` (pass
    :func:`value_set_argument`): for statements built once and run many times."""
    if dialect == "postgresql":
        ints = cast(bindparam(name, type_=String()), ARRAY(BigInteger()))
        table = func.unnest(ints).table_valued("value").render_derived()
    else:
        table = func.json_each(bindparam(name, type_=String())).table_valued("value")
    return select(table.c.value)


def value_set_argument(dialect: str, values: Collection[int]) -> object:
    """The value of a :func:`named_value_set` parameter."""
    return _int_array(values) if dialect == "postgresql" else json.dumps(list(values))


def _int_array(values: Collection[int]) -> str:
    """PostgreSQL's literal of an integer array, ``{1,2,3}``."""
    return "{" + ",".join(str(int(v)) for v in values) + "}"
