"""Waking an idle processing run the moment a webhook lands, with polling as the fallback.

On Postgres the receiver sends ``NOTIFY wa_webhook_landed`` in the landing's own statement
(:mod:`wa_core.db.landing`); a run LISTENs on a dedicated psycopg 3 connection and claims as
soon as a notification arrives. Postgres delivers a notification when the notifying
transaction commits, so the row is visible by then. An idle run still claims every
``PROCESSING_LISTEN_POLL_SECONDS`` (5 s) for what no notification announces: failed rows whose
retry became due, leases of a dead run that expired, a notification lost while the listener
was reconnecting. If the listener's connection drops, the run polls every
``PROCESSING_POLL_SECONDS`` and reconnects (every :data:`RECONNECT_SECONDS`); after a reconnect
it claims once, since notifications sent meanwhile are gone.

On SQLite (no LISTEN) a run checks ``PRAGMA data_version`` every ``PROCESSING_POLL_SECONDS``:
a read of the database header that changes when any other connection committed, so an idle
run costs a few microseconds per check and claims only after a write (or every
``PROCESSING_LISTEN_POLL_SECONDS``).

A waker's :meth:`~Waker.wait` says why it returned: :data:`NOTIFIED` (a notification or a
database change), :data:`LOST` (the listener's connection dropped), :data:`RECONNECTED` (it came
back; something may have been missed) or :data:`TIMEOUT`. The processing loop claims after
anything but a timeout and counts them per run (``RunStats.wakes``).
"""

from __future__ import annotations

import logging
import sqlite3
import time

from wa_core.settings import Settings

log = logging.getLogger("wa_core.processing")

#: the channel the receiver notifies on when a webhook landed (payload: a shard number, or ''
#: for "any shard": the receiver does not know a row's lane, only its WABA)
LANDED_CHANNEL = "wa_webhook_landed"
#: a dropped listener connection is retried at most this often (seconds)
RECONNECT_SECONDS = 2.0

NOTIFIED = "notified"
RECONNECTED = "reconnected"
LOST = "lost"
TIMEOUT = "timeout"


class Waker:
    """Polling only: :meth:`wait` sleeps out its timeout. Base class of the other wakers, which
    hold a connection (``_conn``) and wait ``listen_poll_seconds`` while they have one."""

    #: True while a notification can end a wait early (the loop then waits after a partial batch
    #: instead of claiming again at once: rows landed meanwhile have announced themselves)
    notifying = False

    def __init__(self, poll_seconds: float, listen_poll_seconds: float | None = None) -> None:
        self.poll_seconds = poll_seconds
        self._listen_poll = listen_poll_seconds
        self._conn = None

    @property
    def idle_seconds(self) -> float:
        """How long an idle run waits before claiming anyway (seconds)."""
        if self._conn is not None and self._listen_poll is not None:
            return self._listen_poll
        return self.poll_seconds

    def ready(self) -> None:
        """Start listening (before the claim that precedes the first wait, so nothing landed
        in between goes unannounced)."""

    def drain(self) -> int:
        """Consume what was announced so far without waiting (called before each claim, which
        sees those rows); returns how many announcements were consumed."""
        return 0

    def wait(self, timeout: float) -> str:
        """Block up to ``timeout`` seconds; return :data:`NOTIFIED`, :data:`LOST`,
        :data:`RECONNECTED` or :data:`TIMEOUT`."""
        time.sleep(max(0.0, timeout))
        return TIMEOUT

    def close(self) -> None:
        """Release the waker's connection, if any."""
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


class LandingListener(Waker):
    """``LISTEN wa_webhook_landed`` on a dedicated autocommit psycopg 3 connection (``dsn``:
    a plain ``postgresql://`` URL). Notifications whose payload names another shard are
    ignored; an empty payload wakes every shard. Connection errors never raise: the listener
    falls back to polling and reconnects."""

    def __init__(
        self, dsn: str, *, shard: int | None = 0, poll_seconds: float = 0.2, listen_poll_seconds: float = 5.0, channel: str = LANDED_CHANNEL
    ) -> None:
        super().__init__(poll_seconds, listen_poll_seconds)
        self._dsn = dsn
        self._shard = None if shard is None else str(shard)  # None: every payload wakes
        self._channel = channel
        self._retry_at = 0.0
        self._lost = False

    @property
    def notifying(self) -> bool:  # type: ignore[override]
        return self._conn is not None

    def _connect(self) -> bool:
        import psycopg

        try:
            conn = psycopg.connect(
                self._dsn,
                autocommit=True,
                connect_timeout=5,
                # a listener that hears nothing cannot tell a quiet channel from a dead peer:
                # TCP keepalives find a silently dropped connection within about a minute
                keepalives=1,
                keepalives_idle=30,
                keepalives_interval=10,
                keepalives_count=3,
                application_name="wa_processing_listener",
            )
            conn.execute(f"LISTEN {self._channel}")
        except Exception as exc:  # noqa: BLE001 - any driver or network error: poll instead
            self._retry_at = time.monotonic() + RECONNECT_SECONDS
            if not self._lost:
                log.warning("processing listener cannot LISTEN (%s); polling every %.1fs until it can", type(exc).__name__, self.poll_seconds)
            self._lost = True
            return False
        if self._lost:
            log.info("processing listener reconnected")
        self._conn, self._lost = conn, False
        return True

    def _drop(self, exc: Exception) -> None:
        log.warning("processing listener connection lost (%s); polling every %.1fs and reconnecting", type(exc).__name__, self.poll_seconds)
        try:
            self._conn.close()
        except Exception:  # noqa: BLE001
            pass
        self._conn, self._lost = None, True
        self._retry_at = time.monotonic() + RECONNECT_SECONDS

    def _mine(self, payload: str) -> bool:
        return self._shard is None or payload == "" or payload == self._shard

    def ready(self) -> None:
        if self._conn is None:
            self._connect()

    def drain(self) -> int:
        if self._conn is None:
            return 0
        try:
            return sum(1 for _ in self._conn.notifies(timeout=0))
        except Exception as exc:  # noqa: BLE001
            self._drop(exc)
            return 0

    def wait(self, timeout: float) -> str:
        if self._conn is None:
            time.sleep(max(0.0, min(timeout, self._retry_at - time.monotonic())))
            if time.monotonic() >= self._retry_at and self._connect():
                return RECONNECTED
            return TIMEOUT
        try:
            notifies = self._conn.notifies(timeout=max(0.0, timeout))
            try:
                woken = any(self._mine(notify.payload) for notify in notifies)
            finally:
                notifies.close()  # releases the connection's lock before drain() takes it again
        except Exception as exc:  # noqa: BLE001
            self._drop(exc)
            return LOST
        if woken:
            self.drain()
            return NOTIFIED
        return TIMEOUT


class SqliteChangeWaker(Waker):
    """SQLite: ``PRAGMA data_version`` on a read-only connection of its own, checked every
    ``poll_seconds``; a wait ends early when another connection has committed."""

    def __init__(self, path: str, *, poll_seconds: float = 0.2, listen_poll_seconds: float = 5.0) -> None:
        super().__init__(poll_seconds, listen_poll_seconds)
        self._path = path
        self._version: int | None = None

    def _current(self) -> int | None:
        try:
            if self._conn is None:
                self._conn = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True, check_same_thread=False)
            return self._conn.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            self.close()  # e.g. the file was replaced: reopen next time, poll meanwhile
            return None

    def ready(self) -> None:
        self._version = self._current()

    def drain(self) -> int:
        before, self._version = self._version, self._current()
        return int(before is not None and before != self._version)

    def wait(self, timeout: float) -> str:
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return TIMEOUT
            time.sleep(min(self.poll_seconds, remaining))
            version = self._current()
            if version is not None and version != self._version:
                self._version = version
                return NOTIFIED


def make_waker(settings: Settings, *, shard: int = 0, poll_seconds: float | None = None) -> Waker:
    """The waker for ``settings``: a :class:`LandingListener` on Postgres (unless
    ``LANDING_NOTIFY`` is off), a :class:`SqliteChangeWaker` on SQLite, else polling.
    ``poll_seconds`` overrides ``PROCESSING_POLL_SECONDS``."""
    poll = settings.processing_poll_seconds if poll_seconds is None else poll_seconds
    if settings.is_postgres:
        if settings.landing_notify:
            return LandingListener(
                settings.asyncpg_dsn,  # a plain postgresql:// URL, which libpq takes as it is
                shard=shard,
                poll_seconds=poll,
                listen_poll_seconds=settings.processing_listen_poll_seconds,
            )
        return Waker(poll)
    return SqliteChangeWaker(str(settings.sqlite_path.resolve()), poll_seconds=poll, listen_poll_seconds=settings.processing_listen_poll_seconds)
