"""The Redis driver against a real server: the conformance suite, tenant isolation, outages."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import pytest
import redis
from hypothesis import given, settings

from kvstore import create_storage
from kvstore.drivers.redis import RedisDriver, from_url, redis_driver
from kvstore.errors import BackendError, BackendUnavailable, ConfigurationError
from kvstore.storage import Storage
from kvstore.testing import DriverConformance, DriverFactory
from tests.support.hostile_urls import MARK, HostileURL, hostile_urls
from tests.support.load import check_tasks_share_a_bounded_pool
from tests.support.outage import (
    LIVENESS_SLACK,
    check_outage_and_recovery,
    check_restart_between_operations,
)
from tests.support.quiet import QuietChild, check_silent_through, silent_server
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
    # The bound and the name come from the URL, as users tune pools in the connection string.
    url = _with_query(REDIS_URL, f"base={base}&pool_size={pool_size}&client_name={marker}")
    storage = create_storage(url)
    assert isinstance(storage.driver, RedisDriver)

    def connections() -> int:
        return sum(1 for client in shared_redis.client_list() if client.get("name") == marker)

    await check_tasks_share_a_bounded_pool(storage, connections, pool_size)


@pytest.mark.anyio
async def test_errors_never_show_the_password() -> None:
    secret = "s3cr3t-Pa55word"
    unreachable = f"redis://user:{secret}@127.0.0.1:{free_port()}/0"
    async with Storage(
        redis_driver(unreachable, connect_timeout=1, operation_timeout=1, retries=0)
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
        private_redis.url, base="outage", operation_timeout=1.0, connect_timeout=1.0, retries=1
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


# -- URLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "database"),
    [
        ("redis://h", 0),
        ("redis://h/", 0),
        ("redis://h/15", 15),
        ("redis://h?db=3", 3),
        ("redis://h/3?db=3", 3),
        ("rediss://h:6380/2", 2),
    ],
)
def test_the_database_comes_from_the_path_or_db(url: str, database: int) -> None:
    driver = from_url(url)
    assert driver._connection_options["db"] == database
    assert driver.where.endswith(f"/{database}")


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("redis://h/notanumber", "database number"),
        ("redis://h/11/extra", "database number"),
        ("redis://h/-1", "database number"),
        ("redis://h/%31%20", "database number"),
        ("redis://h/1?db=2", "database 1"),
        ("redis://h/0?bogus=1", "bogus"),
        ("redis://h/0?timeout=1", "timeout"),
        ("redis://h/0?ssl_cert_reqs=none", "ssl_cert_reqs"),
        ("redis://h:0/0", "65535"),
        ("redis://h:65536/0", "65535"),
        ("redis://[::zz]:6379/0", "IPv6"),
        ("redis://::1:6379/0", "IPv6"),
        ("redis://h,i/0", "one host"),
        ("redis://h/0?pool_size=0", "pool_size"),
        ("redis://h/0?operation_timeout=-1", "operation_timeout"),
        ("redis://h/0?connect_timeout=nan", "connect_timeout"),
        ("redis://h/0?pool_size=2&max_connections=3", "pool_size"),
        ("redis://h/0?socket_timeout=2&operation_timeout=3", "operation_timeout"),
        ("redis://h/0?base=a::b", "base"),
        ("redis://h/0#frag", "fragment"),
        ("http://h/0", "redis://"),
    ],
)
def test_malformed_or_unknown_urls_are_refused(url: str, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        from_url(url)


@pytest.mark.parametrize(
    "password", ["pa/ss", "p@ss", "a@b/c", "pa?ss", "pa#ss"]
)
def test_an_unencoded_at_or_slash_in_the_password_is_refused_unseen(password: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        from_url(f"redis://user:{password}@h:6379/0")
    assert password not in str(caught.value)


def test_an_encoded_password_reaches_redis_decoded_and_never_shows() -> None:
    driver = from_url("redis://us%40er:p%40ss%2Fw%3Ard@h:6379/0")
    assert driver._connection_options["username"] == "us@er"
    assert driver._connection_options["password"] == "p@ss/w:rd"
    assert "p@ss" not in repr(driver)
    assert "p%40ss" not in repr(driver)


def test_pool_size_and_timeouts_come_from_the_url_under_either_name() -> None:
    ours = from_url("redis://h/0?pool_size=7&connect_timeout=2.5&operation_timeout=4")
    native = from_url("redis://h/0?max_connections=7&socket_connect_timeout=2.5&socket_timeout=4")
    for driver in (ours, native):
        assert driver._pool_size == 7
        assert driver._connect_timeout == 2.5
        assert driver._operation_timeout == 4.0
        assert driver._connection_options["socket_connect_timeout"] == 2.5


def test_defaults_report_an_unreachable_server_within_five_seconds() -> None:
    driver = from_url("redis://h/0")
    assert driver._connect_timeout == 5.0
    assert driver._operation_timeout == 10.0
    assert driver._pool_size == 50


def test_a_setting_given_twice_must_agree() -> None:
    assert redis_driver("redis://h/0?pool_size=4", pool_size=4)._pool_size == 4
    with pytest.raises(ConfigurationError, match="pool_size"):
        redis_driver("redis://h/0?pool_size=4", pool_size=5)
    with pytest.raises(ConfigurationError, match="operation_timeout"):
        redis_driver("redis://h/0", operation_timeout=2, socket_timeout=3)
    with pytest.raises(ConfigurationError, match="base"):
        redis_driver("redis://h/0?base=a", base="b")
    with pytest.raises(ConfigurationError, match="password") as caught:
        redis_driver("redis://:s3cr3t-one@h/0", password="s3cr3t-two")
    assert "s3cr3t" not in str(caught.value)


def test_unknown_keyword_arguments_are_refused_before_any_io() -> None:
    with pytest.raises(ConfigurationError, match="bogus_option"):
        redis_driver("redis://h/0", bogus_option=1)
    # redis-py's own connection arguments pass.
    driver = redis_driver("rediss://h/0", ssl_cert_reqs="none", health_check_interval=5)
    assert driver._connection_options["ssl_cert_reqs"] == "none"


@settings(max_examples=40, deadline=None)
@given(case=hostile_urls(("redis", "rediss")))
def test_no_piece_of_a_hostile_password_shows_anywhere(case: HostileURL) -> None:
    """Refused with a clean message, or accepted: then repr, where, the unavailability error
    and every log record are clean, and redis-py gets the password exactly."""
    try:
        driver = from_url(case.url)
    except ConfigurationError as error:
        refused: ConfigurationError | None = error
    else:
        refused = None
    if refused is not None:
        assert MARK not in str(refused)
        return
    assert MARK not in repr(driver)
    assert MARK not in driver.where
    if case.spelling == "encoded":
        assert driver._connection_options["password"] == case.password
    records: list[logging.LogRecord] = []
    handler = _Collect(records)
    logging.getLogger().addHandler(handler)
    try:
        failure = anyio.run(_first_failure, driver)
    finally:
        logging.getLogger().removeHandler(handler)
    assert isinstance(failure, BackendUnavailable)
    assert MARK not in str(failure)
    assert not [record for record in records if MARK in record.getMessage()]


class _Collect(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def _first_failure(driver: RedisDriver) -> BaseException | None:
    async with Storage(driver) as storage:
        try:
            await storage.get("a")
        except BackendUnavailable as error:
            return error
    return None


# -- bounded waits, silence -------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_server_that_never_answers_is_reported_within_the_default_connect_timeout(
) -> None:
    with silent_server() as port:
        async with Storage(redis_driver(f"redis://127.0.0.1:{port}/0")) as storage:
            started = anyio.current_time()
            with pytest.raises(BackendUnavailable, match="connect_timeout=5"):
                await storage.set("a", 1)
            # A liveness bound, generous for a loaded machine: not a speed claim.
            assert anyio.current_time() - started < 5 + LIVENESS_SLACK


@pytest.mark.anyio
async def test_a_stopped_server_is_reported_within_the_operation_timeout(
    private_redis: RedisInstance,
) -> None:
    driver = redis_driver(private_redis.url, base="paused", connect_timeout=1,
                          operation_timeout=1.5)
    async with Storage(driver) as storage:
        await storage.set("a", 1)
        private_redis.pause()
        try:
            started = anyio.current_time()
            with pytest.raises(BackendUnavailable, match="operation_timeout"):
                await storage.get("a")
            assert anyio.current_time() - started < 1.5 + LIVENESS_SLACK
        finally:
            private_redis.resume()
        assert await storage.get("a") == 1


def test_nothing_reaches_stderr_without_logging_config(private_redis: RedisInstance) -> None:
    check_silent_through(
        _with_query(private_redis.url, "operation_timeout=2&connect_timeout=1"),
        private_redis.stop,
        private_redis.start,
    )
    unreachable = f"redis://127.0.0.1:{free_port()}/0?connect_timeout=1"
    child = QuietChild(unreachable)
    assert child.phase("refused") == ["unavailable"] * 4
    assert child.finish() == ""
