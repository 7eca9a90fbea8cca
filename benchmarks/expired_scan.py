"""A prefix scan among expired keys against one over live keys alone, wall clock, per driver.

Run: ``python -m benchmarks.expired_scan [memory] [sqlite] [fs] [URL ...]`` (URLs of server
stores, e.g. ``redis://127.0.0.1:6379/0?base=bench_exp``, ``postgresql://...?table=bench_exp``).

The store holds ``a:`` with 1,000 live keys and ``b:`` with 10,000 keys of which 9,000 have
expired (written with a short TTL, then waited out; no purge runs, since nothing writes with a
TTL afterwards). Rounds alternate between ``keys("a:")`` and ``keys("b:")`` so that load hits
both alike; the ratio of the best times is what a scan pays for expired keys it must skip. The
issue's target is at most 2.5 on SQLite, PostgreSQL and Redis.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

from kvstore import Storage, create_storage
from kvstore.drivers.fs import fs_driver
from kvstore.drivers.memory import memory_driver
from kvstore.drivers.sqlite import sqlite_driver
from kvstore.testing.clock import TestClock

ROUNDS = 30
LIVE = 1000
EXPIRED = 9000
TTL = 2.0


async def _scan(storage: Storage, prefix: str) -> float:
    start = time.perf_counter()
    count = 0
    async for _ in storage.keys(prefix):
        count += 1
    elapsed = time.perf_counter() - start
    assert count == LIVE, f"keys({prefix!r}) yielded {count} keys, not {LIVE}"
    return elapsed


async def measure(name: str, storage: Storage) -> None:
    """Fill the store, wait for the short TTL to pass, and print the two scans' times."""
    await storage.clear()
    for first in range(0, EXPIRED, 1000):
        batch = {f"b:{n:05}": b"x" for n in range(first, min(first + 1000, EXPIRED))}
        await storage.set_many_raw(batch, ttl=TTL)
    deadline = time.time() + TTL
    await storage.set_many_raw(
        {f"{p}:{n:05}": b"x" for p in "ab" for n in range(EXPIRED, EXPIRED + LIVE)}
    )
    await TestClock(manual=False).pass_instant(deadline)
    times: dict[str, list[float]] = {"a:": [], "b:": []}
    for round_number in range(ROUNDS):
        order = ["a:", "b:"] if round_number % 2 == 0 else ["b:", "a:"]
        for prefix in order:
            times[prefix].append(await _scan(storage, prefix))
    await storage.clear()
    await storage.close()
    best = {prefix: min(values) * 1e3 for prefix, values in times.items()}
    median = {prefix: statistics.median(values) * 1e3 for prefix, values in times.items()}
    print(
        f"{name:12} live alone {best['a:']:7.2f} ms  among expired {best['b:']:7.2f} ms"
        f"  ratio {best['b:'] / best['a:']:5.2f} (median {median['b:'] / median['a:']:5.2f})"
    )


def main() -> None:
    """Measure each driver named on the command line (memory and sqlite by default)."""
    names = sys.argv[1:] or ["memory", "sqlite"]
    with tempfile.TemporaryDirectory(prefix="expired-scan-") as temp:
        for name in names:
            if name == "memory":
                storage = Storage(memory_driver())
            elif name == "sqlite":
                storage = Storage(sqlite_driver(Path(temp) / "bench.db"))
            elif name == "fs":
                storage = Storage(fs_driver(str(Path(temp) / "fs")))
            else:
                storage = create_storage(name)
            label = name.split(":", 1)[0] if "://" in name else name
            anyio.run(measure, label, storage)


if __name__ == "__main__":
    main()
