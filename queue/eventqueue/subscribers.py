"""Per-subscriber delivery, so that one slow or failing handler only ever delays itself.

- An async handler gets its own task and an in-memory FIFO; the task awaits the handler for one
  entry at a time, in cursor order.
- A sync handler gets its own daemon thread and FIFO, so a handler that blocks (I/O, a lock,
  ``time.sleep``) never stalls the event loop or other subscribers, and a handler still blocked
  when the process ends does not keep it alive. Sync handlers therefore run off the loop thread.
- A consumer (``EventQueue.consume``) gets a FIFO it reads itself.

A handler's exception is logged on the ``eventqueue`` logger and delivery continues with the next
entry. A corrupt stored event (a :class:`CorruptEvent` in a batch; the feed logged it) is never
handed to a handler: subscribers skip it, a consumer reports it to its caller.

The FIFOs are unbounded: a handler that never returns holds the entries published after it
in memory until it is unsubscribed or the queue is closed.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import queue as stdlib_queue
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from eventqueue.decoding import StoredEvent
from eventqueue.entry import QueueEntry

__all__ = [
    "AsyncSubscriber",
    "ConsumerInbox",
    "Handler",
    "Subscriber",
    "ThreadSubscriber",
    "make_subscriber",
]

logger = logging.getLogger("eventqueue")

Handler = Callable[[QueueEntry], Awaitable[Any] | Any]
"""A subscriber's callback: a plain function or a coroutine function taking one entry."""


class Subscriber:
    """Something the topic feed hands entries to, in cursor order, without ever waiting."""

    def deliver(self, entries: Sequence[StoredEvent]) -> None:
        """Queue ``entries`` for this subscriber, in order; must not block."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop delivering; entries not yet handled are dropped."""
        raise NotImplementedError

    async def wait_stopped(self) -> None:
        """Return once the subscriber's task (if any) has ended."""


def _log_failure(topic: str, entry: QueueEntry, handler: object) -> None:
    logger.exception("subscriber %r of topic %r raised on cursor %s", handler, topic, entry.cursor)


class AsyncSubscriber(Subscriber):
    """Runs a coroutine-function handler in its own task."""

    def __init__(self, topic: str, handler: Handler) -> None:
        self.topic = topic
        self.handler = handler
        self._inbox: asyncio.Queue[QueueEntry] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"eventqueue subscriber {topic!r}"
        )

    async def _run(self) -> None:
        while True:
            entry = await self._inbox.get()
            try:
                await self.handler(entry)
            except Exception:
                _log_failure(self.topic, entry, self.handler)

    def deliver(self, entries: Sequence[StoredEvent]) -> None:
        """Append the decoded entries to the task's FIFO."""
        for entry in entries:
            if isinstance(entry, QueueEntry):
                self._inbox.put_nowait(entry)

    def stop(self) -> None:
        """Cancel the task."""
        self._task.cancel()

    async def wait_stopped(self) -> None:
        """Await the cancelled task."""
        await asyncio.gather(self._task, return_exceptions=True)


_STOP = object()


class ThreadSubscriber(Subscriber):
    """Runs a plain-function handler in its own daemon thread."""

    def __init__(self, topic: str, handler: Handler) -> None:
        self.topic = topic
        self.handler = handler
        self._inbox: stdlib_queue.SimpleQueue[object] = stdlib_queue.SimpleQueue()
        self._stopped = False
        self._thread = threading.Thread(
            target=self._run, name=f"eventqueue subscriber {topic!r}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while True:
            entry = self._inbox.get()
            if entry is _STOP or self._stopped:
                return
            assert isinstance(entry, QueueEntry)
            try:
                result = self.handler(entry)
                if inspect.isawaitable(result):
                    logger.error(
                        "subscriber %r of topic %r returned an awaitable from a plain "
                        "function; make it `async def` so that the queue awaits it",
                        self.handler,
                        self.topic,
                    )
                    close = getattr(result, "close", None)
                    if close is not None:
                        close()
            except Exception:
                _log_failure(self.topic, entry, self.handler)

    def deliver(self, entries: Sequence[StoredEvent]) -> None:
        """Append the decoded entries to the thread's FIFO."""
        for entry in entries:
            if isinstance(entry, QueueEntry):
                self._inbox.put(entry)

    def stop(self) -> None:
        """Tell the thread to end after its current handler call."""
        self._stopped = True
        self._inbox.put(_STOP)


class ConsumerInbox(Subscriber):
    """The live half of ``consume``: a FIFO of entry batches the consumer awaits."""

    def __init__(self) -> None:
        self._inbox: asyncio.Queue[Sequence[StoredEvent] | None] = asyncio.Queue()

    def deliver(self, entries: Sequence[StoredEvent]) -> None:
        """Append one batch, corrupt events included (the consumer reports them)."""
        self._inbox.put_nowait(entries)

    def stop(self) -> None:
        """Wake the consumer so that it notices the queue closed."""
        self._inbox.put_nowait(None)

    async def get(self) -> Sequence[StoredEvent] | None:
        """Return the next batch, or None once stopped."""
        return await self._inbox.get()


def _is_async(handler: object) -> bool:
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


def make_subscriber(topic: str, handler: Handler) -> Subscriber:
    """Return the right subscriber for a sync or async ``handler``."""
    if _is_async(handler):
        return AsyncSubscriber(topic, handler)
    return ThreadSubscriber(topic, handler)
