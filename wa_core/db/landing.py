"""The landing store: the durable INSERT of each webhook, done by the receiver before it answers 200.

Postgres uses an asyncpg pool (the fastest driver measured for this insert, see
``docs/benchmarks.md``) behind a group commit (:mod:`wa_core.db.group_commit`): a landing that
finds one of the ``DB_POOL_SIZE`` connections free writes its row at once; landings that arrive
while all are busy share the next commit, one ``INSERT ... SELECT FROM unnest`` for up to
``LANDING_BATCH_MAX_ROWS`` rows. Each landing returns only once its own row is committed. The
embedded SQLite default uses the synchronous engine in a worker thread, one row per commit.

On Postgres the landings are then announced with ``NOTIFY wa_webhook_landed`` so that idle
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
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import anyio
import sqlalchemy as sa
from prometheus_client import Histogram

from wa_core.db.engine import create_sync_engine
from wa_core.db.group_commit import GroupCommit
from wa_core.db.schema import utcnow, whatsapp_webhook_logs
from wa_core.processing.wake import LANDED_CHANNEL
from wa_core.routing import routing_waba_id
from wa_core.settings import Settings

log = logging.getLogger("wa_core.db.landing")

#: rows per landing commit on Postgres (1 at low load; more when deliveries queue for the pool)
LANDING_BATCH_ROWS = Histogram(
    "wa_webhook_landing_batch_rows",
    "Webhook rows written per landing commit (group commit; Postgres).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)

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

#: the same row for many landings at once (group commit): one statement, one transaction, the
#: columns sent as binary arrays. The ids come back in the arrays' order: Postgres inserts the
#: rows of an INSERT ... SELECT FROM unnest in the SRF's order and RETURNING emits them as
#: inserted (not a documented guarantee; tests/webhook/test_fast_path.py checks it, and the id
#: only goes into the receiver's debug log)
_PG_INSERT_MANY = """
INSERT INTO whatsapp_webhook_logs
    (received_at, body, body_sha256, body_size, signature_status, request_id, waba_id, status, attempts, updated_at)
SELECT r, b, h, n, s, q, w, 'pending', 0, r
FROM unnest($1::timestamptz[], $2::bytea[], $3::text[], $4::int[], $5::text[], $6::text[], $7::text[]) AS t(r, b, h, n, s, q, w)
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


def _body_size(webhook: LandedWebhook) -> int:
    return len(webhook.body)


def _columns(batch: list[LandedWebhook]) -> tuple[list, ...]:
    """The arrays of :data:`_PG_INSERT_MANY` for ``batch`` (one per column, in row order)."""
    bodies = [w.body for w in batch]
    return (
        [w.received_at for w in batch],
        bodies,
        [w.body_sha256 for w in batch],
        [len(b) for b in bodies],
        [w.signature_status for w in batch],
        [w.request_id for w in batch],
        [w.waba_id for w in batch],
    )


async def _insert_one(conn, webhook: LandedWebhook) -> int:  # noqa: ANN001 - an asyncpg connection
    return await conn.fetchval(
        _PG_INSERT,
        webhook.received_at,
        webhook.body,
        webhook.body_sha256,
        len(webhook.body),
        webhook.signature_status,
        webhook.request_id,
        webhook.waba_id,
    )


class PostgresLandingStore:
    """asyncpg pool; created lazily so that the receiver starts even while Postgres is down."""

    def __init__(self, settings: Settings) -> None:
        self._dsn = settings.asyncpg_dsn
        self._size = settings.db_pool_size
        self._timeout = settings.db_timeout_seconds
        self._announcer = LandingAnnouncer(self._dsn, self._timeout) if settings.landing_notify else None
        self._pool = None
        # who may take a pooled connection, and which landings share its commit
        self._commits = GroupCommit(
            self._size,
            self._timeout,
            self._insert_batch,
            max_items=settings.landing_batch_max_rows,
            max_bytes=settings.landing_batch_max_bytes,
            weigh=_body_size,
        )
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
            if self._pool is None:
                await self._get_pool()
            return await self._commits.submit(webhook)
        except Exception as exc:  # any driver, network or timeout error
            raise LandingUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def _insert_batch(self, batch: list[LandedWebhook]) -> list[int | Exception]:
        """Insert and commit ``batch`` (the group commit's flush, run by the landing that holds a
        slot, so the pool always has a connection for it); one id per row, in order. A batch
        refused for its data (a row Postgres rejects) is split: each row is then inserted alone
        and only the row at fault fails."""
        import asyncpg

        # what Postgres says about the rows themselves (not the connection): split, fail alone
        refused = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, asyncpg.ProgramLimitExceededError)
        pool = self._pool
        conn = await pool.acquire()  # does not wait: at most db_pool_size slots hold one
        try:
            if len(batch) == 1:
                ids: list[int | Exception] = [await _insert_one(conn, batch[0])]
            else:
                try:
                    ids = [row[0] for row in await conn.fetch(_PG_INSERT_MANY, *_columns(batch))]
                except refused as exc:
                    log.warning("a landing batch of %d rows was refused (%s): inserting them one by one", len(batch), type(exc).__name__)
                    ids = []
                    for webhook in batch:
                        try:
                            ids.append(await _insert_one(conn, webhook))
                        except refused as row_exc:
                            ids.append(row_exc)
        finally:
            await pool.release(conn)
        if self._announcer is not None:
            self._announcer.announce()  # committed: wake the processing runs
        LANDING_BATCH_ROWS.observe(len(batch))
        return ids

    async def ping(self) -> None:
        try:
            pool = await self._get_pool()
            async with self._commits.slot():  # in line with the landings, so its acquire never waits
                async with pool.acquire() as conn:
                    await conn.fetchval("SELECT 1")
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
