"""The fs driver through ``Storage`` next to plain file I/O on the same layout, on local disk.

Run ``python -m benchmarks.bench_fs``. The raw side is what a careful hand-written store does for
the same JSON values: ``orjson`` plus ``open``/``write``/``close`` (not atomic), and also the
atomic form the driver uses (a temp file renamed with ``os.replace``), ``open``/``read``,
``os.unlink``, and ``os.listdir`` plus ``sorted`` for a scan. Both sides use one directory per
first segment, as the driver does.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

import anyio
import orjson

from benchmarks.harness import Report, time_async
from kvstore.drivers.fs import fs_driver
from kvstore.storage import Storage

SINGLE = 2000
BATCH = 10_000
GROUPS = 10
VALUE = {"name": "Alice", "roles": ["admin", "dev"], "age": 42, "active": True}


class RawFiles:
    """Plain file I/O with orjson, behind async functions like the driver's."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)

    def path(self, group: str, name: str) -> str:
        return f"{self.root}/{group}/{name}.kv"

    async def set(self, group: str, name: str, value: object) -> None:
        data = orjson.dumps(value)
        with open(self.path(group, name), "wb") as file:  # noqa: ASYNC230 - the baseline
            file.write(data)

    async def set_atomic(self, group: str, name: str, value: object) -> None:
        data = orjson.dumps(value)
        temp = f"{self.root}/.tmp/{name}"
        with open(temp, "wb") as file:  # noqa: ASYNC230 - the baseline
            file.write(data)
        os.replace(temp, self.path(group, name))

    async def get(self, group: str, name: str) -> object:
        try:
            with open(self.path(group, name), "rb") as file:  # noqa: ASYNC230 - the baseline
                return orjson.loads(file.read())
        except FileNotFoundError:
            return None

    async def delete(self, group: str, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(group, name))

    async def keys(self, group: str) -> list[str]:
        names = os.listdir(f"{self.root}/{group}")
        return sorted(f"{group}:{name[:-3]}" for name in names if name.endswith(".kv"))


async def run() -> Report:
    report = Report("fs driver (local disk) through Storage vs plain file I/O")
    with tempfile.TemporaryDirectory() as temp:
        raw = RawFiles(Path(temp) / "raw")
        storage = Storage(fs_driver(str(Path(temp) / "store")))
        for directory in ("bench", "batch", ".tmp", *(f"g{index}" for index in range(GROUPS))):
            os.makedirs(f"{raw.root}/{directory}", exist_ok=True)

        async def ours_set() -> float:
            return await time_async(lambda i: storage.set(f"bench:k{i}", VALUE), SINGLE)

        async def raw_set() -> float:
            return await time_async(lambda i: raw.set("bench", f"k{i}", VALUE), SINGLE)

        await report.compare("set", SINGLE, ours_set, raw_set)

        async def raw_atomic_set() -> float:
            return await time_async(lambda i: raw.set_atomic("bench", f"k{i}", VALUE), SINGLE)

        await report.compare("set vs raw temp file + os.replace", SINGLE, ours_set, raw_atomic_set)

        async def ours_get() -> float:
            return await time_async(lambda i: storage.get(f"bench:k{i}"), SINGLE)

        async def raw_get() -> float:
            return await time_async(lambda i: raw.get("bench", f"k{i}"), SINGLE)

        await report.compare("get", SINGLE, ours_get, raw_get)

        async def ours_miss() -> float:
            return await time_async(lambda i: storage.get(f"bench:missing{i}"), SINGLE)

        async def raw_miss() -> float:
            return await time_async(lambda i: raw.get("bench", f"missing{i}"), SINGLE)

        await report.compare("get (miss)", SINGLE, ours_miss, raw_miss)

        async def ours_delete() -> float:
            await storage.set_many((f"bench:k{i}", VALUE) for i in range(SINGLE))
            return await time_async(lambda i: storage.delete(f"bench:k{i}"), SINGLE)

        async def raw_delete() -> float:
            for i in range(SINGLE):
                await raw.set("bench", f"k{i}", VALUE)
            return await time_async(lambda i: raw.delete("bench", f"k{i}"), SINGLE)

        # Keep one key so that neither side's directory is pruned or recreated mid-benchmark.
        await storage.set("bench:keep", 1)
        await raw.set("bench", "keep", 1)
        await report.compare("delete", SINGLE, ours_delete, raw_delete)

        per_group = BATCH // GROUPS
        await storage.set_many(
            (f"g{group}:k{i:05d}", VALUE) for group in range(GROUPS) for i in range(per_group)
        )
        for group in range(GROUPS):
            for i in range(per_group):
                await raw.set(f"g{group}", f"k{i:05d}", VALUE)

        async def ours_scan() -> float:
            start = time.perf_counter()
            found = [key async for key in storage.keys("g3:")]
            assert len(found) == per_group
            return time.perf_counter() - start

        async def raw_scan() -> float:
            start = time.perf_counter()
            found = list(await raw.keys("g3"))
            assert len(found) == per_group
            return time.perf_counter() - start

        await report.compare(f"scan {per_group:,} of {BATCH:,} keys", per_group, ours_scan,
                             raw_scan)

        items = [(f"batch:k{i:05d}", VALUE) for i in range(BATCH)]
        names = [f"k{i:05d}" for i in range(BATCH)]

        async def ours_set_many() -> float:
            start = time.perf_counter()
            await storage.set_many(items)
            return time.perf_counter() - start

        async def raw_set_many() -> float:
            start = time.perf_counter()
            for name in names:
                await raw.set("batch", name, VALUE)
            return time.perf_counter() - start

        await report.compare(f"set_many {BATCH:,}", BATCH, ours_set_many, raw_set_many)

        async def ours_get_many() -> float:
            start = time.perf_counter()
            values = await storage.get_many(key for key, _ in items)
            assert values[-1] == VALUE
            return time.perf_counter() - start

        async def raw_get_many() -> float:
            start = time.perf_counter()
            values = [await raw.get("batch", name) for name in names]
            assert values[-1] == VALUE
            return time.perf_counter() - start

        await report.compare(f"get_many {BATCH:,}", BATCH, ours_get_many, raw_get_many)
        await storage.close()
    return report


def main() -> None:
    print(anyio.run(run).render())


if __name__ == "__main__":
    main()
