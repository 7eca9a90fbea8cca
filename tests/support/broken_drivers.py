"""Drivers with one realistic bug each, built on the memory driver, for the suite's own tests.

Each class below breaks exactly one clause of the contract, the way real key-value libraries
have. ``tests/test_suite_strength.py`` runs the suite's clauses against each and requires them
to fail, so the suite cannot quietly lose the strength to catch these.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import AsyncIterator, Sequence

import anyio.lowlevel

from kvstore.driver import BaseDriver
from kvstore.drivers.memory import MemoryDriver
from kvstore.keys import prefix_successor

# A page size no store in these tests reaches: "read everything in one go".
_ALL = 1 << 30

# -- scan cost and streaming ----------------------------------------------------------------


class ListsEverything(MemoryDriver):
    """The README's old example: sorts every key, then filters."""

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        self.ensure_open()
        for key in sorted(key for key in self._values if key.startswith(prefix)):
            yield key


class WalksTheWholeStore(MemoryDriver):
    """Streams, but visits every stored key to find the matches."""

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        self.ensure_open()
        for key in sorted(self._values):
            if key.startswith(prefix):
                yield key


class SortsInC(MemoryDriver):
    """No Python loop over the store, but a sorted copy of every key per scan."""

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        self.ensure_open()
        ordered = sorted(self._values)
        position = bisect_left(ordered, prefix)
        while position < len(ordered) and ordered[position].startswith(prefix):
            yield ordered[position]
            position += 1


class ScansToTheEnd(MemoryDriver):
    """Seeks to the prefix but has no upper bound: reads on to the end of the store."""

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        self.ensure_open()
        for key in self._index.page(prefix, inclusive=True, below=None, limit=_ALL):
            if key.startswith(prefix):
                yield key


class ScansFromTheStart(MemoryDriver):
    """Stops after the prefix, but starts from the first key of the store."""

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        self.ensure_open()
        below = prefix_successor(prefix)
        for key in self._index.page("", inclusive=True, below=below, limit=_ALL):
            if key.startswith(prefix):
                yield key


class BuildsTheMatchList(MemoryDriver):
    """Seeks well, but collects every match before yielding the first."""

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        matches: list[str] = []
        async for key in super().keys(prefix):
            matches.append(key)
        for key in matches:
            yield key


class ItemsReadEverything(MemoryDriver):
    """An ``items`` override that reads every value in the store and filters."""

    async def items(self, prefix: str = "") -> AsyncIterator[tuple[str, bytes]]:
        self.ensure_open()
        for key, value in sorted(self._values.items()):
            if key.startswith(prefix):
                yield key, value


class ClearFiltersEverything(MemoryDriver):
    """A ``clear`` override that walks the whole store."""

    async def clear(self, prefix: str = "") -> None:
        self.ensure_open()
        for key in list(self._values):
            if key.startswith(prefix):
                self._remove(key)


# -- exact bytes ----------------------------------------------------------------------------


class GetReturnsMemoryview(MemoryDriver):
    """Returns a zero-copy view, as a driver over mmap or a buffer protocol might."""

    async def get(self, key: str) -> bytes | None:
        value = await super().get(key)
        return None if value is None else memoryview(value)  # type: ignore[return-value]


class GetManyReturnsBytearray(MemoryDriver):
    """Returns mutable buffers from the batch read."""

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        values = await super().get_many(keys)
        return [None if value is None else bytearray(value) for value in values]  # type: ignore[misc]


class ItemsYieldMemoryview(MemoryDriver):
    """Streams values as views of its buffers."""

    async def items(self, prefix: str = "") -> AsyncIterator[tuple[str, bytes]]:
        async for key, value in super().items(prefix):
            yield key, memoryview(value)  # type: ignore[misc]


# -- items across pages ---------------------------------------------------------------------


class ItemsSlipAfterTheFirstPage(MemoryDriver):
    """Pages ``items`` by 1000, and pairs the later pages' keys with values one off."""

    async def items(self, prefix: str = "") -> AsyncIterator[tuple[str, bytes]]:
        keys: list[str] = []
        async for key in self.keys(prefix):
            keys.append(key)
        for start in range(0, len(keys), 1000):
            page = keys[start : start + 1000]
            values = await self.get_many(page)
            if start:
                values = values[1:] + values[:1]
            for key, value in zip(page, values, strict=True):
                if value is not None:
                    yield key, value


class ItemsDropTheLastPage(MemoryDriver):
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


class DeleteAfterCloseIsSilent(MemoryDriver):
    """``delete`` does nothing, quietly, once closed."""

    async def delete(self, key: str) -> None:
        if not self.closed:
            await super().delete(key)


class DeleteManyAfterCloseIsSilent(MemoryDriver):
    """``delete_many`` skips the open check."""

    async def delete_many(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._remove(key)


class ClearAfterCloseIsSilent(MemoryDriver):
    """``clear`` returns quietly once closed."""

    async def clear(self, prefix: str = "") -> None:
        if not self.closed:
            await super().clear(prefix)


class KeysAfterCloseAreEmpty(MemoryDriver):
    """A closed driver scans as if empty."""

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        if self.closed:
            return
        async for key in super().keys(prefix):
            yield key


class SecondCloseRaises(MemoryDriver):
    """``close`` is not idempotent."""

    async def close(self) -> None:
        self.ensure_open()
        await super().close()


# -- atomic batches -------------------------------------------------------------------------


class BatchInSeveralCommits(MemoryDriver):
    """Claims atomic batches but commits each key on its own, yielding in between."""

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        for key, value in items:
            await self.set(key, value)
            await anyio.lowlevel.checkpoint()


class DeleteManyInSeveralCommits(MemoryDriver):
    """Claims atomic batches but deletes key by key, yielding in between."""

    async def delete_many(self, keys: Sequence[str]) -> None:
        for key in keys:
            await self.delete(key)
            await anyio.lowlevel.checkpoint()


# -- durability -----------------------------------------------------------------------------


class Disk:
    """What a persistent store keeps between drivers: one per test, shared by its drivers."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}


class OnDisk(MemoryDriver):
    """A correct persistent driver: every write goes straight to the shared ``Disk``."""

    def __init__(self, disk: Disk) -> None:
        super().__init__()
        self.disk = disk
        self._load()

    def _load(self) -> None:
        for key, value in sorted(self.disk.values.items()):
            super()._put(key, value)

    def _put(self, key: str, value: bytes) -> None:
        super()._put(key, value)
        self.disk.values[key] = value

    def _remove(self, key: str) -> None:
        super()._remove(key)
        self.disk.values.pop(key, None)

    async def clear(self, prefix: str = "") -> None:
        for key in [key async for key in self.keys(prefix)]:
            self._remove(key)

    async def get(self, key: str) -> bytes | None:
        self.ensure_open()
        return self.disk.values.get(key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self.ensure_open()
        return [self.disk.values.get(key) for key in keys]

    async def close(self) -> None:
        # Forgets its own index only; the disk keeps everything.
        self.mark_closed()


class OverwritesCachedUntilClose(OnDisk):
    """Like dbm.dumb: an overwrite reaches the disk only when the driver closes."""

    def __init__(self, disk: Disk) -> None:
        super().__init__(disk)
        self.pending: dict[str, bytes] = {}

    def _put(self, key: str, value: bytes) -> None:
        if key in self.disk.values:
            MemoryDriver._put(self, key, value)
            self.pending[key] = value
        else:
            super()._put(key, value)

    async def get(self, key: str) -> bytes | None:
        self.ensure_open()
        return self.pending.get(key, self.disk.values.get(key))

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [await self.get(key) for key in keys]

    async def close(self) -> None:
        if not self.closed:
            self.disk.values.update(self.pending)
        await super().close()


class DeletesNeverReachTheDisk(OnDisk):
    """``delete`` forgets the key in this driver only."""

    async def delete(self, key: str) -> None:
        self.ensure_open()
        MemoryDriver._remove(self, key)

    async def get(self, key: str) -> bytes | None:
        self.ensure_open()
        return self._values.get(key)


class DeleteManyNeverReachesTheDisk(OnDisk):
    """``delete_many`` forgets the keys in this driver only."""

    async def delete_many(self, keys: Sequence[str]) -> None:
        self.ensure_open()
        for key in keys:
            MemoryDriver._remove(self, key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self.ensure_open()
        return [self._values.get(key) for key in keys]


class ClearNeverReachesTheDisk(OnDisk):
    """``clear`` empties this driver's index only."""

    async def clear(self, prefix: str = "") -> None:
        self.ensure_open()
        for key in [key async for key in self.keys(prefix)]:
            MemoryDriver._remove(self, key)

    async def get(self, key: str) -> bytes | None:
        self.ensure_open()
        return self._values.get(key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self.ensure_open()
        return [self._values.get(key) for key in keys]


class ForgetsOnClose(OnDisk):
    """Persistent only while open: closing wipes the disk (declared persistent anyway)."""

    async def close(self) -> None:
        if not self.closed:
            self.disk.values.clear()
        await super().close()


# -- common mistakes ------------------------------------------------------------------------


class KeysWrittenAsACoroutine(MemoryDriver):
    """``keys`` returns a list from a coroutine instead of being an async generator."""

    async def keys(self, prefix: str = "") -> list[str]:  # type: ignore[override]
        found: list[str] = []
        async for key in MemoryDriver.keys(self, prefix):
            found.append(key)
        return found


ATOMIC: tuple[type[BaseDriver], ...] = (BatchInSeveralCommits, DeleteManyInSeveralCommits)
for _atomic in ATOMIC:
    _atomic.atomic_batches = True  # type: ignore[attr-defined]
