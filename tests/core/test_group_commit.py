"""The landing's group commit (:class:`wa_core.db.group_commit.GroupCommit`): never more
batches in flight than slots, rows taken in arrival order and bounded per batch, each caller
gets its own row's result, a wait past the timeout fails with ``TimeoutError`` (only that
caller), a failed batch fails its rows and nothing else, and no cancellation keeps or loses a
slot or leaves a caller waiting forever."""

from __future__ import annotations

import asyncio
import random

import pytest

from wa_core.db.group_commit import GroupCommit, LeaderGone


class Writer:
    """A flush that records its batches and answers ``item * 10``; ``hold`` makes it wait."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.hold: asyncio.Event | None = None
        self.in_flight = self.peak = 0

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.hold is not None:
                await self.hold.wait()
            return [item * 10 for item in items]
        finally:
            self.in_flight -= 1


async def _queued(commits: GroupCommit, items: range) -> list[asyncio.Task]:
    tasks = [asyncio.create_task(commits.submit(i)) for i in items]
    await asyncio.sleep(0)  # every one has submitted
    return tasks


def test_alone_a_row_is_written_at_once_in_a_batch_of_one() -> None:
    async def scenario() -> None:
        writer = Writer()
        commits = GroupCommit(2, 30, writer)
        assert await commits.submit(7) == 70
        assert await commits.submit(8) == 80
        assert writer.batches == [[7], [8]] and commits.free == 2

    asyncio.run(scenario())


def test_rows_queued_behind_a_busy_slot_share_the_next_batch_in_arrival_order() -> None:
    async def scenario() -> None:
        writer = Writer()
        writer.hold = asyncio.Event()
        commits = GroupCommit(1, 30, writer)
        first = asyncio.create_task(commits.submit(0))
        await asyncio.sleep(0)  # leads, and is held in its flush
        rest = await _queued(commits, range(1, 6))
        writer.hold.set()
        assert await asyncio.gather(first, *rest) == [0, 10, 20, 30, 40, 50]
        assert writer.batches == [[0], [1, 2, 3, 4, 5]]
        assert commits.free == 1

    asyncio.run(scenario())


def test_a_batch_is_bounded_by_rows_and_by_bytes() -> None:
    async def scenario(max_items: int, max_bytes: int) -> list[list[int]]:
        writer = Writer()
        writer.hold = asyncio.Event()
        commits = GroupCommit(1, 30, writer, max_items=max_items, max_bytes=max_bytes, weigh=lambda item: 100)
        first = asyncio.create_task(commits.submit(0))
        await asyncio.sleep(0)
        rest = await _queued(commits, range(1, 8))
        writer.hold.set()
        assert await asyncio.gather(first, *rest) == [i * 10 for i in range(8)]
        return writer.batches

    assert asyncio.run(scenario(3, 10**6)) == [[0], [1, 2, 3], [4, 5, 6], [7]]
    assert asyncio.run(scenario(100, 250)) == [[0], [1, 2], [3, 4], [5, 6], [7]]
    # a single row heavier than the byte bound is still written, alone
    assert asyncio.run(scenario(100, 50)) == [[i] for i in range(8)]


def test_a_wait_past_the_timeout_fails_and_the_others_are_served() -> None:
    async def scenario() -> None:
        writer = Writer()
        writer.hold = asyncio.Event()
        commits = GroupCommit(1, timeout=0.2, flush=writer)
        stuck = asyncio.create_task(commits.submit(0))  # its flush hangs
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError, match="within 0.2 s"):
            await commits.submit(1)
        assert loop.time() - started >= 0.2
        late = asyncio.create_task(commits.submit(2))  # in line behind nobody now
        await asyncio.sleep(0.05)
        writer.hold.set()
        assert (await stuck, await late) == (0, 20)
        assert writer.batches == [[0], [2]] and commits.free == 1

    asyncio.run(scenario())


def test_a_row_cancelled_in_line_is_not_written() -> None:
    async def scenario() -> None:
        writer = Writer()
        writer.hold = asyncio.Event()
        commits = GroupCommit(1, 30, writer)
        first = asyncio.create_task(commits.submit(0))
        await asyncio.sleep(0)
        cancelled, served = await _queued(commits, range(1, 3))
        cancelled.cancel()
        await asyncio.sleep(0)
        writer.hold.set()
        assert (await first, await served) == (0, 20)
        assert cancelled.cancelled() and writer.batches == [[0], [2]] and commits.free == 1

    asyncio.run(scenario())


def test_a_caller_cancelled_right_after_being_made_leader_passes_the_slot_on() -> None:
    async def scenario() -> None:
        writer = Writer()
        writer.hold = asyncio.Event()
        commits = GroupCommit(1, 30, writer, max_items=1)  # one row per batch: each waiter leads in turn
        first = asyncio.create_task(commits.submit(0))
        await asyncio.sleep(0)
        second, third = await _queued(commits, range(1, 3))
        hand_on = commits._hand_on

        def hand_on_then_cancel() -> None:
            hand_on()  # makes `second` the leader...
            commits._hand_on = hand_on
            second.cancel()  # ...which is cancelled before it runs again

        commits._hand_on = hand_on_then_cancel
        writer.hold.set()
        assert await first == 0
        await asyncio.gather(second, return_exceptions=True)
        assert await asyncio.wait_for(third, 5) == 20  # the slot went on to `third`
        assert second.cancelled() and writer.batches == [[0], [2]] and commits.free == 1

    asyncio.run(scenario())


def test_a_failed_batch_fails_its_rows_only_and_gives_the_slot_back() -> None:
    async def scenario() -> None:
        calls = 0

        async def flush(items: list[int]) -> list[int]:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.01)
            if calls == 2:
                raise ConnectionError("server closed the connection")
            return [item * 10 for item in items]

        commits = GroupCommit(1, 30, flush)
        first = asyncio.create_task(commits.submit(0))
        await asyncio.sleep(0)
        failing = await _queued(commits, range(1, 4))  # all three ride in the failing batch
        results = await asyncio.gather(first, *failing, return_exceptions=True)
        assert results[0] == 0
        assert all(isinstance(r, ConnectionError) and "closed" in str(r) for r in results[1:])
        assert len({id(r) for r in results[1:]}) == 3  # each caller its own instance
        assert await commits.submit(9) == 90 and commits.free == 1

    asyncio.run(scenario())


def test_a_row_that_fails_alone_fails_only_its_caller() -> None:
    async def scenario() -> None:
        async def flush(items: list[int]) -> list:
            await asyncio.sleep(0.01)
            return [ValueError(f"row {i} refused") if i == 2 else i * 10 for i in items]

        commits = GroupCommit(1, 30, flush)
        first = asyncio.create_task(commits.submit(0))
        await asyncio.sleep(0)
        rest = await _queued(commits, range(1, 4))
        results = await asyncio.gather(first, *rest, return_exceptions=True)
        assert results[:2] == [0, 10] and results[3] == 30
        assert isinstance(results[2], ValueError) and str(results[2]) == "row 2 refused"

    asyncio.run(scenario())


def test_a_leader_cancelled_in_its_flush_hands_the_slot_to_the_next_in_line() -> None:
    async def scenario() -> None:
        batches: list[list[int]] = []
        release = asyncio.Event()

        async def flush(items: list[int]) -> list[int]:
            batches.append(list(items))
            if len(batches) < 3:
                await asyncio.Event().wait()  # the first two flushes hang until cancelled
            await release.wait()
            return [item * 10 for item in items]

        async def flushes(n: int) -> None:
            while len(batches) < n:
                await asyncio.sleep(0)

        commits = GroupCommit(1, 30, flush)
        leader = asyncio.create_task(commits.submit(0))
        await flushes(1)
        (follower,) = await _queued(commits, range(1, 2))
        leader.cancel()  # cancelled mid-flush (server shut-down) with `follower` in line, in no batch
        await asyncio.gather(leader, return_exceptions=True)
        await flushes(2)  # `follower` was handed the slot and leads its own batch
        second = asyncio.create_task(commits.submit(2))
        await asyncio.sleep(0)
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await flushes(3)  # and `second` leads after it
        release.set()
        assert await second == 20 and commits.free == 1
        assert batches == [[0], [1], [2]] and leader.cancelled() and follower.cancelled()

    asyncio.run(scenario())


def test_followers_in_a_cancelled_leaders_batch_get_leader_gone() -> None:
    async def scenario() -> None:
        gates = [asyncio.Event(), asyncio.Event()]
        calls = 0

        async def flush(items: list[int]) -> list[int]:
            nonlocal calls
            gate = gates[calls]
            calls += 1
            await gate.wait()
            return [item * 10 for item in items]

        commits = GroupCommit(1, 30, flush)
        blocker = asyncio.create_task(commits.submit(0))
        await asyncio.sleep(0)
        leader, follower = await _queued(commits, range(1, 3))
        gates[0].set()
        assert await blocker == 0
        while calls < 2:  # `leader` flushes [1, 2], held at the second gate
            await asyncio.sleep(0)
        leader.cancel()  # server shut-down, mid-flush
        with pytest.raises(LeaderGone):
            await asyncio.wait_for(follower, 5)
        assert leader.cancelled() and commits.free == 1

    asyncio.run(scenario())


def test_under_random_concurrency_every_caller_ends_once_with_its_own_result() -> None:
    async def scenario() -> None:
        rng = random.Random(7)
        batches: list[list[int]] = []
        in_flight = peak = 0

        async def flush(items: list[int]) -> list[int]:
            nonlocal in_flight, peak
            batches.append(list(items))
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                await asyncio.sleep(rng.choice((0, 0, 0.001, 0.01, 0.05)))
            finally:
                in_flight -= 1
            return [item * 10 for item in items]

        commits = GroupCommit(3, timeout=0.02, flush=flush, max_items=8)

        async def landing(i: int) -> str:
            await asyncio.sleep(rng.random() * 0.2)
            try:
                assert await commits.submit(i) == i * 10
            except TimeoutError:
                return "timeout"
            except LeaderGone:
                return "leader_gone"
            return "written"

        tasks = [asyncio.create_task(landing(i)) for i in range(600)]
        await asyncio.sleep(0.05)
        for task in rng.sample(tasks, 60):
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        outcomes = [r if isinstance(r, str) else type(r).__name__ for r in results]
        written = [i for batch in batches for i in batch]
        assert peak <= 3 and in_flight == 0
        assert len(written) == len(set(written))  # no row in two batches
        assert max(len(b) for b in batches) <= 8 and max(len(b) for b in batches) > 1
        assert {i for i, o in enumerate(outcomes) if o == "written"} <= set(written)
        assert outcomes.count("written") > 0 and outcomes.count("timeout") > 0
        assert set(outcomes) <= {"written", "timeout", "leader_gone", "CancelledError"}
        assert commits.free == 3  # every slot came back

    asyncio.run(scenario())


def test_a_bare_slot_is_served_in_turn_and_never_batched() -> None:
    """``slot()`` (the readiness ping) waits in line with the landings: rows queued before it
    go in the batch ahead of it, rows queued after it wait until it is done."""

    async def scenario() -> None:
        writer = Writer()
        writer.hold = asyncio.Event()
        commits = GroupCommit(1, 30, writer)
        order: list[str] = []
        first = asyncio.create_task(commits.submit(0))
        await asyncio.sleep(0)
        before = await _queued(commits, range(1, 3))
        released = asyncio.Event()

        async def ping() -> None:
            async with commits.slot():
                order.append(f"ping after {len(writer.batches)} batches")
                await released.wait()

        pinging = asyncio.create_task(ping())
        await asyncio.sleep(0)
        after = await _queued(commits, range(3, 5))
        writer.hold.set()
        assert await asyncio.gather(first, *before) == [0, 10, 20]
        while not order:
            await asyncio.sleep(0)
        assert order == ["ping after 2 batches"] and commits.free == 0 and not any(t.done() for t in after)
        released.set()
        await pinging
        assert await asyncio.gather(*after) == [30, 40]
        assert writer.batches == [[0], [1, 2], [3, 4]] and commits.free == 1

    asyncio.run(scenario())


def test_a_bare_slot_times_out_in_line_like_a_landing() -> None:
    async def scenario() -> None:
        writer = Writer()
        writer.hold = asyncio.Event()
        commits = GroupCommit(1, timeout=0.1, flush=writer)
        stuck = asyncio.create_task(commits.submit(0))
        await asyncio.sleep(0)
        with pytest.raises(TimeoutError):
            async with commits.slot():
                pass
        writer.hold.set()
        assert await stuck == 0 and commits.free == 1


def test_a_flush_that_answers_for_fewer_rows_than_it_was_given_fails_the_whole_batch() -> None:
    """One result short (an ``INSERT ... RETURNING`` that returned one row fewer, e.g. a row a
    trigger skipped): no caller may take another row's result as its own, and none may wait for
    good (a row taken into a batch is past its wait's timeout)."""

    async def scenario() -> None:
        async def flush(items: list[int]) -> list[int]:
            await asyncio.sleep(0.01)
            return [item * 10 for item in items if item != 2]  # row 2 "skipped"

        commits = GroupCommit(1, 30, flush)
        first = asyncio.create_task(commits.submit(0))
        await asyncio.sleep(0)
        rest = await _queued(commits, range(1, 5))
        results = await asyncio.wait_for(asyncio.gather(first, *rest, return_exceptions=True), 2)
        assert results[0] == 0  # its own batch of one was answered in full
        assert all(isinstance(r, RuntimeError) and "3 results for 4 rows" in str(r) for r in results[1:]), results
        assert commits.free == 1

    asyncio.run(scenario())
