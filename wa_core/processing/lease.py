"""Leases that hold while a batch is applied.

A claim leases its rows until ``locked_until`` (``PROCESSING_LEASE_SECONDS``). The run that
applies them renews the lease while it works, so only a dead run's rows are ever claimed
again and a huge webhook is never applied by two runs at once:

- on Postgres a heartbeat thread (:class:`LeaseKeeper`) renews every ``lease / 3`` seconds
  on its own connection;
- on SQLite (one writer at a time, a heartbeat would wait for the batch's own write
  transaction) each write transaction of the batch renews the lease just before it commits
  (:func:`renew_leases` on the batch's connection).

Every renewal, and the outcome write, is guarded by claim ownership: a row is identified by
its id *and* the ``attempts`` value its claim gave it. A run whose lease ran out and whose
rows another run claimed since (``attempts`` moved on) renews nothing and stores no outcome.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from wa_core.db.schema import utcnow, whatsapp_webhook_logs as logs

from .bulk import is_postgres
from .claim import ClaimedRow

log = logging.getLogger("wa_core.processing")

_PG_RENEW = """
UPDATE whatsapp_webhook_logs AS l SET locked_until = %(until)b
FROM unnest(%(ids)b::bigint[], %(attempts)b::integer[]) AS v(id, attempts)
WHERE l.id = v.id AND l.attempts = v.attempts AND l.locked_until IS NOT NULL AND l.status IN ('pending', 'failed')
"""


def renew_leases(conn: Connection, rows: Sequence[ClaimedRow], lease_seconds: float) -> int:
    """Extend the lease of ``rows`` still owned by their claim to now + ``lease_seconds``,
    within the caller's transaction; returns how many rows were renewed."""
    if not rows:
        return 0
    until = utcnow() + timedelta(seconds=lease_seconds)
    if is_postgres(conn):
        params = {"until": until, "ids": [r.id for r in rows], "attempts": [r.attempts for r in rows]}
        return conn.exec_driver_sql(_PG_RENEW, params).rowcount
    stmt = (
        sa.update(logs)
        .where(logs.c.id == sa.bindparam("b_id"), logs.c.attempts == sa.bindparam("b_attempts"), logs.c.locked_until.is_not(None),
               sa.or_(logs.c.status == "pending", logs.c.status == "failed"))
        .values(locked_until=until)
    )
    return conn.execute(stmt, [{"b_id": r.id, "b_attempts": r.attempts} for r in rows]).rowcount


class LeaseKeeper:
    """Context manager: on Postgres, renews the lease of ``rows`` every ``lease_seconds / 3``
    seconds from a thread until the block ends (does nothing on SQLite, see the module
    docstring). A failed renewal is logged and retried at the next beat; the block itself is
    never interrupted."""

    def __init__(self, engine: Engine, rows: Sequence[ClaimedRow], lease_seconds: float) -> None:
        self.engine, self.rows, self.lease_seconds = engine, list(rows), lease_seconds
        self.interval = max(0.05, lease_seconds / 3)
        self.renewals = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LeaseKeeper:
        if self.rows and self.engine.dialect.name == "postgresql":
            self._thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)
            self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with self.engine.begin() as conn:
                    renew_leases(conn, self.rows, self.lease_seconds)
                self.renewals += 1
            except Exception as exc:  # noqa: BLE001 - the next beat tries again; the batch goes on
                log.warning("lease renewal failed (%s); retrying in %.1f s", type(exc).__name__, self.interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


__all__ = ["LeaseKeeper", "renew_leases"]
