"""Drivers with one realistic bug each, built on the memory driver, for the suite's own tests.

Each class below breaks exactly one clause of the contract, the way real key-value libraries
have. ``tests/test_suite_strength.py`` runs the suite's clauses against each and requires them
to fail, so the suite cannot quietly lose the strength to catch these.

They wrap a :class:`~kvstore.drivers.memory.MemoryDriver` through its public methods only (plus,
for the scans that seek, a sorted list of their own), so the memory driver's internals can change
without changing what these drivers get wrong.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import AsyncIterator, Sequence

import anyio.lowlevel

from kvstore.driver import BaseDriver
from kvstore.drivers.memory import MemoryDriver


class OnMemory(BaseDriver):
    """A correct driver: every operation goes to an inner memory driver."""

    name = "on-memory"
    supports_trio = True

    def __init__(self, inner: BaseDriver | None = None) -> None:
        self.inner = inner if inner is not None else MemoryDriver()

    async def get(self, key: str) -> bytes | None:
        self.ensure_open()
        return await self.inner.get(key)

    async def set(self, key: str, value: bytes) -> None:
        self.ensure_open()
        await self.inner.set(key, value)

    async def delete(self, key: str) -> None:
        self.ensure_open()
        await self.inner.delete(key)

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        self.ensure_open()
        async for key in self.inner.keys(prefix):
            yield key
            self.ensure_open()

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self.ensure_open()
        return await self.inner.get_many(keys)

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        self.ensure_open()
        await self.inner.set_many(items)

    async def delete_many(self, keys: Sequence[str]) -> None:
        self.ensure_open()
        await self.inner.delete_many(keys)

    async def clear(self, prefix: str = "") -> None:
        self.ensure_open()
        await self.inner.clear(prefix)

    async def items(self, prefix: str = "") -> AsyncIterator[tuple[str, bytes]]:
        self.ensure_open()
        async for pair in self.inner.items(prefix):
            yield pair
            self.ensure_open()

    async def close(self) -> None:
        if not self.closed:
            self.mark_closed()
            await self.inner.close()


class WithSortedKeys(OnMemory):
    """A correct driver that also keeps a sorted list of its keys, for scans of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.sorted: list[str] = []

    async def set(self, key: str, value: bytes) -> None:
        await self.set_many([(key, value)])

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        await super().set_many(items)
        for key, _ in items:
            position = bisect_left(self.sorted, key)
            if position == len(self.sorted) or self.sorted[position] != key:
                self.sorted.insert(position, key)

    async def delete(self, key: str) -> None:
        await self.delete_many([key])

    async def delete_many(self, keys: Sequence[str]) -> None:
        await super().delete_many(keys)
        for key in set(keys):
            position = bisect_left(self.sorted, key)
            if position < len(self.sorted) and self.sorted[position] == key:
                del self.sorted[position]

    async def clear(self, prefix: str = "") -> None:
        await self.delete_many([key async for key in self.inner.keys(prefix)])


# -- scan cost and streaming ----------------------------------------------------------------


class ListsEverything(WithSortedKeys):
    """The README's old example: sorts every key, then filters."""

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        self.ensure_open()
        for key in sorted(key for key in self.sorted if key.startswith(prefix)):
            yield key


class WalksTheWholeStore(OnMemory):
    """Streams, but reads every stored key to find the matches."""

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        self.ensure_open()
        async for key in self.inner.keys(""):
            if key.startswith(prefix):
                yield key


class CopiesEveryKey(WithSortedKeys):
    """No Python loop over the store, but a copy of every key per scan (in C)."""

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        self.ensure_open()
        ordered = list(self.sorted)
        position = bisect_left(ordered, prefix)
        while position < len(ordered) and ordered[position].startswith(prefix):
            yield ordered[position]
            position += 1


class ScansToTheEnd(WithSortedKeys):
    """Seeks to the prefix but has no upper bound: reads on to the end of the store."""

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        self.ensure_open()
        for key in self.sorted[bisect_left(self.sorted, prefix) :]:
            if key.startswith(prefix):
                yield key


class ScansFromTheStart(WithSortedKeys):
    """Stops after the prefix, but starts from the first key of the store."""

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        self.ensure_open()
        for key in self.sorted:
            if key.startswith(prefix):
                yield key
            elif key > prefix:
                return


class BuildsTheMatchList(OnMemory):
    """Seeks well, but collects every match before yielding the first."""

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        self.ensure_open()
        matches = [key async for key in self.inner.keys(prefix)]
        for key in matches:
            yield key


class ItemsReadEverything(OnMemory):
    """An ``items`` override that reads every value in the store and filters."""

    async def items(self, prefix: str = "") -> AsyncIterator[tuple[str, bytes]]:
        self.ensure_open()
        async for key, value in self.inner.items(""):
            if key.startswith(prefix):
                yield key, value


class ClearFiltersEverything(OnMemory):
    """A ``clear`` override that reads the whole store to find what to delete."""

    async def clear(self, prefix: str = "") -> None:
        self.ensure_open()
        doomed = [key async for key in self.inner.keys("") if key.startswith(prefix)]
        await self.inner.delete_many(doomed)


# -- exact bytes ----------------------------------------------------------------------------


class GetReturnsMemoryview(OnMemory):
    """Returns a zero-copy view, as a driver over mmap or a buffer protocol might."""

    async def get(self, key: str) -> bytes | None:
        value = await super().get(key)
        return None if value is None else memoryview(value)  # type: ignore[return-value]


class GetManyReturnsBytearray(OnMemory):
    """Returns mutable buffers from the batch read."""

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        values = await super().get_many(keys)
        return [None if value is None else bytearray(value) for value in values]  # type: ignore[misc]


class ItemsYieldMemoryview(OnMemory):
    """Streams values as views of its buffers."""

    async def items(self, prefix: str = "") -> AsyncIterator[tuple[str, bytes]]:
        async for key, value in super().items(prefix):
            yield key, memoryview(value)  # type: ignore[misc]


# -- items across pages ---------------------------------------------------------------------


class ItemsSlipAfterTheFirstPage(OnMemory):
    """Pages ``items`` by 1000, and pairs the later pages' keys with values one off."""

    async def items(self, prefix: str = "") -> AsyncIterator[tuple[str, bytes]]:
        keys = [key async for key in self.keys(prefix)]
        for start in range(0, len(keys), 1000):
            page = keys[start : start + 1000]
            values = await self.get_many(page)
            if start:
                values = values[1:] + values[:1]
            for key, value in zip(page, values, strict=True):
                if value is not None:
                    yield key, value


class ItemsDropTheLastPage(OnMemory):
    """Yields only whole pages of 1000: the remainder is lost."""

    async def items(self, prefix: str = "") -> AsyncIterator[tuple[str, bytes]]:
        page: list[str] = []
        async for key in self.keys(prefix):
            page.append(key)
            if len(page) == 1000:
                for pair in zip(page, await self.get_many(page), strict=True):
                    yield pair  # type: ignore[misc]
                page = []


# -- after close ----------------------------------------------------------------------------


class DeleteAfterCloseIsSilent(OnMemory):
    """``delete`` does nothing, quietly, once closed."""

    async def delete(self, key: str) -> None:
        if not self.closed:
            await super().delete(key)


class DeleteManyAfterCloseIsSilent(OnMemory):
    """``delete_many`` skips the open check."""

    async def delete_many(self, keys: Sequence[str]) -> None:
        if not self.closed:
            await super().delete_many(keys)


class ClearAfterCloseIsSilent(OnMemory):
    """``clear`` returns quietly once closed."""

    async def clear(self, prefix: str = "") -> None:
        if not self.closed:
            await super().clear(prefix)


class KeysAfterCloseAreEmpty(OnMemory):
    """A closed driver scans as if empty."""

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        if self.closed:
            return
        async for key in super().keys(prefix):
            yield key


class SecondCloseRaises(OnMemory):
    """``close`` is not idempotent."""

    async def close(self) -> None:
        self.ensure_open()
        await super().close()


# -- atomic batches -------------------------------------------------------------------------


class BatchInSeveralCommits(OnMemory):
    """Claims atomic batches but commits each key on its own, yielding in between."""

    atomic_batches = True

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        for key, value in items:
            await self.set(key, value)
            await anyio.lowlevel.checkpoint()


class DeleteManyInSeveralCommits(OnMemory):
    """Claims atomic batches but deletes key by key, yielding in between."""

    atomic_batches = True

    async def delete_many(self, keys: Sequence[str]) -> None:
        for key in keys:
            await self.delete(key)
            await anyio.lowlevel.checkpoint()


# -- durability -----------------------------------------------------------------------------


class Disk:
    """What a persistent store keeps between drivers: one per test, shared by its drivers."""

    def __init__(self) -> None:
        self.store = MemoryDriver()


class OnDisk(OnMemory):
    """A correct persistent driver: every write goes straight to the shared ``Disk``."""

    def __init__(self, disk: Disk) -> None:
        super().__init__(disk.store)

    async def close(self) -> None:
        # Closes this driver only; the disk keeps everything for the next one.
        self.mark_closed()


class WithPrivateView(OnDisk):
    """Reads through what this driver alone has changed: ``pending`` writes, ``hidden`` keys."""

    def __init__(self, disk: Disk) -> None:
        super().__init__(disk)
        self.pending: dict[str, bytes] = {}
        self.hidden: set[str] = set()

    async def get(self, key: str) -> bytes | None:
        self.ensure_open()
        if key in self.hidden:
            return None
        return self.pending.get(key, await self.inner.get(key))

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [await self.get(key) for key in keys]

    async def set(self, key: str, value: bytes) -> None:
        self.hidden.discard(key)
        await super().set(key, value)

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        async for key in super().keys(prefix):
            if key not in self.hidden:
                yield key

    def items(self, prefix: str = "") -> AsyncIterator[tuple[str, bytes]]:
        return BaseDriver.items(self, prefix)


class OverwritesCachedUntilClose(WithPrivateView):
    """Like dbm.dumb: an overwrite reaches the disk only when the driver closes."""

    async def set(self, key: str, value: bytes) -> None:
        if await self.inner.get(key) is not None:
            self.ensure_open()
            self.pending[key] = value
        else:
            await super().set(key, value)

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        for key, value in items:
            await self.set(key, value)

    async def close(self) -> None:
        if not self.closed:
            await self.inner.set_many(list(self.pending.items()))
        await super().close()


class DeletesNeverReachTheDisk(WithPrivateView):
    """``delete`` forgets the key in this driver only."""

    async def delete(self, key: str) -> None:
        self.ensure_open()
        self.hidden.add(key)


class DeleteManyNeverReachesTheDisk(WithPrivateView):
    """``delete_many`` forgets the keys in this driver only."""

    async def delete_many(self, keys: Sequence[str]) -> None:
        self.ensure_open()
        self.hidden.update(keys)


class ClearNeverReachesTheDisk(WithPrivateView):
    """``clear`` forgets the keys in this driver only."""

    async def clear(self, prefix: str = "") -> None:
        self.ensure_open()
        self.hidden.update([key async for key in self.inner.keys(prefix)])


class ForgetsOnClose(OnDisk):
    """Persistent only while open: closing wipes the disk (declared persistent anyway)."""

    async def close(self) -> None:
        if not self.closed:
            await self.inner.clear("")
        await super().close()


# -- common mistakes ------------------------------------------------------------------------


class KeysWrittenAsACoroutine(OnMemory):
    """``keys`` returns a list from a coroutine instead of being an async generator."""

    async def keys(self, prefix: str = "") -> list[str]:  # type: ignore[override]
        return [key async for key in self.inner.keys(prefix)]
