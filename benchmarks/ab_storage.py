"""Operations through ``Storage``: this checkout against another, in one process.

Run: ``python -m benchmarks.ab_storage /path/to/other/checkout [memory] [sqlite] [fs] [URL]``.

Single operations (``set``, ``get``, a ``miss``, ``delete``), batches of 100 (``set_many``,
``get_many``) and a prefix scan (``scan``), each reported per key; none uses a TTL, so the
table shows what a capability costs the code that does not use it.

A URL argument names a server store, with ``{side}`` where each side's own namespace goes
(``"redis://127.0.0.1:6379/0?base=ab_{side}"``, ``"postgresql://127.0.0.1/test?table=ab_{side}"``),
so that the two checkouts never share a table or a base.

On a shared, loaded machine two separate benchmark runs differ by more than the changes being
measured. Here the other checkout's ``kvstore`` is imported under the name ``kvstore_base`` (a
copy with its imports renamed), both storages live in one process, and rounds alternate between
them (which goes first alternates too), so load hits both alike. Prints the best and the median
microseconds per operation of each side, and the change.
"""

from __future__ import annotations

import importlib
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio

VALUE = {"role": "assistant", "content": "hello world", "n": 1}
ROUNDS = 60
OPERATIONS = ("set", "get", "miss", "set_many", "get_many", "scan", "delete")
BATCH = 100


def _import_other(checkout: Path, into: Path) -> ModuleType:
    copy = into / "kvstore_base"
    shutil.copytree(checkout / "kvstore", copy)
    pattern = re.compile(r"\bkvstore(?=[.\s])")
    for source in copy.rglob("*.py"):
        text = source.read_text()
        source.write_text(pattern.sub("kvstore_base", text))
    sys.path.insert(0, str(into))
    return importlib.import_module("kvstore_base")


async def _timed(storage: Any, operation: str, keys: list[str]) -> float:
    start = time.perf_counter()
    if operation == "set":
        for key in keys:
            await storage.set(key, VALUE)
    elif operation == "get":
        for key in keys:
            await storage.get(key)
    elif operation == "miss":
        for key in keys:
            await storage.get("missing:" + key)
    elif operation == "set_many":
        for first in range(0, len(keys), BATCH):
            await storage.set_many([(key, VALUE) for key in keys[first : first + BATCH]])
    elif operation == "get_many":
        for first in range(0, len(keys), BATCH):
            await storage.get_many(keys[first : first + BATCH])
    elif operation == "scan":
        async for _ in storage.keys("bench:point:"):
            pass
    else:
        for key in keys:
            await storage.delete(key)
    return (time.perf_counter() - start) / len(keys)


async def compare(driver: str, other: str, directory: Path) -> None:
    """Print the table for one driver."""
    makers: dict[str, Callable[[str, Path], Any]] = {
        "memory": lambda package, _: importlib.import_module(
            f"{package}.drivers.memory"
        ).memory_driver(),
        "sqlite": lambda package, path: importlib.import_module(
            f"{package}.drivers.sqlite"
        ).sqlite_driver(path / f"{package}.db"),
        "fs": lambda package, path: importlib.import_module(f"{package}.drivers.fs").fs_driver(
            str(path / package)
        ),
    }
    if "://" in driver:
        # Each side through its own checkout's URL parsing, on its own namespace.
        sides = {
            name: importlib.import_module(package).create_storage(driver.format(side=name))
            for name, package in (("other", other), ("this", "kvstore"))
        }
        for storage in sides.values():
            await storage.clear()
    else:
        sides = {
            name: importlib.import_module(f"{package}.storage").Storage(
                makers[driver](package, directory)
            )
            for name, package in (("other", other), ("this", "kvstore"))
        }
    count = 250 if driver == "fs" or "://" in driver else 1000
    keys = [f"bench:point:{index:07d}" for index in range(count)]
    # Keep one key, so that neither side's directory is pruned and recreated each round.
    for storage in sides.values():
        await storage.set("bench:keep", 1)
    times: dict[str, dict[str, list[float]]] = {op: {"other": [], "this": []} for op in OPERATIONS}
    for round_number in range(ROUNDS):
        order = ["other", "this"] if round_number % 2 == 0 else ["this", "other"]
        for operation in OPERATIONS:
            if operation == "delete":
                for name in order:
                    await sides[name].set_many([(key, VALUE) for key in keys])
            for name in order:
                times[operation][name].append(await _timed(sides[name], operation, keys))
    for storage in sides.values():
        if "://" in driver:
            await storage.clear()
        await storage.close()
    print(f"== {driver}: µs per operation through Storage, {ROUNDS} alternating rounds of {count}")
    print(f"{'op':8}{'other best':>12}{'this best':>11}{'change':>8}"
          f"{'other med':>11}{'this med':>10}{'change':>8}")
    for operation, measured in times.items():
        best = [min(measured[name]) * 1e6 for name in ("other", "this")]
        median = [statistics.median(measured[name]) * 1e6 for name in ("other", "this")]
        print(
            f"{operation:8}{best[0]:12.2f}{best[1]:11.2f}{best[1] / best[0] - 1:+8.1%}"
            f"{median[0]:11.2f}{median[1]:10.2f}{median[1] / median[0] - 1:+8.1%}"
        )


def main() -> None:
    """Compare the drivers named on the command line (all three by default)."""
    checkout = Path(sys.argv[1]).resolve()
    drivers = sys.argv[2:] or ["memory", "sqlite", "fs"]
    with tempfile.TemporaryDirectory(prefix="ab-single-ops-") as temp:
        _import_other(checkout, Path(temp))
        for driver in drivers:
            data = Path(temp) / f"data-{len(list(Path(temp).iterdir()))}"
            data.mkdir()
            anyio.run(compare, driver, "kvstore_base", data)


if __name__ == "__main__":
    main()
