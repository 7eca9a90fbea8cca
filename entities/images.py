"""ImageRepository: images and their index entries (by container, by name)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from entities._checks import check_id, check_object, record_or_mapping
from entities._index import now_ms
from entities.agentx import IMAGES
from entities.records import ImageRecord, JSONObject
from entities.repository import OnError, Repository
from entities.sessions import SessionRepository
from kvstore.storage import Storage

__all__ = ["ImageRepository"]


class ImageRepository:
    """Stores images; lookups by container or name cost in proportion to what they return.

    Deleting an image deletes every session made from it (with their messages). Images forked
    from it keep their ``parent_image_id``, which then names an image that no longer exists.
    """

    __slots__ = ("_repository", "_sessions")

    def __init__(
        self, storage: Storage, layout: object = None, sessions: SessionRepository | None = None
    ) -> None:
        # ``layout`` is accepted for compatibility: the declaration builds every key now.
        self._repository = Repository(storage, IMAGES)
        self._sessions = sessions if sessions is not None else SessionRepository(storage)

    @property
    def repository(self) -> Repository[ImageRecord]:
        """The generic repository underneath (versioned reads, ``update``, pagination...)."""
        return self._repository

    async def save_image(self, record: ImageRecord | Mapping[str, Any]) -> None:
        """Create or replace the image ``record.image_id``; its lookups follow at once.

        Takes a record or its camelCase document. Its container need not exist (so imports may
        come in any order).
        """
        await self._repository.save(record_or_mapping(record, ImageRecord, "save_image"))

    async def find_image_by_id(self, image_id: str) -> ImageRecord | None:
        """Return the image ``image_id``, or ``None``."""
        return await self._repository.get(image_id)

    async def find_all_images(self, *, on_error: OnError | None = None) -> list[ImageRecord]:
        """Return every image, in key order of their ids.

        A stored image that cannot be read raises
        :class:`~entities.errors.MalformedDocument` naming its key, unless ``on_error``
        receives it (the rest are then returned).
        """
        return await self._repository.find_all(on_error=on_error)

    async def find_images_by_name(self, name: str) -> list[ImageRecord]:
        """Return every image whose name is exactly ``name``, in key order of their ids."""
        return await self._repository.find("by_name", check_id(name, "name"))

    async def find_images_by_container_id(self, container_id: str) -> list[ImageRecord]:
        """Return every image in ``container_id``, in key order of their ids."""
        return await self._repository.find("by_container", check_id(container_id, "container_id"))

    async def update_metadata(self, image_id: str, metadata: JSONObject) -> ImageRecord:
        """Merge ``metadata`` into the image's metadata (top-level keys replace), stamp
        ``updated_at`` with the current time, store and return the updated image.

        Raises :class:`~entities.errors.RecordNotFound` for a missing image. Concurrent calls
        (from any number of processes) each apply on top of the others: none is lost.
        """
        check_id(image_id, "image_id")
        update = check_object(metadata, "metadata")
        return await self._repository.update(
            image_id,
            lambda current: dataclasses.replace(
                current,
                metadata={**(current.metadata or {}), **update},
                updated_at=max(now_ms(), current.updated_at),
            ),
        )

    async def delete_image(self, image_id: str) -> None:
        """Delete the image, its index entries and the sessions made from it (with messages).

        A missing image is no error; calling this again after an interruption finishes the
        cascade, since the sessions are found through their own index entries.
        """
        check_id(image_id, "image_id")
        await self._repository.delete(image_id)
        await self._sessions._delete_indexed(
            "by_image", image_id, lambda record: record.image_id == image_id
        )

    async def _delete_indexed(self, container_id: str) -> None:
        """Cascade step: delete the images of ``container_id``, then every hint there."""
        found, hints = await self._repository.find_with_entries("by_container", container_id)
        for record in found:
            await self.delete_image(record.image_id)
        await self._repository.delete_entries(hints)
