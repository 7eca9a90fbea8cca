"""ContainerRepository: containers, and the cascade that deletes what they hold."""

from __future__ import annotations

from entities._checks import check_id
from entities.errors import ValidationError
from entities.images import ImageRepository
from entities.keys import KeyLayout
from entities.records import ContainerRecord
from entities.sessions import SessionRepository
from kvstore.storage import Storage

__all__ = ["ContainerRepository"]


class ContainerRepository:
    """Stores containers.

    Deleting a container deletes everything it holds: its images (and, through them, every
    session made from those images) and its sessions, each with their messages.
    """

    __slots__ = ("_images", "_keys", "_sessions", "_storage")

    def __init__(
        self,
        storage: Storage,
        layout: KeyLayout,
        images: ImageRepository,
        sessions: SessionRepository,
    ) -> None:
        self._storage = storage
        self._keys = layout
        self._images = images
        self._sessions = sessions

    async def save_container(self, record: ContainerRecord) -> None:
        """Create or replace the container ``record.container_id``."""
        if not isinstance(record, ContainerRecord):
            raise ValidationError(
                f"save_container takes a ContainerRecord, not {type(record).__name__}"
            )
        await self._storage.set(self._keys.container(record.container_id), record.to_document())

    async def find_container_by_id(self, container_id: str) -> ContainerRecord | None:
        """Return the container ``container_id``, or ``None``."""
        key = self._keys.container(check_id(container_id, "container_id"))
        document = await self._storage.get(key)
        return None if document is None else ContainerRecord.from_document(document)

    async def find_all_containers(self) -> list[ContainerRecord]:
        """Return every container, in key order of their ids."""
        return [
            ContainerRecord.from_document(document)
            async for _, document in self._storage.items("containers:")
        ]

    async def container_exists(self, container_id: str) -> bool:
        """Tell whether the container ``container_id`` exists."""
        return await self._storage.has(self._keys.container(check_id(container_id, "container_id")))

    async def delete_container(self, container_id: str) -> None:
        """Delete the container and everything it holds (see the class docstring).

        A missing container is no error; calling this again after an interruption finishes the
        cascade, since what it held is found through index entries.
        """
        await self._storage.delete(self._keys.container(check_id(container_id, "container_id")))
        await self._images._delete_indexed(
            self._keys.images_by_container_prefix(container_id), container_id
        )
        await self._sessions._delete_indexed(
            self._keys.sessions_by_container_prefix(container_id),
            lambda record: record.container_id == container_id,
        )
