"""Generic state writes for the fields other than messages: templates, number health, calls,
groups, preferences, typed records, media rows.

A handler of such a field plans a :class:`StatePlan`: a list of :class:`RowWrite` (one row of
one table each) and the alerts to raise once the batch has committed. The engine writes
the state plans of a whole batch set-based, like messages (:func:`write_rows`): the writes
of one shape (table, conflict key, updated columns, order column, column set) become one
multi-row ``INSERT … ON CONFLICT`` statement. The per-item fallback path applies the same
rows one by one (:func:`apply_rows`), so both paths leave the same state.

Order safety comes from the **order column** (``newer``, usually Meta's event time in UTC):
a row that exists already is only updated when the arriving row's order value is at least
the stored one, or when the stored row has none. An arriving row without one (Meta omits
times in some shapes) only fills a row that has no order value yet: it never overwrites a
dated state, so it cannot open the door to an older event either. Within one batch, the writes of a key are folded first: the one with the highest
order value wins, the later one on a tie, exactly as applying them one after the other would
leave it. An append-only history row is a write with ``update=()``: inserted once per key
(``ON CONFLICT DO NOTHING``), so a redelivered webhook never adds a second history row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .bulk import chunks, is_postgres, pg_insert, sqlite_insert

if TYPE_CHECKING:
    from wa_core.alerts import Alert


@dataclass(slots=True)
class RowWrite:
    """One row of ``table``: inserted, or merged into the row with the same ``key``.

    - ``values``: column → value (every ``key`` column included; text already checked by
      :func:`~wa_core.processing.records.prepare`).
    - ``key``: the columns of a unique index or primary key of ``table`` (the conflict target).
    - ``update``: the columns set from the arriving row on a conflict; ``()`` keeps the stored
      row (append-only history, or "create if missing").
    - ``newer``: the order column (e.g. ``event_at``); on a conflict the row is only updated
      when ``stored.newer`` is NULL or ``<= arriving.newer`` (an arriving NULL never replaces
      a stored value). None: always updated.
    """

    table: sa.Table
    values: dict[str, Any]
    key: tuple[str, ...]
    update: tuple[str, ...] = ()
    newer: str | None = None

    def key_value(self) -> tuple[Any, ...]:
        """The values of ``key`` (how writes of one row are recognised)."""
        return tuple(self.values[k] for k in self.key)


@dataclass(slots=True)
class EventSpec:
    """An event for the SaaS's event feed that an item produces when it is applied (issue
    "event feed"): written in the same transaction as the item's rows.

    - ``organization_id``: the tenant the event belongs to.
    - ``type``: e.g. ``template.status_changed``, ``number.health_changed``, ``call.connect``.
    - ``key``: stable for the change, so a redelivered webhook never makes a second event
      (e.g. ``f"{template_id}:{event_at.isoformat()}:{status}"``); unique per type.
    - ``payload``: small JSON with the ids the CRM needs (never the raw body).
    - ``occurred_at``: Meta's time of the change (UTC), or our arrival time without one.
    """

    organization_id: Any
    type: str
    key: str
    payload: dict[str, Any]
    occurred_at: datetime


@dataclass(slots=True)
class StatePlan:
    """The rows one item of a state field writes, in order (a parent before the rows that
    refer to it), the events it produces for the event feed, and the alerts raised after
    the batch has committed (never for an item whose write was rolled back)."""

    rows: list[RowWrite]
    alerts: list["Alert"] = field(default_factory=list)
    events: list[EventSpec] = field(default_factory=list)


def _shape(write: RowWrite) -> tuple[Any, ...]:
    return (write.table.name, write.key, write.update, write.newer, tuple(sorted(write.values)))


def _wins(stored: RowWrite, arriving: RowWrite) -> bool:
    """Whether ``arriving`` replaces ``stored`` (same key) when applied after it."""
    if not arriving.update:
        return False  # insert-once: the first write of a key stays
    if arriving.newer is None:
        return True
    a, b = stored.values.get(arriving.newer), arriving.values.get(arriving.newer)
    return a is None or (b is not None and _comparable(a) <= _comparable(b))


def _comparable(value: Any) -> Any:
    return value.timestamp() if isinstance(value, datetime) else value


def fold(writes: Iterable[RowWrite]) -> list[list[RowWrite]]:
    """``writes`` grouped by shape (first appearance order), each group holding one write per
    key (the one that wins, :func:`_wins`), sorted by key so concurrent batches lock rows in
    the same order."""
    groups: dict[tuple[Any, ...], dict[tuple[Any, ...], RowWrite]] = {}
    for write in writes:
        per_key = groups.setdefault(_shape(write), {})
        key = write.key_value()
        stored = per_key.get(key)
        if stored is None or _wins(stored, write):
            per_key[key] = write
    return [[per_key[k] for k in sorted(per_key, key=_sort_key)] for per_key in groups.values()]


def _sort_key(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((v is None, str(v)) for v in key)


def _pg_tail(write: RowWrite) -> str:
    conflict = ", ".join(write.key)
    if not write.update:
        return f"ON CONFLICT ({conflict}) DO NOTHING"
    t = write.table.name
    sets = ", ".join(f"{c} = excluded.{c}" for c in write.update)
    tail = f"ON CONFLICT ({conflict}) DO UPDATE SET {sets}"
    if write.newer:
        n = write.newer
        tail += f" WHERE {t}.{n} IS NULL OR (excluded.{n} IS NOT NULL AND {t}.{n} <= excluded.{n})"
    return tail


def _write_group(conn: Connection, group: Sequence[RowWrite]) -> None:
    first = group[0]
    names = tuple(sorted(first.values))
    rows = [w.values for w in group]
    if is_postgres(conn):
        pg_insert(conn, first.table, rows, names, _pg_tail(first))
        return
    where = None
    if first.update and first.newer:
        from sqlalchemy.dialects.sqlite import insert

        stored, arriving = first.table.c[first.newer], insert(first.table).excluded[first.newer]
        where = sa.or_(stored.is_(None), sa.and_(arriving.is_not(None), stored <= arriving))
    for part in chunks(rows):
        sqlite_insert(conn, first.table, part, names, first.key, first.update, where)


def write_rows(conn: Connection, writes: Iterable[RowWrite]) -> None:
    """Write ``writes`` (in item order) set-based within the caller's transaction: one
    statement per shape (Postgres ``unnest``; SQLite ``executemany``). Shapes are written in
    the order they first appear, so a parent table planned before its children is written
    first. Database errors propagate (the engine then splits the batch)."""
    for group in fold(writes):
        _write_group(conn, group)


def apply_rows(conn: Connection, plan: StatePlan) -> str:
    """The per-item path: ``plan``'s rows one statement each; returns ``"processed"``."""
    for write in plan.rows:
        _write_group(conn, [write])
    return "processed"


__all__ = ["EventSpec", "RowWrite", "StatePlan", "apply_rows", "fold", "write_rows"]
