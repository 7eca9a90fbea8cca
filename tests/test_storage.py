"""Storage features above the driver: views, mounts, URLs, lifetime."""

from __future__ import annotations

import enum
import math
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from kvstore import Storage, create_storage
from kvstore.conditional import ANY_VERSION, Action, Change, Versioned
from kvstore.driver import BaseDriver
from kvstore.drivers.memory import MemoryDriver, memory_driver
from kvstore.errors import (
    ConfigurationError,
    Conflict,
    InvalidKey,
    NotSupported,
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


async def test_get_many_names_the_key_whose_value_is_not_json(storage: Storage) -> None:
    """get_many decodes a batch in one loop, then key by key only to say which value failed."""
    await storage.set_many([(f"ok{n:03}", n) for n in range(600)])
    await storage.set_raw("ok300x", b"\xff\xfe")
    keys = [f"ok{n:03}" for n in range(600)] + ["missing"]
    assert await storage.get_many(keys) == [*range(600), None]
    with pytest.raises(SerializationError, match=r"'ok300x'.*get_raw"):
        await storage.get_many([*keys[:400], "ok300x", *keys[400:]])


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


# -- conditional writes ----------------------------------------------------------------------


class Recording(MemoryDriver):
    """A memory driver that records every conditional call it is asked to make."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    async def get_versioned(self, key: str) -> Versioned[bytes] | None:
        self.calls.append(f"get_versioned {key}")
        return await super().get_versioned(key)

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        self.calls.append("commit " + " ".join(change.key for change in changes))
        return await super().commit(changes)


class InterferedWith(MemoryDriver):
    """Another writer rewrites every key right after each versioned read."""

    async def get_versioned(self, key: str) -> Versioned[bytes] | None:
        found = await super().get_versioned(key)
        if found is not None:
            await self.set(key, found.value)
        return found


BAD_VERSIONS: list[object] = [-1, 1.0, "1", True, None, 2**52 + 1, 2**64, ANY_VERSION]


@pytest.fixture
async def recorded() -> AsyncIterator[tuple[Storage, Recording]]:
    driver = Recording()
    async with Storage(driver) as storage:
        await storage.set("k", "old")
        driver.calls.clear()
        yield storage, driver


@pytest.mark.parametrize("version", BAD_VERSIONS, ids=repr)
async def test_a_bad_version_is_refused_before_the_driver_sees_it(
    recorded: tuple[Storage, Recording], version: Any
) -> None:
    storage, driver = recorded
    for call in (
        lambda: storage.replace("k", "new", version),
        lambda: storage.replace_raw("k", b"new", version),
        lambda: storage.delete_if("k", version),
    ):
        with pytest.raises(ValueError, match="version"):
            await call()
    if version is not None and version is not ANY_VERSION:
        batches: list[list[Change[Any]]] = [
            [Change.put("other", 1), Change.replace("k", "new", version)],
            [Change.put("other", 1), Change.delete("k", version)],
            [Change.put("other", 1), Change.check("k", version)],
        ]
        for changes in batches:
            with pytest.raises(ValueError, match="version"):
                await storage.commit(changes)
    assert driver.calls == []
    assert await keys_of(storage) == ["k"]
    assert await storage.get("k") == "old"


async def test_a_change_that_is_not_a_change_is_refused(
    recorded: tuple[Storage, Recording],
) -> None:
    storage, driver = recorded
    with pytest.raises(TypeError, match="Change"):
        await storage.commit([Change.put("a", 1), ("b", 2)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="Action"):
        await storage.commit([Change("write", "a", 1, None)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="version"):
        await storage.commit([Change(Action.WRITE, "a", 1, Action.DELETE)])  # type: ignore[arg-type]
    with pytest.raises(SerializationError):
        await storage.commit_raw([Change.put("a", "text")])  # type: ignore[arg-type]
    with pytest.raises(SerializationError):
        await storage.commit([Change.put("a", 1), Change.put("b", math.nan)])
    assert driver.calls == []
    assert await keys_of(storage) == ["k"]


@pytest.mark.parametrize(
    "keys",
    [["a", "b", "a"], ["k", "k"]],
    ids=["three-changes", "two-changes"],
)
async def test_a_key_twice_in_one_commit_is_refused(
    recorded: tuple[Storage, Recording], keys: list[str]
) -> None:
    storage, driver = recorded
    with pytest.raises(InvalidKey, match="more than once"):
        await storage.commit([Change.put(key, index) for index, key in enumerate(keys)])
    with pytest.raises(InvalidKey, match="more than once"):
        await storage.with_prefix("v").commit([Change.create("x", 1), Change.delete("x")])
    assert driver.calls == []
    assert await keys_of(storage) == ["k"]


async def test_an_invalid_key_in_a_commit_is_refused(recorded: tuple[Storage, Recording]) -> None:
    storage, driver = recorded
    with pytest.raises(InvalidKey):
        await storage.commit([Change.put("ok", 1), Change.put("a::b", 2)])
    with pytest.raises(InvalidKey):
        await storage.create("", 1)
    assert driver.calls == []
    assert await keys_of(storage) == ["k"]


async def test_an_empty_commit_does_nothing(recorded: tuple[Storage, Recording]) -> None:
    storage, driver = recorded
    assert await storage.commit([]) == []
    assert driver.calls == []


async def test_versions_through_storage_round_trip(storage: Storage) -> None:
    version = await storage.create("k", {"a": [1]})
    assert await storage.get_versioned("k") == Versioned({"a": [1]}, version)
    assert await storage.get_versioned_raw("k") == Versioned(b'{"a":[1]}', version)
    newer = await storage.replace("k", "b", version)
    with pytest.raises(Conflict) as caught:
        await storage.replace("k", "c", version)
    assert caught.value.keys == ("k",)
    assert await storage.get_versioned("k") == ("b", newer)


async def test_update_reads_changes_and_writes(storage: Storage) -> None:
    def increment(value: object) -> int:
        assert value is None or isinstance(value, int)
        return (value or 0) + 1

    assert await storage.update("n", increment) == 1
    assert await storage.update("n", increment) == 2
    assert await storage.get("n") == 2


@pytest.mark.parametrize("attempts", [0, -1, True, 1.5, "3"], ids=repr)
async def test_update_attempts_must_be_a_positive_int(storage: Storage, attempts: Any) -> None:
    with pytest.raises(ValueError, match="attempts"):
        await storage.update("n", lambda value: 1, attempts=attempts)
    assert await keys_of(storage) == []


@pytest.mark.parametrize("attempts", [1, 3])
async def test_update_gives_up_after_its_attempts(attempts: int) -> None:
    async with Storage(InterferedWith()) as storage:
        await storage.set("n", 0)
        seen: list[object] = []

        def change(value: object) -> object:
            seen.append(value)
            return 99

        with pytest.raises(Conflict, match=f"after {attempts} attempts" if attempts > 1 else None):
            await storage.update("n", change, attempts=attempts)
        assert seen == [0] * attempts
        assert await storage.get("n") == 0


async def test_update_whose_function_raises_writes_nothing(storage: Storage) -> None:
    version = await storage.create("k", "old")

    def fails(value: object) -> object:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError, match="no"):
        await storage.update("k", fails)
    with pytest.raises(RuntimeError, match="no"):
        await storage.update("absent", fails)
    assert await storage.get_versioned("k") == ("old", version)
    assert await keys_of(storage) == ["k"]


async def test_update_of_a_value_it_cannot_store_writes_nothing(storage: Storage) -> None:
    version = await storage.create("k", 1)
    with pytest.raises(SerializationError):
        await storage.update("k", lambda value: math.nan)
    assert await storage.get_versioned("k") == (1, version)


async def test_a_view_names_conflicting_keys_as_the_view_does(storage: Storage) -> None:
    view = storage.with_prefix("tenant").with_prefix("a")
    version = await view.create("k", 1)
    with pytest.raises(Conflict) as created:
        await view.create("k", 2)
    assert created.value.keys == ("k",)
    with pytest.raises(Conflict) as committed:
        await view.commit([Change.put("x", 1), Change.create("k", 3), Change.check("y", version)])
    assert set(committed.value.keys) == {"k", "y"}
    assert "tenant:a:k" not in str(committed.value)
    with pytest.raises(Conflict) as deleted:
        await view.delete_if("k", version + 1)
    assert deleted.value.keys == ("k",)
    assert await keys_of(storage) == ["tenant:a:k"]


async def test_a_mount_names_conflicting_keys_as_the_caller_does(storage: Storage) -> None:
    mounted = memory_driver()
    storage.mount("m", mounted)
    version = await storage.create("m:k", 1)
    assert await mounted.get_versioned("k") == (b"1", version)
    with pytest.raises(Conflict) as caught:
        await storage.commit([Change.create("m:k", 2), Change.put("m:j", 1)])
    assert caught.value.keys == ("m:k",)
    view = storage.with_prefix("m")
    with pytest.raises(Conflict) as through_view:
        await view.replace("k", 3, version + 1)
    assert through_view.value.keys == ("k",)
    assert [key async for key in mounted.keys()] == ["k"]


async def test_a_commit_across_mounts_is_not_supported(storage: Storage) -> None:
    mounted = memory_driver()
    storage.mount("m", mounted)
    with pytest.raises(NotSupported, match="across mounted drivers"):
        await storage.commit([Change.put("a", 1), Change.put("m:b", 2)])
    assert await keys_of(storage) == []
    assert await storage.commit([Change.put("m:a", 1), Change.put("m:b", 2)]) == [
        (await mounted.get_versioned(key)).version  # type: ignore[union-attr]
        for key in ("a", "b")
    ]


async def test_a_driver_without_conditional_writes_is_named_when_refusing() -> None:
    class Plain:
        name = "plain"

        async def get(self, key: str) -> bytes | None:
            return None

        async def set(self, key: str, value: bytes) -> None:
            raise AssertionError("nothing may be written")

        async def delete(self, key: str) -> None:
            raise AssertionError("nothing may be deleted")

        async def keys(self, prefix: str = "") -> AsyncIterator[str]:
            empty: list[str] = []
            for key in empty:
                yield key

        async def close(self) -> None:
            pass

    async with Storage(Plain()) as storage:
        for call in (
            lambda: storage.get_versioned("k"),
            lambda: storage.create("k", 1),
            lambda: storage.update("k", lambda value: 1),
            lambda: storage.commit([Change.put("k", 1)]),
        ):
            with pytest.raises(NotSupported, match="the plain driver") as caught:
                await call()
            assert caught.value.driver == "plain"


async def test_closed_reports_the_state_of_a_storage_and_its_views() -> None:
    storage = Storage(memory_driver())
    view = storage.with_prefix("app")
    assert not storage.closed
    assert not view.closed
    await view.close()
    assert view.closed
    assert not storage.closed
    other = storage.with_prefix("other")
    await storage.close()
    assert storage.closed
    assert other.closed


def test_every_error_of_the_three_packages_descends_from_one_root() -> None:
    import eventqueue
    import eventqueue.errors

    import entities.errors
    import kvstore
    import kvstore.errors

    for module in (kvstore.errors, eventqueue.errors, entities.errors):
        for name in module.__all__:
            error = getattr(module, name)
            assert issubclass(error, kvstore.PersistenceError), name
    # The standard-library bases stay, so existing except clauses keep working.
    assert issubclass(eventqueue.ValidationError, ValueError)
    assert issubclass(entities.errors.RecordNotFound, LookupError)
    assert issubclass(kvstore.MissingDependency, ImportError)


def test_the_package_reports_its_installed_version() -> None:
    from importlib.metadata import version

    import kvstore

    assert kvstore.__version__ == version("agentx-persistence")


class _Key(str):
    """A subclass of ``str``; keys must be exactly ``str``."""


@pytest.mark.parametrize("bad", [_Key("b"), "", "a::b", "bad\x00key", 7])
async def test_a_batch_with_one_invalid_key_is_refused_whole(storage: Storage, bad: object) -> None:
    await storage.set("kept", 1)
    with pytest.raises(InvalidKey):
        await storage.set_many([("a", 1), (bad, 2)])  # type: ignore[list-item]
    with pytest.raises(InvalidKey):
        await storage.set_many_raw([("a", b"1"), (bad, b"2")])  # type: ignore[list-item]
    with pytest.raises(InvalidKey):
        await storage.get_many(["kept", bad])  # type: ignore[list-item]
    with pytest.raises(InvalidKey):
        await storage.delete_many(["kept", bad])  # type: ignore[list-item]
    assert await keys_of(storage) == ["kept"]


class _Level(enum.IntEnum):
    HIGH = 3


async def test_an_int_enum_member_is_refused_though_it_equals_its_int(storage: Storage) -> None:
    # It would read back as a plain 3, which == cannot tell from the member.
    for write in (
        storage.set("k", {"level": _Level.HIGH}),
        storage.set_many([("a", 1), ("k", [_Level.HIGH])]),
        storage.commit([Change.put("k", _Level.HIGH)]),
    ):
        with pytest.raises(SerializationError, match="not a JSON type"):
            await write
    assert await keys_of(storage) == []


# -- the single-key fast path ----------------------------------------------------------------


class _Counting(MemoryDriver):
    """A memory driver that counts which path each operation took."""

    def __init__(self) -> None:
        super().__init__()
        self.inline_calls = 0
        self.awaited_calls = 0

    def try_get(self, key: str) -> Any:
        self.inline_calls += 1
        return super().try_get(key)

    async def get(self, key: str) -> bytes | None:
        self.awaited_calls += 1
        return await super().get(key)


async def test_known_keys_take_the_inline_path_and_mounts_or_closing_leave_it() -> None:
    """Storage tries an inline driver without an await only while nothing else could own the
    key: a mount turns the fast path off until unmounted, closing turns it off for good."""
    driver = _Counting()
    storage = Storage(driver)
    await storage.set("a:x", 1)  # validated once: later calls find the key in the memo
    for _ in range(200):  # beyond the driver's credit: some calls decline and are awaited
        assert await storage.get("a:x") == 1
    assert driver.inline_calls >= 200
    assert driver.awaited_calls >= 1
    mounted = memory_driver()
    storage.mount("a", mounted)
    assert await storage.get("a:x") is None  # the mount owns a:x now
    await storage.set("a:x", 2)
    assert await mounted.get("x") == b"2"
    await storage.delete("a:x")
    assert await mounted.get("x") is None
    await storage.unmount("a")
    assert await storage.get("a:x") == 1
    await storage.delete("a:x")
    assert await storage.get("a:x") is None
    view = storage.with_prefix("v")
    await view.set("a:x", 3)  # a view's key is not its driver key: never the fast path
    assert await storage.get("v:a:x") == 3
    await storage.close()
    for operation in (storage.get("v:a:x"), storage.set("v:a:x", 4), storage.delete("v:a:x")):
        with pytest.raises(StorageClosed):
            await operation
