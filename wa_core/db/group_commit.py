"""Group commit for the landing INSERT: concurrent landings share one statement and one commit.

Every delivery still gets its 200 only after its own row is committed; what changes is how
many rows one commit carries. A landing that finds a free slot (one of the pool's connections)
*leads*: it takes its own row plus every row queued behind the busy slots (up to a row and a
byte bound), writes them with one statement in one transaction, and hands each follower its
result. A landing that finds every slot busy queues its row and waits; when a leader finishes,
the oldest waiter still in the queue becomes the next leader (if an earlier leader has not
already taken its row). No task and no timer per landing: waiters share one timer armed for the
oldest one's deadline.

At low load every batch is one row (no added latency: a free slot leads at once). Under load
the rows that would have waited for a connection anyway ride in the next commit instead, so the
database spends one statement, one transaction and one WAL flush on many rows
(``docs/benchmarks.md`` §1, "Third pass").
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: a waiter's future is set to this when it is to lead the next batch (or take its slot)
_LEAD = object()
#: the queue entry of a caller waiting for a bare slot (:meth:`GroupCommit.slot`)
_SLOT = object()


class LeaderGone(Exception):
    """The landing that was writing this row's batch was cancelled before the batch's outcome
    was known (the row may or may not be committed); the caller answers as for any database
    failure."""


class GroupCommit(Generic[T, R]):
    """Batches concurrent :meth:`submit` calls into at most ``slots`` concurrent ``flush`` calls.

    - ``flush(items)`` writes ``items`` (1 to ``max_items``, together at most ``max_bytes`` as
      measured by ``weigh``, except that a single item is never refused) and returns one result
      per item, in order: a value, or an exception instance for an item that failed alone. An
      exception raised by ``flush`` fails every item of the batch.
    - A landing waits at most ``timeout`` seconds for a slot or for its row to be taken into a
      batch, then gets :class:`TimeoutError` (the time the batch itself takes is bounded by the
      flush, e.g. the driver's command timeout).
    - Rows are taken in arrival order. A cancelled waiter's row is dropped if no batch took it
      yet; if one did, the row is written anyway (as an insert already sent would be).

    Not thread-safe: one event loop.
    """

    def __init__(
        self,
        slots: int,
        timeout: float,
        flush: Callable[[list[T]], Awaitable[Sequence[R | BaseException]]],
        *,
        max_items: int = 100,
        max_bytes: int = 16 * 1024 * 1024,
        weigh: Callable[[T], int] = lambda item: 0,
    ) -> None:
        if slots < 1 or max_items < 1:
            raise ValueError("slots and max_items must be at least 1")
        #: slots no leader holds (never more than 0 while rows wait: a finishing leader hands
        #: its slot to the oldest waiter first)
        self.free = slots
        self.timeout = timeout
        self._flush = flush
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._weigh = weigh
        self._queue: deque[tuple[T, asyncio.Future, float]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    async def submit(self, item: T) -> R:
        """Write ``item`` in some batch and return its result (or raise its exception,
        :class:`TimeoutError` after ``timeout`` seconds in line, or :class:`LeaderGone`)."""
        if self.free > 0:
            self.free -= 1
            return await self._lead(item)
        result = await self._wait_in_line(item)
        if result is _LEAD:
            return await self._lead(item)
        return result

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot without writing a batch (e.g. a readiness ``SELECT 1`` on a pooled
        connection), in line with the landings and under the same ``timeout``
        (:class:`TimeoutError`)."""
        if self.free > 0:
            self.free -= 1
        else:
            await self._wait_in_line(_SLOT)  # a batch never takes this entry: it is handed a slot
        try:
            yield
        finally:
            self._hand_on()

    async def _wait_in_line(self, item: object) -> object:
        """Queue ``item`` and wait until a leader wrote it (its result) or it is to lead
        (``_LEAD``)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append((item, future, loop.time() + self.timeout))
        if self._timer is None:
            self._timer = loop.call_at(self._queue[0][2], self._expire, loop)
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None and future.result() is _LEAD:
                self._hand_on()  # made leader just as this caller was cancelled: pass it on
            raise

    async def _lead(self, item: T) -> R:
        """Write ``item`` and the rows queued behind it in one batch; this call holds a slot."""
        items = [item]
        followers: list[asyncio.Future] = []
        weigh = self._weigh
        size = weigh(item)
        queue = self._queue
        while queue and len(items) < self._max_items:
            queued, future, _ = queue[0]
            if future.done():  # cancelled or timed out in line
                queue.popleft()
                continue
            if queued is _SLOT:  # someone waiting for a bare slot: served in turn, after this batch
                break
            size += weigh(queued)
            if size > self._max_bytes:
                break
            queue.popleft()
            items.append(queued)
            followers.append(future)
        try:
            try:
                results = await self._flush(items)
                if len(results) != len(items):  # no row may take another's result, none may wait for good
                    raise RuntimeError(f"the batch write answered {len(results)} results for {len(items)} rows")
            except Exception as exc:
                for future in followers:
                    if not future.done():
                        future.set_exception(_fresh(exc))
                raise
            except BaseException:
                for future in followers:
                    if not future.done():
                        future.set_exception(LeaderGone("the landing writing this batch was cancelled"))
                raise
            for future, result in zip(followers, results[1:]):
                if not future.done():
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._hand_on()
        own = results[0]
        if isinstance(own, BaseException):
            raise own
        return own

    def _hand_on(self) -> None:
        """Give a slot back: to the oldest waiter still in line (it leads the next batch),
        else to the free count."""
        queue = self._queue
        while queue:
            _, future, _ = queue.popleft()
            if not future.done():
                future.set_result(_LEAD)
                return
        self.free += 1

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        queue = self._queue
        while queue and (queue[0][1].done() or queue[0][2] <= now):
            _, future, _ = queue.popleft()
            if not future.done():
                future.set_exception(TimeoutError(f"no database connection free within {self.timeout:g} s"))
        if queue:
            self._timer = loop.call_at(queue[0][2], self._expire, loop)


def _fresh(exc: Exception) -> Exception:
    """A new instance of ``exc`` for one follower (so that the waiters re-raising it do not
    all grow one shared traceback), or ``exc`` itself when its type cannot be re-created from
    its args."""
    try:
        return type(exc)(*exc.args)
    except Exception:  # noqa: BLE001 - a constructor with another signature
        return exc
