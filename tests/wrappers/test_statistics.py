"""Statistics: counts, errors, bytes and latency percentiles per operation, in bounded memory."""

from __future__ import annotations

import pytest

from kvstore.drivers.memory import memory_driver
from kvstore.errors import Conflict
from kvstore.storage import Storage
from kvstore.wrappers import Statistics, find_wrapper

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_counts_bytes_errors_and_percentiles() -> None:
    statistics = Statistics(memory_driver())
    async with Storage(statistics) as storage:
        for index in range(10):
            await storage.set_raw(f"k{index}", b"12345")
        await storage.get_raw("k0")
        await storage.get_raw("missing")
        await storage.get_many_raw(["k1", "k2", "missing"])
        await storage.set_many_raw([("m1", b"ab"), ("m2", b"cde")])
        assert [key async for key in storage.keys("m")] == ["m1", "m2"]
        assert len([pair async for pair in storage.items_raw("k")]) == 10
        await storage.create_raw("new", b"xy")
        with pytest.raises(Conflict):
            await storage.create_raw("new", b"xy")
        stats = statistics.stats()
    assert stats["set"].count == 10
    assert stats["set"].bytes_in == 50
    assert stats["get"].count == 2
    assert stats["get"].bytes_out == 5
    assert stats["get_many"].count == 1
    assert stats["get_many"].bytes_out == 10
    assert stats["set_many"].bytes_in == 5
    assert stats["keys"].count == 1
    assert stats["items"].count == 1
    assert stats["items"].bytes_out == 50
    assert stats["set_if"].count == 2
    assert stats["set_if"].errors == 1
    assert "delete" not in stats  # operations never called are left out
    for numbers in stats.values():
        assert numbers.p50 is not None
        assert numbers.p90 is not None
        assert numbers.p99 is not None
        assert 0 <= numbers.p50 <= numbers.p90 <= numbers.p99


async def test_the_latency_ring_is_bounded_and_reset_starts_over() -> None:
    statistics = Statistics(memory_driver(), samples=8)
    for index in range(100):
        await statistics.set(f"k{index}", b"v")
    assert statistics.stats()["set"].count == 100
    assert len(statistics._recorders["set"].samples) == 8
    statistics.reset()
    assert statistics.stats() == {}


async def test_found_in_a_storage_built_from_a_url() -> None:
    from kvstore import create_storage

    async with create_storage("memory://?stats=true") as storage:
        await storage.set("a", 1)
        statistics = find_wrapper(storage.driver, Statistics)
        assert statistics is not None
        assert statistics.stats()["set"].count == 1
