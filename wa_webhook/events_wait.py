"""Long-poll wake-ups for the pull API: one listener per process, not one thread per client.

On Postgres one asyncpg connection LISTENs on ``wa_events`` (the outbox notifies it with the
organization id when events commit, :mod:`wa_core.events.outbox`); each waiting request
awaits an :class:`asyncio.Event` of its organization. On SQLite one task checks
``PRAGMA data_version`` every :data:`SQLITE_POLL_SECONDS` and wakes every waiter when another
connection committed. While the listener is down (or not started yet), waiters wake every
:data:`FALLBACK_POLL_SECONDS` and read again, so a lost notification costs at most that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3

from wa_core.events.outbox import EVENTS_CHANNEL
from wa_core.settings import Settings

log = logging.getLogger("wa_webhook.events")

SQLITE_POLL_SECONDS = 0.1
FALLBACK_POLL_SECONDS = 0.5
RECONNECT_SECONDS = 2.0
KEEPALIVE_SECONDS = 30.0


class EventWaiter:
    """Per-organization wake-ups; :meth:`register` before reading, :meth:`wait` after an empty
    read, :meth:`release` when done (so an event committed between the read and the wait is
    never missed: its notification sets the registered event)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task | None = None
        self.listening = False

    def _start(self) -> None:
        if self._task is None or self._task.done():
            runner = self._listen_pg if self._settings.is_postgres else self._poll_sqlite
            self._task = asyncio.get_running_loop().create_task(runner())

    def register(self, organization_id: object) -> asyncio.Event:
        """An event set when ``organization_id``'s events commit (starts the listener)."""
        self._start()
        event = asyncio.Event()
        self._waiters.setdefault(str(organization_id), set()).add(event)
        return event

    def release(self, organization_id: object, event: asyncio.Event) -> None:
        """Forget ``event`` (the request is done)."""
        waiters = self._waiters.get(str(organization_id))
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                self._waiters.pop(str(organization_id), None)

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds (less while not listening); True when woken."""
        if not self.listening:
            timeout = min(timeout, FALLBACK_POLL_SECONDS)
        try:
            await asyncio.wait_for(event.wait(), max(0.0, timeout))
        except TimeoutError:
            return False
        event.clear()
        return True

    def _wake(self, organization_id: str | None) -> None:
        targets = self._waiters.values() if organization_id is None else [self._waiters.get(organization_id, set())]
        for waiters in list(targets):
            for event in list(waiters):
                event.set()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._wake(payload or None)

    async def _listen_pg(self) -> None:
        import asyncpg

        while True:
            conn = None
            try:
                conn = await asyncpg.connect(self._settings.asyncpg_dsn, timeout=5)
                await conn.add_listener(EVENTS_CHANNEL, self._on_notify)
                self.listening = True
                self._wake(None)  # something may have committed while we were not listening
                while not conn.is_closed():
                    await asyncio.sleep(KEEPALIVE_SECONDS)
                    await conn.execute("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any driver or network error: poll, reconnect
                log.warning("event listener lost (%s); long-polls poll every %.1fs until it is back", type(exc).__name__, FALLBACK_POLL_SECONDS)
            finally:
                self.listening = False
                if conn is not None:
                    conn.terminate()  # immediate: no round trip while being cancelled
            await asyncio.sleep(RECONNECT_SECONDS)

    async def _poll_sqlite(self) -> None:
        path = str(self._settings.sqlite_path.resolve())
        db = None
        version = None
        while True:
            try:
                if db is None:
                    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
                current = db.execute("PRAGMA data_version").fetchone()[0]
                self.listening = True
                if version is not None and current != version:
                    self._wake(None)
                version = current
            except sqlite3.Error:
                self.listening = False
                if db is not None:
                    db.close()
                db = None
            await asyncio.sleep(SQLITE_POLL_SECONDS)

    async def close(self) -> None:
        """Stop the listener."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
