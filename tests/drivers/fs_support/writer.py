"""A writer the crash test kills: stores large self-checking JSON values until it is killed.

Usage: ``python -m tests.drivers.fs_support.writer BASE SIZE``. For each key it first encodes the
value, then prints ``begin <key>``, stores the value, and prints ``done <key>`` once ``set``
returned, so the test can kill it while a write is under way and knows which writes completed.
"""

from __future__ import annotations

import hashlib
import sys

import anyio
import orjson

from kvstore.drivers.fs import fs_driver
from kvstore.storage import Storage


def make_value(index: int, size: int) -> dict[str, object]:
    """Return the value written under key ``w:<index>``; :func:`check_value` recognises it."""
    pad = "0123456789abcdef" * (size // 16)
    return {"index": index, "sha256": hashlib.sha256(pad.encode()).hexdigest(), "pad": pad}


def check_value(value: object) -> bool:
    """Tell whether ``value`` is a complete value made by :func:`make_value`."""
    if not isinstance(value, dict) or not isinstance(value.get("pad"), str):
        return False
    pad = value["pad"]
    return hashlib.sha256(pad.encode()).hexdigest() == value.get("sha256") and isinstance(
        value.get("index"), int
    )


async def main(base: str, size: int) -> None:
    template = make_value(0, size)
    async with Storage(fs_driver(base)) as storage:
        index = 0
        while True:
            key = f"w:{index % 8}"
            data = orjson.dumps({**template, "index": index % 8})
            print(f"begin {key}", flush=True)
            await storage.set_raw(key, data)
            print(f"done {key}", flush=True)
            index += 1


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], int(sys.argv[2]))
