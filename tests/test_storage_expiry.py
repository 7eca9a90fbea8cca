"""Storage's expiry surface across mounts and views, and the background sweeper.

The per-driver behaviour is the conformance suite's (``kvstore/testing/expiry_clauses.py``);
these are what only ``Storage`` does: route TTLs to mounted drivers, refuse before writing when
any of them cannot expire keys, and purge on a schedule.
"""

from __future__ import annotations

import anyio
import pytest

from kvstore import InvalidTTL, NotSupported, Storage
from kvstore.drivers.memory import memory_driver
from kvstore.testing.clock import TestClock
from tests.support.broken_drivers import OnMemory

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_batch_with_a_ttl_across_mounts_expires_on_every_driver() -> None:
    clock = TestClock(manual=True)
    root, mounted = memory_driver(clock=clock), memory_driver(clock=clock)
    async with Storage(root) as storage:
        storage.mount("m", mounted)
        await storage.set_many({"a": 1, "m:b": 2, "m:c": 3}, ttl=5)
        assert [key async for key in storage.keys()] == ["a", "m:b", "m:c"]
        assert [key async for key in mounted.keys()] == ["b", "c"]
        meta = await storage.get_meta("m:b")
        assert meta is not None
        assert meta.expires_at == clock() + 5
        await clock.advance(5)
        assert [key async for key in storage.keys()] == []
        assert await storage.get_many(["a", "m:b", "m:c"]) == [None, None, None]


async def test_a_ttl_across_a_mount_without_expiry_is_refused_before_any_write() -> None:
    async with Storage(memory_driver()) as storage:
        storage.mount("plain", OnMemory())
        with pytest.raises(NotSupported, match="on-memory"):
            await storage.set_many({"a": 1, "plain:b": 2}, ttl=5)
        with pytest.raises(NotSupported, match="on-memory"):
            await storage.set("plain:b", 2, ttl=5)
        with pytest.raises(NotSupported, match="on-memory"):
            await storage.expire("plain:b", 5)
        assert [key async for key in storage.keys()] == []
        # Without a TTL the mount works as before.
        await storage.set_many({"a": 1, "plain:b": 2})
        assert await storage.get_many(["a", "plain:b"]) == [1, 2]


async def test_a_default_ttl_on_a_storage_without_expiry_refuses_each_write() -> None:
    async with Storage(OnMemory(), ttl=60) as storage:
        with pytest.raises(NotSupported):
            await storage.set("k", 1)
        await storage.set("k", 1, ttl=None)  # saying "never" works on any driver
        assert await storage.get("k") == 1


async def test_a_view_of_a_view_keeps_the_nearest_default() -> None:
    clock = TestClock(manual=True)
    async with Storage(memory_driver(clock=clock), ttl=10) as storage:
        outer = storage.with_prefix("o", ttl=20)
        inner = outer.with_prefix("i")
        await inner.set("k", 1)
        meta = await storage.get_meta("o:i:k")
        assert meta is not None
        assert meta.expires_at == clock() + 20
        assert storage.default_ttl == 10
        assert inner.default_ttl == 20


async def test_storage_refuses_a_bad_default_ttl() -> None:
    with pytest.raises(InvalidTTL):
        Storage(memory_driver(), ttl=-1)


async def test_the_sweeper_purges_in_rounds_until_cancelled() -> None:
    clock = TestClock(manual=True)
    driver = memory_driver(clock=clock)
    async with Storage(driver) as storage:
        await storage.set_many({f"k{n}": n for n in range(25)}, ttl=1)
        await storage.set("live", 1)
        await clock.advance(1)
        purged = anyio.Event()
        original = driver.purge_expired
        calls: list[int] = []

        async def counting(limit: int = 1000) -> int:
            removed = await original(limit)
            calls.append(removed)
            if removed < limit:
                purged.set()
            return removed

        driver.purge_expired = counting  # type: ignore[method-assign]
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(lambda: storage.sweep_expired(every=3600, limit=10))
            await purged.wait()
            tasks.cancel_scope.cancel()
        # Ten at a time until a round finds fewer: 10, 10, 5.
        assert calls == [10, 10, 5]
        assert driver._values.keys() == {"live"}  # physically gone, not just hidden


async def test_purge_on_a_storage_with_no_expiring_driver_is_not_supported() -> None:
    async with Storage(OnMemory()) as storage:
        with pytest.raises(NotSupported):
            await storage.purge_expired()
