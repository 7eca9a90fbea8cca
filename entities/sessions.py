"""SessionRepository: sessions, their index entries and their messages."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from entities._checks import check_id, record_or_mapping
from entities.agentx import SESSIONS
from entities.children import ChildRepository
from entities.records import Message, SessionRecord
from entities.repository import OnError, Repository
from kvstore.storage import Storage

__all__ = ["SessionRepository"]


class SessionRepository:
    """Stores sessions and their messages; lookups by image or container use index entries.

    Messages live one per key, ordered by timestamp and then by the order they were added (a
    per-session counter in the store numbers them, so the order holds across processes), and
    concurrent :meth:`add_message` calls never overwrite one another. Deleting a session
    deletes its messages; an :meth:`add_message` racing the delete either fails with
    :class:`~entities.errors.RecordNotFound` or its message is deleted with the session (see
    :mod:`entities.children`).
    """

    __slots__ = ("_messages", "_repository")

    def __init__(self, storage: Storage, layout: object = None) -> None:
        # ``layout`` is accepted for compatibility: the declaration builds every key now.
        self._repository = Repository(storage, SESSIONS)
        self._messages: ChildRepository[Message] = self._repository.children("messages")

    @property
    def repository(self) -> Repository[SessionRecord]:
        """The generic repository underneath (versioned reads, ``update``, pagination...)."""
        return self._repository

    async def save_session(self, record: SessionRecord | Mapping[str, Any]) -> None:
        """Create or replace the session ``record.session_id``; its lookups follow at once.

        Takes a record or its camelCase document. Neither its image nor its container needs to
        exist (so imports may come in any order).
        """
        await self._repository.save(record_or_mapping(record, SessionRecord, "save_session"))

    async def find_session_by_id(self, session_id: str) -> SessionRecord | None:
        """Return the session ``session_id``, or ``None``."""
        return await self._repository.get(session_id)

    async def find_sessions_by_image_id(self, image_id: str) -> list[SessionRecord]:
        """Return every session made from ``image_id``, in key order of their ids."""
        return await self._repository.find("by_image", check_id(image_id, "image_id"))

    async def find_session_by_image_id(self, image_id: str) -> SessionRecord | None:
        """Return the most recently updated session made from ``image_id``, or ``None``.

        Ties go to the greatest session id, so the answer does not depend on the backend.
        """
        found = await self.find_sessions_by_image_id(image_id)
        if not found:
            return None
        return max(found, key=lambda record: (record.updated_at, record.session_id))

    async def find_sessions_by_container_id(self, container_id: str) -> list[SessionRecord]:
        """Return every session in ``container_id``, in key order of their ids."""
        return await self._repository.find("by_container", check_id(container_id, "container_id"))

    async def find_all_sessions(self, *, on_error: OnError | None = None) -> list[SessionRecord]:
        """Return every session, in key order of their ids.

        A stored session that cannot be read raises
        :class:`~entities.errors.MalformedDocument` naming its key, unless ``on_error``
        receives it (the rest are then returned).
        """
        return await self._repository.find_all(on_error=on_error)

    async def add_message(self, session_id: str, message: Message | Mapping[str, Any]) -> None:
        """Store ``message`` in the session ``session_id``, which must exist.

        Takes a :class:`Message` or its document. Raises
        :class:`~entities.errors.RecordNotFound` for a missing session (or one deleted while
        the message is added). Adding a message with the same timestamp and id again replaces
        it in place.
        """
        await self._messages.add(session_id, record_or_mapping(message, Message, "add_message"))

    async def get_messages(
        self,
        session_id: str,
        *,
        limit: int | None = None,
        after: Message | None = None,
        on_error: OnError | None = None,
    ) -> list[Message]:
        """Return the session's messages ordered by timestamp, then by the order added.

        Without ``limit`` and ``after``, every message (one prefix scan). ``limit`` caps a
        page and ``after`` (the last message of the previous page) starts the next one.
        """
        return await self._messages.find_all(
            session_id, limit=limit, after=after, on_error=on_error
        )

    async def clear_messages(self, session_id: str) -> None:
        """Delete every message of the session; the session itself stays."""
        await self._messages.clear(session_id)

    async def delete_session(self, session_id: str) -> None:
        """Delete the session, its index entries and its messages; a missing one is no error.

        The record goes first, so that :meth:`add_message` stops accepting messages; calling
        this again after an interruption finishes removing the messages.
        """
        await self._repository.delete(session_id)

    async def _delete_indexed(
        self, index: str, value: str, belongs: Callable[[SessionRecord], bool]
    ) -> None:
        """Cascade step: delete the sessions hinted under ``index`` for ``value`` that
        ``belongs`` accepts, then every hint there (stale ones included: what they named is
        gone)."""
        found, hints = await self._repository.find_with_entries(index, value)
        for record in found:
            if belongs(record):
                await self.delete_session(record.session_id)
        await self._repository.delete_entries(hints)
