"""ChildRepository: records held by a parent, in order, safe against a racing parent delete.

Children of one parent live one per key, ordered by their sort key and then by a sequence
number taken from a per-parent counter kept in the store (``seq:<children>:<parent>``, holding
``{"next": n, "epoch": token}``). Children added with equal sort keys therefore come back in the
order they were added, also when several processes add to one parent; within one process,
concurrent adds to one parent take their numbers in the order they were called.

Adding a child while the parent is being deleted
-------------------------------------------------
Only single-key conditional operations are used (MongoDB and local files have no atomic
multi-key commit). The adder:

A1. reads the parent; absent -> ``RecordNotFound``, nothing written;
A2. bumps the counter conditionally (retrying on a lost race): its number ``n`` and the
    counter's ``epoch`` (a random token chosen when the counter is created);
A3. writes the child (a new key, or the existing key of the same sort key and id);
A4. reads the parent and the counter in one call. If the parent is present and the counter is
    at the same epoch, the add succeeded. Otherwise it deletes its child (conditionally on the
    version it wrote), and, if the parent is absent, the counter when it is still at the version
    its own bump left; then it raises ``RecordNotFound``.

The deleter (:meth:`Repository.delete`) D1 deletes the parent record, D2 removes every child
(a prefix clear), D3 deletes the counter.

Why it holds:

* No child outlives its deleted parent. Take a child that an adder acknowledged, whose parent
  is absent at the end. The last write of the parent is a delete D1*, followed by D2*. The
  adder's A4 saw the parent present, so A4 came before D1* (the parent stays absent from D1*
  on); A3 came before A4, so the child was stored before D2* listed the keys, and D2* removed
  it. An add that failed removed its own child.
* A child acknowledged before a delete began was stored before that delete's D2, which
  removes it; nothing writes it again, so it does not come back when the id is re-created.
* An add that begins after a delete returned reads the parent absent at A1 and fails (unless
  the id was re-created before it began).
* An add racing a delete never lands in a re-created parent: a delete's D3 removes the
  counter, and a counter created again has a new epoch, so A4 sees the epoch change.
* An add during which the parent exists throughout succeeds. Its A4 sees the parent; the
  counter changes epoch only when removed, by a delete's D3 (none ran during the add) or by a
  losing adder. A loser removes the counter only at the version its own bump left, so only if
  it bumped after this add did; it then read the parent absent after this add's A1, which
  cannot be. (Removing it whenever it still had the loser's epoch was not enough: a counter a
  loser created after D3 is the one the next add takes its number from once the parent is
  re-created, and that add failed though no delete came near it.)

What a crash leaves: an adder that dies between A3 and A4 may leave a child under a deleted
parent, and a deleter that dies after D1 leaves children behind; calling ``delete`` again
removes them. A counter an adder that lost the race created after D3 is removed by that adder,
or by a later loser that bumped it; one numbered from since the parent came back is kept.
"""

from __future__ import annotations

import secrets
import weakref
from collections import deque
from collections.abc import Mapping
from contextlib import suppress
from itertools import count
from typing import Any, Generic, TypeVar

import anyio

from entities._checks import check_id
from entities._index import check_limit, page_keys, read_documents
from entities._layout import MAX_SEQUENCE, EntityLayout, parse_child_key
from entities.declarations import Children
from entities.errors import MalformedDocument, RecordNotFound, SchemaVersionError, ValidationError
from entities.repository import OnError
from kvstore.conditional import Change, retry_pause
from kvstore.errors import Conflict
from kvstore.serialization import JSONValue
from kvstore.storage import Storage

__all__ = ["ChildRepository"]

C = TypeVar("C")

# Locks of the parents added to last, kept alive between adds: making an anyio lock costs about
# as much as a read from the memory driver (anyio looks up the running backend), and an agent
# adds to the same few sessions over and over.
_RECENT_LOCKS = 64


class ChildRepository(Generic[C]):
    """Adds, lists and clears the children declared by one :class:`Children` of a parent."""

    __slots__ = ("_children", "_locks", "_parents", "_recent_locks", "_storage")

    def __init__(self, storage: Storage, parents: EntityLayout, children: Children[C]) -> None:
        self._storage = storage
        self._parents = parents
        self._children = children
        # One lock per parent in use, so that one process numbers its adds in call order.
        self._locks: weakref.WeakValueDictionary[str, anyio.Lock] = weakref.WeakValueDictionary()
        # Strong references to the latest of them (the weak mapping alone dropped a parent's
        # lock after every add); a lock pushed out here lives on while an add holds it.
        self._recent_locks: deque[anyio.Lock] = deque(maxlen=_RECENT_LOCKS)

    def _parent_id(self, parent_id: object) -> str:
        return check_id(parent_id, self._parents.entity.id_field)

    async def add(self, parent_id: str, child: C | Mapping[str, Any]) -> None:
        """Store ``child`` under the parent, which must exist, after every child added before.

        Raises :class:`RecordNotFound` if the parent does not exist or is deleted while the
        child is added (the child is then not kept). A child with the same sort key and id as
        a stored one replaces it in place.
        """
        parent_id = self._parent_id(parent_id)
        entity = self._children.entity
        record = entity.coerce(child)
        child_id = entity.id_of(record)
        order = self._children.order_of(record)
        document = entity.document(record)
        parent_key = self._parents.record(parent_id)
        counter_key = self._parents.sequence(self._children, parent_id)
        self._parents.child(self._children, parent_id, order, child_id, MAX_SEQUENCE)  # fits?
        lock = self._locks.get(parent_id)
        if lock is None:
            # Taken without a turn of the event loop when nobody holds it: anyio's default
            # yields in a cancel-shielded checkpoint, 20-25 us on asyncio, and the reads and
            # writes that follow are the add's checkpoints anyway.
            lock = self._locks[parent_id] = anyio.Lock(fast_acquire=True)
            self._recent_locks.append(lock)
        async with lock:
            if not await self._storage.has(parent_key):
                raise RecordNotFound(f"no {self._parents.entity.record.__name__} {parent_id!r}")
            sequence, epoch, counter_version = await self._bump(counter_key)
        key = await self._find_key(parent_id, order, child_id) or self._parents.child(
            self._children, parent_id, order, child_id, sequence
        )
        (version,) = await self._storage.commit([Change.put(key, document)])
        parent, counter = await self._storage.get_many([parent_key, counter_key])
        if parent is not None and _epoch(counter) == epoch:
            return
        assert version is not None
        # Conflict: rewritten by another add of the same child, which answers for it.
        with suppress(Conflict):
            await self._storage.delete_if(key, version)
        if parent is None:
            # Only while nobody bumped it since: a later bump may be an add to the parent
            # re-created after this one was read absent, and that add needs the counter.
            with suppress(Conflict):
                await self._storage.delete_if(counter_key, counter_version)
        raise RecordNotFound(
            f"{self._parents.entity.record.__name__} {parent_id!r} was deleted while a "
            f"{entity.record.__name__} was added to it"
        )

    async def _bump(self, counter_key: str) -> tuple[int, str, int]:
        """Take the next number from the counter: (number, the counter's epoch, its new version)."""
        for attempt in count():
            found = await self._storage.get_versioned(counter_key)
            try:
                if found is None or _epoch(found.value) is None:
                    epoch = secrets.token_hex(8)
                    sequence = 1
                    value = {"next": 2, "epoch": epoch}
                    if found is None:
                        version = await self._storage.create(counter_key, value)
                    else:
                        version = await self._storage.replace(counter_key, value, found.version)
                else:
                    epoch = found.value["epoch"]
                    sequence = found.value["next"]
                    if type(sequence) is not int or not 1 <= sequence <= MAX_SEQUENCE:
                        raise ValidationError(
                            f"the counter under {counter_key!r} holds {sequence!r}, "
                            f"not a sequence number from 1 to {MAX_SEQUENCE}"
                        )
                    version = await self._storage.replace(
                        counter_key, {"next": sequence + 1, "epoch": epoch}, found.version
                    )
            except Conflict:
                await retry_pause(attempt)
                continue
            return sequence, epoch, version
        raise AssertionError("unreachable")  # pragma: no cover

    async def _find_key(self, parent_id: str, order: int, child_id: str) -> str | None:
        """The key of the stored child with this sort key and id, if there is one."""
        prefix = self._parents.children_prefix(self._children, parent_id)
        async for key in self._storage.keys(
            self._parents.order_prefix(self._children, parent_id, order)
        ):
            parsed = parse_child_key(key[len(prefix) :])
            if parsed is not None and parsed[2] == child_id:
                return key
        return None

    async def find_all(
        self,
        parent_id: str,
        *,
        limit: int | None = None,
        after: C | Mapping[str, Any] | None = None,
        on_error: OnError | None = None,
    ) -> list[C]:
        """Return the parent's children in order: all of them, or a page.

        ``limit`` caps the page; ``after`` (a child, usually the last of the previous page)
        starts it after that child (after every child of its sort key if it is no longer
        stored). An unreadable stored child raises :class:`MalformedDocument` naming its key
        unless ``on_error`` receives it.
        """
        parent_id = self._parent_id(parent_id)
        limit = check_limit(limit)
        prefix = self._parents.children_prefix(self._children, parent_id)
        if limit is None and after is None:
            return [
                child
                async for key, document in self._storage.items(prefix)
                if (child := self._parse(key, document, on_error)) is not None
            ]
        start = None
        if after is not None:
            entity = self._children.entity
            previous = entity.coerce(after)
            order = self._children.order_of(previous)
            start = await self._find_key(parent_id, order, entity.id_of(previous))
            if start is None:
                # 'A' sorts after both ':' and '@': past every child of that sort key.
                start = self._parents.order_prefix(self._children, parent_id, order) + "A"
        keys = await page_keys(self._storage, prefix, after=start, limit=limit)
        documents = await read_documents(self._storage, keys)
        return [
            child
            for key, document in zip(keys, documents, strict=True)
            if document is not None and (child := self._parse(key, document, on_error)) is not None
        ]

    def _parse(self, key: str, document: JSONValue, on_error: OnError | None) -> C | None:
        try:
            return self._children.entity.parse(document, key)
        except (MalformedDocument, SchemaVersionError) as error:
            if on_error is None:
                raise
            on_error(error)
            return None

    async def clear(self, parent_id: str) -> None:
        """Delete every child of the parent; the parent (and its counter) stay."""
        await self._storage.clear(
            self._parents.children_prefix(self._children, self._parent_id(parent_id))
        )

    async def remove_all(self, parent_id: str) -> None:
        """The cascade step of a parent delete: every child, then the counter."""
        await self.clear(parent_id)
        await self._storage.delete(self._parents.sequence(self._children, parent_id))

    async def migrate(self) -> int:
        """Rewrite the children stored at an older schema version; return how many."""
        entity = self._children.entity
        if entity.version == 1:
            return 0
        rewritten = 0
        async for key, document in self._storage.items(f"{self._children.name}:"):
            if entity.schema_of(document, key) == entity.version:
                continue
            while True:
                current = await self._storage.get_versioned(key)
                if current is None or entity.schema_of(current.value, key) == entity.version:
                    break
                upgraded = entity.document(entity.parse(current.value, key))
                try:
                    await self._storage.replace(key, upgraded, current.version)
                except Conflict:
                    continue
                rewritten += 1
                break
        return rewritten


def _epoch(counter: object) -> str | None:
    if isinstance(counter, dict) and type(counter.get("epoch")) is str:
        return str(counter["epoch"])
    return None
