"""A durable per-topic event log: publish, subscribe, ack, recover, consume, retention.

SQLite by default (one file, shared safely by several processes); Redis Streams and PostgreSQL
for several hosts, chosen by URL, with the same API and guarantees::

    async with create_queue() as queue:  # $AGENTX_DIR/data/queue.db, or a path, or url=...
        unsubscribe = queue.subscribe("session-1", handler)
        cursor = await queue.publish("session-1", {"type": "text_delta", "text": "Hi"})
        await queue.ack("connection-1", "session-1", cursor)
        last = await queue.get_cursor("connection-1", "session-1")
        missed = await queue.recover("session-1", last)

It shares ``kvstore``'s URL grammar, SQLite defaults, AgentX home and error root
(:class:`kvstore.errors.PersistenceError`), and runs on anyio: under asyncio, and under trio with
the SQLite backend.
It lives in the repository folder ``queue/``, which deliberately has no ``__init__.py`` so that
the standard library's ``queue`` is never shadowed.
"""

from __future__ import annotations

import logging

from eventqueue.entry import Clock, QueueEntry, system_clock
from eventqueue.errors import (
    AsyncLibraryNotSupported,
    CorruptEvent,
    QueueBackendError,
    QueueClosed,
    QueueError,
    QueueUnavailable,
    ValidationError,
)
from eventqueue.factory import create_queue
from eventqueue.front import EventQueue, OnCorrupt, Subscription
from eventqueue.subscribers import Handler

# A library only emits records; the application decides where they go. Without this, Python's
# last-resort handler would print the queue's warnings to stderr in an unconfigured program.
logging.getLogger("eventqueue").addHandler(logging.NullHandler())

__all__ = [
    "AsyncLibraryNotSupported",
    "Clock",
    "CorruptEvent",
    "EventQueue",
    "Handler",
    "OnCorrupt",
    "QueueBackendError",
    "QueueClosed",
    "QueueEntry",
    "QueueError",
    "QueueUnavailable",
    "Subscription",
    "ValidationError",
    "create_queue",
    "system_clock",
]
