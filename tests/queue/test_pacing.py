"""The SQLite queue runs inline on the event loop: while one task publishes or recovers, others run.

Like the kvstore's local drivers (``tests/test_scheduling.py``), the backend gives the loop a
turn whenever a time slice has passed. With the slice set to zero every look at the pacer
yields, so the yields an operation makes count its steps; a large ``publish_many`` keeps its
transaction open across those turns, so it must stay all or nothing and keep the backend's other
operations out until it ends.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from eventqueue import create_queue
from eventqueue.cursors import decode_seq

from kvstore import pacing

pytestmark = pytest.mark.anyio

EVENT = {"type": "text_delta", "data": {"text": "Hello", "index": 0}}
# The most rows the backend may handle between two looks at the pacer (as for the kvstore's
# local drivers in tests/test_scheduling.py).
MAX_STEP = 1000
EVENTS = 4 * MAX_STEP + 7


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def zero_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every pacing check yield, so that yields count the steps."""
    monkeypatch.setattr(pacing, "SLICE", 0.0)


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/queue.db"


async def _until_paused_part_way(before: int) -> None:
    """Return once a batch started after ``pause_count() == before`` has paused inside its
    transaction: its first turn comes before it begins, its second between two chunks."""
    for _ in range(10_000):
        if pacing.pause_count() >= before + 2:
            return
        await anyio.lowlevel.checkpoint()
    raise AssertionError("the batch never paused part way")


@pytest.mark.usefixtures("zero_slice")
async def test_publishing_in_a_loop_lets_other_tasks_run(tmp_path: Path) -> None:
    async with create_queue(url=_url(tmp_path)) as queue:
        await queue.publish("t", EVENT)
        turns = 0
        publishing = True

        async def other_task() -> None:
            nonlocal turns
            while publishing:
                turns += 1
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as group:
            group.start_soon(other_task)
            await anyio.lowlevel.checkpoint()
            before = turns
            for _ in range(200):
                await queue.publish("t", EVENT)
            during = turns - before
            publishing = False
        assert during >= 100, f"the other task ran {during} times during 200 publishes"


@pytest.mark.usefixtures("zero_slice")
async def test_large_batches_and_long_recovers_yield_part_way(tmp_path: Path) -> None:
    async with create_queue(url=_url(tmp_path)) as queue:
        before = pacing.pause_count()
        cursors = await queue.publish_many("t", [EVENT] * EVENTS)
        assert pacing.pause_count() - before >= EVENTS // MAX_STEP
        before = pacing.pause_count()
        entries = await queue.recover("t")
        assert pacing.pause_count() - before >= EVENTS // MAX_STEP
        assert [entry.cursor for entry in entries] == cursors, "sub-pages join into one page"
        tail = await queue.recover("t", after_cursor=cursors[MAX_STEP + 3], limit=MAX_STEP * 2)
        assert [entry.cursor for entry in tail] == cursors[MAX_STEP + 4 : MAX_STEP * 3 + 4]


@pytest.mark.usefixtures("zero_slice")
async def test_a_publish_during_a_large_batch_waits_and_comes_after_it(tmp_path: Path) -> None:
    async with create_queue(url=_url(tmp_path)) as queue:
        single: list[str] = []

        async def publish_during_the_batch() -> None:
            single.append(await queue.publish("t", {"single": True}))

        async with anyio.create_task_group() as group:
            batch_done = anyio.Event()

            async def batch() -> None:
                await queue.publish_many("t", [EVENT] * EVENTS)
                batch_done.set()

            before = pacing.pause_count()
            group.start_soon(batch)
            await _until_paused_part_way(before)
            assert not batch_done.is_set(), "the batch should still be running"
            group.start_soon(publish_during_the_batch)
        entries = await queue.recover("t")
        assert len(entries) == EVENTS + 1
        assert entries[-1].event == {"single": True}, "the batch's transaction was not joined"
        assert entries[-1].cursor == single[0]


@pytest.mark.usefixtures("zero_slice")
async def test_a_large_batch_cancelled_part_way_stores_nothing(tmp_path: Path) -> None:
    async with create_queue(url=_url(tmp_path)) as queue:
        await queue.publish("t", {"before": True})
        scope = anyio.CancelScope()
        finished: list[bool] = []

        async def batch() -> None:
            with scope:
                await queue.publish_many("t", [EVENT] * EVENTS)
                finished.append(True)

        async with anyio.create_task_group() as group:
            before = pacing.pause_count()
            group.start_soon(batch)
            await _until_paused_part_way(before)
            scope.cancel()
        assert scope.cancelled_caught
        assert not finished
        entries = await queue.recover("t")
        assert [entry.event for entry in entries] == [{"before": True}], "all or nothing"
        # The backend is usable at once: the gate opened and the transaction ended.
        after = await queue.publish("t", {"after": True})
        assert (await queue.recover("t"))[-1].cursor == after


@pytest.mark.usefixtures("zero_slice")
async def test_closing_during_a_large_batch_lets_it_finish(tmp_path: Path) -> None:
    cursors: list[str] = []
    async with create_queue(url=_url(tmp_path)) as queue:

        async def batch() -> None:
            cursors.extend(await queue.publish_many("t", [EVENT] * EVENTS))

        async with anyio.create_task_group() as group:
            before = pacing.pause_count()
            group.start_soon(batch)
            await _until_paused_part_way(before)
            await queue.close()
            assert len(cursors) == EVENTS, "close returned before the batch had ended"
    async with create_queue(url=_url(tmp_path)) as reopened:
        assert [entry.cursor for entry in await reopened.recover("t")] == cursors


class _Clock:
    """The queue's clock, in milliseconds, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


@pytest.mark.usefixtures("zero_slice")
async def test_retention_of_many_events_yields_part_way_and_deletes_them_all(
    tmp_path: Path,
) -> None:
    clock = _Clock()
    async with create_queue(url=_url(tmp_path), retention_ms=1_000, clock=clock) as queue:
        old = await queue.publish_many("a", [EVENT] * EVENTS)
        b = await queue.publish_many("b", [EVENT] * 3)
        await queue.ack("reader", "a", old[-1])
        clock.now += 2_000
        kept = await queue.publish("a", {"new": True})
        before = pacing.pause_count()
        assert await queue.cleanup() == EVENTS + 3
        assert pacing.pause_count() - before >= EVENTS // MAX_STEP
        assert [entry.cursor for entry in await queue.recover("a")] == [kept]
        assert await queue.recover("b") == []
        assert await queue.get_cursor("reader", "a") is None, "the idle cursor went too"
        assert decode_seq(await queue.publish("b", EVENT)) == decode_seq(b[-1]) + 1
        assert await queue.cleanup() == 0


@pytest.mark.usefixtures("zero_slice")
async def test_retention_cancelled_part_way_keeps_the_newest_and_never_reuses_a_cursor(
    tmp_path: Path,
) -> None:
    clock = _Clock()
    async with create_queue(url=_url(tmp_path), retention_ms=1_000, clock=clock) as queue:
        # Two topics interleaved in time, so every step of retention takes from both.
        cursors: dict[str, list[str]] = {"a": [], "b": []}
        for _ in range(EVENTS // 100):
            for topic in cursors:
                cursors[topic] += await queue.publish_many(topic, [EVENT] * 50)
            clock.now += 1
        clock.now += 2_000
        scope = anyio.CancelScope()
        async with anyio.create_task_group() as group:

            async def retention() -> None:
                with scope:
                    await queue.cleanup()

            before = pacing.pause_count()
            group.start_soon(retention)
            await _until_paused_part_way(before + 1)
            scope.cancel()
        assert scope.cancelled_caught
        for topic, published in cursors.items():
            left = [entry.cursor for entry in await queue.recover(topic)]
            assert 0 < len(left) < len(published), "retention stopped part way"
            assert left == published[-len(left) :], "the oldest events go first"
        # What a step deleted stays deleted, and a cursor is never handed out twice, even once
        # the rest is gone.
        await queue.cleanup()
        for topic, published in cursors.items():
            assert await queue.recover(topic) == []
            after = await queue.publish(topic, EVENT)
            assert decode_seq(after) == decode_seq(published[-1]) + 1
