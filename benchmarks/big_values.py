"""Where 1 MiB values cost least: SQLite, the fs driver, fs mounted beside SQLite, diskcache.

Run: ``python -m benchmarks.big_values``.

Each round sets (then gets) ten 1 MiB JSON values on every contender, back to back in one
process; a figure is the median over the rounds, in ms per value. diskcache gets the same orjson
bytes as ours (its default pickle would skip the JSON work ours must do); the last line times
that JSON decode against a pickle load of the same value, which is what diskcache's own
``get`` of a Python object costs instead.
"""

from __future__ import annotations

import pickle
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import orjson

from kvstore import Storage
from kvstore.drivers.fs import fs_driver
from kvstore.drivers.sqlite import sqlite_driver

ROUNDS = 9
VALUES = 10
# Two values of 1 MiB once encoded, alternated so that no write rewrites identical bytes.
LARGE = ({"data": "x" * ((1 << 20) - 12)}, {"data": "y" * ((1 << 20) - 12)})

Step = Callable[[int], Awaitable[None]]


def _storage_steps(storage: Storage, prefix: str) -> tuple[Step, Step]:
    async def set_all(round_number: int) -> None:
        for index in range(VALUES):
            await storage.set(f"{prefix}{index}", LARGE[round_number % 2])

    async def get_all(round_number: int) -> None:
        for index in range(VALUES):
            await storage.get(f"{prefix}{index}")

    return set_all, get_all


def _diskcache_steps(directory: Path) -> tuple[Step, Step]:
    import diskcache

    cache = diskcache.Cache(str(directory))

    async def set_all(round_number: int) -> None:
        for index in range(VALUES):
            cache.set(f"k{index}", orjson.dumps(LARGE[round_number % 2]))

    async def get_all(round_number: int) -> None:
        for index in range(VALUES):
            orjson.loads(cache.get(f"k{index}"))

    return set_all, get_all


async def main() -> None:
    """Print ms per 1 MiB value for each contender's set and get."""
    with tempfile.TemporaryDirectory(prefix="bench-big-") as temp:
        root = Path(temp)
        sqlite = Storage(sqlite_driver(root / "values.db"))
        files = Storage(fs_driver(base=str(root / "files")))
        mounted = Storage(sqlite_driver(root / "mounted.db"))
        mounted.mount("blobs", fs_driver(base=str(root / "blobs")))
        contenders = {
            "sqlite": _storage_steps(sqlite, "k"),
            "fs": _storage_steps(files, "k"),
            "fs mounted beside sqlite": _storage_steps(mounted, "blobs:k"),
            "diskcache (orjson bytes)": _diskcache_steps(root / "diskcache"),
        }
        times: dict[tuple[str, str], list[float]] = {}
        try:
            for round_number in range(ROUNDS + 1):  # the first round warms up, uncounted
                for operation, which in (("set", 0), ("get", 1)):
                    for name, steps in contenders.items():
                        start = time.perf_counter()
                        await steps[which](round_number)
                        elapsed = (time.perf_counter() - start) / VALUES
                        if round_number:
                            times.setdefault((name, operation), []).append(elapsed)
        finally:
            for storage in (sqlite, files, mounted):
                await storage.close()
    print(f"1 MiB values, ms per value, median of {ROUNDS} rounds of {VALUES}")
    for (name, operation), samples in times.items():
        print(f"  {operation:<4} {name:<26} {statistics.median(samples) * 1e3:7.2f}")
    encoded, pickled = orjson.dumps(LARGE[0]), pickle.dumps(LARGE[0])
    decode = min(_timed(lambda: orjson.loads(encoded)) for _ in range(20))
    unpickle = min(_timed(lambda: pickle.loads(pickled)) for _ in range(20))
    print(f"  decode: orjson.loads {decode * 1e3:.2f} ms, pickle.loads {unpickle * 1e3:.2f} ms")


def _timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


if __name__ == "__main__":
    anyio.run(main)
