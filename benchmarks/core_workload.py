"""The core benchmark workload, run the same way for every driver.

``Baseline`` is what each benchmark implements with the raw client; :func:`compare_storage` times
it next to a :class:`~kvstore.storage.Storage` doing the same work: set, get, miss, delete, a
prefix scan of 1,000 keys among ``scan_total``, and 10,000-item batch set and get.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from benchmarks.harness import Report, time_async
from kvstore.storage import Storage

VALUE = {"role": "assistant", "content": "hello world", "n": 1}


class Baseline(Protocol):
    """The raw operations a driver wraps, with JSON values encoded the same way (orjson)."""

    async def set(self, key: str, value: object) -> None:
        """Store one JSON value."""

    async def get(self, key: str) -> object | None:
        """Read one JSON value."""

    async def delete(self, key: str) -> None:
        """Delete one key."""

    async def scan(self, prefix: str) -> list[str]:
        """Return the keys starting with ``prefix``, sorted."""

    async def set_batch(self, items: Sequence[tuple[str, object]]) -> None:
        """Store many values in the raw client's best batch form."""

    async def get_batch(self, keys: list[str]) -> list[object | None]:
        """Read many values in the raw client's best batch form."""

    async def reset(self) -> None:
        """Remove everything the benchmark wrote."""


async def compare_storage(
    report: Report,
    storage: Storage,
    raw: Baseline,
    *,
    point_ops: int = 5_000,
    batch_size: int = 10_000,
    scan_total: int = 10_000,
    scan_match: int = 1_000,
) -> Report:
    """Fill ``report`` with the workload's comparisons of ``storage`` against ``raw``."""
    keys = [f"bench:point:{index:07d}" for index in range(point_ops)]

    async def ours_set() -> float:
        return await time_async(lambda i: storage.set(keys[i], VALUE), point_ops)

    async def raw_set() -> float:
        return await time_async(lambda i: raw.set(keys[i], VALUE), point_ops)

    await report.compare("set", point_ops, ours_set, raw_set)

    async def ours_get() -> float:
        return await time_async(lambda i: storage.get(keys[i]), point_ops)

    async def raw_get() -> float:
        return await time_async(lambda i: raw.get(keys[i]), point_ops)

    await report.compare("get", point_ops, ours_get, raw_get)

    async def ours_miss() -> float:
        return await time_async(lambda i: storage.get(f"bench:missing:{i}"), point_ops)

    async def raw_miss() -> float:
        return await time_async(lambda i: raw.get(f"bench:missing:{i}"), point_ops)

    await report.compare("miss", point_ops, ours_miss, raw_miss)

    async def ours_delete() -> float:
        await storage.set_many([(key, VALUE) for key in keys])
        return await time_async(lambda i: storage.delete(keys[i]), point_ops)

    async def raw_delete() -> float:
        await raw.set_batch([(key, VALUE) for key in keys])
        return await time_async(lambda i: raw.delete(keys[i]), point_ops)

    await report.compare("delete", point_ops, ours_delete, raw_delete)
    await raw.reset()
    await storage.clear("bench:")

    groups = scan_total // scan_match
    scan_items = [
        (f"bench:scan:{group:03d}:{index:06d}", VALUE)
        for group in range(groups)
        for index in range(scan_match)
    ]
    # The two sides may or may not share a backend; each fills its own view of it.
    for start in range(0, len(scan_items), batch_size):
        await raw.set_batch(scan_items[start : start + batch_size])
        await storage.set_many(scan_items[start : start + batch_size])
    prefix = f"bench:scan:{groups // 2:03d}:"

    async def ours_scan() -> float:
        async def scan(_: int) -> None:
            found = [key async for key in storage.keys(prefix)]
            assert len(found) == scan_match

        return await time_async(scan, 5)

    async def raw_scan() -> float:
        async def scan(_: int) -> None:
            assert len(await raw.scan(prefix)) == scan_match

        return await time_async(scan, 5)

    await report.compare(f"scan {scan_match:,} of {scan_total:,} (x5)", 5, ours_scan, raw_scan)
    await raw.reset()
    await storage.clear("bench:")

    batch = [(f"bench:batch:{index:07d}", VALUE) for index in range(batch_size)]
    batch_keys = [key for key, _ in batch]

    async def ours_set_many() -> float:
        return await time_async(lambda _: storage.set_many(batch), 1)

    async def raw_set_many() -> float:
        return await time_async(lambda _: raw.set_batch(batch), 1)

    await report.compare(
        f"set_many {batch_size:,} (items)", batch_size, ours_set_many, raw_set_many
    )

    async def ours_get_many() -> float:
        return await time_async(lambda _: storage.get_many(batch_keys), 1)

    async def raw_get_many() -> float:
        return await time_async(lambda _: raw.get_batch(batch_keys), 1)

    await report.compare(
        f"get_many {batch_size:,} (items)", batch_size, ours_get_many, raw_get_many
    )
    await raw.reset()
    await storage.clear("bench:")
    return report
