"""The conditional-write clauses that race tasks: lost updates, two winners, torn commits.

Run, like :mod:`kvstore.testing.conditional_clauses`, for every driver instance whose
``conditional_writes`` is true. Each runs once per event loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import ClassVar

import anyio
import anyio.lowlevel
import pytest

from kvstore.conditional import Change, Versioned
from kvstore.driver import BaseDriver, _PrimitivesOnly
from kvstore.errors import Conflict
from kvstore.serialization import JSONValue
from kvstore.testing.conditional_support import (
    SKIP_REASON,
    has_conditional_writes,
    read_version,
    versioned_storage,
    written_versions,
)
from kvstore.testing.driver_clauses import DriverFactory, clear_and_close
from kvstore.testing.profiles import race_size
from kvstore.testing.reporting import describe

__all__ = ["ConditionalRaceClauses"]

# Keys of the commits a concurrent reader watches, and how many commits it watches.
_COMMIT_KEYS = 40
_COMMITS = 25


class YieldAfterRead(_PrimitivesOnly):
    """Passes every call to ``inner``, giving other tasks a turn after each versioned read.

    A driver that runs inline (memory, a dict) never suspends inside ``Storage.update``, so
    concurrent updaters would take turns whole and never race; this wrapper makes each one
    suspend between its read and its conditional write, the window a lost update needs. The
    driver's own single-key conditional paths and clear are used, not the base class's.
    """

    def __init__(self, inner: BaseDriver) -> None:
        super().__init__(inner)
        self.atomic_batches = inner.atomic_batches
        self._driver = inner

    async def clear(self, prefix: str = "") -> None:
        # docstring inherited
        await self._driver.clear(prefix)

    async def get_versioned(self, key: str) -> Versioned[bytes] | None:
        # docstring inherited
        found = await self._driver.get_versioned(key)
        await anyio.lowlevel.checkpoint()
        return found

    async def set_if(self, key: str, value: bytes, expected: int | None) -> int:
        # docstring inherited
        return await self._driver.set_if(key, value, expected)

    async def delete_if(self, key: str, expected: int) -> None:
        # docstring inherited
        await self._driver.delete_if(key, expected)


class ConditionalRaceClauses:
    """Conditional-write clauses that race tasks on one key or one batch."""

    persistent: ClassVar[bool]

    @pytest.mark.anyio
    async def test_concurrent_updates_lose_no_increment(
        self, make_native_driver: DriverFactory
    ) -> None:
        """Concurrency: N concurrent Storage.update increments of one counter end at exactly N."""
        updaters, increments = race_size()
        async with versioned_storage(make_native_driver, wrap=YieldAfterRead) as storage:

            def increment(value: JSONValue | None) -> JSONValue:
                assert value is None or isinstance(value, int)
                return (value or 0) + 1

            async def updater() -> None:
                for _ in range(increments):
                    # Each failed attempt means another updater's write landed since the read,
                    # so a correct driver never needs more attempts than there are increments.
                    await storage.update("counter", increment, attempts=updaters * increments)

            with anyio.fail_after(120):
                async with anyio.create_task_group() as group:
                    for _ in range(updaters):
                        group.start_soon(updater)
            total = await storage.get("counter")
            assert total == updaters * increments, (
                f"{updaters} tasks each made {increments} increments with Storage.update, and"
                f" the counter ended at {total}, not {updaters * increments}: a conditional"
                " write was applied although the key had changed since it was read (the check"
                " and the write must be one atomic step in the backend)"
            )

    @pytest.mark.anyio
    async def test_concurrent_conditional_writers_exactly_one_wins(
        self, make_native_driver: DriverFactory
    ) -> None:
        """Concurrency: of writers racing with one condition on one key, exactly one wins."""
        async with versioned_storage(make_native_driver, wrap=YieldAfterRead) as storage:
            racers = 8

            async def race(attempt: Callable[[int], Awaitable[object]]) -> list[int]:
                won: list[int] = []

                async def one(index: int) -> None:
                    try:
                        await attempt(index)
                    except Conflict:
                        return
                    won.append(index)

                async with anyio.create_task_group() as group:
                    for index in range(racers):
                        group.start_soon(one, index)
                return won

            won = await race(lambda index: storage.create("slot", index))
            assert len(won) == 1, f"{len(won)} of {racers} concurrent creates of one key won"
            assert await storage.get("slot") == won[0], "the stored value is the winner's"
            version = await read_version(storage, "slot", "create")
            won = await race(lambda index: storage.replace("slot", index, version))
            assert len(won) == 1, f"{len(won)} of {racers} concurrent replaces at one version won"
            assert await storage.get("slot") == won[0], "the stored value is the winner's"
            version = await read_version(storage, "slot", "replace")
            won = await race(
                lambda index: storage.commit(
                    [Change.replace("slot", index, version), Change.put(f"mark:{index}", index)]
                )
            )
            assert len(won) == 1, (
                f"{len(won)} of {racers} concurrent commits with one condition won"
            )
            marks = [key async for key in storage.keys("mark:")]
            assert marks == [f"mark:{won[0]}"], (
                f"only the winning commit's other writes may land, found {marks}"
            )

    @pytest.mark.anyio
    async def test_a_concurrent_reader_never_sees_part_of_a_commit(
        self, make_native_driver: DriverFactory
    ) -> None:
        """Commits: with atomic_batches, a concurrent reader sees a commit whole or not at all."""
        writer = make_native_driver()
        if not has_conditional_writes(writer) or not writer.atomic_batches:
            await writer.close()
            pytest.skip(
                SKIP_REASON
                if not has_conditional_writes(writer)
                else "the driver does not declare atomic_batches = True"
            )
        reader = make_native_driver() if self.persistent else writer
        keys = [f"commit:{index:03d}" for index in range(_COMMIT_KEYS)]
        torn: list[list[bytes | None]] = []
        done = anyio.Event()

        async def write() -> None:
            versions = written_versions(
                await writer.commit([Change.create(key, b"0") for key in keys])
            )
            for generation in range(1, _COMMITS + 1):
                stale = versions[-1]
                versions = written_versions(
                    await writer.commit(
                        [
                            Change.replace(key, b"%d" % generation, version)
                            for key, version in zip(keys, versions, strict=True)
                        ]
                    )
                )
                # A commit that fails on its last key must leave every other key alone.
                failing = [
                    Change.replace(key, b"failed", version)
                    for key, version in zip(keys, [*versions[:-1], stale], strict=True)
                ]
                with contextlib.suppress(Conflict):
                    await writer.commit(failing)
            await writer.commit([Change.delete(key) for key in keys])
            done.set()

        async def read() -> None:
            while not done.is_set():
                values = await reader.get_many(keys)
                if len(set(values)) != 1 or b"failed" in values:
                    torn.append(values)
                    return
                # Lets the writer run even against a driver whose reads never suspend.
                await anyio.lowlevel.checkpoint()

        try:
            await writer.clear("")
            with anyio.fail_after(120):
                async with anyio.create_task_group() as group:
                    group.start_soon(read)
                    group.start_soon(write)
            assert not torn, (
                "the driver declares atomic_batches = True, but a reader saw part of a commit"
                " (or of a failed one): " + describe(torn[0])
            )
            assert await writer.get_many(keys) == [None] * len(keys)
        finally:
            if reader is not writer:
                await reader.close()
            await clear_and_close(writer, make_native_driver)
