"""ImageRepository: images and their index entries (by container, by name)."""

from __future__ import annotations

import dataclasses

from entities._checks import check_id, check_object
from entities._index import lookup, now_ms, save_indexed, stored_entries
from entities.errors import RecordNotFound, ValidationError
from entities.keys import KeyLayout
from entities.records import ImageRecord, JSONObject
from entities.sessions import SessionRepository
from kvstore.storage import Storage

__all__ = ["ImageRepository"]


class ImageRepository:
    """Stores images; lookups by container or name cost in proportion to what they return.

    Deleting an image deletes every session made from it (with their messages). Images forked
    from it keep their ``parent_image_id``, which then names an image that no longer exists.
    """

    __slots__ = ("_keys", "_sessions", "_storage")

    def __init__(self, storage: Storage, layout: KeyLayout, sessions: SessionRepository) -> None:
        self._storage = storage
        self._keys = layout
        self._sessions = sessions

    def _entries(self, record: ImageRecord) -> list[str]:
        return [
            self._keys.image_by_container(record.container_id, record.image_id),
            self._keys.image_by_name(record.name, record.image_id),
        ]

    async def save_image(self, record: ImageRecord) -> None:
        """Create or replace the image ``record.image_id``; its lookups follow at once.

        Its container need not exist (so imports may come in any order).
        """
        if not isinstance(record, ImageRecord):
            raise ValidationError(f"save_image takes an ImageRecord, not {type(record).__name__}")
        await save_indexed(
            self._storage,
            self._keys.image(record.image_id),
            record,
            ImageRecord.from_document,
            self._entries,
        )

    async def find_image_by_id(self, image_id: str) -> ImageRecord | None:
        """Return the image ``image_id``, or ``None``."""
        document = await self._storage.get(self._keys.image(check_id(image_id, "image_id")))
        return None if document is None else ImageRecord.from_document(document)

    async def find_all_images(self) -> list[ImageRecord]:
        """Return every image, in key order of their ids."""
        return [
            ImageRecord.from_document(document)
            async for _, document in self._storage.items("images:")
        ]

    async def find_images_by_name(self, name: str) -> list[ImageRecord]:
        """Return every image whose name is exactly ``name``, in key order of their ids."""
        check_id(name, "name")
        found, _ = await lookup(
            self._storage,
            self._keys.images_by_name_prefix(name),
            self._keys.image,
            ImageRecord.from_document,
            lambda record, hinted: record.image_id == hinted and record.name == name,
        )
        return found

    async def find_images_by_container_id(self, container_id: str) -> list[ImageRecord]:
        """Return every image in ``container_id``, in key order of their ids."""
        check_id(container_id, "container_id")
        found, _ = await lookup(
            self._storage,
            self._keys.images_by_container_prefix(container_id),
            self._keys.image,
            ImageRecord.from_document,
            lambda record, hinted: (
                record.image_id == hinted and record.container_id == container_id
            ),
        )
        return found

    async def update_metadata(self, image_id: str, metadata: JSONObject) -> ImageRecord:
        """Merge ``metadata`` into the image's metadata (top-level keys replace), stamp
        ``updated_at`` with the current time, store and return the updated image.

        Raises :class:`RecordNotFound` for a missing image. Two concurrent calls on one image
        are last-writer-wins for the whole record: one may undo the other's keys.
        """
        check_id(image_id, "image_id")
        update = check_object(metadata, "metadata")
        current = await self.find_image_by_id(image_id)
        if current is None:
            raise RecordNotFound(f"no image {image_id!r}")
        updated = dataclasses.replace(
            current,
            metadata={**(current.metadata or {}), **update},
            updated_at=max(now_ms(), current.updated_at),
        )
        await self.save_image(updated)
        return updated

    async def delete_image(self, image_id: str) -> None:
        """Delete the image, its index entries and the sessions made from it (with messages).

        A missing image is no error; calling this again after an interruption finishes the
        cascade, since the sessions are found through their own index entries.
        """
        key = self._keys.image(check_id(image_id, "image_id"))
        entries = await stored_entries(self._storage, key, ImageRecord.from_document, self._entries)
        await self._storage.delete_many([key, *entries])
        await self._sessions._delete_indexed(
            self._keys.sessions_by_image_prefix(image_id),
            lambda record: record.image_id == image_id,
        )

    async def _delete_indexed(self, prefix: str, container_id: str) -> None:
        """Cascade step: delete the images of ``container_id`` hinted under ``prefix``, then
        every hint under it."""
        found, hints = await lookup(
            self._storage,
            prefix,
            self._keys.image,
            ImageRecord.from_document,
            lambda record, hinted: (
                record.image_id == hinted and record.container_id == container_id
            ),
        )
        for record in found:
            await self.delete_image(record.image_id)
        if hints:
            await self._storage.delete_many([key for key, _ in hints])
