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

**Events and alerts only for a change that happened.** A plan whose events announce the move
of one row (``template.status_changed``, ``number.health_changed``…) names that write its
``gate``. The gate's statement gets ``RETURNING`` its key columns, which lists exactly the
rows the statement inserted or updated (not those the ``newer`` guard kept, nor a folded-away
write of the same batch), so a late, older webhook stores its history row but announces
nothing: :attr:`StatePlan.moved` is set by :func:`write_rows` / :func:`apply_rows` and
:meth:`StatePlan.announced` / :meth:`StatePlan.raised` return the events / alerts only when
it moved. Under concurrency the conflicting row is locked and the guard evaluated on its
committed version, so two batches cannot both announce opposite moves. A redelivery (same
order value) moves the row again, and its event has the same id (written once, see
:mod:`wa_core.events.outbox`); the notifier groups the repeated alert.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .bulk import chunks, is_postgres, pg_insert, sqlite_insert, sqlite_upsert

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
    #: the write (one of ``rows``) whose move the events and alerts announce; None: always
    gate: RowWrite | None = None
    #: whether ``gate`` moved its row in the last write of this plan (set by the writers)
    moved: bool = True

    def announced(self) -> list[EventSpec]:
        """The events to write: all of them unless the gate's row did not move."""
        return self.events if self.moved else []

    def raised(self) -> list["Alert"]:
        """The alerts to raise after the commit: all of them unless the gate's row did not move."""
        return self.alerts if self.moved else []


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


def _norm(key: Sequence[Any]) -> tuple[Any, ...]:
    # a returned key as the planned one (a uuid column comes back as uuid.UUID, text as str)
    return tuple(None if v is None else str(v) for v in key)


def _write_group(conn: Connection, group: Sequence[RowWrite], gates: frozenset[int] = frozenset()) -> set[int]:
    """Write one shape's ``group``; returns the ``id()`` of the writes among ``gates`` whose
    row the statement inserted or updated (``RETURNING`` only when the group holds a gate)."""
    first = group[0]
    names = tuple(sorted(first.values))
    rows = [w.values for w in group]
    gated = [w for w in group if id(w) in gates]
    if is_postgres(conn):
        if not gated:
            pg_insert(conn, first.table, rows, names, _pg_tail(first))
            return set()
        result = pg_insert(conn, first.table, rows, names, f"{_pg_tail(first)} RETURNING {', '.join(first.key)}")
        moved = {_norm(r) for r in result}
        return {id(w) for w in gated if _norm(w.key_value()) in moved}
    from sqlalchemy.dialects.sqlite import insert

    where = None
    if first.update and first.newer:
        stored, arriving = first.table.c[first.newer], insert(first.table).excluded[first.newer]
        where = sa.or_(stored.is_(None), sa.and_(arriving.is_not(None), stored <= arriving))
    if not gated:
        for part in chunks(rows):
            sqlite_insert(conn, first.table, part, names, first.key, first.update, where)
        return set()
    # SQLite (the embedded default): row by row, with RETURNING
    stmt = sqlite_upsert(first.table, first.key, first.update, where).returning(*(first.table.c[k] for k in first.key))
    out = set()
    for write in group:
        if conn.execute(stmt, {n: write.values.get(n) for n in names}).first() is not None and id(write) in gates:
            out.add(id(write))
    return out


def write_rows(conn: Connection, writes: Iterable[RowWrite], gates: Iterable[RowWrite] = ()) -> set[int]:
    """Write ``writes`` (in item order) set-based within the caller's transaction: one
    statement per shape (Postgres ``unnest``; SQLite ``executemany``). Shapes are written in
    the order they first appear, so a parent table planned before its children is written
    first. Returns the ``id()`` of the writes among ``gates`` (:attr:`StatePlan.gate`) that
    moved their row: a gate folded away by a winning write of its key, or kept out by the
    ``newer`` guard, is not in it. Database errors propagate (the engine then splits the batch)."""
    wanted = frozenset(id(g) for g in gates)
    moved: set[int] = set()
    for group in fold(writes):
        moved |= _write_group(conn, group, wanted)
    return moved


def apply_rows(conn: Connection, plan: StatePlan) -> str:
    """The per-item path: ``plan``'s rows one statement each, setting :attr:`StatePlan.moved`
    from its gate; returns ``"processed"``."""
    gates = frozenset({id(plan.gate)}) if plan.gate is not None else frozenset()
    moved: set[int] = set()
    for write in plan.rows:
        moved |= _write_group(conn, [write], gates)
    plan.moved = plan.gate is None or id(plan.gate) in moved
    return "processed"


__all__ = ["EventSpec", "RowWrite", "StatePlan", "apply_rows", "fold", "write_rows"]
