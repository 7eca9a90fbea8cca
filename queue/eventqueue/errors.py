"""The errors the event queue raises; no backend exception type ever reaches the caller."""

from __future__ import annotations

__all__ = [
    "QueueBackendError",
    "QueueClosed",
    "QueueError",
    "QueueUnavailable",
    "ValidationError",
]


class QueueError(Exception):
    """Base class of every error the event queue raises on purpose."""


class QueueClosed(QueueError):
    """The queue was closed; it cannot be used again."""


class ValidationError(QueueError, ValueError):
    """A topic, event, cursor, consumer id or option was refused; nothing was written."""


class QueueBackendError(QueueError):
    """The backend failed in a way that is not a connectivity problem."""


class QueueUnavailable(QueueBackendError):
    """The backend could not be reached, timed out, or stayed locked past the deadline."""
