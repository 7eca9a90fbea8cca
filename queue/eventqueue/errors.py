"""The errors the event queue raises; no backend exception type ever reaches the caller."""

from __future__ import annotations

from kvstore.errors import PersistenceError

__all__ = [
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


class QueueUnavailable(QueueBackendError):
    """The backend could not be reached, timed out, or stayed locked past the deadline."""


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
