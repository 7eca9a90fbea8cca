"""A process that increments one counter with ``Storage.update``, for the multi-process test.

Usage: ``python -m tests.drivers.fs_support.counter BASE COUNT``. It opens the store, prints
``ready``, waits for a line on stdin (so that every process starts at once), then runs COUNT
updates of the key ``counter`` and prints ``done``.
"""

from __future__ import annotations

import sys

import anyio

from kvstore.drivers.fs import fs_driver
from kvstore.storage import Storage


def _increment(value: object) -> int:
    assert value is None or isinstance(value, int)
    return (value or 0) + 1


async def main(base: str, count: int) -> None:
    async with Storage(fs_driver(base)) as storage:
        print("ready", flush=True)
        sys.stdin.readline()
        for _ in range(count):
            # A generous bound on retries: the test is about lost updates, not about how many
            # times in a row one process can lose the race.
            await storage.update("counter", _increment, attempts=10_000)
    print("done", flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], int(sys.argv[2]))
