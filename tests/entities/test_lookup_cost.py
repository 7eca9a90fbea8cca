"""Lookups by index cost in proportion to their answer, not to the number of records.

Cost is counted, not timed: the storage operations a lookup makes and the keys and values it
reads, through a driver that counts what passes through it, on memory and SQLite.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from entities import Entity, Index, Repository
from entities._layout import EntityLayout
from kvstore.conditional import Change, Versioned
from kvstore.driver import BaseDriver
from kvstore.drivers.memory import memory_driver
from kvstore.drivers.sqlite import sqlite_driver
from kvstore.storage import Storage

pytestmark = pytest.mark.anyio

GROUP_SIZE = 10


@dataclass(frozen=True)
class Item:
    item_id: str
    group: str
    code: str


ITEMS: Entity[Item] = Entity(
    Item,
    collection="items",
    id="item_id",
    indexes=[Index("by_group", "group"), Index("by_code", "code", unique=True)],
)


class CountingDriver(BaseDriver):
    """Passes every call to ``inner``, counting operations and the keys and values read."""

    def __init__(self, inner: BaseDriver) -> None:
        self.inner = inner
        self.name = inner.name
        self.atomic_batches = inner.atomic_batches
        self.conditional_writes = inner.conditional_writes
        self.operations = 0
        self.read = 0

    def reset(self) -> None:
        self.operations = self.read = 0

    async def get(self, key: str) -> bytes | None:
        self.operations += 1
        self.read += 1
        return await self.inner.get(key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self.operations += 1
        self.read += len(keys)
        return await self.inner.get_many(keys)

    async def get_versioned(self, key: str) -> Versioned[bytes] | None:
        self.operations += 1
        self.read += 1
        return await self.inner.get_versioned(key)

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        self.operations += 1
        async for key in self.inner.keys(prefix):
            self.read += 1
            yield key

    async def items(self, prefix: str = "") -> AsyncIterator[tuple[str, bytes]]:
        self.operations += 1
        async for pair in self.inner.items(prefix):
            self.read += 1
            yield pair

    async def set(self, key: str, value: bytes) -> None:
        self.operations += 1
        await self.inner.set(key, value)

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        self.operations += 1
        await self.inner.set_many(items)

    async def delete(self, key: str) -> None:
        self.operations += 1
        await self.inner.delete(key)

    async def delete_many(self, keys: Sequence[str]) -> None:
        self.operations += 1
        await self.inner.delete_many(keys)

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        self.operations += 1
        return await self.inner.commit(changes)

    async def clear(self, prefix: str = "") -> None:
        self.operations += 1
        await self.inner.clear(prefix)

    async def close(self) -> None:
        await self.inner.close()
        self.mark_closed()


async def _fill(storage: Storage, records: int) -> None:
    """Store ``records`` items and their index entries directly, in the layout a save writes."""
    layout = EntityLayout(ITEMS, storage.base)
    batch: list[tuple[str, object]] = []
    for number in range(records):
        item = Item(f"i{number:06d}", f"g{number // GROUP_SIZE:05d}", f"code-{number}")
        batch += [
            (layout.record(item.item_id), ITEMS.document(item)),
            (layout.entry("by_group", item.group, item.item_id), 1),
            (layout.unique("by_code", item.code), item.item_id),
        ]
        if len(batch) >= 30_000:
            await storage.set_many(batch)
            batch = []
    await storage.set_many(batch)


async def _costs(driver: BaseDriver, records: int) -> list[tuple[int, int]]:
    counting = CountingDriver(driver)
    async with Storage(counting) as storage:
        await _fill(storage, records)
        repository = Repository(storage, ITEMS)
        costs = []
        # A group and a code near the middle of the data.
        group = f"g{records // GROUP_SIZE // 2:05d}"
        for lookup in (
            lambda: repository.find("by_group", group),
            lambda: repository.find_one("by_code", f"code-{records // 2}"),
            lambda: repository.get(f"i{records // 2:06d}"),
            lambda: repository.find("by_group", "absent"),
        ):
            counting.reset()
            answer = await lookup()
            assert answer is not None
            costs.append((counting.operations, counting.read))
        assert len(await repository.find("by_group", group)) == GROUP_SIZE
    return costs


@pytest.fixture(params=["memory", "sqlite"])
def make_driver(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    counter = iter(range(10))
    if request.param == "memory":
        return memory_driver
    return lambda: sqlite_driver(tmp_path / f"cost{next(counter)}.db")


@pytest.mark.timeout(300)
async def test_lookups_among_100000_records_cost_within_twice_those_among_1000(
    make_driver: object,
) -> None:
    assert callable(make_driver)
    small = await _costs(make_driver(), 1_000)
    large = await _costs(make_driver(), 100_000)
    for (small_ops, small_read), (large_ops, large_read) in zip(small, large, strict=True):
        assert large_ops <= 2 * small_ops
        assert large_read <= 2 * small_read
    # Each lookup reads its answer and its entries, nothing more.
    assert small[0][1] <= 2 * GROUP_SIZE
