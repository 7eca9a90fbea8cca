"""The memory driver passes the conformance suite, on a clock the expiry clauses move."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Sequence

import pytest

from kvstore.conditional import Versioned
from kvstore.drivers.memory import MemoryDriver, memory_driver
from kvstore.storage import Storage
from kvstore.testing import DriverConformance, DriverFactory
from kvstore.testing.clock import TestClock


class TestMemoryDriver(DriverConformance):
    persistent = False
    manual_clock = True

    @pytest.fixture
    def driver_factory(self, clock: TestClock) -> DriverFactory:
        return lambda: memory_driver(clock=clock)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_purge_frees_expired_keys_and_expiring_writes_purge_a_few() -> None:
    clock = TestClock(manual=True)
    driver = memory_driver(clock=clock)
    await driver.set_many_expiring([(f"old{n:03}", b"x") for n in range(250)], 1.0)
    await driver.set("live", b"y")
    await clock.advance(2.0)
    # Expired, but never read: still held until something purges them.
    assert len(driver._values) == 251
    # An expiring write purges a small batch (once per second of the driver's clock).
    await driver.set_expiring("new", b"z", 60.0)
    assert len(driver._values) == 252 - 100
    await driver.set_expiring("new2", b"z", 60.0)
    assert len(driver._values) == 253 - 100  # not again within the same second
    assert await driver.purge_expired(100) == 100
    assert await driver.purge_expired(100) == 50
    assert sorted(driver._values) == ["live", "new", "new2"]
    assert sorted(driver._expiry) == ["new", "new2"]


@pytest.mark.anyio
async def test_short_values_are_stored_as_copies_of_their_own() -> None:
    """orjson's results keep ~4 KB of heap each: short values are kept as fresh copies."""
    driver = memory_driver()
    short, long = b"s" * 200, b"l" * (1 << 20)
    await driver.set("a", short)
    await driver.set_many([("b", short), ("c", long)])
    await driver.set_expiring("d", short, 60.0)
    for key in ("a", "b", "d"):
        stored = await driver.get(key)
        assert stored == short
        assert stored is not short
    assert await driver.get("c") is long  # beyond the copy threshold: the same object


@pytest.mark.anyio
async def test_bulk_set_many_indexes_and_clears_like_single_writes() -> None:
    """set_many applies steps in bulk: new keys reach the index once, overwrites drop versions
    and expiry, a repeated key keeps its last value, and a bytearray is copied."""
    driver = memory_driver()
    await driver.set_expiring("k0001", b"old", 60.0)
    assert (await driver.get_versioned("k0002")) is None
    await driver.set("k0002", b"old")
    before = await driver.get_versioned("k0002")
    buffer = bytearray(b"buf")
    items: list[tuple[str, bytes]] = [(f"k{n:04}", b"v%d" % n) for n in range(3000)]
    items += [("k0005", b"last"), ("x", buffer)]  # type: ignore[list-item]  # a buffer, as given
    await driver.set_many(items)
    buffer[:] = b"changed"
    assert [key async for key in driver.keys("k")] == [f"k{n:04}" for n in range(3000)]
    assert await driver.get("k0005") == b"last"
    assert await driver.get("x") == b"buf"
    await _assert_rewritten(driver, expired="k0001", versioned="k0002", before=before)


@pytest.mark.anyio
async def test_writes_drop_versions_and_expiry_after_many_operations() -> None:
    """With versions and expiries in use, after many operations (each slow path of the driver
    included), a rewrite still drops the expiry and the version, and a delete both."""
    driver = memory_driver()
    await driver.set_expiring("expiring", b"v", 60.0)
    await driver.set("versioned", b"v")
    before = await driver.get_versioned("versioned")
    await driver.set_expiring("deleted", b"v", 60.0)
    for _ in range(1000):  # many times the operations between two slow paths
        await driver.get("other")
    await driver.set("expiring", b"w")
    await driver.set("versioned", b"w")
    await driver.delete("deleted")
    await _assert_rewritten(driver, expired="expiring", versioned="versioned", before=before)
    assert await driver.get_meta("deleted") is None
    await driver.set("deleted", b"x")
    meta = await driver.get_meta("deleted")
    assert meta is not None
    assert meta.expires_at is None


async def _assert_rewritten(
    driver: MemoryDriver, *, expired: str, versioned: str, before: Versioned[bytes] | None
) -> None:
    """Rewriting ``expired`` dropped its expiry, and ``versioned`` has a new version."""
    meta = await driver.get_meta(expired)
    assert meta is not None
    assert meta.expires_at is None
    after = await driver.get_versioned(versioned)
    assert before is not None
    assert after is not None
    assert after.version != before.version


@pytest.mark.anyio
async def test_a_version_handed_out_costs_its_key_a_few_bytes() -> None:
    """get_meta hands out versions, and an export reads it for every key: each version is kept
    in its key's entry (the int and 8 bytes, 44 a key in all here), not in a mapping of its own
    (which cost 57 a key here, and 165 MiB of RSS for 1,000,000 keys against 46)."""
    count = 10_000
    keys = [f"k{n:05}" for n in range(count)]
    tracemalloc.start()  # before the fill, so that the entries replaced are counted as freed
    try:
        driver = memory_driver()
        await driver.set_many([(key, b"v") for key in keys])
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        metas = await driver.get_meta_many(keys)
        del metas  # the metadata read is dropped: what remains is what the store keeps
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # What a key holds after the read, beyond the version int (36 bytes) itself: at most a
    # few words, not a mapping entry.
    assert grown / count - 36 <= 12, f"{grown / count:.1f} bytes a key"
    # They are the keys' versions, kept until the next write of each key.
    first = [meta.version if meta else None for meta in await driver.get_meta_many(keys)]
    assert len(set(first)) == count
    again = [found.version for key in keys if (found := await driver.get_versioned(key))]
    assert again == first


@pytest.mark.anyio
async def test_deletes_of_ordered_and_not_yet_ordered_keys_leave_the_index_right() -> None:
    """A delete takes a key never scanned straight out of the index's waiting keys, and a key
    a scan has ordered through the index's removals: later scans see neither."""
    driver = memory_driver()
    await driver.set_many([("a:1", b"1"), ("a:2", b"2"), ("a:3", b"3")])
    assert [key async for key in driver.keys("a:")] == ["a:1", "a:2", "a:3"]  # now ordered
    await driver.set("a:4", b"4")  # waiting, not ordered yet
    await driver.delete("a:2")
    await driver.delete("a:4")
    await driver.delete("a:5")  # missing: nothing to do
    assert [key async for key in driver.keys("a:")] == ["a:1", "a:3"]
    assert await driver.get_many(["a:2", "a:4"]) == [None, None]
    await driver.set("a:2", b"again")  # back in, after its removal was applied
    assert [key async for key in driver.keys("a:")] == ["a:1", "a:2", "a:3"]


@pytest.mark.anyio
async def test_set_many_columns_copies_what_it_does_not_own_and_checks_lengths() -> None:
    driver = memory_driver()
    buffer = bytearray(b"mutable")
    await driver.set_many_columns(["a", "b"], [buffer, b"kept"], owned=False)  # type: ignore[list-item]
    buffer[:] = b"changed"
    assert await driver.get_many(["a", "b"]) == [b"mutable", b"kept"]
    assert type(await driver.get("a")) is bytes
    owned = [b"x" * 10, b"y" * 10]
    await driver.set_many_columns(["c", "d"], owned, owned=True)
    assert await driver.get_many(["c", "d"]) == owned
    with pytest.raises(ValueError, match="2 keys for 1 values"):
        await driver.set_many_columns(["e", "f"], [b"1"])
    assert await driver.get_many(["e", "f"]) == [None, None]
    assert [key async for key in driver.keys()] == ["a", "b", "c", "d"]


@pytest.mark.anyio
@pytest.mark.parametrize("size", [3, 300])
async def test_storage_batches_reach_a_subclass_that_changes_set_many(size: int) -> None:
    """Storage hands its batches to set_many_columns; a test double that overrides set_many
    (and not that) still sees each of them, small (not copied when encoded) or large."""
    seen: list[int] = []

    class Counting(MemoryDriver):
        async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
            seen.append(len(items))
            await super().set_many(items)

    async with Storage(Counting()) as storage:
        items = [(f"k{n:04}", {"n": n}) for n in range(size)]
        await storage.set_many(items)
        assert seen == [size]
        assert await storage.get_many([key for key, _ in items]) == [{"n": n} for n in range(size)]


@pytest.mark.anyio
async def test_a_scan_across_a_clear_reads_the_store_as_it_is_at_each_page() -> None:
    """Between two pages of a scan the store may be cleared and written again: the scan goes on
    from where it was, with the keys and values the store holds when it reads the next page."""
    driver = memory_driver()
    await driver.set_many([(f"k{n:04}", b"old") for n in range(600)])
    scan = driver.items("k")
    first = [await scan.__anext__() for _ in range(256)]  # the whole first page
    assert first == [(f"k{n:04}", b"old") for n in range(256)]
    await driver.clear()
    await driver.set_many([(f"k{n:04}", b"new") for n in range(250, 300)])
    rest = [pair async for pair in scan]
    assert rest == [(f"k{n:04}", b"new") for n in range(256, 300)]
