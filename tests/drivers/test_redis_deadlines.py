"""The shared deadline timer of the Redis driver behaves as asyncio.timeout does."""

from __future__ import annotations

import asyncio

import pytest

from kvstore.drivers._deadlines import Deadlines


async def _blocked(deadlines: Deadlines, started: asyncio.Event | None = None) -> None:
    with deadlines():
        if started is not None:
            started.set()
        await asyncio.Event().wait()


def test_blocks_past_their_deadline_end_in_timeout_error() -> None:
    async def main() -> None:
        deadlines = Deadlines(0.05)
        outcomes = await asyncio.gather(
            *(_blocked(deadlines) for _ in range(3)), return_exceptions=True
        )
        assert [type(outcome) for outcome in outcomes] == [TimeoutError] * 3
        # A block that ends in time is not cancelled later, and the timer serves the next ones.
        with deadlines():
            await asyncio.sleep(0)
        await asyncio.sleep(0.1)
        with pytest.raises(TimeoutError):
            await _blocked(deadlines)

    asyncio.run(asyncio.wait_for(main(), 10))


def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    async def main() -> None:
        deadlines = Deadlines(60)
        started = asyncio.Event()
        task = asyncio.create_task(_blocked(deadlines, started))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(asyncio.wait_for(main(), 10))


def test_a_new_event_loop_starts_afresh() -> None:
    deadlines = Deadlines(0.05)
    for _ in range(2):
        with pytest.raises(TimeoutError):
            asyncio.run(asyncio.wait_for(_blocked(deadlines), 10))
