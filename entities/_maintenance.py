"""Repository maintenance: rebuilding indexes and migrating documents to the current schema.

:class:`Maintenance` is mixed into :class:`~entities.repository.Repository`; it lives apart
because it runs over every record, while the rest of the repository touches one at a time.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass, field
from itertools import count
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from entities._index import INDEX_VALUE, read_documents
from entities._layout import EntityLayout
from entities.declarations import Entity, Index
from entities.errors import ValidationError
from entities.keys import decode_segment
from kvstore.conditional import Versioned, retry_pause
from kvstore.errors import Conflict
from kvstore.serialization import JSONValue
from kvstore.storage import Storage

if TYPE_CHECKING:
    from entities.children import ChildRepository

__all__ = ["Maintenance", "Prepared"]

R = TypeVar("R")

# Records rebuilt or migrated per batch.
_BATCH = 500


@dataclass(slots=True)
class Prepared:
    """A record ready to write: everything checked and every key built, nothing written."""

    record_id: str
    key: str
    document: dict[str, Any]
    entries: list[str] = field(default_factory=list)
    # unique entry key -> (index name, value)
    uniques: dict[str, tuple[str, str]] = field(default_factory=dict)


class Maintenance(Generic[R]):
    """:meth:`rebuild_indexes` and :meth:`migrate` for a repository."""

    __slots__ = ()

    if TYPE_CHECKING:
        _storage: Storage
        _entity: Entity[R]
        _keys: EntityLayout
        _children: dict[str, ChildRepository[Any]]

        def _prepare(self, given: object) -> Prepared: ...

        async def _attempt(
            self, prepared: Prepared, current: Versioned[JSONValue] | None
        ) -> int: ...

        def _holds(self, record: R, index: Index[R], value: str, hinted: str) -> bool: ...

    async def rebuild_indexes(self) -> int:
        """Write every record's index entries and remove every stale one; return how many
        stale entries were removed.

        A repair for entries a crash left behind (a unique value claimed by a writer that
        died). Run it while no other writer saves this entity: a unique claim made by a save
        still in flight looks stale and would be released. Records that cannot be read are
        left alone (and their entries, being unverifiable, are removed).
        """
        # Stale entries go first, so that a unique value a dead writer held is free again
        # when its rightful record claims it below.
        removed = 0
        root = self._keys.index_root
        pending: list[tuple[str, Index[R], str, str]] = []
        async for entry in self._storage.keys(root):
            parsed = self._parse_entry(entry[len(root) :])
            if parsed is None:
                continue  # an index this declaration does not know: not ours to judge
            pending.append((entry, *parsed))
            if len(pending) >= _BATCH:
                removed += await self._drop_stale(pending)
                pending = []
        removed += await self._drop_stale(pending)
        batch: list[Prepared] = []
        async for key, document in self._storage.items(self._keys.records_prefix):
            try:
                batch.append(self._prepare(self._entity.parse(document, key)))
            except ValidationError:
                continue  # unreadable, or its index values cannot be computed: no entries
            if len(batch) >= _BATCH:
                await self._write_entries(batch)
                batch = []
        await self._write_entries(batch)
        return removed

    async def _write_entries(self, batch: list[Prepared]) -> None:
        entries = [entry for prepared in batch for entry in prepared.entries]
        if entries:
            await self._storage.set_many([(entry, INDEX_VALUE) for entry in entries])
        for prepared in batch:
            for entry, (_index, _value) in prepared.uniques.items():
                holder = await self._storage.get(entry)
                if holder is None:
                    with suppress(Conflict):
                        await self._storage.create(entry, prepared.record_id)

    def _parse_entry(self, rest: str) -> tuple[Index[R], str, str] | None:
        """``(index, value, id)`` of an entry key below the index root; unique entries give
        ``""`` as the id (their value holds it)."""
        name, _, tail = rest.partition(":")
        try:
            index = self._entity.index(name)
        except ValueError:
            return None
        parts = tail.split(":")
        try:
            if index.unique and len(parts) == 1:
                return index, decode_segment(parts[0]), ""
            if not index.unique and len(parts) == 2:
                return index, decode_segment(parts[0]), decode_segment(parts[1])
        except ValueError:
            pass
        return index, "", ""  # malformed: stale by construction

    async def _drop_stale(self, pending: list[tuple[str, Index[R], str, str]]) -> int:
        if not pending:
            return 0
        holders = await read_documents(
            self._storage, [entry for entry, index, _, _ in pending if index.unique]
        )
        holder_of = dict(
            zip([entry for entry, index, _, _ in pending if index.unique], holders, strict=True)
        )
        ids: list[str] = []
        for entry, index, value, record_id in pending:
            named = holder_of.get(entry) if index.unique else record_id
            ids.append(named if type(named) is str and value else "")
        keys = []
        for named in ids:
            try:
                keys.append(self._keys.record(named) if named else "")
            except ValidationError:
                keys.append("")
        documents = await read_documents(self._storage, [key for key in keys if key])
        by_key = dict(zip([key for key in keys if key], documents, strict=True))
        stale: list[str] = []
        for (entry, index, value, _), named, key in zip(pending, ids, keys, strict=True):
            document = by_key.get(key) if key else None
            record = None
            if document is not None:
                try:
                    record = self._entity.parse(document, key)
                except ValidationError:
                    record = None
            if record is None or not self._holds(record, index, value, named):
                stale.append(entry)
        if stale:
            await self._storage.delete_many(stale)
        return len(stale)

    async def migrate(self) -> int:
        """Rewrite every record (and child) stored at an older schema version at the current
        one; return how many were rewritten.

        Each rewrite is conditional on the version read, so a concurrent writer is never
        overwritten (its record, written by current code, needs no rewrite). Raises
        :class:`SchemaVersionError` on a document newer than this code.
        """
        rewritten = 0
        if self._entity.version > 1:
            async for key, document in self._storage.items(self._keys.records_prefix):
                if self._entity.schema_of(document, key) == self._entity.version:
                    continue
                for attempt in count():
                    current = await self._storage.get_versioned(key)
                    if (
                        current is None
                        or self._entity.schema_of(current.value, key) == self._entity.version
                    ):
                        break
                    prepared = self._prepare(self._entity.parse(current.value, key))
                    try:
                        await self._attempt(prepared, current)
                    except Conflict:
                        await retry_pause(attempt)
                        continue
                    rewritten += 1
                    break
        for children in self._children.values():
            rewritten += await children.migrate()
        return rewritten
