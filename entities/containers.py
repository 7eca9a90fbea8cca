"""ContainerRepository: containers, and the cascade that deletes what they hold."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from entities._checks import check_id, record_or_mapping
from entities.agentx import CONTAINERS
from entities.images import ImageRepository
from entities.records import ContainerRecord
from entities.repository import OnError, Repository
from entities.sessions import SessionRepository
from kvstore.storage import Storage

__all__ = ["ContainerRepository"]


class ContainerRepository:
    """Stores containers.

    Deleting a container deletes everything it holds: its images (and, through them, every
    session made from those images) and its sessions, each with their messages.
    """

    __slots__ = ("_images", "_repository", "_sessions")

    def __init__(
        self,
        storage: Storage,
        layout: object = None,
        images: ImageRepository | None = None,
        sessions: SessionRepository | None = None,
    ) -> None:
        # ``layout`` is accepted for compatibility: the declaration builds every key now.
        self._repository = Repository(storage, CONTAINERS)
        self._sessions = sessions if sessions is not None else SessionRepository(storage)
        self._images = (
            images if images is not None else ImageRepository(storage, None, self._sessions)
        )

    @property
    def repository(self) -> Repository[ContainerRecord]:
        """The generic repository underneath (versioned reads, ``update``, pagination...)."""
        return self._repository

    async def save_container(self, record: ContainerRecord | Mapping[str, Any]) -> None:
        """Create or replace the container ``record.container_id``.

        Takes a record or its camelCase document.
        """
        await self._repository.save(record_or_mapping(record, ContainerRecord, "save_container"))

    async def find_container_by_id(self, container_id: str) -> ContainerRecord | None:
        """Return the container ``container_id``, or ``None``."""
        return await self._repository.get(container_id)

    async def find_all_containers(
        self, *, on_error: OnError | None = None
    ) -> list[ContainerRecord]:
        """Return every container, in key order of their ids.

        A stored container that cannot be read raises
        :class:`~entities.errors.MalformedDocument` naming its key, unless ``on_error``
        receives it (the rest are then returned).
        """
        return await self._repository.find_all(on_error=on_error)

    async def container_exists(self, container_id: str) -> bool:
        """Tell whether the container ``container_id`` exists."""
        return await self._repository.exists(container_id)

    async def delete_container(self, container_id: str) -> None:
        """Delete the container and everything it holds (see the class docstring).

        A missing container is no error; calling this again after an interruption finishes the
        cascade, since what it held is found through index entries.
        """
        check_id(container_id, "container_id")
        await self._repository.delete(container_id)
        await self._images._delete_indexed(container_id)
        await self._sessions._delete_indexed(
            "by_container", container_id, lambda record: record.container_id == container_id
        )
