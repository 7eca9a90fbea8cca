"""The Redis driver against a real server: the conformance suite, tenant isolation, outages."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis

from kvstore import create_storage
from kvstore.drivers.redis import RedisDriver, from_url, redis_driver
from kvstore.errors import BackendError, BackendUnavailable, ConfigurationError
from kvstore.storage import Storage
from kvstore.testing import DriverConformance, DriverFactory
from tests.support.load import check_tasks_share_a_bounded_pool
from tests.support.outage import check_outage_and_recovery, check_restart_between_operations
from tests.support.redis_instance import RedisInstance
from tests.support.servers import REDIS_URL, free_port, server_unreachable


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


def _unique_base(label: str = "t") -> str:
    return f"kvtest_{label}_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def shared_redis() -> Iterator[redis.Redis]:
    """A synchronous client on the shared server, for set-up, inspection and clean-up."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as error:
        server_unreachable(f"Redis at {REDIS_URL} is unreachable: {error}")
    yield client
    client.close()


@pytest.fixture
def bases(shared_redis: redis.Redis) -> Iterator[list[str]]:
    """Collects the bases a test creates and deletes their Redis keys afterwards."""
    created: list[str] = []
    yield created
    for base in created:
        shared_redis.delete(f"{base}:kv", f"{base}:keys")


class TestRedisDriver(DriverConformance):
    async_backends = ("asyncio",)

    @pytest.fixture
    def driver_factory(self, bases: list[str]) -> DriverFactory:
        base = _unique_base()
        bases.append(base)
        return lambda: redis_driver(REDIS_URL, base=base)


@pytest.mark.anyio
async def test_bases_never_see_or_clear_each_other(bases: list[str]) -> None:
    root = _unique_base("iso")
    names = [root, root + "2", root + ":x", root + ":kv", root + ":keys"]
    bases.extend(names)
    storages = [Storage(redis_driver(REDIS_URL, base=name)) for name in names]
    try:
        for index, storage in enumerate(storages):
            await storage.set_many({"a": index, "x": index, "kv": index, "keys": index})
        for index, storage in enumerate(storages):
            assert [key async for key in storage.keys("")] == ["a", "keys", "kv", "x"]
            assert await storage.get_many(["a", "x", "kv", "keys"]) == [index] * 4
        await storages[0].clear()
        await storages[1].clear("a")
        await storages[2].delete_many(["x", "kv"])
        assert [key async for key in storages[0].keys("")] == []
        assert [key async for key in storages[1].keys("")] == ["keys", "kv", "x"]
        assert [key async for key in storages[2].keys("")] == ["a", "keys"]
        for storage in storages[3:]:
            assert [key async for key in storage.keys("")] == ["a", "keys", "kv", "x"]
    finally:
        for storage in storages:
            await storage.close()


@pytest.mark.anyio
async def test_layout_is_one_hash_and_one_index_per_base(
    shared_redis: redis.Redis, bases: list[str]
) -> None:
    base = _unique_base("layout")
    bases.append(base)
    async with Storage(redis_driver(REDIS_URL, base=base)) as storage:
        await storage.set_many({"p*": 1, "p?": 2, "p[x]": 3})
        await storage.set("q", 4)
        assert sorted(shared_redis.scan_iter(match=f"{base}*")) == [
            f"{base}:keys".encode(),
            f"{base}:kv".encode(),
        ]
        # Hash and index agree, and a glob character in a prefix stays literal.
        assert shared_redis.hlen(f"{base}:kv") == shared_redis.zcard(f"{base}:keys") == 4
        assert [key async for key in storage.keys("p*")] == ["p*"]


@pytest.mark.anyio
async def test_batches_write_nothing_when_the_index_holds_foreign_data(
    shared_redis: redis.Redis, bases: list[str]
) -> None:
    base = _unique_base("foreign")
    bases.append(base)
    async with Storage(redis_driver(REDIS_URL, base=base)) as storage:
        await storage.set("kept", 1)
        shared_redis.delete(f"{base}:keys")
        shared_redis.set(f"{base}:keys", b"not a sorted set")
        writes: list[Callable[[], Awaitable[None]]] = [
            lambda: storage.set("new", 1),
            lambda: storage.set_many({"a": 1, "b": 2}),
            lambda: storage.delete("kept"),
            lambda: storage.delete_many(["kept"]),
        ]
        for write in writes:
            with pytest.raises(BackendError, match="foreign"):
                await write()
        assert shared_redis.hkeys(f"{base}:kv") == [b"kept"]


@pytest.mark.parametrize("base", ["", "a\x00b", ":a", "a::b", 7])
def test_invalid_base_is_refused(base: object) -> None:
    with pytest.raises(ConfigurationError):
        redis_driver(REDIS_URL, base=base)  # type: ignore[arg-type]


def test_from_url_takes_the_base_from_the_query() -> None:
    driver = from_url("redis://127.0.0.1:6379/3?base=tenant%3Aone&max_connections=7")
    assert isinstance(driver, RedisDriver)
    assert driver.base == "tenant:one"
    assert driver._pool_size == 7
    assert driver.where == "127.0.0.1:6379/3"


@pytest.mark.anyio
async def test_create_storage_reaches_the_driver_by_url(bases: list[str]) -> None:
    base = _unique_base("url")
    bases.append(base)
    async with create_storage(_with_query(REDIS_URL, f"base={base}")) as storage:
        assert isinstance(storage.driver, RedisDriver)
        await storage.set("a:b", [1])
        assert await storage.get("a:b") == [1]
    async with Storage(redis_driver(REDIS_URL, base=base)) as again:
        assert await again.get("a:b") == [1]


@pytest.mark.anyio
async def test_two_hundred_concurrent_tasks_share_a_bounded_pool(
    shared_redis: redis.Redis, bases: list[str]
) -> None:
    base = _unique_base("load")
    bases.append(base)
    marker = f"kvtest-{uuid.uuid4().hex[:10]}"
    pool_size = 8
    storage = Storage(
        redis_driver(REDIS_URL, base=base, max_connections=pool_size, client_name=marker)
    )

    def connections() -> int:
        return sum(1 for client in shared_redis.client_list() if client.get("name") == marker)

    await check_tasks_share_a_bounded_pool(storage, connections, pool_size)


@pytest.mark.anyio
async def test_errors_never_show_the_password() -> None:
    secret = "s3cr3t-Pa55word"
    unreachable = f"redis://user:{secret}@127.0.0.1:{free_port()}/0"
    async with Storage(
        redis_driver(unreachable, socket_connect_timeout=1, socket_timeout=1, retries=0)
    ) as storage:
        with pytest.raises(BackendUnavailable) as caught:
            await storage.get("a")
    assert secret not in str(caught.value)
    assert caught.value.driver == "redis"
    assert "127.0.0.1" in caught.value.where
    assert secret not in repr(caught.value.where)


@pytest.mark.anyio
async def test_wrong_password_error_hides_it(tmp_path: Path) -> None:
    if not RedisInstance.available():
        server_unreachable("redis-server is not installed")
    instance = RedisInstance(tmp_path / "auth", password="the-right-one")
    instance.start()
    try:
        secret = "n0t-the-Pa55word"
        url = instance.url.replace("redis://", f"redis://:{secret}@", 1)
        async with Storage(redis_driver(url, socket_timeout=2, retries=0)) as storage:
            with pytest.raises(BackendError) as caught:
                await storage.get("a")
        assert secret not in str(caught.value)
        right = instance.url.replace("redis://", "redis://:the-right-one@", 1)
        async with Storage(redis_driver(right, base="auth")) as storage:
            await storage.set("a", 1)
            assert await storage.get("a") == 1
    finally:
        instance.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisInstance]:
    if not RedisInstance.available():
        server_unreachable("redis-server is not installed")
    instance = RedisInstance(tmp_path / "redis")
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
async def outage_storage(private_redis: RedisInstance) -> AsyncIterator[Storage]:
    driver = redis_driver(
        private_redis.url,
        base="outage",
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        retries=1,
    )
    async with Storage(driver) as storage:
        yield storage


@pytest.mark.anyio
async def test_outage_raises_unavailable_then_recovers_with_every_write(
    private_redis: RedisInstance, outage_storage: Storage
) -> None:
    await check_outage_and_recovery(outage_storage, private_redis, "redis")


@pytest.mark.anyio
async def test_a_restart_between_operations_goes_unnoticed(
    private_redis: RedisInstance, outage_storage: Storage
) -> None:
    await check_restart_between_operations(outage_storage, private_redis)
