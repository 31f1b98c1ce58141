"""Synchronous SQLAlchemy engines (pipelines, CLI, migrations) and dialect helpers."""

from __future__ import annotations

from collections.abc import Sequence
import math
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from wa_core.settings import Settings, get_settings


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the receiver write while a processing run reads; the connection's timeout
    # (DB_TIMEOUT_SECONDS) makes writers wait for each other instead of failing at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_sync_engine(settings: Settings | None = None, **kwargs: Any) -> Engine:
    """Build a synchronous engine for ``settings`` (psycopg 3 on Postgres, pysqlite otherwise).

    The SQLite file's folder is created if needed. Extra ``kwargs`` go to
    :func:`sqlalchemy.create_engine`.
    """
    settings = settings or get_settings()
    url = settings.sync_database_url
    kwargs.setdefault("hide_parameters", True)  # errors and logs never carry payload values
    if url.startswith("sqlite"):
        settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": settings.db_timeout_seconds}, **kwargs)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN; emit it ourselves so that
        # a claim's read and write happen in one write transaction.
        @sa.event.listens_for(engine, "connect")
        def _no_autobegin(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None

        @sa.event.listens_for(engine, "begin")
        def _begin_immediate(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(url, **kwargs)


def create_processing_engine(settings: Settings | None = None, **kwargs: Any) -> Engine:
    """Engine for processing runs: on Postgres, sessions use ``synchronous_commit = off``.

    Safe because a webhook's effects and its ``processed`` mark commit in the same
    transaction: if Postgres crashes before flushing the tail of the WAL, both are lost
    together and the row is simply processed again (every write is idempotent). The
    receiver's landing insert keeps fully durable commits: that one answers Meta.
    """
    kwargs.setdefault("pool_pre_ping", False)  # a run is short-lived; a dead connection fails the run, rows retry
    engine = create_sync_engine(settings, **kwargs)
    if engine.dialect.name == "postgresql":

        @sa.event.listens_for(engine, "connect")
        def _async_commit(dbapi_connection: Any, _record: Any) -> None:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SET synchronous_commit TO OFF")
            dbapi_connection.commit()

    return engine


def storable(value: Any) -> Any:
    """``value`` made storable in text and jsonb columns of both databases, recursively.

    NUL characters are removed and lone surrogates replaced (Postgres cannot store them,
    SQLite cannot encode them); non-finite floats become None and integers beyond 64 bits
    become strings (jsonb and SQLite refuse them). The exact bytes stay in
    ``whatsapp_webhook_logs.body``, so nothing is lost.
    """
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "replace").decode("utf-8")
        return value
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else str(value)
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    return value


def insert_ignore(conn: Connection, table: sa.Table, values: dict[str, Any], conflict: Sequence[str]) -> bool:
    """``INSERT … ON CONFLICT (conflict) DO NOTHING`` on Postgres or SQLite.

    Returns True when a row was inserted, False when one with the same key existed.
    """
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    values = {key: storable(value) for key, value in values.items()}
    stmt = dialect.insert(table).values(**values).on_conflict_do_nothing(index_elements=list(conflict))
    # RETURNING, not rowcount: drivers disagree on rowcount for INSERT … ON CONFLICT
    return conn.execute(stmt.returning(sa.literal(1))).first() is not None


def upsert(
    conn: Connection,
    table: sa.Table,
    values: dict[str, Any],
    conflict: Sequence[str],
    update: dict[str, Any],
    returning: sa.ColumnElement | None = None,
) -> Any:
    """``INSERT … ON CONFLICT (conflict) DO UPDATE SET update`` on Postgres or SQLite.

    Returns the ``returning`` column's value when given, else None.
    """
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table).values(**values)
    stmt = stmt.on_conflict_do_update(index_elements=list(conflict), set_=update)
    if returning is not None:
        return conn.execute(stmt.returning(returning)).scalar_one()
    conn.execute(stmt)
    return None
