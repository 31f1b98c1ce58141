"""Rejected webhook deliveries (bad or missing signature, body too large): recorded without
their bodies, bounded, with their own retention and a rejection-rate alert.

The receiver calls :meth:`RejectionRecorder.record` on its refusal paths only (the happy path
never touches it); it does no I/O: the record goes into an in-memory buffer that a
background task writes about once a second with one multi-row insert, in a worker thread.
Bounded so that an attacker cannot fill the database: per process and minute, the first
``WEBHOOK_REJECTIONS_RECORDED_PER_MINUTE`` rejections are recorded one by one (time, IP,
reason, size, body hash, request id); the rest are only counted, one aggregate row per
reason and flush (``ip`` NULL, ``count`` > 1, ``body_size`` their total). When a minute's
rejections reach ``WEBHOOK_REJECTION_ALERT_PER_MINUTE`` the ``webhook_rejections`` alert is
raised (grouped by the notifier: a sustained spike is one alert): a spike means a
misconfigured app secret or an attack.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from wa_core.db.schema import utcnow
from wa_core.db.schema_explorer import whatsapp_webhook_rejections as rejections

log = logging.getLogger("wa_core.explorer.rejections")


class RejectionRecorder:
    """Buffers rejected deliveries and writes them in the background (see the module doc).

    ``engine``: returns the synchronous engine to write with (called on first flush).
    ``notify``: called with an :class:`~wa_core.alerts.Alert` (in the worker thread).
    ``record`` must be called from the event loop; ``flush`` is safe from any thread.
    """

    #: seconds between a rejection and the write that records it (at most)
    FLUSH_SECONDS = 1.0

    def __init__(self, engine: Callable[[], Engine], per_minute: int, alert_per_minute: int, notify: Callable[[Any], Any] | None = None) -> None:
        self._engine, self._per_minute, self._alert_at, self._notify = engine, per_minute, alert_per_minute, notify
        self._lock = threading.Lock()
        self._rows: list[dict[str, Any]] = []
        self._aggregate: dict[str, list[int]] = {}  # reason -> [count, total bytes]
        self._minute: datetime | None = None
        self._in_minute = 0
        self._alerted_minute: datetime | None = None
        self._pending_alert: tuple[datetime, int] | None = None
        self._task: asyncio.Task | None = None
        #: rejections seen by this process, by reason (tests and metrics)
        self.seen: Counter = Counter()

    def record(self, reason: str, ip: str | None, body_size: int | None, body_sha256: str | None, request_id: str | None, now: datetime | None = None) -> None:
        """Note one rejected delivery (no I/O). ``reason``: ``missing``, ``malformed``,
        ``mismatch`` (signature) or ``too_large``; ``body_size`` in bytes; ``body_sha256`` hex
        or None when the body was not read whole. Never raises."""
        now = now or utcnow()
        minute = now.replace(second=0, microsecond=0)
        with self._lock:
            self.seen[reason] += 1
            if minute != self._minute:
                self._minute, self._in_minute = minute, 0
            self._in_minute += 1
            if self._in_minute <= self._per_minute:
                self._rows.append(dict(received_at=now, reason=reason, ip=(ip or "")[:64] or None, body_size=body_size,
                                       body_sha256=body_sha256, request_id=request_id, count=1))
            else:
                slot = self._aggregate.setdefault(reason, [0, 0])
                slot[0] += 1
                slot[1] += body_size or 0
            if self._in_minute >= self._alert_at and self._alerted_minute != minute:
                self._alerted_minute = minute
                self._pending_alert = (minute, self._in_minute)
        try:
            if self._task is None:
                self._task = asyncio.get_running_loop().create_task(self._flush_later())
        except RuntimeError:  # no running loop (a synchronous caller): write now
            self.flush()

    async def _flush_later(self) -> None:
        try:
            await asyncio.sleep(self.FLUSH_SECONDS)
        finally:
            self._task = None
        await asyncio.to_thread(self.flush)

    def flush(self) -> int:
        """Write what is buffered (one insert) and raise a pending rate alert; returns the
        rows written. Errors are logged, never raised (a lost record is not a lost webhook)."""
        with self._lock:
            rows, self._rows = self._rows, []
            minute = self._minute or utcnow().replace(second=0, microsecond=0)
            for reason, (count, size) in self._aggregate.items():
                rows.append(dict(received_at=minute, reason=reason, ip=None, body_size=size, body_sha256=None, request_id=None, count=count))
            self._aggregate = {}
            alert, self._pending_alert = self._pending_alert, None
        if rows:
            try:
                with self._engine().begin() as conn:
                    conn.execute(sa.insert(rejections), rows)
            except Exception as exc:  # noqa: BLE001
                log.warning("could not record %d rejected webhook deliveries: %s", len(rows), type(exc).__name__)
                rows = []
        if alert is not None and self._notify is not None:
            from wa_core.alerts import Alert

            at, count = alert
            self._notify(Alert(
                "webhook_rejections", "receiver",
                f"{count} webhook deliveries rejected in the minute from {at.isoformat()} (bad signature or too large): "
                "check META_APP_SECRET, or an attack",
                severity="error", details={"minute": at.isoformat(), "rejected": count},
            ))
        return len(rows)

    async def close(self) -> None:
        """Cancel the pending flush and write what is left."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        await asyncio.to_thread(self.flush)


def recent_rejections(conn: Connection, *, since: datetime | None = None, limit: int = 100) -> dict[str, Any]:
    """Rejected deliveries since ``since`` (UTC, default the last 24 h), newest first:
    ``{"counts": {reason: deliveries}, "rejections": [row…]}`` (aggregate rows have
    ``count`` > 1 and no IP). Never a body: none is stored."""
    since = since or utcnow() - timedelta(hours=24)
    c = rejections.c
    counts = {r.reason: int(r.n) for r in conn.execute(
        sa.select(c.reason, sa.func.sum(c.count).label("n")).where(c.received_at >= since).group_by(c.reason)
    )}
    latest = conn.execute(sa.select(rejections).where(c.received_at >= since).order_by(c.received_at.desc(), c.id.desc()).limit(limit))
    out = []
    for r in latest:
        item = dict(r._mapping)
        item["received_at"] = item["received_at"].isoformat()
        out.append(item)
    return {"since": since.isoformat(), "counts": counts, "rejections": out}


def purge_rejections(conn: Connection, older_than_days: float, *, now: datetime | None = None) -> int:
    """Retention (``WEBHOOK_REJECTION_RETENTION_DAYS``): delete records older than
    ``older_than_days``; returns how many rows went."""
    cutoff = (now or utcnow()) - timedelta(days=older_than_days)
    return conn.execute(sa.delete(rejections).where(rejections.c.received_at < cutoff)).rowcount


__all__ = ["RejectionRecorder", "purge_rejections", "recent_rejections"]
