"""The errors the event queue raises; no backend exception type ever reaches the caller."""

from __future__ import annotations

from typing import Any

from kvstore.errors import BackendUnavailable, PersistenceError

__all__ = [
    "AsyncLibraryNotSupported",
    "CorruptEvent",
    "QueueBackendError",
    "QueueClosed",
    "QueueError",
    "QueueUnavailable",
    "ValidationError",
]


class QueueError(PersistenceError):
    """Base class of every error the event queue raises on purpose.

    It descends from :class:`kvstore.errors.PersistenceError`, the root that the storage and
    entity errors share.
    """


class QueueClosed(QueueError):
    """The queue was closed; it cannot be used again."""


class ValidationError(QueueError, ValueError):
    """A topic, event, cursor, consumer id or option was refused; nothing was written."""


class QueueBackendError(QueueError):
    """The backend failed in a way that is not a connectivity problem."""


class QueueUnavailable(QueueBackendError, BackendUnavailable):
    """The backend could not be reached, timed out, or stayed locked past the deadline.

    It is also a :class:`kvstore.errors.BackendUnavailable`, so a retry policy written for the
    storage ("retry what is unavailable") works for the queue unchanged. ``message`` already
    names the backend and where it is (redacted); ``driver`` is ``"eventqueue"`` unless a
    backend says which it is, and ``where`` is empty unless given.
    """

    def __init__(self, message: str, *, driver: str = "eventqueue", where: str = "") -> None:
        # Not BackendError.__init__: the queue's messages name their backend and place already,
        # and that initialiser would prefix them again.
        Exception.__init__(self, message)
        self.message = message
        self.driver = driver
        self.where = where

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep it picklable with its attributes (logging handlers and process pools pickle
        # exceptions); the keyword-only arguments travel through the state.
        return (type(self), (self.message,), {"driver": self.driver, "where": self.where})


class AsyncLibraryNotSupported(QueueError, NotImplementedError):
    """The queue's backend cannot run under the async library in use; nothing was done.

    The Redis (``redis.asyncio``) and PostgreSQL (psycopg's async connections) backends run under
    asyncio only; the SQLite backend runs under asyncio and trio. ``backend`` names the backend
    and ``library`` the async library that was running.
    """

    def __init__(self, backend: str, library: str, reason: str) -> None:
        super().__init__(
            f"the {backend} event-queue backend cannot run under {library}: {reason}; run it "
            "under asyncio, or use the sqlite backend"
        )
        self.backend = backend
        self.library = library
        self.reason = reason

    def __reduce__(self) -> tuple[type[AsyncLibraryNotSupported], tuple[str, str, str]]:
        # Keep it picklable (logging handlers and process pools pickle exceptions).
        return (AsyncLibraryNotSupported, (self.backend, self.library, self.reason))


class CorruptEvent(QueueBackendError):
    """A stored event at ``cursor`` in ``topic`` cannot be read back as an event.

    The row was not written by this queue as it stands (another tool, a bug, bit rot): its
    payload is not JSON, or a field has the wrong type. Readers never stop at it: ``recover``,
    ``consume`` and live delivery skip it, log one ERROR record on the ``eventqueue`` logger whose
    ``exc_info`` is this exception, and hand it to the caller's ``on_corrupt`` callback if one was
    given (a callback that raises it stops the read there instead). ``reason`` says what was wrong
    without quoting the stored bytes.
    """

    def __init__(self, topic: str, cursor: str, reason: str) -> None:
        super().__init__(
            f"topic {topic!r}: the stored event at cursor {cursor} is corrupt: {reason}"
        )
        self.topic = topic
        self.cursor = cursor
        self.reason = reason

    def __reduce__(self) -> tuple[type[CorruptEvent], tuple[str, str, str]]:
        # Keep it picklable (logging handlers and process pools pickle exceptions).
        return (CorruptEvent, (self.topic, self.cursor, self.reason))
