"""The writer the crash tests kill: runs the seeded workload until it is killed.

Usage: ``python -m tests.faults.crash_writer DRIVER PATH SEED`` (DRIVER is ``sqlite`` or ``fs``).
Prints ``ready`` before touching the store, then performs :func:`~tests.faults.workload.operations`
for SEED one at a time: it prints ``begin N`` (flushed) before operation N starts and ``ack N`` as
soon as it has returned, so every ``ack`` the test reads is an operation the store acknowledged,
and an operation never begun cannot have changed anything. Any error ends it with a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import cast

import anyio

from tests.faults.workload import DriverKind, open_driver, operations


async def run(kind: DriverKind, path: Path, seed: int) -> None:
    driver = open_driver(kind, path)
    print("ready", flush=True)
    for index, operation in enumerate(operations(seed, kind)):
        print(f"begin {index}", flush=True)
        await operation.run(driver)
        print(f"ack {index}", flush=True)


if __name__ == "__main__":
    anyio.run(run, cast(DriverKind, sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))
