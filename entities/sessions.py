"""SessionRepository: sessions, their index entries and their messages."""

from __future__ import annotations

from collections.abc import Callable

from entities._checks import check_id
from entities._index import lookup, save_indexed, stored_entries
from entities.errors import RecordNotFound, ValidationError
from entities.keys import KeyLayout
from entities.records import Message, SessionRecord
from kvstore.storage import Storage

__all__ = ["SessionRepository"]


class SessionRepository:
    """Stores sessions and their messages; lookups by image or container use index entries.

    Messages live one per key, ordered by timestamp then id, so concurrent :meth:`add_message`
    calls never overwrite one another. Deleting a session deletes its messages.
    """

    __slots__ = ("_keys", "_storage")

    def __init__(self, storage: Storage, layout: KeyLayout) -> None:
        self._storage = storage
        self._keys = layout

    def _entries(self, record: SessionRecord) -> list[str]:
        return [
            self._keys.session_by_container(record.container_id, record.session_id),
            self._keys.session_by_image(record.image_id, record.session_id),
        ]

    async def save_session(self, record: SessionRecord) -> None:
        """Create or replace the session ``record.session_id``; its lookups follow at once.

        Neither its image nor its container needs to exist (so imports may come in any order).
        """
        if not isinstance(record, SessionRecord):
            raise ValidationError(
                f"save_session takes a SessionRecord, not {type(record).__name__}"
            )
        await save_indexed(
            self._storage,
            self._keys.session(record.session_id),
            record,
            SessionRecord.from_document,
            self._entries,
        )

    async def find_session_by_id(self, session_id: str) -> SessionRecord | None:
        """Return the session ``session_id``, or ``None``."""
        document = await self._storage.get(self._keys.session(check_id(session_id, "session_id")))
        return None if document is None else SessionRecord.from_document(document)

    async def find_sessions_by_image_id(self, image_id: str) -> list[SessionRecord]:
        """Return every session made from ``image_id``, in key order of their ids."""
        check_id(image_id, "image_id")
        found, _ = await lookup(
            self._storage,
            self._keys.sessions_by_image_prefix(image_id),
            self._keys.session,
            SessionRecord.from_document,
            lambda record, hinted: record.session_id == hinted and record.image_id == image_id,
        )
        return found

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
        check_id(container_id, "container_id")
        found, _ = await lookup(
            self._storage,
            self._keys.sessions_by_container_prefix(container_id),
            self._keys.session,
            SessionRecord.from_document,
            lambda record, hinted: (
                record.session_id == hinted and record.container_id == container_id
            ),
        )
        return found

    async def find_all_sessions(self) -> list[SessionRecord]:
        """Return every session, in key order of their ids."""
        return [
            SessionRecord.from_document(document)
            async for _, document in self._storage.items("sessions:")
        ]

    async def add_message(self, session_id: str, message: Message) -> None:
        """Store ``message`` in the session ``session_id``, which must exist.

        Raises :class:`RecordNotFound` for a missing session. Adding a message with the same
        timestamp and id again replaces it.
        """
        check_id(session_id, "session_id")
        if not isinstance(message, Message):
            raise ValidationError(f"add_message takes a Message, not {type(message).__name__}")
        key = self._keys.message(session_id, message.timestamp, message.id)
        if not await self._storage.has(self._keys.session(session_id)):
            raise RecordNotFound(f"no session {session_id!r}")
        await self._storage.set(key, message.to_document())

    async def get_messages(self, session_id: str) -> list[Message]:
        """Return the session's messages ordered by timestamp, then id, in one prefix scan."""
        prefix = self._keys.messages_prefix(check_id(session_id, "session_id"))
        return [
            Message.from_document(document) async for _, document in self._storage.items(prefix)
        ]

    async def clear_messages(self, session_id: str) -> None:
        """Delete every message of the session; the session itself stays."""
        await self._storage.clear(self._keys.messages_prefix(check_id(session_id, "session_id")))

    async def delete_session(self, session_id: str) -> None:
        """Delete the session, its index entries and its messages; a missing one is no error.

        The record goes first, so that :meth:`add_message` stops accepting messages; calling
        this again after an interruption finishes removing the messages.
        """
        key = self._keys.session(check_id(session_id, "session_id"))
        entries = await stored_entries(
            self._storage, key, SessionRecord.from_document, self._entries
        )
        await self._storage.delete_many([key, *entries])
        await self._storage.clear(self._keys.messages_prefix(session_id))

    async def _delete_indexed(self, prefix: str, belongs: Callable[[SessionRecord], bool]) -> None:
        """Cascade step: delete the sessions hinted under ``prefix`` that ``belongs`` accepts,
        then every hint under it (stale ones included, as what they named is gone)."""
        found, hints = await lookup(
            self._storage,
            prefix,
            self._keys.session,
            SessionRecord.from_document,
            lambda record, hinted: record.session_id == hinted and belongs(record),
        )
        for record in found:
            await self.delete_session(record.session_id)
        if hints:
            await self._storage.delete_many([key for key, _ in hints])
