"""Repository: the typed store of one declared entity type, safe with many writers.

Every write is conditional on the version of the record it read (kvstore's conditional writes),
so concurrent writers never lose one another's updates: :meth:`Repository.save` and
:meth:`Repository.update` retry when they lose a race; :meth:`Repository.create` and
:meth:`Repository.replace` raise instead. Only single-key conditional operations are used, so
every driver with the capability (MongoDB and local files included, which have no multi-key
transactions) gives the same guarantees.

Index entries are written before the record and stale ones removed after it (see
:mod:`entities._index`); lookups verify every entry against its record. A unique index value is
claimed with a create-only entry holding the owner's id before the record is written, and
released when the record is deleted or stops holding it. Claims a crashed writer leaves behind
refuse that value until :meth:`Repository.rebuild_indexes` releases them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import suppress
from itertools import count
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from entities._checks import check_id
from entities._index import (
    INDEX_VALUE,
    check_limit,
    page_keys,
    read_documents,
    read_hints,
)
from entities._layout import EntityLayout
from entities._maintenance import Maintenance, Prepared
from entities.declarations import Entity, Index
from entities.errors import (
    MalformedDocument,
    RecordChanged,
    RecordExists,
    RecordNotFound,
    SchemaVersionError,
    UniqueViolation,
    ValidationError,
)
from kvstore.conditional import Versioned, retry_pause
from kvstore.errors import Conflict
from kvstore.serialization import JSONValue
from kvstore.storage import Storage

if TYPE_CHECKING:
    from entities.children import ChildRepository

__all__ = ["UPDATE_ATTEMPTS", "OnError", "Repository"]

R = TypeVar("R")

#: How many times :meth:`Repository.update` tries before raising RecordChanged.
UPDATE_ATTEMPTS = 64

OnError = Callable[[ValidationError], object]
"""Receives a :class:`MalformedDocument` or :class:`SchemaVersionError` (both have ``key``)
that a listing skipped."""


class Repository(Maintenance[R]):
    """Saves, reads, looks up, lists and deletes the records of one :class:`Entity`.

    Methods that take a record also take a mapping in its stored form (the document), parsed
    and checked the same way. Bad input raises :class:`ValidationError` and writes nothing.
    """

    __slots__ = ("_children", "_entity", "_keys", "_storage")

    def __init__(self, storage: Storage, entity: Entity[R]) -> None:
        from entities.children import ChildRepository

        self._storage = storage
        self._entity = entity
        self._keys = EntityLayout(entity, storage.base)
        self._children: dict[str, ChildRepository[Any]] = {
            children.name: ChildRepository(storage, self._keys, children)
            for children in entity.children
        }

    @property
    def entity(self) -> Entity[R]:
        """The declaration this repository stores."""
        return self._entity

    @property
    def layout(self) -> EntityLayout:
        """The keys of this entity in this repository's storage."""
        return self._keys

    def children(self, name: str) -> ChildRepository[Any]:
        """The repository of the children declared as ``name``."""
        if name not in self._children:
            self._entity.child(name)  # raises, naming the entity
        return self._children[name]

    # -- reads --------------------------------------------------------------------------------

    def _key(self, record_id: object) -> str:
        return self._keys.record(check_id(record_id, self._entity.id_field))

    async def get(self, record_id: str) -> R | None:
        """Return the record ``record_id``, or ``None``.

        Raises :class:`MalformedDocument` or :class:`SchemaVersionError` naming the key if the
        stored document cannot be read.
        """
        key = self._key(record_id)
        document = await self._storage.get(key)
        return None if document is None else self._entity.parse(document, key)

    async def get_versioned(self, record_id: str) -> Versioned[R] | None:
        """Return the record with the version to pass to :meth:`replace`, or ``None``."""
        key = self._key(record_id)
        found = await self._storage.get_versioned(key)
        return (
            None
            if found is None
            else Versioned(self._entity.parse(found.value, key), found.version)
        )

    async def exists(self, record_id: str) -> bool:
        """Tell whether the record ``record_id`` exists."""
        return await self._storage.has(self._key(record_id))

    async def find(
        self, index: str, value: str | int, *, on_error: OnError | None = None
    ) -> list[R]:
        """Return the records whose ``index`` value is ``value``, in key order of their ids.

        Costs one scan of the entries of ``value`` plus reading the records they name: in
        proportion to the answer, whatever the number of records.
        """
        found, _ = await self.find_with_entries(index, value, on_error=on_error)
        return found

    async def find_one(self, index: str, value: str | int) -> R | None:
        """Return the record holding ``value`` in a unique ``index``, or ``None``."""
        if not self._entity.index(index).unique:
            raise ValueError(f"find_one needs a unique index; {index!r} is not one")
        found = await self.find(index, value)
        return found[0] if found else None

    async def find_all(
        self,
        *,
        limit: int | None = None,
        after: str | None = None,
        on_error: OnError | None = None,
    ) -> list[R]:
        """Return the records in key order of their ids: all of them, or a page.

        ``limit`` caps the page; ``after`` (an id, usually the last of the previous page)
        starts it after that id. A stored document that cannot be read raises
        :class:`MalformedDocument` (or :class:`SchemaVersionError`) naming its key, unless
        ``on_error`` is given: it then receives the error and the rest are returned (a page
        may then hold fewer than ``limit``). Failing is the default because listings are what
        copies and migrations are built on: a record silently left out would be lost.
        """
        limit = check_limit(limit)
        prefix = self._keys.records_prefix
        if limit is None and after is None:
            return [
                record async for record in self._parse_stream(self._storage.items(prefix), on_error)
            ]
        start = None if after is None else self._key(after)
        keys = await page_keys(self._storage, prefix, after=start, limit=limit)
        documents = await read_documents(self._storage, keys)
        return self._parse_pairs(zip(keys, documents, strict=True), on_error)

    async def _parse_stream(
        self, items: AsyncIterator[tuple[str, JSONValue]], on_error: OnError | None
    ) -> AsyncIterator[R]:
        async for key, document in items:
            record = self._parse_reporting(key, document, on_error)
            if record is not None:
                yield record

    def _parse_pairs(self, pairs: Any, on_error: OnError | None) -> list[R]:
        found: list[R] = []
        for key, document in pairs:
            if document is None:
                continue  # deleted since its key was read
            record = self._parse_reporting(key, document, on_error)
            if record is not None:
                found.append(record)
        return found

    def _parse_reporting(self, key: str, document: JSONValue, on_error: OnError | None) -> R | None:
        try:
            return self._entity.parse(document, key)
        except (MalformedDocument, SchemaVersionError) as error:
            if on_error is None:
                raise
            on_error(error)
            return None

    async def find_with_entries(
        self, index_name: str, value: str | int, *, on_error: OnError | None = None
    ) -> tuple[list[R], list[str]]:
        """:meth:`find`, plus the key of every entry read, stale ones included.

        For cascades: delete what was found, then the entries with :meth:`delete_entries`.
        """
        index = self._entity.index(index_name)
        wanted = (
            str(value) if type(value) is int else check_id(value, f"index {index_name!r} value")
        )
        if index.unique:
            entry = self._keys.unique(index.name, wanted)
            holder = await self._storage.get(entry)
            if type(holder) is not str or not holder:
                return [], [entry] if holder is not None else []
            hints = [(entry, holder)]
        else:
            hints = await read_hints(self._storage, self._keys.entries_prefix(index.name, wanted))
        keys: list[str] = []
        for _, hinted in hints:
            try:
                keys.append(self._keys.record(hinted))
            except ValidationError:
                keys.append("")
        documents = await read_documents(self._storage, [key for key in keys if key])
        by_key = dict(zip([key for key in keys if key], documents, strict=True))
        found: list[R] = []
        for (_, hinted), key in zip(hints, keys, strict=True):
            document = by_key.get(key) if key else None
            if document is None:
                continue
            record = self._parse_reporting(key, document, on_error)
            if record is not None and self._holds(record, index, wanted, hinted):
                found.append(record)
        return found, [entry for entry, _ in hints]

    def _holds(self, record: R, index: Index[R], value: str, hinted: str) -> bool:
        try:
            return self._entity.id_of(record) == hinted and index.value_of(record) == value
        except ValidationError:
            return False

    # -- writes -------------------------------------------------------------------------------

    def _entries_of(self, record: R, record_id: str, prepared: Prepared) -> None:
        for index in self._entity.indexes:
            value = index.value_of(record)
            if value is None:
                continue
            if index.unique:
                prepared.uniques[self._keys.unique(index.name, value)] = (index.name, value)
            else:
                prepared.entries.append(self._keys.entry(index.name, value, record_id))

    def _prepare(self, given: object) -> Prepared:
        """Check ``given`` and build every key it needs; raises before anything is written."""
        record = self._entity.coerce(given)
        record_id = self._entity.id_of(record)
        prepared = Prepared(record_id, self._keys.record(record_id), self._entity.document(record))
        self._entries_of(record, record_id, prepared)
        return prepared

    def _stored_entries(self, key: str, current: Versioned[JSONValue] | None) -> Prepared | None:
        """The entries of the stored record about to be replaced or deleted (``None`` if absent
        or unreadable: entries of a corrupt record stay behind as stale hints, which readers
        skip). A document newer than this code raises: it is never overwritten by older code."""
        if current is None:
            return None
        try:
            record = self._entity.parse(current.value, key)
            record_id = self._entity.id_of(record)
            stored = Prepared(record_id, key, {})
            self._entries_of(record, record_id, stored)
        except SchemaVersionError:
            raise
        except ValidationError:
            return None
        return stored

    async def save(self, record: R | Mapping[str, Any]) -> int:
        """Create or replace the record; return its new version.

        Retries when a concurrent writer changed the record between this call's read and its
        write, so the last save wins whole and every index follows it. Raises
        :class:`UniqueViolation` if another record holds one of its unique values.
        """
        prepared = self._prepare(record)
        for attempt in count():
            current = await self._storage.get_versioned(prepared.key)
            try:
                return await self._attempt(prepared, current)
            except Conflict:
                await retry_pause(attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def create(self, record: R | Mapping[str, Any]) -> int:
        """Store a new record; raise :class:`RecordExists` if its id is taken."""
        prepared = self._prepare(record)
        if await self._storage.has(prepared.key):
            raise RecordExists(f"a record {prepared.record_id!r} exists", key=prepared.key)
        try:
            return await self._attempt(prepared, None)
        except Conflict:
            raise RecordExists(
                f"a record {prepared.record_id!r} exists", key=prepared.key
            ) from None

    async def replace(self, record: R | Mapping[str, Any], version: int) -> int:
        """Replace the record only if it is still at ``version`` (from :meth:`get_versioned`);
        raise :class:`RecordChanged` if it was written or deleted since."""
        prepared = self._prepare(record)
        current = await self._storage.get_versioned(prepared.key)
        changed = RecordChanged(
            f"the record {prepared.record_id!r} changed since version {version}", key=prepared.key
        )
        if current is None or current.version != version:
            raise changed
        try:
            return await self._attempt(prepared, current)
        except Conflict:
            raise changed from None

    async def update(
        self, record_id: str, change: Callable[[R], R], *, attempts: int = UPDATE_ATTEMPTS
    ) -> R:
        """Read the record, store ``change(record)`` if nobody wrote it meanwhile, retry if they
        did; return the record stored.

        ``change`` may run several times and must not have side effects; it must keep the id.
        Raises :class:`RecordNotFound` if the record does not exist, :class:`RecordChanged`
        after ``attempts`` lost races.
        """
        key = self._key(record_id)
        for attempt in range(attempts):
            current = await self._storage.get_versioned(key)
            if current is None:
                raise RecordNotFound(f"no {self._entity.record.__name__} {record_id!r}")
            updated = change(self._entity.parse(current.value, key))
            prepared = self._prepare(updated)
            if prepared.record_id != record_id:
                raise ValidationError(
                    f"update must keep the id {record_id!r}, not change it to "
                    f"{prepared.record_id!r}"
                )
            try:
                await self._attempt(prepared, current)
            except Conflict:
                await retry_pause(attempt)
                continue
            return self._entity.coerce(updated)
        raise RecordChanged(f"{record_id!r} kept changing: {attempts} attempts lost", key=key)

    async def _attempt(self, prepared: Prepared, current: Versioned[JSONValue] | None) -> int:
        """Write ``prepared`` over the stored ``current`` in one conditional step.

        Raises Conflict (having undone its claims) if the record is no longer at ``current``.
        """
        stored = self._stored_entries(prepared.key, current)
        claimed = await self._claim(prepared)
        try:
            if prepared.entries:
                await self._storage.set_many([(entry, INDEX_VALUE) for entry in prepared.entries])
            if current is None:
                version = await self._storage.create(prepared.key, prepared.document)
            else:
                version = await self._storage.replace(
                    prepared.key, prepared.document, current.version
                )
        except BaseException:
            await self._release(claimed)
            raise
        if stored is not None:
            await self._remove_stale(prepared, stored)
        return version

    async def _claim(self, prepared: Prepared) -> list[tuple[str, int]]:
        """Claim each unique value (create-only); return the entries written, with versions."""
        claimed: list[tuple[str, int]] = []
        try:
            for entry, (index, value) in prepared.uniques.items():
                while True:
                    holder = await self._storage.get(entry)
                    if holder == prepared.record_id:
                        break
                    if holder is not None:
                        raise UniqueViolation(
                            key=prepared.key, index=index, value=value, holder=str(holder)
                        )
                    try:
                        claimed.append(
                            (entry, await self._storage.create(entry, prepared.record_id))
                        )
                        break
                    except Conflict:
                        continue  # claimed meanwhile: see by whom
        except BaseException:
            await self._release(claimed)
            raise
        return claimed

    async def _release(self, claimed: list[tuple[str, int]]) -> None:
        # Shielded: releasing runs while a failure (or a cancellation) unwinds the save, and
        # a claim left behind would refuse its value until rebuild_indexes.
        with anyio.CancelScope(shield=True):
            await self._release_now(claimed)

    async def _release_now(self, claimed: list[tuple[str, int]]) -> None:
        for entry, version in claimed:
            # Conflict: already released or taken over, so not ours to remove.
            with suppress(Conflict):
                await self._storage.delete_if(entry, version)

    async def _release_held(self, entries: list[str], record_id: str) -> None:
        """Remove the unique entries that still name ``record_id``."""
        for entry in entries:
            found = await self._storage.get_versioned(entry)
            if found is not None and found.value == record_id:
                await self._release_now([(entry, found.version)])

    async def _remove_stale(self, prepared: Prepared, stored: Prepared) -> None:
        """Remove the entries the replaced record had and this one has not; then restore any
        that a concurrent save of the same record made true again meanwhile."""
        stale = [entry for entry in stored.entries if entry not in set(prepared.entries)]
        stale_unique = [entry for entry in stored.uniques if entry not in prepared.uniques]
        if not stale and not stale_unique:
            return
        if stale:
            await self._storage.delete_many(stale)
        await self._release_held(stale_unique, prepared.record_id)
        now = self._stored_entries(prepared.key, await self._storage.get_versioned(prepared.key))
        if now is None:
            return
        restored = [entry for entry in now.entries if entry in stale]
        if restored:
            await self._storage.set_many([(entry, INDEX_VALUE) for entry in restored])
        for entry in now.uniques:
            if entry in stale_unique:
                # Conflict: someone holds it again, and their claim stands.
                with suppress(Conflict):
                    await self._storage.create(entry, prepared.record_id)

    async def delete(self, record_id: str) -> None:
        """Delete the record, its index entries and its children; a missing one is no error.

        The record goes first (conditionally, so the entries removed are those of the version
        deleted), then its entries, then each children collection. Calling this again after
        an interruption finishes removing the children.
        """
        key = self._key(record_id)
        for attempt in count():
            current = await self._storage.get_versioned(key)
            if current is None:
                break
            stored = self._stored_entries(key, current)
            try:
                await self._storage.delete_if(key, current.version)
            except Conflict:
                await retry_pause(attempt)
                continue
            if stored is not None:
                if stored.entries:
                    await self._storage.delete_many(stored.entries)
                await self._release_held(list(stored.uniques), stored.record_id)
            break
        for children in self._children.values():
            await children.remove_all(record_id)

    async def delete_entries(self, entries: list[str]) -> None:
        """Remove index entries (keys from :meth:`find_with_entries`) whose records are gone."""
        if entries:
            await self._storage.delete_many(entries)
