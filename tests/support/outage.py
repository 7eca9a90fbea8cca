"""The outage check every server driver passes, against a private server it may stop."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import pytest

from kvstore.errors import BackendUnavailable
from kvstore.storage import Storage


class Restartable(Protocol):
    """A private server instance on a fixed port and data directory."""

    port: int

    def stop(self) -> None:
        """Stop the server; its data stays on disk."""

    def start(self) -> None:
        """Start it again on the same port and data directory, and wait until it answers."""


async def check_outage_and_recovery(storage: Storage, server: Restartable, driver: str) -> None:
    """Every operation fails with ``BackendUnavailable`` while the server is down; afterwards the
    same storage works again and every write acknowledged before the outage is there."""
    acknowledged = {f"before:{index:03d}": index for index in range(50)}
    for key, value in acknowledged.items():
        await storage.set(key, value)
    await storage.set_many({"batch:1": 1, "batch:2": 2})

    server.stop()
    operations: list[Callable[[], Awaitable[object]]] = [
        lambda: storage.get("before:000"),
        lambda: storage.set("during", 1),
        lambda: storage.delete("before:001"),
        lambda: storage.get_many(["before:000", "batch:1"]),
        lambda: storage.set_many({"during:1": 1}),
        lambda: storage.delete_many(["before:002"]),
        lambda: storage.clear("before:"),
        lambda: anext(aiter(storage.keys("before:"))),
    ]
    for operation in operations:
        with pytest.raises(BackendUnavailable) as raised:
            await operation()
        assert raised.value.driver == driver
        assert str(server.port) in str(raised.value), "the error names where it was going"

    server.start()
    await storage.set("after", "back")
    assert await storage.get("after") == "back"
    assert [key async for key in storage.keys("before:")] == sorted(acknowledged)
    assert await storage.get_many(list(acknowledged)) == list(acknowledged.values())
    assert await storage.get_many(["batch:1", "batch:2"]) == [1, 2]


async def check_restart_between_operations(storage: Storage, server: Restartable) -> None:
    """Pooled connections die with the server; the next operation must not fail because of it."""
    await storage.set_many({f"k:{index}": index for index in range(20)})
    server.stop()
    server.start()
    assert await storage.get("k:3") == 3
    await storage.set("k:20", 20)
    assert await storage.get_many([f"k:{index}" for index in range(21)]) == list(range(21))
