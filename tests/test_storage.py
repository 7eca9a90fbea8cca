"""Storage features above the driver: views, mounts, URLs, lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from kvstore import Storage, create_storage
from kvstore.driver import BaseDriver
from kvstore.drivers.memory import MemoryDriver, memory_driver
from kvstore.errors import (
    ConfigurationError,
    InvalidKey,
    SerializationError,
    StorageClosed,
    UnknownScheme,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def storage() -> AsyncIterator[Storage]:
    async with Storage(memory_driver()) as storage:
        yield storage


async def keys_of(storage: Storage, prefix: str = "") -> list[str]:
    return [key async for key in storage.keys(prefix)]


# -- views -----------------------------------------------------------------------------------


async def test_a_view_stores_under_its_base(storage: Storage) -> None:
    users = storage.with_prefix("users")
    await users.set("alice", {"name": "Alice"})
    assert await storage.get("users:alice") == {"name": "Alice"}
    assert await users.get("alice") == {"name": "Alice"}
    assert users.base == "users"


async def test_a_view_never_sees_or_clears_outside_its_base(storage: Storage) -> None:
    await storage.set_many({"users": 0, "users:a": 1, "usersx": 2, "users2:b": 3, "other": 4})
    users = storage.with_prefix("users")
    assert await keys_of(users) == ["a"]
    await users.clear()
    assert await keys_of(storage) == ["other", "users", "users2:b", "usersx"]


async def test_views_nest(storage: Storage) -> None:
    deep = storage.with_prefix("a").with_prefix("b:c")
    await deep.set("k", 1)
    assert await keys_of(storage) == ["a:b:c:k"]
    assert await keys_of(storage.with_prefix("a")) == ["b:c:k"]


async def test_a_view_checks_the_combined_key_length(storage: Storage) -> None:
    view = storage.with_prefix("v" * 1000)
    with pytest.raises(InvalidKey, match="under the view"):
        await view.set("x" * 30, 1)
    assert await keys_of(storage) == []


async def test_a_view_refuses_an_invalid_base(storage: Storage) -> None:
    with pytest.raises(InvalidKey):
        storage.with_prefix("a:")


async def test_closing_a_view_leaves_the_storage_open(storage: Storage) -> None:
    view = storage.with_prefix("v")
    await view.close()
    with pytest.raises(StorageClosed):
        await view.get("k")
    await storage.set("k", 1)
    assert await storage.get("k") == 1


async def test_closing_the_storage_closes_its_views(storage: Storage) -> None:
    view = storage.with_prefix("v")
    await storage.close()
    with pytest.raises(StorageClosed):
        await view.get("k")


# -- mounts ----------------------------------------------------------------------------------


async def test_a_mount_serves_its_base(storage: Storage) -> None:
    cache = memory_driver()
    storage.mount("cache", cache)
    await storage.set("cache:page", "html")
    await storage.set("cachex", "root")
    assert await cache.get("page") == b'"html"'
    assert await storage.driver.get("cachex") == b'"root"'
    assert await storage.driver.get("cache:page") is None


async def test_the_deepest_mount_wins(storage: Storage) -> None:
    outer, inner = memory_driver(), memory_driver()
    storage.mount("a", outer)
    storage.mount("a:b", inner)
    await storage.set_many({"a:b:c": 1, "a:bc": 2, "a:x": 3, "a": 4, "b": 5})
    assert [key async for key in inner.keys()] == ["c"]
    assert [key async for key in outer.keys()] == ["bc", "x"]
    assert await storage.get_many(["b", "a:b:c", "a:x", "a", "a:bc"]) == [5, 1, 3, 4, 2]


async def test_scans_span_mounts_in_key_order(storage: Storage) -> None:
    storage.mount("m", memory_driver())
    storage.mount("m:n", memory_driver())
    keys = ["a", "m", "m!", "m:a", "m:n", "m:n:z", "m:n!", "m:o", "n", "l:x"]
    await storage.set_many((key, key) for key in keys)
    assert await keys_of(storage) == sorted(keys)
    assert await keys_of(storage, "m:n") == ["m:n", "m:n!", "m:n:z"]
    assert await keys_of(storage, "m:n:") == ["m:n:z"]
    assert [pair async for pair in storage.items("m:")] == [
        (key, key) for key in sorted(keys) if key.startswith("m:")
    ]


async def test_clear_spans_mounts_but_keeps_keys_hidden_by_a_mount(storage: Storage) -> None:
    await storage.set("m:hidden", "root")
    mounted = memory_driver()
    storage.mount("m", mounted)
    await storage.set_many({"m:a": 1, "m": 2, "z": 3})
    assert await keys_of(storage) == ["m", "m:a", "z"]
    await storage.clear("m")
    assert await keys_of(storage) == ["z"]
    await storage.unmount("m", close=False)
    assert await keys_of(storage) == ["m:hidden", "z"]
    assert [key async for key in mounted.keys()] == []


async def test_unmount_closes_the_driver_by_default(storage: Storage) -> None:
    mounted = memory_driver()
    storage.mount("m", mounted)
    assert await storage.unmount("m") is mounted
    with pytest.raises(StorageClosed):
        await mounted.get("k")


async def test_mounting_twice_or_unmounting_nothing_is_an_error(storage: Storage) -> None:
    storage.mount("m", memory_driver())
    with pytest.raises(ConfigurationError, match="already mounted"):
        storage.mount("m", memory_driver())
    with pytest.raises(ConfigurationError, match="nothing is mounted"):
        await storage.unmount("n")


async def test_a_mount_through_a_view_lands_under_the_view(storage: Storage) -> None:
    view = storage.with_prefix("tenant")
    mounted = memory_driver()
    view.mount("cache", mounted)
    await view.set("cache:k", 1)
    assert await storage.get("tenant:cache:k") == 1
    assert [key async for key in mounted.keys()] == ["k"]


async def test_closing_the_storage_closes_every_mount() -> None:
    mounted = memory_driver()
    storage = Storage(memory_driver())
    storage.mount("m", mounted)
    await storage.close()
    with pytest.raises(StorageClosed):
        await mounted.get("k")


# -- values ----------------------------------------------------------------------------------


async def test_get_of_a_non_json_value_says_to_use_get_raw(storage: Storage) -> None:
    await storage.set_raw("raw", b"\xff\xfe")
    with pytest.raises(SerializationError, match="get_raw"):
        await storage.get("raw")


async def test_set_raw_refuses_non_bytes(storage: Storage) -> None:
    with pytest.raises(SerializationError, match="must be bytes"):
        await storage.set_raw("k", "text")  # type: ignore[arg-type]
    await storage.set_raw("k", bytearray(b"ok"))
    assert await storage.get_raw("k") == b"ok"


async def test_batches_refuse_a_single_string(storage: Storage) -> None:
    with pytest.raises(InvalidKey, match="single str"):
        await storage.get_many("abc")


# -- URLs and the default --------------------------------------------------------------------


def test_create_storage_takes_a_url_or_a_driver() -> None:
    assert isinstance(create_storage("memory://").driver, MemoryDriver)
    driver = memory_driver()
    assert create_storage(driver).driver is driver


@pytest.mark.parametrize("url", ["nosuch://x", "no-scheme", ""])
def test_an_unknown_scheme_says_what_is_known(url: str) -> None:
    with pytest.raises(UnknownScheme, match="memory"):
        create_storage(url)


def test_an_unknown_scheme_never_shows_a_password() -> None:
    with pytest.raises(UnknownScheme) as caught:
        create_storage("nosuch://user:hunter2@host/db")
    assert "hunter2" not in str(caught.value)


async def test_a_plain_protocol_object_works_as_a_driver() -> None:
    class Minimal:
        def __init__(self) -> None:
            self.data: dict[str, bytes] = {}

        async def get(self, key: str) -> bytes | None:
            return self.data.get(key)

        async def set(self, key: str, value: bytes) -> None:
            self.data[key] = value

        async def delete(self, key: str) -> None:
            self.data.pop(key, None)

        async def keys(self, prefix: str = "") -> AsyncIterator[str]:
            for key in sorted(self.data):
                if key.startswith(prefix):
                    yield key

        async def close(self) -> None:
            pass

    async with create_storage(Minimal()) as storage:
        await storage.set_many({"a": 1, "b": 2})
        assert isinstance(storage.driver, BaseDriver)
        assert await storage.get_many(["b", "a"]) == [2, 1]
        await storage.clear()
        assert await keys_of(storage) == []


def test_something_else_is_not_a_driver() -> None:
    with pytest.raises(TypeError, match="not a kvstore driver"):
        Storage(object())  # type: ignore[arg-type]
