"""The blocking queue: publish, ack, cursors, recover, subscribe (handlers in threads), consume."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from eventqueue import QueueClosed, QueueEntry, ValidationError
from eventqueue.sync import create_queue

pytestmark = pytest.mark.timeout(120)


def test_publish_ack_and_recover(tmp_path: Path) -> None:
    with create_queue(str(tmp_path / "q.db")) as queue:
        first = queue.publish("t", {"n": 1})
        second, third = queue.publish_many("t", [{"n": 2}, {"n": 3}])
        queue.ack("reader", "t", second)
        assert queue.get_cursor("reader", "t") == second
        assert [entry.event for entry in queue.recover("t", first)] == [{"n": 2}, {"n": 3}]
        assert [entry.cursor for entry in queue.recover("t")] == [first, second, third]
        with pytest.raises(ValidationError):
            queue.publish("t", {"bad": float("nan")})


def test_a_handler_runs_in_its_own_thread_and_may_call_the_blocking_api() -> None:
    seen: list[tuple[object, str, str | None]] = []
    done = threading.Event()
    with create_queue(":memory:") as queue:

        def handler(entry: QueueEntry) -> None:
            cursor = queue.get_cursor("handler", entry.topic)  # blocking, from the handler
            queue.ack("handler", entry.topic, entry.cursor)
            seen.append((entry.event, threading.current_thread().name, cursor))
            done.set()

        subscription = queue.subscribe("t", handler)
        subscription.ready()
        cursor = queue.publish("t", "hello")
        assert done.wait(30)
        assert seen[0][0] == "hello"
        assert seen[0][2] is None
        assert seen[0][1] not in ("MainThread", "kvstore.sync loop")
        assert queue.get_cursor("handler", "t") == cursor
        subscription.unsubscribe()
        subscription()  # idempotent


def test_an_async_handler_is_refused() -> None:
    async def handler(entry: QueueEntry) -> None:
        return None

    with create_queue(":memory:") as queue, pytest.raises(ValidationError):
        queue.subscribe("t", handler)


def test_consume_replays_then_follows_and_ends_when_the_queue_closes() -> None:
    queue = create_queue(":memory:")
    queue.publish("t", 1)
    stream = queue.consume("t", "worker")
    assert next(stream).event == 1
    publisher = threading.Thread(target=queue.publish, args=("t", 2))
    publisher.start()
    assert next(stream).event == 2  # waits for the live event
    publisher.join()
    closer = threading.Thread(target=queue.close)
    closer.start()
    with pytest.raises(QueueClosed):
        next(stream)  # waiting when the queue closes from another thread
    closer.join()
    assert queue.closed
    with pytest.raises(QueueClosed):
        queue.publish("t", 3)


def test_the_queue_works_from_inside_a_running_event_loop() -> None:
    with create_queue(":memory:") as queue:

        async def cell() -> object:
            queue.publish("t", {"x": 1})
            return [entry.event for entry in queue.recover("t")]

        assert asyncio.run(cell()) == [{"x": 1}]
