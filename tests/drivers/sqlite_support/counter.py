"""Increment a counter in a shared SQLite file with ``Storage.update``, from its own process.

Usage: ``python counter.py PATH KEY COUNT``. Prints ``ready``, waits for a line on stdin (the
start signal, so that all processes begin together), then calls ``Storage.update(KEY, +1)``
COUNT times and prints ``done``; exits 0. Any error (a ``Conflict`` after the update's retries
ran out included) is printed to stderr and the exit status is 1.

The driver is not opened before the start signal, so processes started on a file in the old
layout race to upgrade it, too.
"""

from __future__ import annotations

import sys
import traceback

import anyio

from kvstore.drivers.sqlite import sqlite_driver
from kvstore.serialization import JSONValue
from kvstore.storage import Storage


def _plus_one(value: JSONValue | None) -> JSONValue:
    assert value is None or isinstance(value, int)
    return (value or 0) + 1


async def count(path: str, key: str, times: int) -> None:
    print("ready", flush=True)
    await anyio.to_thread.run_sync(sys.stdin.readline)
    async with Storage(sqlite_driver(path)) as storage:
        for _ in range(times):
            await storage.update(key, _plus_one)
    print("done", flush=True)


def main() -> int:
    path, key, times = sys.argv[1], sys.argv[2], int(sys.argv[3])
    try:
        anyio.run(count, path, key, times)
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
