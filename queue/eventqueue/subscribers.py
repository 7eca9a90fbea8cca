"""Per-subscriber delivery, so that one slow or failing handler only ever delays itself.

- An async handler gets its own task (in the queue's background task group, see
  :mod:`eventqueue.background`) and an in-memory FIFO; the task awaits the handler for one entry
  at a time, in cursor order.
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

import contextlib
import inspect
import logging
import math
import queue as stdlib_queue
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from eventqueue.background import Background
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


def _fifo() -> tuple[MemoryObjectSendStream[Any], MemoryObjectReceiveStream[Any]]:
    # Unbounded: the feed must never wait for a subscriber (see the module docstring).
    return anyio.create_memory_object_stream[Any](math.inf)


def _log_failure(topic: str, entry: QueueEntry, handler: object) -> None:
    logger.exception("subscriber %r of topic %r raised on cursor %s", handler, topic, entry.cursor)


class AsyncSubscriber(Subscriber):
    """Runs a coroutine-function handler in its own task of the queue's background group."""

    def __init__(self, topic: str, handler: Handler, background: Background) -> None:
        self.topic = topic
        self.handler = handler
        self._send, self._receive = _fifo()
        # Made here, entered by the task: stop() may come before the task first runs.
        self._scope = anyio.CancelScope()
        background.start_soon(self._run, name=f"eventqueue subscriber {topic!r}")

    async def _run(self) -> None:
        try:
            with self._scope, contextlib.suppress(anyio.ClosedResourceError):  # stopped
                async for entry in self._receive:
                    try:
                        await self.handler(entry)
                    except Exception:
                        _log_failure(self.topic, entry, self.handler)
        finally:
            # Also when the event loop cancels the task at exit, the queue never closed.
            self._send.close()
            self._receive.close()

    def deliver(self, entries: Sequence[StoredEvent]) -> None:
        """Append the decoded entries to the task's FIFO."""
        for entry in entries:
            if isinstance(entry, QueueEntry):
                try:
                    self._send.send_nowait(entry)
                except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                    return  # stopped: drop, as documented

    def stop(self) -> None:
        """Cancel the task (and a handler call in progress) and release its FIFO."""
        self._scope.cancel()
        self._send.close()
        self._receive.close()


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
        self._send, self._receive = _fifo()

    def deliver(self, entries: Sequence[StoredEvent]) -> None:
        """Append one batch, corrupt events included (the consumer reports them)."""
        # Stopped: the consumer is leaving.
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._send.send_nowait(entries)

    def stop(self) -> None:
        """Wake the consumer so that it notices the queue closed."""
        self._send.close()

    async def get(self) -> Sequence[StoredEvent] | None:
        """Return the next batch, or None once stopped."""
        try:
            batch: Sequence[StoredEvent] = await self._receive.receive()
        except anyio.EndOfStream:
            return None
        return batch

    def close(self) -> None:
        """Release both ends of the FIFO (the consumer has left)."""
        self._send.close()
        self._receive.close()


def _is_async(handler: object) -> bool:
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


def make_subscriber(topic: str, handler: Handler, background: Background) -> Subscriber:
    """Return the right subscriber for a sync or async ``handler``.

    An async handler's task runs in ``background``; a sync handler gets a daemon thread.
    """
    if _is_async(handler):
        return AsyncSubscriber(topic, handler, background)
    return ThreadSubscriber(topic, handler)
