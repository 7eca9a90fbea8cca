"""Write keys to a shared SQLite file through the driver, one ``set`` at a time.

Usage: ``python writer.py PATH WORKER COUNT``. Prints ``ready``, waits for a line on stdin (the
start signal, so that all writers begin together), writes ``w<WORKER>:<n>`` for ``n`` below
``COUNT``, and exits 0; any error is printed to stderr and the exit status is 1.
"""

from __future__ import annotations

import sys
import traceback

import anyio

from kvstore.drivers.sqlite import sqlite_driver


async def write(path: str, worker: int, count: int) -> None:
    driver = sqlite_driver(path)
    try:
        # Not opened before the start signal: the writers also race to create the file,
        # switch it to WAL and create the table.
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        for n in range(count):
            await driver.set(f"w{worker}:{n:05d}", f"{worker}:{n}".encode())
    finally:
        await driver.close()


def main() -> int:
    path, worker, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    try:
        anyio.run(write, path, worker, count)
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
