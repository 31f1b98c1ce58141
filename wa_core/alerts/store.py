"""Alert grouping: one open alert per fingerprint, repeats counted, re-sent at most every
``ALERT_REPEAT_SECONDS``.

With an engine the state lives in ``ops_alerts`` (one row per fingerprint: :func:`record_db`,
:func:`resolve_db`), so every process (sensors, runs, checks) shares it; without one (the
receiver's request path) it lives in a process-wide :class:`MemoryGroups` with the same rule.
An open alert sent less than ``ALERT_REPEAT_SECONDS`` ago only counts an occurrence; a
resolved alert that occurs again reopens (``first_seen_at`` and ``occurrences`` start again)
and is sent.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from hashlib import sha256
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from wa_core.db.engine import insert_ignore, storable
from wa_core.db.schema import as_utc, ops_alerts, utcnow

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from wa_core.alerts.notifier import Alert

#: in-process grouping keeps at most this many fingerprints (least recently seen dropped)
MEMORY_MAX_FINGERPRINTS = 10_000


def stored_fingerprint(kind: str, key: str) -> str:
    """The ``ops_alerts.fingerprint`` of (kind, key): ``"kind:key"``, or when that is longer
    than the column's 255 characters, its first 238 characters, ``~`` and 16 hex of its SHA-256."""
    fingerprint = f"{str(kind)[:64]}:{key}"
    if len(fingerprint) <= 255:
        return fingerprint
    return fingerprint[:238] + "~" + sha256(fingerprint.encode()).hexdigest()[:16]


# --- in-process grouping -----------------------------------------------------------------


@dataclass
class _Open:
    first_seen: float
    last_seen: float
    last_sent: float
    occurrences: int
    resolved: bool = False


class MemoryGroups:
    """In-process grouping state (thread-safe), shared by every engine-less notifier of the
    process: same rule as ``ops_alerts``, times from ``time.monotonic()`` (seconds)."""

    def __init__(self, max_fingerprints: int = MEMORY_MAX_FINGERPRINTS) -> None:
        self._lock = threading.Lock()
        self._open: OrderedDict[str, _Open] = OrderedDict()
        self._max = max_fingerprints

    def record(self, fingerprint: str, repeat_seconds: float) -> tuple[bool, int]:
        """Count one occurrence; returns ``(send, occurrences)``."""
        now = time.monotonic()
        with self._lock:
            entry = self._open.get(fingerprint)
            if entry is None or entry.resolved:
                self._open[fingerprint] = _Open(now, now, now, 1)
                self._open.move_to_end(fingerprint)
                while len(self._open) > self._max:
                    self._open.popitem(last=False)
                return True, 1
            entry.occurrences += 1
            entry.last_seen = now
            self._open.move_to_end(fingerprint)
            if now - entry.last_sent >= repeat_seconds:
                entry.last_sent = now
                return True, entry.occurrences
            return False, entry.occurrences

    def resolve(self, fingerprint: str) -> bool:
        """Mark an open fingerprint resolved; False when none was open."""
        with self._lock:
            entry = self._open.get(fingerprint)
            if entry is None or entry.resolved:
                return False
            entry.resolved = True
            return True

    def clear(self) -> None:
        """Forget everything (tests)."""
        with self._lock:
            self._open.clear()


#: the process-wide in-process grouping state
PROCESS_GROUPS = MemoryGroups()


# --- shared grouping in ops_alerts --------------------------------------------------------


def record_db(engine: Engine, alert: Alert, fingerprint: str, repeat_seconds: float) -> tuple[bool, int]:
    """Count one occurrence of the (normalized) ``alert`` in its ``ops_alerts`` row, in one
    short transaction (the row locked ``FOR UPDATE`` on Postgres); returns ``(send,
    occurrences)``: send when the row is new, was resolved (reopened: ``first_seen_at`` and
    ``occurrences`` start again) or was last sent ``repeat_seconds`` or more ago (then
    ``last_sent_at`` moves to now, UTC). Raises what the database raises."""
    now = utcnow()
    content = storable(
        {
            "kind": alert.kind,
            "key": alert.key[:255],
            "severity": alert.severity,
            "summary": alert.summary,
            "details": dict(alert.details),
        }
    )
    with engine.begin() as conn:
        fresh = {
            "fingerprint": fingerprint,
            **content,
            "organization_id": alert.organization_id,
            "first_seen_at": now,
            "last_seen_at": now,
            "last_sent_at": now,
            "occurrences": 1,
            "resolved_at": None,
        }
        if insert_ignore(conn, ops_alerts, fresh, ["fingerprint"]):
            return True, 1
        # the row exists: lock it (Postgres; SQLite's BEGIN IMMEDIATE already serializes)
        row = conn.execute(
            sa.select(ops_alerts.c.last_sent_at, ops_alerts.c.occurrences, ops_alerts.c.resolved_at)
            .where(ops_alerts.c.fingerprint == fingerprint)
            .with_for_update()
        ).one()
        reopened = row.resolved_at is not None
        last_sent: datetime | None = as_utc(row.last_sent_at)
        send = reopened or last_sent is None or (now - last_sent).total_seconds() >= repeat_seconds
        occurrences = 1 if reopened else row.occurrences + 1
        values: dict[str, Any] = {**content, "last_seen_at": now, "occurrences": occurrences, "resolved_at": None}
        if alert.organization_id is not None:
            values["organization_id"] = alert.organization_id
        if reopened:
            values["first_seen_at"] = now
        if send:
            values["last_sent_at"] = now
        conn.execute(sa.update(ops_alerts).where(ops_alerts.c.fingerprint == fingerprint).values(**values))
        return send, occurrences


def resolve_db(engine: Engine, fingerprint: str) -> bool:
    """Set ``resolved_at`` (UTC) on the open ``ops_alerts`` row of ``fingerprint``; False when
    none was open. Raises what the database raises."""
    with engine.begin() as conn:
        closed = conn.execute(
            sa.update(ops_alerts)
            .where(ops_alerts.c.fingerprint == fingerprint, ops_alerts.c.resolved_at.is_(None))
            .values(resolved_at=utcnow())
            .returning(ops_alerts.c.fingerprint)
        ).first()
    return closed is not None
