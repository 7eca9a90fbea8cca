"""The queue conformance suite: a base class every backend's test module subclasses.

Usage (pytest with anyio's plugin, which the suite marks every test with)::

    from eventqueue.testing import QueueConformance, QueueFactory

    class TestMyBackend(QueueConformance):
        @pytest.fixture
        def queue_factory(self, tmp_path) -> QueueFactory:
            # each call returns a NEW, unopened queue on this test's isolated storage
            return lambda **options: create_queue(str(tmp_path / "q.db"), **options)

``options`` are ``create_queue`` keyword arguments (``clock``, ``retention_ms``,
``cleanup_interval_ms``). Set ``shares_storage = False`` when two queues from the factory do not
see each other's data (``:memory:``). Tests wait for deliveries with anyio events, memory object
streams and a generous ``anyio.fail_after`` deadline, never with sleeps, and assert no timings.

Every test runs under asyncio and under trio (the ``anyio_backend`` fixture is parametrised). A
backend whose client runs under asyncio only (Redis, PostgreSQL) overrides that fixture to
return ``"asyncio"``; under trio such a backend raises
:class:`~eventqueue.errors.AsyncLibraryNotSupported` instead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, ClassVar

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import TaskGroup

from eventqueue.entry import QueueEntry
from eventqueue.errors import QueueClosed, ValidationError
from eventqueue.front import EventQueue

__all__ = ["Collector", "FakeClock", "QueueConformance", "QueueFactory"]

QueueFactory = Callable[..., EventQueue]
"""Returns a new unopened queue on the test's storage; takes ``create_queue`` keywords."""

DEADLINE = 60.0
"""Seconds a test waits for a delivery before failing; a guard, never a synchroniser."""


class FakeClock:
    """A settable millisecond clock for retention tests."""

    def __init__(self, now: int = 1_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        """Return the current fake time."""
        return self.now


class Collector:
    """An async handler that records entries and lets a test await a count."""

    def __init__(self) -> None:
        self.entries: list[QueueEntry] = []
        self._changed = anyio.Event()

    async def __call__(self, entry: QueueEntry) -> None:
        """Record ``entry``."""
        self.entries.append(entry)
        # anyio events cannot be cleared: wake the waiters, then give the next ones a new one.
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, count: int) -> list[QueueEntry]:
        """Return the entries once at least ``count`` arrived (fails after :data:`DEADLINE`)."""
        with anyio.fail_after(DEADLINE):
            while len(self.entries) < count:
                await self._changed.wait()
        return self.entries

    @property
    def events(self) -> list[Any]:
        """The recorded events' values."""
        return [entry.event for entry in self.entries]


async def _take(iterator: Any, count: int) -> list[QueueEntry]:
    with anyio.fail_after(DEADLINE):
        return [await iterator.__anext__() for _ in range(count)]


class _Taking:
    """Takes ``count`` entries from a consumer in a task of ``group``, while the test goes on.

    ``await result()`` returns them, or raises what taking raised.
    """

    def __init__(self, group: TaskGroup, consumer: Any, count: int) -> None:
        self._send, self._receive = anyio.create_memory_object_stream[Any](1)
        group.start_soon(self._take, consumer, count)

    async def _take(self, consumer: Any, count: int) -> None:
        async with self._send:
            try:
                outcome: Any = await _take(consumer, count)
            except Exception as exc:  # handed to the test, which asserts on it
                outcome = exc
            await self._send.send(outcome)

    async def result(self) -> list[QueueEntry]:
        with anyio.fail_after(DEADLINE):
            async with self._receive:
                outcome = await self._receive.receive()
        if isinstance(outcome, Exception):
            raise outcome
        return outcome  # type: ignore[no-any-return]


class QueueConformance:
    """Every promise of the event queue, run against the queues ``queue_factory`` returns."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.anyio]
    shares_storage: ClassVar[bool] = True

    @pytest.fixture(params=["asyncio", "trio"])
    def anyio_backend(self, request: pytest.FixtureRequest) -> str:
        """Both async libraries; an asyncio-only backend overrides this to return "asyncio"."""
        return str(request.param)

    @pytest.fixture
    def queue_factory(self) -> QueueFactory:
        """Override: return a factory of new queues on an isolated storage."""
        raise NotImplementedError("subclasses provide the queue_factory fixture")

    # -- publish and recover -------------------------------------------------------------------

    async def test_publish_returns_increasing_cursors(self, queue_factory: QueueFactory) -> None:
        """Promise: publish returns increasing cursors."""
        async with queue_factory() as queue:
            cursors = [await queue.publish("t", {"i": i}) for i in range(20)]
            assert all(isinstance(c, str) for c in cursors)
            assert cursors == sorted(cursors)
            assert len(set(cursors)) == 20
            entries = await queue.recover("t")
            assert [e.cursor for e in entries] == cursors
            assert [e.event for e in entries] == [{"i": i} for i in range(20)]
            assert all(e.topic == "t" and isinstance(e.timestamp, int) for e in entries)

    async def test_events_read_back_equal(self, queue_factory: QueueFactory) -> None:
        """Promise: events read back equal."""
        values: list[Any] = [
            None,
            True,
            False,
            0,
            -(2**63),
            2**64 - 1,
            1.5,
            -0.25,
            "",
            "héllo \u2603 \U0001f600",
            [],
            {},
            [1, [2, [3]]],
            {"a": {"b": [None, "x"]}, "": 1},
            "x" * 100_000,
        ]
        async with queue_factory() as queue:
            for value in values:
                await queue.publish("t", value)
            assert [e.event for e in await queue.recover("t")] == values

    async def test_recover_after_cursor_and_limit(self, queue_factory: QueueFactory) -> None:
        """Promise: recover after cursor and limit."""
        async with queue_factory() as queue:
            cursors = await queue.publish_many("t", list(range(1200)))
            assert [e.event for e in await queue.recover("t", cursors[9])] == list(range(10, 1200))
            assert [e.event for e in await queue.recover("t", None, 3)] == [0, 1, 2]
            assert [e.event for e in await queue.recover("t", cursors[5], 2)] == [6, 7]
            assert [e.event for e in await queue.recover("t", cursors[-1])] == []
            assert await queue.recover("t", limit=0) == []
            assert await queue.recover("other") == []

    async def test_publish_many_is_ordered_and_atomic(self, queue_factory: QueueFactory) -> None:
        """Promise: publish many is ordered and atomic."""
        async with queue_factory() as queue:
            first = await queue.publish("t", "first")
            cursors = await queue.publish_many("t", ({"n": n} for n in range(5)))
            assert len(cursors) == 5
            assert cursors == sorted(cursors)
            assert cursors[0] > first
            assert await queue.publish_many("t", []) == []
            with pytest.raises(ValidationError):
                await queue.publish_many("t", [1, 2, {3}])
            assert [e.cursor for e in await queue.recover("t")] == [first, *cursors]

    @pytest.mark.parametrize(
        "event",
        [
            float("nan"),
            float("inf"),
            {1, 2},
            b"bytes",
            object(),
            {1: "int key"},
            2**64,
            [1, float("-inf")],
            {"nested": {"t": (1, {"x": object()})}},
        ],
        ids=repr,
    )
    async def test_non_json_event_refused_nothing_written(
        self, queue_factory: QueueFactory, event: Any
    ) -> None:
        """Promise: non json event refused nothing written."""
        async with queue_factory() as queue:
            with pytest.raises(ValidationError):
                await queue.publish("t", event)
            assert await queue.recover("t") == []

    @pytest.mark.parametrize(
        "topic", ["", 5, None, "a\x00b", "a\nb", "\x7f", "x" * 1025, "\ud800"], ids=repr
    )
    async def test_bad_topic_refused(self, queue_factory: QueueFactory, topic: Any) -> None:
        """Promise: bad topic refused."""
        async with queue_factory() as queue:
            with pytest.raises(ValidationError):
                await queue.publish(topic, 1)
            with pytest.raises(ValidationError):
                await queue.recover(topic)
            with pytest.raises(ValidationError):
                queue.subscribe(topic, lambda entry: None)
            with pytest.raises(ValidationError):
                queue.consume(topic, "c")

    async def test_bad_cursor_consumer_and_limit_refused(self, queue_factory: QueueFactory) -> None:
        """Promise: bad cursor consumer and limit refused."""
        async with queue_factory() as queue:
            cursor = await queue.publish("t", 1)
            bad_cursors: list[Any] = ["", "abc", "1", 5, None, cursor + "0", " " + cursor]
            for bad in bad_cursors:
                with pytest.raises(ValidationError):
                    await queue.ack("c", "t", bad)
                if bad is not None:
                    with pytest.raises(ValidationError):
                        await queue.recover("t", bad)
            for consumer in ["", 3, "a\tb"]:
                with pytest.raises(ValidationError):
                    await queue.ack(consumer, "t", cursor)  # type: ignore[arg-type]
                with pytest.raises(ValidationError):
                    await queue.get_cursor(consumer, "t")  # type: ignore[arg-type]
            for limit in [-1, 1.5, "3", True]:
                with pytest.raises(ValidationError):
                    await queue.recover("t", limit=limit)  # type: ignore[arg-type]
            assert await queue.get_cursor("c", "t") is None

    async def test_topics_are_data_and_independent(self, queue_factory: QueueFactory) -> None:
        """Promise: topics are data and independent."""
        topics = [
            "a",
            "A",
            "a ",
            "a\u0301",
            "a%",
            "a_",
            "a*",
            "a:b",
            "a/b",
            "[a]",
            "a'; --",
            "\u2603",
        ]
        async with queue_factory() as queue:
            for topic in topics:
                await queue.publish(topic, topic)
            for topic in topics:
                assert [e.event for e in await queue.recover(topic)] == [topic]
                assert all(e.topic == topic for e in await queue.recover(topic))

    # -- subscribe -----------------------------------------------------------------------------

    async def test_subscribers_see_each_event_once_in_order(
        self, queue_factory: QueueFactory
    ) -> None:
        """Promise: subscribers see each event once in order."""
        async with queue_factory() as queue:
            first, second, other = Collector(), Collector(), Collector()
            queue.subscribe("t", first)
            queue.subscribe("t", second)
            queue.subscribe("u", other)
            cursors = [await queue.publish("t", i) for i in range(10)]
            cursors += await queue.publish_many("t", list(range(10, 30)))
            await queue.publish("u", "other")
            for collector in (first, second):
                entries = await collector.wait_for(30)
                assert [e.cursor for e in entries] == cursors
                assert collector.events == list(range(30))
            assert (await other.wait_for(1))[0].event == "other"
            await queue.publish("t", "last")
            assert (await first.wait_for(31))[-1].event == "last"
            assert len(first.entries) == 31

    async def test_sync_handler_receives_events(self, queue_factory: QueueFactory) -> None:
        """Promise: sync handler receives events."""
        received: list[Any] = []
        done = threading.Event()

        def handler(entry: QueueEntry) -> None:
            received.append(entry.event)
            if len(received) == 5:
                done.set()

        async with queue_factory() as queue:
            queue.subscribe("t", handler)
            await queue.publish_many("t", [1, 2, 3, 4, 5])
            # The handler runs in a thread: wait for it in one, bounded by DEADLINE.
            assert await anyio.to_thread.run_sync(done.wait, DEADLINE)
            assert received == [1, 2, 3, 4, 5]

    async def test_unsubscribe_stops_delivery(self, queue_factory: QueueFactory) -> None:
        """Promise: unsubscribe stops delivery."""
        async with queue_factory() as queue:
            leaving, staying = Collector(), Collector()
            unsubscribe = queue.subscribe("t", leaving)
            queue.subscribe("t", staying)
            await queue.publish("t", 1)
            await leaving.wait_for(1)
            unsubscribe()
            unsubscribe()
            await queue.publish("t", 2)
            await queue.publish("t", 3)
            await staying.wait_for(3)
            assert leaving.events == [1]

    async def test_failing_handler_is_logged_and_delays_no_one(
        self, queue_factory: QueueFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Promise: failing handler is logged and delays no one."""
        calls: list[Any] = []
        failed_four_times = anyio.Event()

        async def failing(entry: QueueEntry) -> None:
            calls.append(entry.event)
            if len(calls) == 4:
                failed_four_times.set()
            raise RuntimeError(f"handler failed on {entry.event}")

        def failing_sync(entry: QueueEntry) -> None:
            raise ValueError("sync handler failed")

        async with queue_factory() as queue:
            healthy = Collector()
            queue.subscribe("t", failing)
            queue.subscribe("t", failing_sync)
            queue.subscribe("t", healthy)
            with caplog.at_level(logging.ERROR, logger="eventqueue"):
                await queue.publish_many("t", [1, 2, 3])
                await healthy.wait_for(3)
                assert healthy.events == [1, 2, 3]
                probe = Collector()
                queue.subscribe("t", probe)
                await queue.publish("t", 4)
                await probe.wait_for(1)
                await healthy.wait_for(4)
                with anyio.fail_after(DEADLINE):
                    await failed_four_times.wait()
            assert calls == [1, 2, 3, 4]
            messages = [r.getMessage() for r in caplog.records if r.name == "eventqueue"]
            assert any("raised" in m for m in messages)
            raised = [r.exc_info[1] for r in caplog.records if r.exc_info]
            assert any(isinstance(exc, RuntimeError) for exc in raised)

    async def test_blocked_handlers_delay_neither_others_nor_publish(
        self, queue_factory: QueueFactory
    ) -> None:
        """Promise: blocked handlers delay neither others nor publish."""
        release_async = anyio.Event()
        release_thread = threading.Event()
        blocked_async: list[Any] = []

        async def blocks_forever(entry: QueueEntry) -> None:
            blocked_async.append(entry.event)
            await release_async.wait()

        def blocks_thread(entry: QueueEntry) -> None:
            release_thread.wait()

        async with queue_factory() as queue:
            healthy = Collector()
            queue.subscribe("t", blocks_forever)
            queue.subscribe("t", blocks_thread)
            queue.subscribe("t", healthy)
            try:
                for i in range(20):
                    await queue.publish("t", i)
                await healthy.wait_for(20)
                assert healthy.events == list(range(20))
                assert blocked_async == [0]
            finally:
                release_async.set()
                release_thread.set()

    async def test_publish_right_after_subscribe_is_delivered(
        self, queue_factory: QueueFactory
    ) -> None:
        """Promise: publish right after subscribe is delivered."""
        async with queue_factory() as queue:
            await queue.publish("t", "before")
            collector = Collector()
            queue.subscribe("t", collector)
            await queue.publish("t", "after")
            assert [e.event for e in await collector.wait_for(1)] == ["after"]

    # -- cursors and consumers -----------------------------------------------------------------

    async def test_ack_never_moves_backwards(self, queue_factory: QueueFactory) -> None:
        """Promise: ack never moves backwards."""
        async with queue_factory() as queue:
            c1, c2, c3 = await queue.publish_many("t", [1, 2, 3])
            assert await queue.get_cursor("c", "t") is None
            await queue.ack("c", "t", c2)
            assert await queue.get_cursor("c", "t") == c2
            await queue.ack("c", "t", c1)
            assert await queue.get_cursor("c", "t") == c2
            await queue.ack("c", "t", c3)
            assert await queue.get_cursor("c", "t") == c3
            assert await queue.get_cursor("other", "t") is None
            assert await queue.get_cursor("c", "u") is None
            async with anyio.create_task_group() as group:
                for c in (c3, c1, c2, c1):
                    group.start_soon(queue.ack, "d", "t", c)
            assert await queue.get_cursor("d", "t") == c3

    async def test_consume_replays_unacked_then_follows_live(
        self, queue_factory: QueueFactory
    ) -> None:
        """Promise: consume replays unacked then follows live."""
        async with queue_factory() as queue:
            cursors = await queue.publish_many("t", list(range(30)))
            await queue.ack("c", "t", cursors[9])
            consumer = queue.consume("t", "c")

            async def publish_more() -> None:
                for i in range(30, 60):
                    await queue.publish("t", i)

            async with anyio.create_task_group() as group:
                group.start_soon(publish_more)
                entries = await _take(consumer, 50)
            assert [e.event for e in entries] == list(range(10, 60))
            assert [e.cursor for e in entries] == sorted({e.cursor for e in entries})
            await consumer.aclose()  # type: ignore[attr-defined]
            # Consuming does not ack: a new consumer with the same id starts from the ack again.
            again = queue.consume("t", "c")
            assert (await _take(again, 1))[0].event == 10
            await again.aclose()  # type: ignore[attr-defined]

    async def test_consume_from_scratch(self, queue_factory: QueueFactory) -> None:
        """Promise: consume from scratch."""
        async with queue_factory() as queue:
            consumer = queue.consume("t", "new")
            async with anyio.create_task_group() as group:
                pending = _Taking(group, consumer, 2)
                await queue.publish("t", "a")
                await queue.publish("t", "b")
                assert [e.event for e in await pending.result()] == ["a", "b"]
            await consumer.aclose()  # type: ignore[attr-defined]

    # -- retention -----------------------------------------------------------------------------

    async def test_retention_deletes_exactly_older_events(
        self, queue_factory: QueueFactory
    ) -> None:
        """Promise: retention deletes exactly older events."""
        clock = FakeClock(10_000)
        async with queue_factory(clock=clock, retention_ms=1_000) as queue:
            await queue.publish("t", "at 10000")
            clock.now = 11_000
            await queue.publish_many("t", ["at 11000 a", "at 11000 b"])
            await queue.publish("u", "u at 11000")
            clock.now = 11_999
            await queue.publish("t", "at 11999")
            clock.now = 12_000
            # Ages now: 2000 (deleted), 1000 (kept: not older than the window), 1.
            assert await queue.cleanup() == 1
            assert [e.event for e in await queue.recover("t")] == [
                "at 11000 a",
                "at 11000 b",
                "at 11999",
            ]
            assert [e.timestamp for e in await queue.recover("t")] == [11_000, 11_000, 11_999]
            clock.now = 12_001
            assert await queue.cleanup() == 3
            assert [e.event for e in await queue.recover("t")] == ["at 11999"]
            assert await queue.recover("u") == []

    async def test_cursors_never_reused_after_retention(self, queue_factory: QueueFactory) -> None:
        """Promise: cursors never reused after retention."""
        clock = FakeClock(10_000)
        async with queue_factory(clock=clock, retention_ms=1_000) as queue:
            last = (await queue.publish_many("t", [1, 2, 3]))[-1]
            await queue.ack("c", "t", last)
            clock.now = 10_500
            await queue.ack("c", "t", last)
            clock.now = 20_000
            await queue.cleanup()
            assert await queue.recover("t") == []
            newer = await queue.publish("t", 4)
            assert newer > last
            assert [e.event for e in await queue.recover("t", last)] == [4]

    async def test_retention_forgets_gone_consumers(self, queue_factory: QueueFactory) -> None:
        """Promise: retention forgets gone consumers."""
        clock = FakeClock(10_000)
        async with queue_factory(clock=clock, retention_ms=1_000) as queue:
            cursor = await queue.publish("t", 1)
            await queue.ack("gone", "t", cursor)
            clock.now = 10_600
            await queue.ack("alive", "t", cursor)
            clock.now = 11_500
            await queue.cleanup()
            assert await queue.get_cursor("gone", "t") is None
            assert await queue.get_cursor("alive", "t") == cursor

    async def test_cleanup_timer_runs_while_open(self, queue_factory: QueueFactory) -> None:
        """Promise: cleanup timer runs while open."""
        clock = FakeClock(10_000)
        async with queue_factory(clock=clock, retention_ms=1_000, cleanup_interval_ms=5) as queue:
            await queue.publish("t", "old")
            assert len(await queue.recover("t")) == 1
            clock.now = 50_000
            # Nobody calls cleanup() here: only the timer can make the old event disappear.
            # Wait for that observable outcome, bounded by DEADLINE: the state lives in the
            # backend, so there is no in-process event to wait on.
            with anyio.fail_after(DEADLINE):
                while await queue.recover("t"):  # noqa: ASYNC110
                    await anyio.sleep(0.005)

    # -- lifecycle -----------------------------------------------------------------------------

    async def test_close_is_idempotent_and_use_after_close_raises(
        self, queue_factory: QueueFactory
    ) -> None:
        """Promise: close is idempotent and use after close raises."""
        queue = queue_factory()
        cursor = await queue.publish("t", 1)
        await queue.close()
        await queue.close()
        assert queue.closed
        with pytest.raises(QueueClosed):
            await queue.publish("t", 2)
        with pytest.raises(QueueClosed):
            await queue.publish_many("t", [2])
        with pytest.raises(QueueClosed):
            await queue.recover("t")
        with pytest.raises(QueueClosed):
            await queue.ack("c", "t", cursor)
        with pytest.raises(QueueClosed):
            await queue.get_cursor("c", "t")
        with pytest.raises(QueueClosed):
            await queue.cleanup()
        with pytest.raises(QueueClosed):
            queue.subscribe("t", lambda entry: None)
        with pytest.raises(QueueClosed):
            queue.consume("t", "c")
        with pytest.raises(QueueClosed):
            async with queue:
                pass

    async def test_close_before_open_and_unused_queue(self, queue_factory: QueueFactory) -> None:
        """Promise: close before open and unused queue."""
        queue = queue_factory()
        await queue.close()
        with pytest.raises(QueueClosed):
            await queue.publish("t", 1)

    async def test_close_stops_everything(self, queue_factory: QueueFactory) -> None:
        """Promise: close stops everything."""
        queue = queue_factory()
        async with anyio.create_task_group() as group:
            async with queue:
                queue.subscribe("t", Collector())
                queue.subscribe("t", lambda entry: None)
                consumer = queue.consume("t", "c")
                waiting = _Taking(group, consumer, 1)
                await queue.publish("u", 1)
                await anyio.lowlevel.checkpoint()
            with pytest.raises(QueueClosed):
                await waiting.result()
        names = [task.name or "" for task in anyio.get_running_tasks()]
        leftover = [name for name in names if name.startswith("eventqueue")]
        assert not leftover, leftover

    async def test_close_through_a_cancelled_scope_still_stops_everything(
        self, queue_factory: QueueFactory
    ) -> None:
        """Promise: leaving ``async with`` because a deadline fired still closes the queue."""
        queue = queue_factory()
        with anyio.CancelScope() as scope:
            async with queue:
                queue.subscribe("t", Collector())
                await queue.publish("t", 1)
                scope.cancel()
                await anyio.lowlevel.checkpoint()  # the cancellation lands here
        assert scope.cancelled_caught
        assert queue.closed
        names = [task.name or "" for task in anyio.get_running_tasks()]
        assert not [name for name in names if name.startswith("eventqueue")], names

    async def test_queue_is_usable_without_async_with(self, queue_factory: QueueFactory) -> None:
        """Promise: queue is usable without async with."""
        queue = queue_factory()
        try:
            cursor = await queue.publish("t", {"plain": True})
            assert (await queue.recover("t"))[0].cursor == cursor
        finally:
            await queue.close()

    # -- several queue objects on one storage --------------------------------------------------

    async def test_other_queue_objects_see_events(self, queue_factory: QueueFactory) -> None:
        """Promise: other queue objects see events."""
        if not self.shares_storage:
            pytest.skip("this backend's queues do not share storage")
        async with queue_factory() as writer, queue_factory() as reader:
            collector = Collector()
            await reader.subscribe("t", collector).ready()
            consumer = reader.consume("t", "c")
            first = await _take_after_publish(writer, consumer, "from writer")
            assert first.event == "from writer"
            assert [e.event for e in await collector.wait_for(1)] == ["from writer"]
            await consumer.aclose()  # type: ignore[attr-defined]

    async def test_cursors_unique_across_queue_objects(self, queue_factory: QueueFactory) -> None:
        """Promise: cursors unique across queue objects."""
        if not self.shares_storage:
            pytest.skip("this backend's queues do not share storage")
        async with queue_factory() as one, queue_factory() as two:

            async def burst(queue: EventQueue, name: str) -> list[str]:
                return [await queue.publish("t", f"{name}{i}") for i in range(50)]

            cursors: dict[str, list[str]] = {}

            async def run(queue: EventQueue, name: str) -> None:
                cursors[name] = await burst(queue, name)

            async with anyio.create_task_group() as group:
                group.start_soon(run, one, "a")
                group.start_soon(run, two, "b")
            a, b = cursors["a"], cursors["b"]
            assert a == sorted(a)
            assert b == sorted(b)
            assert len(set(a) | set(b)) == 100
            entries = await one.recover("t")
            assert [e.cursor for e in entries] == sorted(a + b)


async def _take_after_publish(writer: EventQueue, consumer: Any, event: Any) -> QueueEntry:
    async with anyio.create_task_group() as group:
        pending = _Taking(group, consumer, 1)
        await writer.publish("t", event)
        entries = await pending.result()
    return entries[0]
