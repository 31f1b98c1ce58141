"""The landing pool's gate (:class:`wa_core.db.landing.ConnectionGate`): never more holders than
connections, slots handed out in arrival order, a wait past the timeout fails with
``TimeoutError`` (and only that waiter), and a cancelled waiter neither keeps nor loses a slot."""

from __future__ import annotations

import asyncio
import random

import pytest

from wa_core.db.landing import ConnectionGate


def test_slots_go_to_waiters_in_arrival_order() -> None:
    async def scenario() -> list[int]:
        gate = ConnectionGate(1, timeout=30)
        order: list[int] = []
        await gate.enter()

        async def landing(i: int) -> None:
            await gate.enter()
            order.append(i)
            gate.leave()

        tasks = [asyncio.create_task(landing(i)) for i in range(5)]
        await asyncio.sleep(0)  # all five are waiting
        gate.leave()
        await asyncio.gather(*tasks)
        assert gate.free == 1
        return order

    assert asyncio.run(scenario()) == [0, 1, 2, 3, 4]


def test_a_wait_past_the_timeout_fails_and_the_others_are_served() -> None:
    async def scenario() -> None:
        gate = ConnectionGate(1, timeout=0.2)
        await gate.enter()  # held for good
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError, match="within 0.2 s"):
            await gate.enter()
        assert loop.time() - started >= 0.2
        late = asyncio.create_task(gate.enter())  # waits behind nobody now
        await asyncio.sleep(0.05)
        gate.leave()
        await late  # handed the slot before its own deadline
        assert gate.free == 0
        gate.leave()
        assert gate.free == 1

    asyncio.run(scenario())


def test_a_cancelled_waiter_does_not_keep_a_slot() -> None:
    async def scenario() -> None:
        gate = ConnectionGate(1, timeout=30)
        await gate.enter()
        cancelled = asyncio.create_task(gate.enter())
        served = asyncio.create_task(gate.enter())
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.sleep(0)
        gate.leave()  # skips the cancelled waiter
        await served
        gate.leave()
        assert gate.free == 1 and cancelled.cancelled()

    asyncio.run(scenario())


def test_a_waiter_cancelled_right_after_being_handed_a_slot_passes_it_on() -> None:
    async def scenario() -> None:
        gate = ConnectionGate(1, timeout=30)
        await gate.enter()
        first = asyncio.create_task(gate.enter())
        second = asyncio.create_task(gate.enter())
        await asyncio.sleep(0)
        gate.leave()  # hands the slot to `first`...
        first.cancel()  # ...which is cancelled before it runs again
        await asyncio.gather(first, return_exceptions=True)
        await asyncio.wait_for(second, 5)  # the slot went on to `second`
        gate.leave()
        assert gate.free == 1 and first.cancelled()

    asyncio.run(scenario())


def test_under_random_concurrency_never_more_holders_than_slots() -> None:
    async def scenario() -> None:
        rng = random.Random(7)
        gate = ConnectionGate(3, timeout=0.05)
        holding = peak = timeouts = done = 0

        async def landing() -> None:
            nonlocal holding, peak, timeouts, done
            try:
                await gate.enter()
            except TimeoutError:
                timeouts += 1
                return
            holding += 1
            peak = max(peak, holding)
            await asyncio.sleep(rng.choice((0, 0, 0.001, 0.01, 0.03)))
            holding -= 1
            gate.leave()
            done += 1

        tasks = [asyncio.create_task(landing()) for _ in range(400)]
        for task in rng.sample(tasks, 40):
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        cancelled = sum(isinstance(r, asyncio.CancelledError) for r in results)
        assert peak <= 3 and holding == 0
        assert done + timeouts + cancelled == 400 and done > 0 and timeouts > 0
        assert gate.free == 3  # every slot came back

    asyncio.run(scenario())
