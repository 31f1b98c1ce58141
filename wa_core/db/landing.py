"""The landing store: one durable INSERT per webhook, done by the receiver before it answers 200.

Postgres uses an asyncpg pool (the fastest driver measured for this single insert, see
``docs/benchmarks.md``); the embedded SQLite default uses the synchronous engine in a worker
thread. Both commit before :meth:`LandingStore.land` returns.

On Postgres each landing is then announced with ``NOTIFY wa_webhook_landed`` so that idle
processing runs, which LISTEN, claim at once (:mod:`wa_core.processing.wake`); see
:class:`LandingAnnouncer` for why the notification is sent after the insert's commit and not
inside its transaction. ``LANDING_NOTIFY=false`` turns it off (runs then find rows by their
fallback poll).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import anyio
import sqlalchemy as sa

from wa_core.db.engine import create_sync_engine
from wa_core.db.schema import utcnow, whatsapp_webhook_logs
from wa_core.processing.wake import LANDED_CHANNEL
from wa_core.routing import routing_waba_id
from wa_core.settings import Settings

log = logging.getLogger("wa_core.db.landing")

class LandingUnavailable(Exception):
    """The database could not take the webhook; the receiver answers 503 so Meta redelivers."""


@dataclass(frozen=True)
class LandedWebhook:
    """One webhook as received: exact body bytes and what we know at the edge."""

    body: bytes
    signature_status: str
    request_id: str
    received_at: datetime

    @property
    def body_sha256(self) -> str:
        """Hex SHA-256 of the body, for deduplication and audits."""
        return hashlib.sha256(self.body).hexdigest()

    @property
    def waba_id(self) -> str | None:
        """Routing hint for fair processing (see :mod:`wa_core.routing`)."""
        return routing_waba_id(self.body)


class LandingStore(Protocol):
    """Durable storage for landed webhooks."""

    async def land(self, webhook: LandedWebhook) -> int:
        """Insert and commit ``webhook``; return its ``whatsapp_webhook_logs.id``.

        Raises :class:`LandingUnavailable` when the database cannot be reached in time.
        """

    async def ping(self) -> None:
        """Raise :class:`LandingUnavailable` unless the database answers."""

    async def close(self) -> None:
        """Release connections."""


_PG_INSERT = """
INSERT INTO whatsapp_webhook_logs
    (received_at, body, body_sha256, body_size, signature_status, request_id, waba_id, status, attempts, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $1)
RETURNING id
"""

class LandingAnnouncer:
    """Sends ``NOTIFY wa_webhook_landed`` after landings committed, coalesced per process.

    Why not ``pg_notify`` inside the landing's own transaction: Postgres serializes the commits
    of notifying transactions (a database-wide lock held through the WAL flush), which cut the
    landing inserts to 0.33x (7.8 k to 2.6 k rows/s) at 32 concurrent connections on the bench
    machine, against 1.00x for this design (``docs/benchmarks.md``, "Latency and idle cost
    v2", ``bench/receiver.py --insert-check``). Here the insert stays a plain
    group-committed insert, and :meth:`announce` (called once the insert has committed, before
    the 200) wakes a single task that sends one notification on a dedicated connection with
    ``synchronous_commit = off`` (a notification is not data: nothing to make durable). At most
    one is in flight and at most one per :attr:`MIN_INTERVAL_SECONDS`; a landing committed while
    one is in flight is covered by the next, so every landing is followed by a notification sent
    after its commit (the listener's claim sees the row). Failures are logged and never reach
    the request: the processing runs' fallback poll finds the row (as after a crash between
    the commit and the notification).
    """

    #: at most one notification per this many seconds per receiver process (the cost it adds
    #: to landing→processed)
    MIN_INTERVAL_SECONDS = 0.02
    #: after a failed connection, notifications are skipped for this long (seconds)
    RETRY_AFTER_FAILURE_SECONDS = 1.0

    def __init__(self, dsn: str, timeout: float) -> None:
        self._dsn = dsn
        self._timeout = timeout
        self._conn = None
        self._task: asyncio.Task | None = None
        self._pending = False
        self._failed_at: float | None = None
        #: notifications sent by this process (tests and metrics read it)
        self.sent = 0

    def announce(self) -> None:
        """Make sure a notification is sent after now (returns at once; call it after a commit)."""
        self._pending = True
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            while self._pending:
                self._pending = False
                await self._send()
                await asyncio.sleep(self.MIN_INTERVAL_SECONDS)
        finally:
            self._task = None

    async def _send(self) -> None:
        import asyncpg

        if self._failed_at is not None and time.monotonic() - self._failed_at < self.RETRY_AFTER_FAILURE_SECONDS:
            return
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(
                    self._dsn,
                    timeout=self._timeout,
                    command_timeout=self._timeout,
                    server_settings={"synchronous_commit": "off", "application_name": "wa_landing_notify"},
                )
            await self._conn.execute(f"SELECT pg_notify('{LANDED_CHANNEL}', '')")
            self.sent += 1
            self._failed_at = None
        except Exception as exc:  # noqa: BLE001 - a lost notification costs latency, not data
            if self._failed_at is None:
                log.warning("landing notification failed (%s); processing runs fall back to polling", type(exc).__name__)
            self._failed_at = time.monotonic()
            await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close(timeout=1)
            except Exception:  # noqa: BLE001
                conn.terminate()

    async def close(self) -> None:
        """Stop the task and close the connection."""
        task = self._task
        if task is not None:
            task.cancel()
            try:
                await task
            except BaseException:  # noqa: BLE001 - cancelled or failed: closing anyway
                pass
        await self._drop()


async def keep_session(conn) -> None:  # noqa: ANN001 - an asyncpg connection
    """The landing pool's ``reset``: nothing to undo. Its connections only run the autocommit
    INSERT and ``SELECT 1`` (no session settings, cursors, LISTEN or advisory locks), so
    asyncpg's default reset query (``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET
    ALL``), a second round trip and statement per landing, is skipped. asyncpg still rolls
    back an open transaction before calling this."""


class ConnectionGate:
    """Hands out a pool's ``size`` connections in arrival order, the wait for one bounded by
    ``timeout`` seconds, with no timer per landing.

    A landing :meth:`enter` s before it acquires a pooled connection, so the acquire never waits
    in the pool's own queue, and :meth:`leave` s after releasing it, which hands the slot to the
    oldest waiter. While every slot is taken, a landing waits on a future in a FIFO queue; one
    timer, armed for the oldest waiter's deadline, fails the waiters whose wait has passed
    ``timeout`` with :class:`TimeoutError`. The usual bound, ``asyncio.timeout`` around each
    acquire (or asyncpg's ``acquire(timeout=)``, a task per wait), cost ~4 µs a landing, 3 % of
    the receiver's CPU, whenever more deliveries were in flight than connections (the normal
    case at 16+ connections). Not thread-safe: one event loop.
    """

    def __init__(self, size: int, timeout: float) -> None:
        self.free = size
        self.timeout = timeout
        self._waiters: deque[tuple[asyncio.Future, float]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    async def enter(self) -> None:
        """Take a slot, waiting in line for one at most :attr:`timeout` seconds (then
        :class:`TimeoutError`)."""
        if self.free > 0:  # never while others wait: leave() hands slots to waiters first
            self.free -= 1
            return
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiters.append((future, loop.time() + self.timeout))
        if self._timer is None:
            self._timer = loop.call_at(self._waiters[0][1], self._expire, loop)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                self.leave()  # handed a slot just as this landing was cancelled: pass it on
            raise

    def leave(self) -> None:
        """Give a slot back: to the oldest waiter, else to the free count."""
        while self._waiters:
            future, _ = self._waiters.popleft()
            if not future.done():
                future.set_result(None)
                return
        self.free += 1

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        waiters = self._waiters
        while waiters and (waiters[0][0].done() or waiters[0][1] <= now):
            future, _ = waiters.popleft()
            if not future.done():
                future.set_exception(TimeoutError(f"no database connection free within {self.timeout:g} s"))
        if waiters:
            self._timer = loop.call_at(waiters[0][1], self._expire, loop)


class PostgresLandingStore:
    """asyncpg pool; created lazily so that the receiver starts even while Postgres is down."""

    def __init__(self, settings: Settings) -> None:
        self._dsn = settings.asyncpg_dsn
        self._size = settings.db_pool_size
        self._timeout = settings.db_timeout_seconds
        self._announcer = LandingAnnouncer(self._dsn, self._timeout) if settings.landing_notify else None
        self._pool = None
        self._gate = ConnectionGate(self._size, self._timeout)  # who may take a pooled connection
        self._failed_at: float | None = None
        self._lock = anyio.Lock()

    #: after a failed pool creation, requests fail fast (503) for this long instead of each
    #: waiting out its own connection timeout behind the lock
    RETRY_AFTER_FAILURE_SECONDS = 1.0

    async def _get_pool(self):
        import asyncpg

        if self._pool is None:
            self._fail_fast()
            async with self._lock:
                self._fail_fast()
                if self._pool is None:
                    try:
                        self._pool = await self._create_pool(asyncpg)
                    except Exception:
                        self._failed_at = time.monotonic()
                        raise
        return self._pool

    def _fail_fast(self) -> None:
        if self._failed_at is not None and time.monotonic() - self._failed_at < self.RETRY_AFTER_FAILURE_SECONDS:
            raise LandingUnavailable("database unavailable (recent connection failure)")

    async def _create_pool(self, asyncpg):
        return await asyncpg.create_pool(
            self._dsn,
            min_size=1,
            max_size=self._size,
            timeout=self._timeout,
            command_timeout=self._timeout,
            reset=keep_session,
        )

    async def land(self, webhook: LandedWebhook) -> int:
        try:
            pool = self._pool or await self._get_pool()
            await self._gate.enter()  # a connection is free for us once this returns
            try:
                # does not wait (a holder that lost its connection reconnects within the pool's
                # connect timeout)
                conn = await pool.acquire()
            except BaseException:
                self._gate.leave()
                raise
            try:
                row_id = await conn.fetchval(
                    _PG_INSERT,
                    webhook.received_at,
                    webhook.body,
                    webhook.body_sha256,
                    len(webhook.body),
                    webhook.signature_status,
                    webhook.request_id,
                    webhook.waba_id,
                )
            finally:
                try:
                    await pool.release(conn)
                finally:
                    self._gate.leave()
        except Exception as exc:  # any driver, network or timeout error
            raise LandingUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if self._announcer is not None:
            self._announcer.announce()  # committed: wake the processing runs
        return row_id

    async def ping(self) -> None:
        try:
            pool = await self._get_pool()
            await self._gate.enter()
            try:
                async with pool.acquire(timeout=self._timeout) as conn:
                    await conn.fetchval("SELECT 1")
            finally:
                self._gate.leave()
        except Exception as exc:
            raise LandingUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        if self._announcer is not None:
            await self._announcer.close()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


class SqliteLandingStore:
    """Embedded default: the synchronous engine in a worker thread."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._path = settings.sqlite_path
        self._engine = create_sync_engine(settings)
        self._inode: int | None = None

    def _check_file(self) -> None:
        """Refuse to write into a database file that was deleted or replaced under us: open
        connections would keep writing into the unlinked file and the webhook would be lost."""
        try:
            inode = os.stat(self._path).st_ino
        except FileNotFoundError as exc:
            raise LandingUnavailable(f"SQLite database {self._path} does not exist") from exc
        if self._inode is None:
            self._inode = inode
        elif inode != self._inode:
            self._engine.dispose()  # reconnect to the file that is there now
            self._engine = create_sync_engine(self._settings)
            self._inode = inode

    def _insert(self, webhook: LandedWebhook) -> int:
        self._check_file()
        with self._engine.begin() as conn:
            return conn.execute(
                sa.insert(whatsapp_webhook_logs)
                .values(
                    received_at=webhook.received_at,
                    body=webhook.body,
                    body_sha256=webhook.body_sha256,
                    body_size=len(webhook.body),
                    signature_status=webhook.signature_status,
                    request_id=webhook.request_id,
                    waba_id=webhook.waba_id,
                    status="pending",
                    attempts=0,
                    updated_at=webhook.received_at,
                )
                .returning(whatsapp_webhook_logs.c.id)
            ).scalar_one()

    def _ping(self) -> None:
        self._check_file()
        with self._engine.connect() as conn:
            conn.execute(sa.text("SELECT 1 FROM whatsapp_webhook_logs LIMIT 1"))

    async def land(self, webhook: LandedWebhook) -> int:
        try:
            return await anyio.to_thread.run_sync(self._insert, webhook)
        except Exception as exc:
            raise LandingUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def ping(self) -> None:
        try:
            await anyio.to_thread.run_sync(self._ping)
        except Exception as exc:
            raise LandingUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        self._engine.dispose()


def create_landing_store(settings: Settings) -> LandingStore:
    """The landing store for ``settings``: Postgres when ``DATABASE_URL`` is set, else SQLite."""
    if settings.is_postgres:
        return PostgresLandingStore(settings)
    return SqliteLandingStore(settings)


__all__ = ["LandedWebhook", "LandingStore", "LandingUnavailable", "create_landing_store", "utcnow"]
