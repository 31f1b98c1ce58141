"""Multi-row statements for both databases: ``unnest`` arrays on Postgres, ``executemany`` elsewhere.

On Postgres a whole table's rows of a batch go in one statement,
``INSERT … SELECT … FROM unnest(%(col)b::type[], …) ON CONFLICT …`` (or ``UPDATE … FROM
unnest(…)``), sent through the driver with the SQL text built once per shape and the arrays
in binary (``%b``: about 7× cheaper to send than text arrays, which psycopg quotes element by
element). ``bench/insert_methods.py`` measured 1,000 message rows: binary ``unnest`` 31 ms,
text ``unnest`` 101 ms, pipelined ``executemany`` 39 ms, ``COPY`` into a temporary table then
``INSERT … SELECT`` 27 ms. ``COPY`` is a little faster but needs a temporary table per session
and a second statement per table; ``unnest`` is one statement that works the same for inserts,
upserts and updates (docs/benchmarks.md, "Processing engine v2"). SQLite (the embedded
default) runs the equivalent SQLAlchemy Core statement as an ``executemany``.
"""

from __future__ import annotations

import json

import orjson
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection

#: Postgres array element type per column type of the tables written in bulk
_PG_TYPES: dict[type, str] = {
    sa.Uuid: "uuid",
    sa.String: "text",
    sa.Text: "text",
    sa.SmallInteger: "smallint",
    sa.BigInteger: "bigint",
    sa.Integer: "integer",
    sa.Boolean: "boolean",
    sa.Numeric: "numeric",
    sa.DateTime: "timestamptz",
    sa.JSON: "jsonb",
}


def pg_type(column: sa.Column) -> str:
    """The Postgres element type ``column`` is sent as (``jsonb`` travels as text)."""
    kind = column.type
    for cls in type(kind).__mro__:
        if cls in _PG_TYPES:
            return _PG_TYPES[cls]
    raise TypeError(f"no array type for {column}")  # pragma: no cover - schema change


def is_postgres(conn: Connection) -> bool:
    """True on Postgres (the set-based statements), False on SQLite (``executemany``)."""
    return conn.dialect.name == "postgresql"


class JsonText(str):
    """A ``jsonb`` value already serialised (sent as is, not encoded again); Postgres only."""

    __slots__ = ()


def _dumps(value: Any) -> str | None:
    # orjson: the same compact JSON as json.dumps(ensure_ascii=False, separators=(",", ":")),
    # several times faster; values reach here storable (no NaN, no lone surrogate, 64-bit ints)
    if value is None or type(value) is JsonText:
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # what orjson refuses (e.g. an int beyond 64 bits): the standard encoder says why
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


@lru_cache(maxsize=64)
def _unnest_sql(table: str, columns: tuple[tuple[str, str], ...]) -> tuple[str, str]:
    """(``unnest(…) AS v(…)`` source, select list) for ``columns`` of ``table``."""
    arrays = ", ".join(f"%({name})b::{'text' if kind == 'jsonb' else kind}[]" for name, kind in columns)
    names = ", ".join(name for name, _ in columns)
    select = ", ".join(f"v.{name}::jsonb" if kind == "jsonb" else f"v.{name}" for name, kind in columns)
    return f"unnest({arrays}) AS v({names})", select


def columns_of(table: sa.Table, names: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """(name, Postgres type) of ``names`` in ``table``."""
    return tuple((name, pg_type(table.c[name])) for name in names)


def arrays(columns: Sequence[tuple[str, str]], rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """One list per column over ``rows`` (missing keys are NULL; JSON as text)."""
    out: dict[str, list[Any]] = {}
    for name, kind in columns:
        values = [row.get(name) for row in rows]
        out[name] = [_dumps(v) for v in values] if kind == "jsonb" else values
    return out


def pg_insert(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]], names: Sequence[str], tail: str) -> Any:
    """``INSERT INTO table (names) SELECT … FROM unnest(…) <tail>`` (``tail``: the ``ON
    CONFLICT`` and ``RETURNING`` clauses) in one statement; returns the cursor result."""
    columns = columns_of(table, names)
    source, select = _unnest_sql(table.name, columns)
    sql = f"INSERT INTO {table.name} ({', '.join(names)}) SELECT {select} FROM {source} {tail}"
    return conn.exec_driver_sql(sql, arrays(columns, rows))


def pg_from(conn: Connection, sql: str, table: sa.Table, rows: Sequence[dict[str, Any]], names: Sequence[str]) -> Any:
    """Run ``sql`` with ``{source}`` replaced by ``unnest(…) AS v(names)`` over ``rows`` (for
    ``UPDATE … FROM {source}`` and joins); returns the cursor result."""
    columns = columns_of(table, names)
    source, _ = _unnest_sql(table.name, columns)
    return conn.exec_driver_sql(sql.replace("{source}", source), arrays(columns, rows))


def keys_source(conn: Connection, keys: Sequence[tuple[str, str]]) -> tuple[str, dict[str, Any]]:
    """(``unnest(%(k1)b::text[], %(k2)b::text[]) AS k(a, b)``, params) for pairs of text keys."""
    return "unnest(%(k1)b::text[], %(k2)b::text[]) AS k(a, b)", {"k1": [a for a, _ in keys], "k2": [b for _, b in keys]}


def sqlite_insert(
    conn: Connection,
    table: sa.Table,
    rows: Sequence[dict[str, Any]],
    names: Sequence[str],
    conflict: Sequence[str],
    update: Sequence[str] = (),
    where: Any = None,
) -> None:
    """The SQLite ``executemany`` twin of :func:`pg_insert`: :func:`sqlite_upsert` over ``rows``."""
    conn.execute(sqlite_upsert(table, conflict, update, where), [{name: row.get(name) for name in names} for row in rows])


def sqlite_upsert(table: sa.Table, conflict: Sequence[str], update: Sequence[str] = (), where: Any = None) -> Any:
    """SQLite ``INSERT … ON CONFLICT (conflict) DO NOTHING``, or ``DO UPDATE SET`` the ``update``
    columns from ``excluded`` when ``where``: the statement, to execute or extend (``RETURNING``)."""
    stmt = sqlite.insert(table)
    if update:
        return stmt.on_conflict_do_update(index_elements=list(conflict), set_={c: stmt.excluded[c] for c in update}, where=where)
    return stmt.on_conflict_do_nothing(index_elements=list(conflict))


def chunks(items: Sequence[Any], size: int = 500) -> Iterable[Sequence[Any]]:
    """``items`` in slices of ``size`` (SQLite binds at most 32,766 parameters a statement)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


__all__ = ["JsonText", "arrays", "chunks", "columns_of", "is_postgres", "keys_source", "pg_from", "pg_insert", "pg_type", "sqlite_insert", "sqlite_upsert"]
