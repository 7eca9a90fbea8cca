"""Read-only: every write is refused, typed, and writes nothing; reads pass through unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from kvstore.conditional import Change
from kvstore.driver import BaseDriver
from kvstore.drivers.memory import memory_driver
from kvstore.drivers.sqlite import sqlite_driver
from kvstore.errors import KVStoreError, StorageClosed
from kvstore.storage import Storage
from kvstore.wrappers import ReadOnly, StorageReadOnly

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory", "sqlite"])
async def filled(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BaseDriver]:
    """A driver holding three keys, one of them expiring, written without the wrapper."""
    driver: BaseDriver = (
        memory_driver() if request.param == "memory" else sqlite_driver(tmp_path / "kv.db")
    )
    await driver.set_many([("a", b"1"), ("b:1", b"2")])
    await driver.set_expiring("ttl", b"3", 3600)
    yield driver
    await driver.close()


def _writes(driver: BaseDriver) -> dict[str, Callable[[], Awaitable[object]]]:
    return {
        "set": lambda: driver.set("a", b"x"),
        "set_many": lambda: driver.set_many([("n", b"x")]),
        "delete": lambda: driver.delete("a"),
        "delete_many": lambda: driver.delete_many(["a"]),
        "clear": lambda: driver.clear(""),
        "commit": lambda: driver.commit([Change.put("a", b"x")]),
        "set_if": lambda: driver.set_if("n", b"x", None),
        "delete_if": lambda: driver.delete_if("a", 1),
        "set_expiring": lambda: driver.set_expiring("a", b"x", 5),
        "set_many_expiring": lambda: driver.set_many_expiring([("a", b"x")], 5),
        "expire": lambda: driver.expire("a", None),
        "purge_expired": lambda: driver.purge_expired(),
    }


async def _state(driver: BaseDriver) -> list[object]:
    return [
        [pair async for pair in driver.items("")],
        await driver.get_meta("ttl"),
        await driver.get_meta("a"),
    ]


async def test_every_write_is_refused_and_nothing_changes(filled: BaseDriver) -> None:
    before = await _state(filled)
    wrapped = ReadOnly(filled)
    for name, write in _writes(wrapped).items():
        with pytest.raises(StorageReadOnly) as caught:
            await write()
        assert isinstance(caught.value, KVStoreError)
        assert caught.value.operation == name
    assert await _state(filled) == before


async def test_reads_pass_through_unchanged(filled: BaseDriver) -> None:
    wrapped = ReadOnly(filled)
    assert (wrapped.conditional_writes, wrapped.expiry) == (True, True)
    assert await wrapped.get("a") == b"1"
    assert await wrapped.get_many(["a", "zz"]) == [b"1", None]
    assert [key async for key in wrapped.keys("b")] == ["b:1"]
    assert await wrapped.get_versioned("a") == await filled.get_versioned("a")
    assert await wrapped.get_meta("ttl") == await filled.get_meta("ttl")
    async with Storage(wrapped) as storage:
        assert await storage.get("a") == 1
        with pytest.raises(StorageReadOnly):
            await storage.set("a", 2)
        with pytest.raises(StorageReadOnly):
            await storage.update("a", lambda value: 3)


async def test_once_closed_writes_raise_storage_closed(filled: BaseDriver) -> None:
    wrapped = ReadOnly(filled)
    await wrapped.close()
    for write in _writes(wrapped).values():
        with pytest.raises(StorageClosed):
            await write()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
