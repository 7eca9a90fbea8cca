"""A writer the expiry crash test kills: plain and expiring writes and deletes, until killed.

Usage: ``python -m tests.drivers.fs_support.expiring_writer BASE``. Its clock stands still at
:data:`CLOCK`, so every value states the expiry instant its write gives it (``null`` for a
plain write): after a kill, each key's value and expiry must still agree. It prints
``begin <n>`` before each operation, so the test can kill it while one is under way.
"""

from __future__ import annotations

import sys

import anyio
import orjson

from kvstore.drivers.fs import fs_driver
from kvstore.expiry import expiry_millis, to_millis

#: The writer's clock: the manual test clock's starting point.
CLOCK = 4_000_000_000.0
KEYS = 8


def value_for(step: int) -> tuple[str, float | None, bytes]:
    """The key, TTL (``None``: a plain write) and value of step ``step``."""
    key = f"e:{step % KEYS}"
    ttl = None if step % 3 == 0 else 1000.0 + step % 7
    expires = None if ttl is None else expiry_millis(to_millis(CLOCK), ttl)
    return key, ttl, orjson.dumps({"step": step, "expires": expires, "pad": "x" * (step % 50)})


async def main(base: str) -> None:
    driver = fs_driver(base, clock=lambda: CLOCK)
    step = 0
    while True:
        key, ttl, value = value_for(step)
        print(f"begin {step}", flush=True)
        if step % 11 == 5:
            await driver.delete(key)
        elif ttl is None:
            await driver.set(key, value)
        else:
            await driver.set_expiring(key, value, ttl)
        step += 1


if __name__ == "__main__":
    anyio.run(main, sys.argv[1])
