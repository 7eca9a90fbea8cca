"""A blocking event queue, for scripts, notebooks and threads: the queue API without ``await``.

::

    from eventqueue.sync import create_queue

    with create_queue(url="sqlite:///events.db") as queue:
        subscription = queue.subscribe("session-1", print)
        cursor = queue.publish("session-1", {"type": "text_delta", "text": "Hi"})
        queue.ack("connection-1", "session-1", cursor)
        subscription.unsubscribe()

Each method has the name, arguments, result and errors of its async twin on
:class:`eventqueue.EventQueue`, which it runs on an event loop the queue owns in a daemon thread
(subscriptions and the retention timer need that loop running between calls; see
:mod:`kvstore.sync`). Handlers are plain functions, each subscriber's running in its own daemon
thread, so a handler may call the blocking API (of this queue or a storage) and may block.
:meth:`Queue.consume` is a plain iterator: ``break`` out of it, or close the queue from another
thread (the iterator then raises :class:`~eventqueue.QueueClosed`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Any, ParamSpec, Self

from eventqueue.entry import QueueEntry
from eventqueue.errors import QueueClosed, ValidationError
from eventqueue.factory import create_queue as create_async
from eventqueue.front import EventQueue, OnCorrupt
from eventqueue.front import Subscription as AsyncSubscription
from kvstore.sync.runner import Mirrored, Runner, mirror

__all__ = ["ABSENT", "Queue", "Subscription", "create_queue"]

P = ParamSpec("P")

#: Public members of :class:`eventqueue.EventQueue` with no blocking twin, and why.
ABSENT: dict[str, str] = {
    "__aenter__": "the blocking queue is a plain context manager (`with`)",
    "__aexit__": "the blocking queue is a plain context manager (`with`)",
}


def _closed() -> QueueClosed:
    return QueueClosed("the queue is closed")


class Subscription(Mirrored[AsyncSubscription]):
    """What :meth:`Queue.subscribe` returns: call it (or :meth:`unsubscribe`) to unsubscribe."""

    __slots__ = ()

    def __call__(self) -> None:
        """Stop delivery to this subscriber (idempotent)."""
        self.unsubscribe()

    def unsubscribe(self) -> None:
        """Stop delivery to this subscriber (same as calling the subscription)."""
        if not self._runner.closed:
            self._runner.run_sync(self._target.unsubscribe)

    ready = mirror(AsyncSubscription.ready)


class Queue:
    """Blocking :class:`eventqueue.EventQueue`: a durable per-topic event log.

    Safe to share between threads. Use it as ``with create_queue(...) as queue:`` or call
    :meth:`close`.
    """

    __slots__ = ("_released", "_runner", "_target")

    def __init__(self, queue: EventQueue, runner: Runner) -> None:
        """Mirror ``queue``, whose calls go through ``runner`` (holding one use of it)."""
        self._target = queue
        self._runner = runner
        self._released = False

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._target.closed or self._runner.closed

    @property
    def retention_ms(self) -> int:
        """How long events are kept, in milliseconds."""
        return self._target.retention_ms

    @property
    def cleanup_interval_ms(self) -> int:
        """How often expired events are deleted while the queue is open, in milliseconds."""
        return self._target.cleanup_interval_ms

    open = mirror(EventQueue.open)
    publish = mirror(EventQueue.publish)
    publish_many = mirror(EventQueue.publish_many)
    ack = mirror(EventQueue.ack)
    get_cursor = mirror(EventQueue.get_cursor)
    # ``on_corrupt`` runs on the queue's loop: it must not call the blocking API itself.
    recover = mirror(EventQueue.recover)
    cleanup = mirror(EventQueue.cleanup)

    def subscribe(self, topic: str, handler: Callable[[QueueEntry], object]) -> Subscription:
        """Call ``handler(entry)`` for every event of ``topic`` committed from now on.

        As :meth:`eventqueue.EventQueue.subscribe`, except that ``handler`` is a plain function:
        it runs in a daemon thread of its own, so it may block and may call blocking APIs.
        A coroutine function raises :class:`~eventqueue.ValidationError` (use the async queue).
        """
        if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)  # noqa: B004 - an object with an async __call__
        ):
            raise ValidationError(
                "a blocking queue's handler is a plain function (it runs in a thread of its "
                "own); for an async handler use the async queue"
            )
        subscription = self._runner.run_sync(self._target.subscribe, topic, handler)
        return Subscription(subscription, self._runner)

    def consume(
        self, topic: str, consumer_id: str, *, on_corrupt: OnCorrupt | None = None
    ) -> Iterator[QueueEntry]:
        """Iterate over ``topic`` from just after ``consumer_id``'s acked cursor, then live.

        As :meth:`eventqueue.EventQueue.consume`, as a plain iterator that waits for each next
        event. ``break`` out of the loop to stop (the iterator closes when dropped or with
        ``close()``); closing the queue from another thread ends it with
        :class:`~eventqueue.QueueClosed`.
        """
        stream = self._runner.run_sync(
            self._target.consume, topic, consumer_id, on_corrupt=on_corrupt
        )
        return _one_by_one(self._runner, stream)

    def close(self) -> None:
        """Stop every subscriber and consumer, release the backend and stop the loop; idempotent."""
        if self._released:
            return
        self._released = True
        try:
            self._runner.run(self._target.close())
        finally:
            self._runner.release()

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<blocking {self._target!r}>"


def _one_by_one(runner: Runner, stream: AsyncIterator[QueueEntry]) -> Iterator[QueueEntry]:
    # One entry per call to the loop: a page would wait for events that may never come.
    try:
        while True:
            try:
                yield runner.run(_next(stream))
            except StopAsyncIteration:
                return
    finally:
        closer = getattr(stream, "aclose", None)
        if closer is not None and not runner.closed:
            runner.run(closer())


async def _next(stream: AsyncIterator[QueueEntry]) -> QueueEntry:
    return await anext(stream)


def _takes_arguments_of(
    factory: Callable[P, object],
) -> Callable[[Callable[..., Queue]], Callable[P, Queue]]:
    """Give the decorated function ``factory``'s signature (for type checkers and ``help``)."""

    def decorate(function: Callable[..., Queue]) -> Callable[P, Queue]:
        functools.update_wrapper(function, factory, assigned=(), updated=())
        return function

    return decorate


@_takes_arguments_of(create_async)
def create_queue(*args: Any, **kwargs: Any) -> Queue:
    """Return a blocking :class:`Queue`; it connects on first use or in ``with``.

    Takes what :func:`eventqueue.create_queue` takes (``path``, ``url``, ``retention_ms``,
    ``cleanup_interval_ms``, ``clock``) and raises what it raises. The queue's event loop starts
    in a daemon thread now and stops when the queue closes.
    """
    runner = Runner(closed_error=_closed, keep_running=True)
    runner.acquire()
    try:
        queue = runner.run_sync(create_async, *args, **kwargs)
    except BaseException:
        runner.release()
        raise
    return Queue(queue, runner)
