"""The small interface every event-queue backend implements.

Contract every backend keeps:

- ``append`` commits all payloads of one call atomically and returns their cursors; cursors of
  one topic are strictly increasing in commit order, across every process and queue object
  sharing the storage, and never reused, even after retention deleted every event of the topic.
  A reader can never see a cursor while a smaller one of the same topic is still uncommitted, so
  "read everything after my last cursor" never skips an event.
- Cursor strings of one backend compare correctly as plain strings.
- ``read_after`` never raises because of one row's content: a row that does not decode (see
  :func:`eventqueue.decoding.decode_entry`) is returned in its place as a
  :class:`~eventqueue.errors.CorruptEvent` with its cursor, so readers can report it and move on.
- ``wait_for_events`` returns when events after ``after`` may exist (a local ``notify_local``,
  a server notification, or a poll tick) or after ``max_wait`` seconds; returning early is
  harmless, the caller reads again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from eventqueue.decoding import StoredEvent

__all__ = ["QueueBackend"]


class QueueBackend(Protocol):
    """Durable per-topic event log with consumer cursors; see the module docstring."""

    description: str
    """Where the data lives, safe to print (passwords redacted)."""

    name: str
    """The backend's name in messages: ``"sqlite"``, ``"redis"``, ``"postgresql"``."""

    requires_asyncio: str | None
    """None if the backend runs under any async library anyio supports (asyncio, trio); else
    why it runs under asyncio only (its client library), which the queue raises under trio."""

    async def open(self) -> None:
        """Connect and create the schema; called once, before any other method."""

    async def close(self) -> None:
        """Release connections; called once."""

    def check_cursor(self, cursor: object) -> str:
        """Return ``cursor`` if this backend could have produced it, else raise ValidationError."""

    async def append(self, topic: str, payloads: Sequence[bytes], timestamp: int) -> list[str]:
        """Store ``payloads`` (JSON bytes) in one transaction; return their cursors in order."""

    async def read_after(self, topic: str, after: str | None, limit: int) -> list[StoredEvent]:
        """Return up to ``limit`` stored events with cursor greater than ``after``, oldest first.

        Each is a decoded entry, or a ``CorruptEvent`` for a row that does not decode.
        """

    async def last_cursor(self, topic: str) -> str | None:
        """Return the greatest cursor ever assigned in ``topic`` (even if deleted), or None."""

    async def set_cursor_if_greater(
        self, consumer_id: str, topic: str, cursor: str, timestamp: int
    ) -> None:
        """Move the consumer's cursor to ``cursor`` unless it is already at or past it.

        ``timestamp`` is recorded as the consumer's last sign of life either way.
        """

    async def get_cursor(self, consumer_id: str, topic: str) -> str | None:
        """Return the consumer's acked cursor, or None if it never acked (or was cleaned up)."""

    async def delete_older_than(self, cutoff: int) -> int:
        """Delete events with timestamp < ``cutoff`` and cursors last acked before it.

        Returns the number of events deleted.
        """

    async def wait_for_events(self, topic: str, after: str | None, max_wait: float) -> None:
        """Wait until events after ``after`` may exist, or ``max_wait`` seconds pass."""

    def notify_local(self, topic: str) -> None:
        """Wake this object's waiters on ``topic`` after a local append committed."""
