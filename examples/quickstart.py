"""Store and read values on the default SQLite file (``~/.agentx/data/agentx.db``).

Run: ``python examples/quickstart.py``. Set ``AGENTX_DIR`` to put the file elsewhere.
"""

from __future__ import annotations

import time

import anyio

from kvstore import create_storage


async def main() -> None:
    """Write a few records, read them back, scan a prefix and use a namespaced view."""
    async with create_storage() as storage:
        print(f"storage: {storage!r} at {getattr(storage.driver, 'path', '?')}")
        now = int(time.time() * 1000)
        await storage.set("quickstart:config", {"theme": "dark", "updatedAt": now})
        await storage.set_many(
            {f"quickstart:notes:{index}": {"text": f"note {index}"} for index in range(3)}
        )
        print("config  ->", await storage.get("quickstart:config"))
        print("notes   ->", [key async for key in storage.keys("quickstart:notes:")])

        notes = storage.with_prefix("quickstart:notes")
        print("note 1  ->", await notes.get("1"))
        await notes.clear()
        print("cleared ->", [key async for key in storage.keys("quickstart:notes:")])


if __name__ == "__main__":
    anyio.run(main)
