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

from kvstore.conditional import ANY_VERSION, LEGACY_VERSION, Action, Change, Versioned, new_version
from kvstore.driver import CONDITIONAL_WRITES, BaseDriver, conflict
from kvstore.drivers.memory import MemoryDriver
from kvstore.errors import Conflict, NotSupported
from kvstore.expiry import Clock, Meta, expiry_millis, from_millis, now_millis


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


# -- conditional writes ---------------------------------------------------------------------


class VersionedOnMemory(OnMemory):
    """A correct driver with conditional writes: versions and commits are the inner driver's."""

    name = "versioned-on-memory"
    atomic_batches = True
    conditional_writes = True

    async def get_versioned(self, key: str) -> Versioned[bytes] | None:
        self.ensure_open()
        return await self.inner.get_versioned(key)

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        self.ensure_open()
        return await self.inner.commit(changes)


class WithOwnVersions(OnMemory):
    """A correct driver, used one call at a time, that keeps versions in a dict of its own.

    Its commit awaits between checking and writing, so it is no driver for concurrent use: the
    bugs built on it are caught by the clauses that make one call at a time.
    """

    name = "own-versions"
    conditional_writes = True

    @property
    def versions(self) -> dict[str, int]:
        """The version of each key, handed out lazily."""
        if "_own_versions" not in self.__dict__:
            self.__dict__["_own_versions"] = {}
        return self.__dict__["_own_versions"]  # type: ignore[no-any-return]

    def stamp(self, key: str) -> None:
        """Give ``key`` the version a write gives it (an unconditional write, too)."""
        self.versions[key] = new_version()

    async def set(self, key: str, value: bytes) -> None:
        await super().set(key, value)
        self.stamp(key)

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        await super().set_many(items)
        for key, _ in items:
            self.stamp(key)

    async def delete(self, key: str) -> None:
        await super().delete(key)
        self.versions.pop(key, None)

    async def delete_many(self, keys: Sequence[str]) -> None:
        await super().delete_many(keys)
        for key in keys:
            self.versions.pop(key, None)

    async def clear(self, prefix: str = "") -> None:
        await self.delete_many([key async for key in self.inner.keys(prefix)])

    async def get_versioned(self, key: str) -> Versioned[bytes] | None:
        self.ensure_open()
        value = await self.inner.get(key)
        if value is None:
            return None
        return Versioned(value, self.versions.setdefault(key, new_version()))

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        self.ensure_open()
        current = [await self.get_versioned(change.key) for change in changes]
        failing = [
            change.key
            for change, found in zip(changes, current, strict=True)
            if not change.holds_for(None if found is None else found.version)
        ]
        if failing:
            raise conflict(failing)
        versions: list[int | None] = []
        for change in changes:
            if change.action is Action.WRITE:
                assert change.value is not None
                await OnMemory.set(self, change.key, change.value)
                self.versions[change.key] = new_version()
                versions.append(self.versions[change.key])
                continue
            if change.action is Action.DELETE:
                await self.delete(change.key)
            versions.append(None)
        return versions


async def _unconditionally(inner: BaseDriver, changes: Sequence[Change[bytes]]) -> list[int | None]:
    """Apply ``changes`` on ``inner`` as if none had a condition (checks do nothing)."""
    unconditional = [
        Change(change.action, change.key, change.value, ANY_VERSION)
        for change in changes
        if change.action is not Action.CHECK
    ]
    versions = iter(await inner.commit(unconditional))
    return [None if change.action is Action.CHECK else next(versions) for change in changes]


class CommitIgnoresConditions(VersionedOnMemory):
    """Applies every change of a commit as if it had no condition."""

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        self.ensure_open()
        return await _unconditionally(self.inner, changes)


class AppliesTheRestOfAFailedCommit(VersionedOnMemory):
    """Runs each change as its own statement in one transaction and commits the ones that held,
    raising Conflict for the others."""

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        try:
            return await super().commit(changes)
        except Conflict as error:
            held = [
                Change(change.action, change.key, change.value, ANY_VERSION)
                for change in changes
                if change.key not in error.keys and change.action is not Action.CHECK
            ]
            if held:
                await super().commit(held)
            raise


class ConflictNamesEveryKey(VersionedOnMemory):
    """Knows only that its transaction failed, and names every key of the batch."""

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        try:
            return await super().commit(changes)
        except Conflict:
            raise conflict([change.key for change in changes]) from None


class OneChangeCommitDeletesAChecked(VersionedOnMemory):
    """Takes a shortcut for one-change commits that sorts the changes into writes and the rest,
    so that a check alone, at the key's version, runs as a conditional delete."""

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        if len(changes) == 1 and changes[0].action is not Action.WRITE:
            (change,) = changes
            if change.expected is not None:
                return await super().commit([Change.delete(change.key, change.expected)])
        return await super().commit(changes)


class SetKeepsTheVersion(WithOwnVersions):
    """Bumps a key's version only on conditional writes: a plain ``set`` keeps the old one."""

    def stamp(self, key: str) -> None:
        self.versions.setdefault(key, new_version())


class VersionCounterRestartsAfterDelete(WithOwnVersions):
    """Keeps a per-key write counter as the version, deleted with the value: a key deleted and
    written again comes back at version 1, which a reader may hold from before the delete."""

    def stamp(self, key: str) -> None:
        self.versions[key] = self.versions.get(key, 0) + 1


class SetLeavesTheLegacyVersion(WithOwnVersions):
    """A plain ``set`` writes the value and not the version column, which keeps its default 0."""

    def stamp(self, key: str) -> None:
        self.versions[key] = LEGACY_VERSION


class StaleVersionAfterSetMany(VersionedOnMemory):
    """Caches versioned reads, and forgets to drop the cached entries when ``set_many`` writes."""

    def __init__(self) -> None:
        super().__init__()
        self.cache: dict[str, Versioned[bytes]] = {}

    async def get_versioned(self, key: str) -> Versioned[bytes] | None:
        if key not in self.cache:
            found = await super().get_versioned(key)
            if found is None:
                return None
            self.cache[key] = found
        return self.cache[key]

    async def set(self, key: str, value: bytes) -> None:
        self.cache.pop(key, None)
        await super().set(key, value)

    async def delete(self, key: str) -> None:
        self.cache.pop(key, None)
        await super().delete(key)

    async def delete_many(self, keys: Sequence[str]) -> None:
        for key in keys:
            self.cache.pop(key, None)
        await super().delete_many(keys)

    async def clear(self, prefix: str = "") -> None:
        self.cache.clear()
        await super().clear(prefix)

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        for change in changes:
            self.cache.pop(change.key, None)
        return await super().commit(changes)


class VersionComesBackAsFloat(VersionedOnMemory):
    """Hands versions back as a Lua script's numbers arrive: floats."""

    async def get_versioned(self, key: str) -> Versioned[bytes] | None:
        found = await super().get_versioned(key)
        return None if found is None else Versioned(found.value, float(found.version))  # type: ignore[arg-type]


class CheckThenWriteInTwoSteps(VersionedOnMemory):
    """Reads the versions in one round trip and writes in another: not one atomic step."""

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        current = [await self.inner.get_versioned(change.key) for change in changes]
        failing = [
            change.key
            for change, found in zip(changes, current, strict=True)
            if not change.holds_for(None if found is None else found.version)
        ]
        if failing:
            raise conflict(failing)
        await anyio.lowlevel.checkpoint()  # the second round trip
        return await _unconditionally(self.inner, changes)


class CommitInSeveralSteps(VersionedOnMemory):
    """Checks every condition at once, then writes key by key, yielding between."""

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        checks: list[Change[bytes]] = [
            Change(Action.CHECK, change.key, None, change.expected)
            for change in changes
            if change.expected is not ANY_VERSION
        ]
        await super().commit(checks)
        versions: list[int | None] = []
        for change in changes:
            if change.action is Action.CHECK:
                versions.append(None)
                continue
            versions += await super().commit(
                [Change(change.action, change.key, change.value, ANY_VERSION)]
            )
            await anyio.lowlevel.checkpoint()
        return versions


class VersionedOnDisk(OnDisk):
    """A correct persistent driver with conditional writes, versions kept on the disk."""

    atomic_batches = True
    conditional_writes = True

    async def get_versioned(self, key: str) -> Versioned[bytes] | None:
        self.ensure_open()
        return await self.inner.get_versioned(key)

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        self.ensure_open()
        return await self.inner.commit(changes)


class VersionsOnlyInTheDriver(WithOwnVersions, OnDisk):
    """Persistent values, but versions kept in the driver: a new driver hands out new ones."""


class RefusesWithNotImplementedError(OnMemory):
    """Has no conditional writes, and says so with a bare NotImplementedError."""

    async def get_versioned(self, key: str) -> Versioned[bytes] | None:
        raise NotImplementedError("get_versioned")

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        raise NotImplementedError("commit")


class ImplementsWithoutDeclaring(VersionedOnMemory):
    """Implements conditional writes but does not declare them."""

    conditional_writes = False


class RefusesAfterWriting(OnMemory):
    """Without conditional writes, applies a commit's writes first and refuses afterwards."""

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        for change in changes:
            if change.action is Action.WRITE and change.value is not None:
                await self.set(change.key, change.value)
        raise NotSupported(CONDITIONAL_WRITES, driver=self.name)


# -- expiry -----------------------------------------------------------------------------------


class ExpiringOnMemory(OnMemory):
    """A correct driver with expiry kept beside the values, on the clock it is given.

    Its scan checks each key's deadline in Python: correct, but it walks expired keys, which
    the scan-cost clause catches.
    """

    name = "expiring-on-memory"
    expiry = True

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.deadlines: dict[str, int] = {}
        self.written: dict[str, float] = {}

    def live(self, key: str) -> bool:
        deadline = self.deadlines.get(key)
        return deadline is None or deadline > now_millis(self.clock)

    async def get(self, key: str) -> bytes | None:
        value = await super().get(key)
        return value if value is not None and self.live(key) else None

    async def set(self, key: str, value: bytes) -> None:
        await super().set(key, value)
        self.written[key] = self.clock()
        self.deadlines.pop(key, None)

    async def delete(self, key: str) -> None:
        await super().delete(key)
        self.deadlines.pop(key, None)

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        async for key in super().keys(prefix):
            if self.live(key):
                yield key

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [await self.get(key) for key in keys]

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        for key, value in items:
            await self.set(key, value)

    async def delete_many(self, keys: Sequence[str]) -> None:
        for key in keys:
            await self.delete(key)

    async def clear(self, prefix: str = "") -> None:
        await super().clear(prefix)
        for key in [key for key in self.deadlines if key.startswith(prefix)]:
            del self.deadlines[key]

    async def items(self, prefix: str = "") -> AsyncIterator[tuple[str, bytes]]:
        async for key in self.keys(prefix):
            value = await self.get(key)
            if value is not None:
                yield key, value

    async def set_many_expiring(self, items: Sequence[tuple[str, bytes]], ttl: float) -> None:
        deadline = expiry_millis(now_millis(self.clock), ttl)
        for key, value in items:
            await self.set(key, value)
            self.deadlines[key] = deadline

    async def expire(self, key: str, ttl: float | None) -> bool:
        if await self.get(key) is None:
            return False
        if ttl is None:
            self.deadlines.pop(key, None)
        else:
            self.deadlines[key] = expiry_millis(now_millis(self.clock), ttl)
        return True

    async def get_meta(self, key: str) -> Meta | None:
        value = await self.get(key)
        if value is None:
            return None
        deadline = self.deadlines.get(key)
        return Meta(
            size=len(value),
            written_at=self.written[key],
            expires_at=None if deadline is None else from_millis(deadline),
        )

    async def purge_expired(self, limit: int = 1000) -> int:
        now_ms = now_millis(self.clock)
        expired = sorted(key for key, when in self.deadlines.items() if when <= now_ms)[:limit]
        for key in expired:
            await self.delete(key)
        return len(expired)


class ScanListsExpiredKeys(ExpiringOnMemory):
    """The scan forgets the deadlines: expired keys stay listed until purged."""

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        async for key in OnMemory.keys(self, prefix):
            yield key


class SetKeepsTheExpiry(ExpiringOnMemory):
    """A plain write leaves the key's earlier expiry in place."""

    async def set(self, key: str, value: bytes) -> None:
        await OnMemory.set(self, key, value)
        self.written[key] = self.clock()


class ExpiresAMillisecondLate(ExpiringOnMemory):
    """A key still reads at its expiry instant (``>=`` where ``>`` belongs)."""

    def live(self, key: str) -> bool:
        deadline = self.deadlines.get(key)
        return deadline is None or deadline >= now_millis(self.clock)


class ExpireRewritesTheWriteTime(ExpiringOnMemory):
    """``expire`` counts as a write: the key's write time moves."""

    async def expire(self, key: str, ttl: float | None) -> bool:
        changed = await super().expire(key, ttl)
        if changed:
            self.written[key] = self.clock()
        return changed


class PurgeIgnoresTheLimit(ExpiringOnMemory):
    """``purge_expired`` removes every expired key in one call, however many."""

    async def purge_expired(self, limit: int = 1000) -> int:
        return await super().purge_expired(10**9)


class BatchTTLIsDropped(ExpiringOnMemory):
    """``set_many`` with a TTL writes the values but not their expiry."""

    async def set_many_expiring(self, items: Sequence[tuple[str, bytes]], ttl: float) -> None:
        await self.set_many(items)

