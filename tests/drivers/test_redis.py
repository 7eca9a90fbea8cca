"""The Redis driver against a real server: the conformance suite, tenant isolation, outages."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
import redis
from hypothesis import given, settings

from kvstore import create_storage
from kvstore.conditional import LEGACY_VERSION, Change, Versioned
from kvstore.drivers import redis as redis_module
from kvstore.drivers.redis import RedisDriver, from_url, redis_driver
from kvstore.errors import BackendError, BackendUnavailable, ConfigurationError, Conflict
from kvstore.expiry import Meta, to_millis, ttl_millis
from kvstore.storage import Storage
from kvstore.testing import DriverConformance, DriverFactory
from kvstore.testing.clock import TestClock
from kvstore.testing.cost import measure_best
from tests.support import old_release
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
        shared_redis.delete(*_names(base))


def _names(base: str) -> list[str]:
    """The Redis keys a base owns: values, index, versions, write times, expiries."""
    return [f"{base}:kv", f"{base}:keys", f"{base}:ver", f"{base}:at", f"{base}:exp"]


def _snapshot(client: redis.Redis, base: str) -> list[object]:
    """Everything stored at a base's five Redis keys, whatever their types."""
    found: list[object] = []
    for name in _names(base):
        kind = client.type(name)
        if kind == b"hash":
            found.append(client.hgetall(name))
        elif kind == b"zset":
            found.append(client.zrange(name, 0, -1, withscores=True))
        elif kind == b"string":
            found.append(client.get(name))
        else:
            found.append(kind)
    return found


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
    names = [root, root + "2", root + ":x", root + ":kv", root + ":keys", root + ":ver",
             root + ":at", root + ":exp"]
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
async def test_layout_is_values_index_versions_write_times_and_expiries_per_base(
    shared_redis: redis.Redis, bases: list[str]
) -> None:
    base = _unique_base("layout")
    bases.append(base)
    async with Storage(redis_driver(REDIS_URL, base=base)) as storage:
        await storage.set_many({"p*": 1, "p?": 2, "p[x]": 3})
        await storage.set("q", 4)
        # No TTL yet: no expiry structure either.
        assert sorted(shared_redis.scan_iter(match=f"{base}*")) == [
            f"{base}:at".encode(),
            f"{base}:keys".encode(),
            f"{base}:kv".encode(),
            f"{base}:ver".encode(),
        ]
        # Hash, index, versions and write times agree, and a glob character in a prefix stays
        # literal.
        assert shared_redis.hlen(f"{base}:kv") == shared_redis.zcard(f"{base}:keys") == 4
        assert shared_redis.hlen(f"{base}:ver") == shared_redis.hlen(f"{base}:at") == 4
        await storage.set("t", 5, ttl=30)
        assert shared_redis.zrange(f"{base}:exp", 0, -1) == [b"t"]
        assert [key async for key in storage.keys("p*")] == ["p*"]
        found = await storage.get_versioned("q")
        assert found is not None
        assert shared_redis.hget(f"{base}:ver", "q") == str(found.version).encode()


@pytest.mark.anyio
@pytest.mark.parametrize("suffix", [":kv", ":keys", ":ver", ":at", ":exp"])
async def test_writes_change_nothing_when_a_key_of_the_base_holds_foreign_data(
    shared_redis: redis.Redis, bases: list[str], suffix: str
) -> None:
    base = _unique_base("foreign")
    bases.append(base)
    async with Storage(redis_driver(REDIS_URL, base=base)) as storage:
        version = await storage.create("kept", 1)
        await storage.set("other", 2)
        before = _snapshot(shared_redis, base)
        shared_redis.delete(base + suffix)
        shared_redis.set(base + suffix, b"not ours")
        before[_names(base).index(base + suffix)] = b"not ours"
        writes: list[Callable[[], Awaitable[object]]] = [
            lambda: storage.set("new", 1),
            lambda: storage.set_many({"a": 1, "b": 2}),
            lambda: storage.delete("kept"),
            lambda: storage.delete_many(["kept"]),
            lambda: storage.clear("k"),
            lambda: storage.create("new", 1),
            lambda: storage.replace("kept", 2, version),
            lambda: storage.delete_if("kept", version),
            lambda: storage.commit([Change.put("new", 1), Change.delete("other")]),
            lambda: storage.commit([Change.delete("other"), Change.put("new", 1)]),
            lambda: storage.update("kept", lambda value: 3),
            lambda: storage.set("new", 1, ttl=30),
            lambda: storage.set_many({"a": 1, "b": 2}, ttl=30),
            lambda: storage.expire("kept", 30),
            lambda: storage.expire("kept", None),
        ]
        for write in writes:
            # The scripts' guard ("holds foreign data") for the index, the versions, the write
            # times and the expiries, Redis's own refusal for the values hash, which every
            # script reaches before writing.
            with pytest.raises(BackendError, match="WRONGTYPE"):
                await write()
            assert _snapshot(shared_redis, base) == before
        # A purge is refused by the guard, or (a foreign values hash, which the guard does not
        # look at) finds nothing to remove: no key has expired.
        if suffix == ":kv":
            assert await storage.purge_expired() == 0
        else:
            with pytest.raises(BackendError, match="WRONGTYPE"):
                await storage.purge_expired()
        assert _snapshot(shared_redis, base) == before


@pytest.mark.parametrize(
    "members",
    [
        [b"a", b"a:b", "\u00e9t\u00e9:\U0001f600".encode()],
        # Another program's member holding a newline: the page is decoded member by member.
        [b"a", b"b\nc", b"d"],
        [b"\n"],
    ],
)
def test_a_page_of_index_members_decodes_to_exactly_its_members(members: list[bytes]) -> None:
    assert redis_module._decoded(members) == [member.decode("utf-8") for member in members]


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
    private_redis: RedisInstance, outage_storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kvstore.redis")
    await check_restart_between_operations(outage_storage, private_redis)
    # The command sent on a pooled connection the restart killed was resent, and that was logged.
    assert any(
        record.name == "kvstore.redis" and "resending it on a new one" in record.getMessage()
        for record in caplog.records
    )


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


# -- versions and conditional writes ----------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
COUNTER_PROCESSES = 4
COUNTER_INCREMENTS = 50
# Far more attempts than contention can use up, so that a run ending short of N can only mean
# a lost update, not an exhausted retry budget.
ATTEMPTS = 100_000


@pytest.fixture
def helper_bases(shared_redis: redis.Redis) -> Iterator[Callable[[str], str]]:
    """Hands out fresh ``redis-helper-`` bases and deletes their Redis keys afterwards."""
    created: list[str] = []

    def make(label: str) -> str:
        base = f"redis-helper-{label}-{uuid.uuid4().hex[:12]}"
        created.append(base)
        return base

    yield make
    for base in created:
        shared_redis.delete(*_names(base))


def _run_child(code: str, *args: str, pythonpath: Path, cwd: Path) -> str:
    """Run ``code`` in a fresh interpreter that imports ``kvstore`` from ``pythonpath``."""
    completed = subprocess.run(
        # -P: the child's current directory must not shadow the kvstore chosen by PYTHONPATH.
        [sys.executable, "-P", "-c", code, str(pythonpath), *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(pythonpath)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


# Run with the pre-versions checkout on PYTHONPATH: write (or read back) a base with its driver.
_OLD_DRIVER_CHILD = """
import json, sys
import anyio
import kvstore
from kvstore.drivers.redis import redis_driver
from kvstore.storage import Storage

checkout, url, base, mode = sys.argv[1:]
assert kvstore.__file__.startswith(checkout), kvstore.__file__
assert not getattr(redis_driver(url, base=base), "conditional_writes", False)


async def main() -> None:
    async with Storage(redis_driver(url, base=base)) as storage:
        if mode == "write":
            await storage.set("solo", {"n": 1})
            await storage.set_many({"a": 1, "b": 2, "c": 3, "d": 4})
            await storage.delete("c")
        else:
            print(json.dumps({key: value async for key, value in storage.items("")}))


anyio.run(main)
"""


@pytest.fixture(scope="module")
def pre_versions_checkout() -> Path:
    """The ``kvstore`` package as it was before versions, taken from the repository's history."""
    return old_release.pre_versions_checkout()


@pytest.mark.anyio
async def test_a_base_written_by_the_pre_versions_driver_reads_at_version_0_and_upgrades(
    shared_redis: redis.Redis,
    helper_bases: Callable[[str], str],
    pre_versions_checkout: Path,
    tmp_path: Path,
) -> None:
    base = helper_bases("old")

    def old_driver(mode: str) -> str:
        return _run_child(
            _OLD_DRIVER_CHILD, REDIS_URL, base, mode, pythonpath=pre_versions_checkout,
            cwd=tmp_path,
        )

    old_driver("write")
    assert not shared_redis.exists(f"{base}:ver")
    async with Storage(redis_driver(REDIS_URL, base=base)) as storage:
        assert await storage.get_versioned("solo") == Versioned({"n": 1}, LEGACY_VERSION)
        assert await storage.get_versioned("c") is None
        assert [key async for key in storage.keys("")] == ["a", "b", "d", "solo"]
        # Conditions on legacy values work: version 0 is the one they are at.
        with pytest.raises(Conflict):
            await storage.replace("a", 10, 1)
        with pytest.raises(Conflict):
            await storage.create("b", 20)
        with pytest.raises(Conflict):
            await storage.delete_if("b", 1)
        version = await storage.replace("a", 10, LEGACY_VERSION)
        assert version != LEGACY_VERSION
        assert await storage.get_versioned("a") == Versioned(10, version)
        await storage.delete_if("b", LEGACY_VERSION)
        assert await storage.create("c", 30) > LEGACY_VERSION
        assert await storage.update("solo", lambda value: {"n": 2}) == {"n": 2}
        solo = await storage.get_versioned("solo")
        assert solo is not None
        assert solo.version != LEGACY_VERSION
        versions = await storage.commit([Change.check("d", LEGACY_VERSION), Change.put("e", 5)])
        assert versions[0] is None
        assert versions[1] not in (None, LEGACY_VERSION)
        assert await storage.get_versioned("d") == Versioned(4, LEGACY_VERSION)
    # Every rewritten key has a version; the one never rewritten still has none.
    assert sorted(shared_redis.hkeys(f"{base}:ver")) == [b"a", b"c", b"e", b"solo"]
    # And the old driver still reads everything the new one wrote.
    assert json.loads(old_driver("read")) == {
        "a": 10, "c": 30, "d": 4, "e": 5, "solo": {"n": 2}
    }


@pytest.mark.anyio
async def test_a_replayed_pre_versions_layout_reads_at_version_0(
    shared_redis: redis.Redis, helper_bases: Callable[[str], str]
) -> None:
    base = helper_bases("replayed")
    # The pre-versions layout, exactly as the two-key driver (commit 8c0e158) wrote it: the
    # value in the hash B:kv, the key at score 0 in the sorted set B:keys, nothing else.
    shared_redis.hset(f"{base}:kv", "k", b'"old"')
    shared_redis.zadd(f"{base}:keys", {"k": 0})
    async with Storage(redis_driver(REDIS_URL, base=base)) as storage:
        assert await storage.get_versioned_raw("k") == Versioned(b'"old"', LEGACY_VERSION)
        version = await storage.replace_raw("k", b'"new"', LEGACY_VERSION)
        with pytest.raises(Conflict):
            await storage.replace_raw("k", b'"newer"', LEGACY_VERSION)
        assert await storage.get_versioned_raw("k") == Versioned(b'"new"', version)
        await storage.delete_if("k", version)
    assert _snapshot(shared_redis, base) == [b"none"] * 5


@pytest.mark.anyio
async def test_every_write_gives_a_fresh_version_and_every_delete_removes_it(
    shared_redis: redis.Redis, helper_bases: Callable[[str], str]
) -> None:
    base = helper_bases("fresh")
    versions_of = f"{base}:ver"
    async with Storage(redis_driver(REDIS_URL, base=base)) as storage:
        seen: list[int] = []

        async def version(key: str) -> int:
            found = await storage.get_versioned(key)
            assert found is not None
            return found.version

        await storage.set("a", 1)
        seen.append(await version("a"))
        await storage.set("a", 1)
        seen.append(await version("a"))
        await storage.set_many({"a": 2, "b": 2, "c": 2, "p:1": 1, "p:2": 2})
        seen += [await version(key) for key in ("a", "b", "c")]
        seen.append(await storage.replace("a", 3, seen[2]))
        assert len(set(seen)) == len(seen)
        assert LEGACY_VERSION not in seen
        await storage.delete("a")
        await storage.delete_many(["b"])
        await storage.clear("p:")
        assert shared_redis.hkeys(versions_of) == [b"c"]
        # A key deleted and created again never comes back at a version a reader saw.
        assert await storage.create("a", 4) not in seen
        await storage.clear()
    assert _snapshot(shared_redis, base) == [b"none"] * 5


@pytest.mark.anyio
async def test_a_conflicting_commit_writes_nothing_and_names_every_failing_key(
    shared_redis: redis.Redis, helper_bases: Callable[[str], str]
) -> None:
    base = helper_bases("commit")
    async with Storage(redis_driver(REDIS_URL, base=base)) as storage:
        await storage.set_many({"held": 1, "gone": 2, "moved": 3, "taken": 4})
        held = await storage.get_versioned("held")
        moved = await storage.get_versioned("moved")
        assert held is not None
        assert moved is not None
        await storage.set("moved", 30)
        before = _snapshot(shared_redis, base)
        batch = [
            Change.replace("held", 10, held.version),  # holds
            Change.delete("gone"),  # no condition
            Change.replace("moved", 31, moved.version),  # fails: written since
            Change.put("fresh", 5),  # no condition
            Change.create("taken", 40),  # fails: present
            Change.check("absent", LEGACY_VERSION),  # fails: absent
            Change.check("nowhere", None),  # holds
        ]
        with pytest.raises(Conflict) as caught:
            await storage.commit(batch)
        assert list(caught.value.keys) == ["moved", "taken", "absent"]
        assert _snapshot(shared_redis, base) == before
        # Once the conditions hold, the same batch applies whole.
        current = await storage.get_versioned("moved")
        assert current is not None
        batch[2] = Change.replace("moved", 31, current.version)
        batch[4] = Change.put("taken", 40)
        batch[5] = Change.check("absent", None)
        versions = await storage.commit(batch)
        assert [version is None for version in versions] == [
            False, True, False, False, False, True, True
        ]
        assert await storage.get_many(["held", "gone", "moved", "fresh", "taken"]) == [
            10, None, 31, 5, 40
        ]
        for key, version in (("held", versions[0]), ("moved", versions[2])):
            assert shared_redis.hget(f"{base}:ver", key) == str(version).encode()
        assert sorted(shared_redis.hkeys(f"{base}:ver")) == [b"fresh", b"held", b"moved",
                                                               b"taken"]


@pytest.mark.anyio
async def test_large_batches_keep_one_version_per_key_and_stay_all_or_nothing(
    shared_redis: redis.Redis, helper_bases: Callable[[str], str]
) -> None:
    # More keys than the scripts take in one unpack() step (2000 pairs), so steps meet.
    count = 5000
    base = helper_bases("large")
    keys = [f"k{index:05d}" for index in range(count)]
    async with Storage(redis_driver(REDIS_URL, base=base)) as storage:
        await storage.set_many([(key, index) for index, key in enumerate(keys)])
        stamps = shared_redis.hgetall(f"{base}:ver")
        assert sorted(stamps) == [key.encode() for key in keys]
        assert len(set(stamps.values())) == count
        for index in (0, 1999, 2000, 4000, count - 1):
            assert await storage.get_versioned(keys[index]) == Versioned(
                index, int(stamps[keys[index].encode()])
            )
        before = _snapshot(shared_redis, base)
        # One failing condition at the very end: none of the thousands of changes before it.
        batch = [Change.put(key, -1) for key in keys]
        batch += [Change.create(f"new{index}", 1) for index in range(count)]
        batch.append(Change.check("missing", LEGACY_VERSION))
        with pytest.raises(Conflict) as caught:
            await storage.commit(batch)
        assert list(caught.value.keys) == ["missing"]
        assert _snapshot(shared_redis, base) == before
        versions = await storage.commit(batch[:-1])
        assert await storage.get_many([keys[2000], "new4999"]) == [-1, 1]
        assert shared_redis.hget(f"{base}:ver", "new4999") == str(versions[-1]).encode()
        assert shared_redis.hlen(f"{base}:kv") == shared_redis.hlen(f"{base}:ver") == 2 * count


@pytest.mark.anyio
async def test_a_retried_conditional_write_is_recognised_not_reported_as_a_conflict(
    shared_redis: redis.Redis, helper_bases: Callable[[str], str]
) -> None:
    """redis-py retries a script whose reply a dropped connection lost; the script may have run.

    Here every script call runs twice with the same arguments (the same new version), as that
    retry does: the second run must report what the first did and change nothing.
    """
    base = helper_bases("retry")
    driver = redis_driver(REDIS_URL, base=base)
    script = driver._script
    replays: list[tuple[object, object, bool]] = []

    def state(sha: bytes) -> list[object]:
        found = _snapshot(shared_redis, base)
        if sha == redis_module._SET_SHA:
            # A plain set run again is a second write of the same value and version: only its
            # write time moves on.
            del found[_names(base).index(f"{base}:at")]
        return found

    async def twice(client: Any, sha: bytes, *args: Any) -> Any:
        first = await script(client, sha, *args)
        before = state(sha)
        second = await script(client, sha, *args)
        replays.append((first, second, state(sha) == before))
        return second

    driver._script = twice  # type: ignore[method-assign]
    async with Storage(driver) as storage:
        await storage.set("k", 1)
        found = await storage.get_versioned_raw("k")
        assert found is not None
        created = await storage.create_raw("new", b"1")
        replaced = await storage.replace_raw("k", b"2", found.version)
        versions = await storage.commit_raw(
            [Change.replace("k", b"3", replaced), Change.create("other", b"4"),
             Change.delete("new", created)]
        )
        assert versions[0] is not None
        assert await storage.get_versioned_raw("k") == Versioned(b"3", versions[0])
        assert await storage.get_many(["new", "other"]) == [None, 4]
    assert [first == second for first, second, _ in replays] == [True] * len(replays)
    assert [unchanged for _, _, unchanged in replays] == [True] * len(replays)


# The digests of the scripts that write conditionally (set_if, delete_if, commit).
_CONDITIONAL_WRITES = {redis_module._SET_IF_SHA, redis_module._DELETE_IF_SHA,
                       redis_module._COMMIT_SHA}


def _plus_one(value: Any) -> int:
    return int(value or 0) + 1


class _LoseReplies:
    """Makes redis-py lose the reply to the next conditional write after the server ran it.

    The connection then fails as a dropped one does, and redis-py sends the script again on a
    fresh connection (the driver's one retry). ``between`` runs in the gap, as another client.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.armed = False
        self.between: Callable[[], Awaitable[object]] | None = None
        # The driver's step that sends one packed script call and reads its reply.
        original = redis_module._ask

        async def patched(connection: Any, packed: list[bytes]) -> Any:
            reply = await original(connection, packed)
            # The digest travels in the packet's first buffer (values never come before it).
            sent = packed[0]
            if self.armed and any(sha in sent for sha in _CONDITIONAL_WRITES):
                self.armed = False
                if self.between is not None:
                    await self.between()
                raise redis.ConnectionError("reply lost (test)")
            return reply

        monkeypatch.setattr(redis_module, "_ask", patched)

    def arm(self, between: Callable[[], Awaitable[object]] | None = None) -> None:
        self.armed, self.between = True, between


@pytest.mark.anyio
async def test_a_lost_reply_never_turns_into_a_conflict_or_a_second_update(
    monkeypatch: pytest.MonkeyPatch, helper_bases: Callable[[str], str]
) -> None:
    base = helper_bases("lost")
    lose = _LoseReplies(monkeypatch)
    async with Storage(redis_driver(REDIS_URL, base=base)) as storage, Storage(
        redis_driver(REDIS_URL, base=base)
    ) as other:
        # Nobody writes in between: the retry recognises its own first run and succeeds.
        lose.arm()
        created = await storage.create("k", 1)
        lose.arm()
        replaced = await storage.replace("k", 2, created)
        lose.arm()
        (committed, _) = await storage.commit([Change.replace("k", 3, replaced),
                                               Change.create("j", 1)])
        assert committed is not None
        assert await storage.get_versioned("k") == Versioned(3, committed)
        lose.arm()
        assert await storage.update("counter", _plus_one) == 1
        assert await storage.get("counter") == 1

        # Another client updates the key in the gap: the retry finds the condition failing and
        # cannot know whether the first run applied. Not a Conflict (update would then apply
        # its function again): the outcome is unknown.
        async def increment_elsewhere() -> None:
            await other.update("counter", _plus_one)

        lose.arm(increment_elsewhere)
        with pytest.raises(BackendUnavailable, match="may or may not"):
            await storage.update("counter", _plus_one)
        # Ours ran once, then theirs: never twice.
        assert await storage.get("counter") == 3
        current = await storage.get_versioned("j")
        assert current is not None
        lose.arm()
        with pytest.raises(BackendUnavailable, match="may or may not"):
            await storage.delete_if("j", current.version)
        assert await storage.get("j") is None
    assert not lose.armed


@pytest.mark.anyio
async def test_concurrent_updates_from_many_tasks_lose_nothing(
    helper_bases: Callable[[str], str],
) -> None:
    base = helper_bases("tasks")
    tasks, increments = 20, 10
    calls = 0

    def increment(value: Any) -> int:
        nonlocal calls
        calls += 1
        return (value or 0) + 1

    async with Storage(redis_driver(REDIS_URL, base=base)) as storage:

        async def worker() -> None:
            for _ in range(increments):
                await storage.update("counter", increment, attempts=ATTEMPTS)

        async with anyio.create_task_group() as group:
            for _ in range(tasks):
                group.start_soon(worker)
        assert await storage.get("counter") == tasks * increments
    # The tasks did race: some reads were overtaken and retried.
    assert calls > tasks * increments


# One process of the counter race: waits at a barrier (BLPOP) so that all start together, then
# increments the counter and reports how many times its function ran.
_COUNTER_CHILD = """
import sys
import anyio
import redis
from kvstore.drivers.redis import redis_driver
from kvstore.storage import Storage

url, base, count, ready, go = sys.argv[1:]
calls = 0


def increment(value):
    global calls
    calls += 1
    return (value or 0) + 1


async def main() -> None:
    async with Storage(redis_driver(url, base=base)) as storage:
        await storage.get("counter")  # connect before the barrier
        with redis.Redis.from_url(url) as client:
            client.rpush(ready, 1)
            assert client.blpop([go], timeout=60) is not None, "no start signal"
        for _ in range(int(count)):
            await storage.update("counter", increment, attempts=100_000)
    print(calls)


anyio.run(main)
"""


def test_concurrent_updates_from_many_processes_lose_nothing(
    shared_redis: redis.Redis, helper_bases: Callable[[str], str]
) -> None:
    base = helper_bases("processes")
    ready, go = f"{base}:ready", f"{base}:go"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _COUNTER_CHILD, REDIS_URL, base, str(COUNTER_INCREMENTS),
             ready, go],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(COUNTER_PROCESSES)
    ]
    try:
        started = 0
        while started < len(children):
            # BLPOP for a second at a time, so that a child that died is reported at once.
            if shared_redis.blpop([ready], timeout=1) is not None:
                started += 1
            for child in children:
                assert child.poll() is None, child.communicate()[1]
        shared_redis.rpush(go, *[1] * len(children))
        outputs = [child.communicate(timeout=120) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        shared_redis.delete(ready, go)
    for child, (_out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
    total = COUNTER_PROCESSES * COUNTER_INCREMENTS
    stored = shared_redis.hget(f"{base}:kv", "counter")
    assert stored is not None
    assert json.loads(stored) == total
    # The processes did race: some of their reads were overtaken and retried.
    assert sum(int(out) for out, _ in outputs) > total


@pytest.mark.anyio
async def test_versions_stay_inside_their_base(
    shared_redis: redis.Redis, helper_bases: Callable[[str], str]
) -> None:
    root = helper_bases("iso")
    names = [root, root + ":ver", root + ":kv", root + ":keys", root + ":k", root + ":v",
             root + ":at", root + ":exp", root + ":e", root + "2"]
    redis_keys = [name for base in names for name in _names(base)]
    assert len(set(redis_keys)) == len(redis_keys)
    storages = [Storage(redis_driver(REDIS_URL, base=name)) for name in names]
    try:
        versions = [await storage.create("k", index) for index, storage in enumerate(storages)]
        assert len(set(versions)) == len(versions)
        # Another base's version is no version here, and nothing done here shows there.
        with pytest.raises(Conflict):
            await storages[0].replace("k", 9, versions[1])
        with pytest.raises(Conflict):
            await storages[1].delete_if("k", versions[0])
        await storages[0].commit([Change.delete("k", versions[0]), Change.create("only0", 1)])
        await storages[2].clear()
        for index, storage in enumerate(storages):
            expected = None if index in (0, 2) else Versioned(index, versions[index])
            assert await storage.get_versioned("k") == expected
            assert await storage.get("only0") == (1 if index == 0 else None)
    finally:
        for storage in storages:
            await storage.close()
        for base in names[1:]:
            shared_redis.delete(*_names(base))


@pytest.mark.anyio
async def test_versioned_operations_survive_a_flushed_script_cache(
    private_redis: RedisInstance,
) -> None:
    async with Storage(redis_driver(private_redis.url, base="flushed")) as storage:
        version = await storage.create("k", 1)
        for step in range(4):
            with redis.Redis(port=private_redis.port) as admin:
                admin.script_flush()
            if step == 0:
                assert await storage.get_versioned("k") == Versioned(1, version)
            elif step == 1:
                version = await storage.replace("k", 2, version)
            elif step == 2:
                (committed,) = await storage.commit([Change.replace("k", 3, version)])
                assert committed is not None
                version = committed
            else:
                await storage.delete_if("k", version)
        assert await storage.get("k") is None


@pytest.mark.anyio
async def test_versioned_operations_on_a_stopped_server_end_within_the_operation_timeout(
    private_redis: RedisInstance,
) -> None:
    driver = redis_driver(private_redis.url, base="paused", connect_timeout=1,
                          operation_timeout=1.5)
    async with Storage(driver) as storage:
        version = await storage.create("k", 1)
        private_redis.pause()
        try:
            calls: list[Callable[[], Awaitable[object]]] = [
                lambda: storage.get_versioned("k"),
                lambda: storage.replace("k", 2, version),
                lambda: storage.commit([Change.put("j", 1)]),
            ]
            for call in calls:
                started = anyio.current_time()
                # The first call times out on its pooled connection, later ones on a new one.
                with pytest.raises(BackendUnavailable, match=r"operation_timeout|connect_timeout"):
                    await call()
                assert anyio.current_time() - started < 1.5 + LIVENESS_SLACK
        finally:
            private_redis.resume()
        assert await storage.get_versioned("k") == Versioned(1, version)
        assert await storage.update("k", lambda value: 2) == 2


# -- expiry -----------------------------------------------------------------------------------

# A TTL short enough to wait for, long enough that the writes of a test end before it passes.
_SHORT_TTL = 0.5
_LONG_TTL = 30.0


async def _wait_past(written_before: float, ttl: float) -> None:
    """Wait until a TTL given by a write that returned before ``written_before`` has run out.

    The server runs on this machine: its clock read inside the write came before
    ``written_before`` on ours, so the expiry instant has passed once this returns.
    """
    await TestClock(manual=False).pass_instant(written_before + ttl)


def _traces(client: redis.Redis, base: str, keys: list[str]) -> dict[str, list[str]]:
    """For each of the base's five Redis keys, which of ``keys`` it still holds."""
    found: dict[str, list[str]] = {}
    for name in _names(base):
        kind = client.type(name)
        if kind == b"hash":
            held = [key for key in keys if client.hexists(name, key)]
        else:
            held = [key for key in keys if client.zscore(name, key) is not None]
        found[name.removeprefix(base)] = held
    return found


@pytest.mark.anyio
async def test_purge_expired_removes_every_trace_of_expired_keys_only(
    shared_redis: redis.Redis, helper_bases: Callable[[str], str]
) -> None:
    base = helper_bases("purge")
    gone = [f"gone:{n:02}" for n in range(25)]
    kept = ["live", "long"]
    async with Storage(redis_driver(REDIS_URL, base=base)) as storage:
        await storage.set("live", 1)
        await storage.set("long", 1, ttl=_LONG_TTL)
        await storage.set_many(dict.fromkeys(gone, 1), ttl=_SHORT_TTL)
        await _wait_past(time.time(), _SHORT_TTL)
        # Absent to every read, but still physically there: no write came after the expiry.
        assert await storage.get_many(gone) == [None] * len(gone)
        assert _traces(shared_redis, base, gone)[":kv"] == gone
        counts: list[int] = []
        while count := await storage.purge_expired(limit=10):
            counts.append(count)
        assert counts == [10, 10, 5]
        everywhere = _traces(shared_redis, base, gone + kept)
        assert everywhere == {
            ":kv": kept, ":keys": kept, ":ver": kept, ":at": kept, ":exp": ["long"]
        }
        assert await storage.get_many(kept) == [1, 1]
        await storage.clear()
    assert _snapshot(shared_redis, base) == [b"none"] * 5


@pytest.mark.anyio
async def test_expiring_writes_purge_a_small_batch_at_most_once_a_second(
    shared_redis: redis.Redis, helper_bases: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    base = helper_bases("auto")
    # The drivers' monotonic clock, moved by hand: "once a second" without waiting for one.
    monotonic = [1000.0]
    monkeypatch.setattr(redis_module, "time", SimpleNamespace(monotonic=lambda: monotonic[0]))
    gone = [f"gone:{n:03}" for n in range(redis_module.AUTO_PURGE + 50)]
    expiries = f"{base}:exp"
    async with Storage(redis_driver(REDIS_URL, base=base)) as writer:
        await writer.set_many(dict.fromkeys(gone, 1), ttl=_SHORT_TTL)
        await _wait_past(time.time(), _SHORT_TTL)
    async with Storage(redis_driver(REDIS_URL, base=base)) as storage:
        # Writes without a TTL never purge.
        await storage.set("plain", 1)
        await storage.set_many({"plain2": 2})
        assert shared_redis.zcard(expiries) == len(gone)
        # The first expiring write purges one small batch...
        await storage.set("t1", 1, ttl=_LONG_TTL)
        assert shared_redis.zcard(expiries) == 50 + 1
        # ... and the next ones, within the same second, none.
        await storage.set_many({"t2": 2}, ttl=_LONG_TTL)
        assert await storage.expire("plain", _LONG_TTL) is True
        assert shared_redis.zcard(expiries) == 50 + 3
        # A second later, an expiring write purges again (here expire(), which writes no value).
        monotonic[0] += redis_module.AUTO_PURGE_EVERY
        assert await storage.expire("plain", None) is True
        assert shared_redis.zcard(expiries) == 2
        assert _traces(shared_redis, base, gone) == {
            ":kv": [], ":keys": [], ":ver": [], ":at": [], ":exp": []
        }
        assert sorted([key async for key in storage.keys()]) == ["plain", "plain2", "t1", "t2"]


def _server_millis(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


@pytest.mark.anyio
async def test_the_servers_clock_decides_write_times_and_expiries(
    shared_redis: redis.Redis, helper_bases: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    base = helper_bases("clock")
    async with Storage(redis_driver(REDIS_URL, base=base)) as storage:
        await storage.set("warm", 1)  # connected and the scripts loaded before the clock breaks
        # This client's clock is far off; the server's is the one that counts.
        monkeypatch.setattr(time, "time", lambda: 0.0)
        before = _server_millis(shared_redis)
        await storage.set("k", "v", ttl=_LONG_TTL)
        await storage.set("plain", "v")
        after = _server_millis(shared_redis)
        meta = await storage.get_meta("k")
        plain = await storage.get_meta("plain")
        monkeypatch.undo()
    assert meta is not None
    assert plain is not None
    for found in (meta, plain):
        assert found.written_at is not None
        # TIME is rounded to the millisecond inside the script: one millisecond of slack.
        assert before <= to_millis(found.written_at) <= after + 1
    # One instant for the write time and the expiry: the TTL exactly, in milliseconds.
    written, expires = meta.written_at, meta.expires_at
    assert written is not None
    assert expires is not None
    assert to_millis(expires) == to_millis(written) + ttl_millis(_LONG_TTL)
    assert plain.expires_at is None
    assert shared_redis.hget(f"{base}:at", "k") == str(to_millis(written)).encode()
    assert shared_redis.zscore(f"{base}:exp", "k") == to_millis(expires)


@pytest.mark.anyio
async def test_get_meta_is_one_script_call_that_never_sends_the_value(
    helper_bases: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    base = helper_bases("meta")
    async with Storage(redis_driver(REDIS_URL, base=base)) as storage:
        await storage.set_raw("big", b"x" * 100_000, ttl=_LONG_TTL)
        await storage.get_meta("warm")  # loads the script
        sent: list[bytes] = []
        replies: list[Any] = []
        original = redis_module._ask

        async def recording(connection: Any, packed: list[bytes]) -> Any:
            sent.append(b"".join(packed))
            reply = await original(connection, packed)
            replies.append(reply)
            return reply

        monkeypatch.setattr(redis_module, "_ask", recording)
        meta = await storage.get_meta("big")
    assert [packet.split(b"\r\n")[2] for packet in sent] == [b"EVALSHA"]
    assert meta is not None
    assert meta.size == 100_000
    assert len(repr(replies)) < 1000


# The pre-expiry driver, run from the repository's history: writes a base, or reads it back.
_PRE_EXPIRY_COMMIT = "e7d3c02"
_PRE_EXPIRY_CHILD = """
import json, sys
import anyio
import kvstore
from kvstore.drivers.redis import redis_driver
from kvstore.storage import Storage

checkout, url, base, mode = sys.argv[1:]
assert kvstore.__file__.startswith(checkout), kvstore.__file__
assert not redis_driver(url, base=base).expiry


async def main() -> None:
    async with Storage(redis_driver(url, base=base)) as storage:
        if mode == "write":
            await storage.set("solo", {"n": 1})
            await storage.set_many({"a": 1, "b": 2, "c": 3, "d": 4})
            await storage.delete("c")
        else:
            print(json.dumps({key: value async for key, value in storage.items("")}))


anyio.run(main)
"""


@pytest.fixture(scope="module")
def pre_expiry_checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``kvstore`` package as it was before expiry, taken from the repository's history."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", _PRE_EXPIRY_COMMIT, "kvstore"],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        pytest.skip(f"commit {_PRE_EXPIRY_COMMIT} is not in this clone's history (shallow?)")
    target = tmp_path_factory.mktemp("kvstore-pre-expiry")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(target, filter="data")
    return target


@pytest.mark.anyio
async def test_a_base_written_before_expiry_keeps_its_data_and_gains_ttls(
    shared_redis: redis.Redis,
    helper_bases: Callable[[str], str],
    pre_expiry_checkout: Path,
    tmp_path: Path,
) -> None:
    base = helper_bases("preexp")

    def old_driver(mode: str) -> str:
        return _run_child(
            _PRE_EXPIRY_CHILD, REDIS_URL, base, mode, pythonpath=pre_expiry_checkout,
            cwd=tmp_path,
        )

    old_driver("write")
    # The layout before expiry: values, index and versions, no write times, no expiries.
    assert [shared_redis.exists(name) for name in _names(base)] == [1, 1, 1, 0, 0]
    async with Storage(redis_driver(REDIS_URL, base=base)) as storage:
        assert {key: value async for key, value in storage.items()} == {
            "a": 1, "b": 2, "d": 4, "solo": {"n": 1}
        }
        found = await storage.get_versioned("a")
        assert found is not None
        # Written before write times were kept: no write time, no expiry, its version.
        assert await storage.get_meta("a") == Meta(
            size=1, written_at=None, expires_at=None, version=found.version
        )
        assert await storage.get_meta("c") is None
        # Old keys gain TTLs, by expire() (keeping "no write time") or by a new write.
        assert await storage.expire("solo", _SHORT_TTL) is True
        await storage.set("b", 20, ttl=_SHORT_TTL)
        await storage.set("d", 40)
        ended = time.time()
        solo = await storage.get_meta("solo")
        assert solo is not None
        assert solo.written_at is None
        assert solo.expires_at is not None
        d = await storage.get_meta("d")
        assert d is not None
        assert d.written_at is not None
        assert d.expires_at is None
        await _wait_past(ended, _SHORT_TTL)
        assert await storage.purge_expired() == 2
        assert [key async for key in storage.keys()] == ["a", "d"]
    # The old driver reads what is left (it knows nothing of expiry; the purged keys are gone).
    assert json.loads(old_driver("read")) == {"a": 1, "d": 40}


async def _mostly_expired(storage: Storage, prefix: str, count: int, live_every: int) -> None:
    """Write ``count`` keys under ``prefix``, every ``live_every``-th one live, then wait until
    the others have expired."""
    keys = [f"{prefix}{n:05}" for n in range(count)]
    await storage.set_many_raw(
        {key: b"x" for n, key in enumerate(keys) if n % live_every}, ttl=_SHORT_TTL
    )
    ended = time.time()
    await storage.set_many_raw({key: b"x" for n, key in enumerate(keys) if n % live_every == 0})
    await _wait_past(ended, _SHORT_TTL)


@pytest.mark.anyio
async def test_a_scan_over_mostly_expired_keys_costs_what_a_scan_of_the_live_ones_does(
    helper_bases: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Expired keys interleaved with live ones, the case a scan cannot skip as one run, and no
    # purging by the scan, so that every measured scan meets all 9,000 of them.
    monkeypatch.setattr(redis_module, "SCAN_PURGE", 0)
    base = helper_bases("scancost")
    async with Storage(redis_driver(REDIS_URL, base=base)) as storage:
        await _mostly_expired(storage, "b:", 10_000, live_every=10)
        await storage.set_many_raw({f"a:{n:05}": b"x" for n in range(1000)})

        async def scan(prefix: str) -> None:
            assert len([key async for key in storage.keys(prefix)]) == 1000

        alone = await measure_best(lambda: scan("a:"))
        among = await measure_best(lambda: scan("b:"))
    assert among.steps <= 2.5 * alone.steps, (among, alone)
    assert among.peak_bytes <= 2.5 * alone.peak_bytes, (among, alone)


@pytest.mark.anyio
async def test_a_scan_purges_the_expired_keys_it_meets_a_page_at_a_time(
    shared_redis: redis.Redis, helper_bases: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_module, "SCAN_PURGE", 100)
    base = helper_bases("scanpurge")
    expiries = f"{base}:exp"
    async with Storage(redis_driver(REDIS_URL, base=base)) as storage:
        await _mostly_expired(storage, "p:", 300, live_every=30)
        await storage.set("q:long", 1, ttl=_LONG_TTL)
        assert shared_redis.zcard(expiries) == 290 + 1
        # Each call of the scan script purges at most SCAN_PURGE of the expired keys it met.
        for left in (190, 90, 0, 0):
            assert len([key async for key in storage.keys("p:")]) == 10
            assert shared_redis.zcard(expiries) == left + 1
        assert shared_redis.hlen(f"{base}:kv") == shared_redis.zcard(f"{base}:keys") == 11
        assert shared_redis.hlen(f"{base}:ver") == shared_redis.hlen(f"{base}:at") == 11
        # A scan that meets no expired key writes nothing.
        before = _snapshot(shared_redis, base)
        assert [key async for key in storage.keys("q:")] == ["q:long"]
        assert _snapshot(shared_redis, base) == before


def test_retries_in_the_url_are_read_by_the_constructor_function() -> None:
    # redis_driver once defaulted retries to 1 while its class read None as "not given", so a
    # URL's ?retries=3 through redis_driver was refused as given twice with different values.
    driver = redis_driver("redis://127.0.0.1:1/0?retries=3")
    assert driver._connection_options["retry"].get_retries() == 3
    assert redis_driver("redis://127.0.0.1:1/0")._connection_options["retry"].get_retries() == 1


# -- values over LARGE_VALUE bypass Lua ----------------------------------------------------------

BIG = b"v" * (redis_module.LARGE_VALUE + 1)


@pytest.fixture
def base(shared_redis: redis.Redis) -> Iterator[str]:
    chosen = _unique_base("large")
    yield chosen
    shared_redis.delete(*_names(chosen))


class _Scripts:
    """Records the digests of the scripts a driver runs and what they returned."""

    def __init__(self, driver: RedisDriver) -> None:
        self.runs: list[tuple[bytes, Any]] = []
        script = driver._script

        async def recorded(client: Any, sha: bytes, *args: Any) -> Any:
            reply = await script(client, sha, *args)
            self.runs.append((sha, reply))
            return reply

        driver._script = recorded  # type: ignore[method-assign]


@pytest.mark.anyio
async def test_a_large_value_is_written_and_read_without_passing_through_lua(
    shared_redis: redis.Redis, base: str
) -> None:
    driver = redis_driver(REDIS_URL, base=base)
    scripts = _Scripts(driver)
    async with Storage(driver) as storage:
        await storage.set_raw("small", b"s", ttl=60)
        await storage.set_raw("big", b"old", ttl=60)
        scripts.runs.clear()
        await driver.set("big", BIG)
        assert scripts.runs == []  # not the write script
        # A driver that wrote (or read) the key as large reads it without a script.
        assert await driver.get("big") == BIG
        assert scripts.runs == []
        # Another one asks the script, which only answers "large" (1), never the value.
        reader = redis_driver(REDIS_URL, base=base)
        read = _Scripts(reader)
        assert await reader.get("big") == BIG
        assert read.runs == [(redis_module._GET_SHA, 1)]
        assert await reader.get("big") == BIG
        assert read.runs == [(redis_module._GET_SHA, 1)]
        # Rewritten small elsewhere: the hint's plain read is exact, and the hint is dropped.
        await driver.set("big", b"now small")
        assert await reader.get("big") == b"now small"
        assert await reader.get("big") == b"now small"
        assert read.runs == [(redis_module._GET_SHA, 1), (redis_module._GET_SHA, b"now small")]
        await reader.close()
        await driver.set("big", BIG)
        # The same bookkeeping as a small write: index entry, fresh version, write time, and
        # the plain write cleared the old expiry.
        assert shared_redis.hget(f"{base}:kv", "big") == BIG
        assert shared_redis.zscore(f"{base}:keys", "big") == 0
        meta = await storage.get_meta("big")
        assert meta is not None
        assert meta.size == len(BIG)
        assert meta.expires_at is None
        assert meta.written_at is not None
        assert meta.version is not None
        assert meta.version > 0
        assert shared_redis.zrange(f"{base}:exp", 0, -1) == [b"small"]
        assert [key async for key in storage.keys()] == ["big", "small"]
        versioned = await storage.get_versioned_raw("big")
        assert versioned is not None
        assert versioned.version == meta.version
        # An expired large value reads as absent, decided by the server's clock.
        shared_redis.zadd(f"{base}:exp", {"big": 1})
        assert await driver.get("big") is None
        # Small values still come straight from the script.
        scripts.runs.clear()
        assert await driver.get("small") == b"s"
        assert scripts.runs == [(redis_module._GET_SHA, b"s")]


@pytest.mark.anyio
@pytest.mark.parametrize("expiring", [False, True])
async def test_a_large_write_to_a_base_holding_foreign_data_writes_nothing(
    shared_redis: redis.Redis, base: str, expiring: bool
) -> None:
    def state() -> list[tuple[Any, Any]]:
        return [(shared_redis.dump(name), shared_redis.pexpiretime(name)) for name in _names(base)]

    async with Storage(redis_driver(REDIS_URL, base=base)) as storage:
        await storage.set_raw("kept", b"1")
        # One foreign key at a time (the check marks one of the base's own keys), then all five
        # (it marks a foreign one through its expiry, which must come back to the very same
        # instant, or to none).
        for foreign in [[name] for name in _names(base)] + [_names(base)]:
            saved = {name: shared_redis.dump(name) for name in foreign}
            for name in foreign:
                shared_redis.delete(name)
                shared_redis.set(name, b"not ours", px=600_000 if expiring else None)
            before = state()
            with pytest.raises(BackendError, match="WRONGTYPE"):
                await storage.set_raw("new", BIG)
            assert state() == before
            for name, dumped in saved.items():
                assert shared_redis.get(name) == b"not ours"
                shared_redis.delete(name)
                if dumped is not None:
                    shared_redis.restore(name, 0, dumped)
        # No own key left to mark (the other four foreign, a stray field '' in the values hash,
        # which no key can be but another client could write): the values hash is marked
        # through its expiry instead.
        values = f"{base}:kv"
        shared_redis.hset(values, "", b"stray")
        if expiring:
            shared_redis.pexpire(values, 600_000)
        saved = {name: shared_redis.dump(name) for name in _names(base)[1:]}
        for name in saved:
            shared_redis.delete(name)
            shared_redis.set(name, b"not ours")
        before = state()
        with pytest.raises(BackendError, match="WRONGTYPE"):
            await storage.set_raw("new", BIG)
        assert state() == before
        for name, dumped in saved.items():
            shared_redis.delete(name)
            if dumped is not None:
                shared_redis.restore(name, 0, dumped)
        shared_redis.hdel(values, "")
        shared_redis.persist(values)
        assert await storage.get_raw("kept") == b"1"
        assert await storage.get_raw("new") is None


@pytest.mark.anyio
async def test_a_write_between_watch_and_exec_sends_the_large_write_through_the_script(
    shared_redis: redis.Redis, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    exchange = redis_module._exchange
    interfered: list[bool] = []

    async def meddling(connection: Any, commands: Any) -> list[Any]:
        if commands[0][0] == "WATCH" and not interfered:
            # Another client writes to the base after the WATCH, before the rest of the packet
            # arrives: the EXEC must abort.
            watched = await exchange(connection, commands[:1])
            shared_redis.zadd(f"{base}:keys", {"other": 0})
            interfered.append(True)
            return watched + await exchange(connection, commands[1:])
        return await exchange(connection, commands)

    monkeypatch.setattr(redis_module, "_exchange", meddling)
    driver = redis_driver(REDIS_URL, base=base)
    scripts = _Scripts(driver)
    async with Storage(driver):
        await driver.set("big", BIG)
    assert interfered == [True]
    assert [sha for sha, _ in scripts.runs] == [redis_module._SET_SHA]
    assert shared_redis.hget(f"{base}:kv", "big") == BIG
    assert shared_redis.zrange(f"{base}:keys", 0, -1) == [b"big", b"other"]
    assert shared_redis.hexists(f"{base}:ver", "big")


@pytest.mark.parametrize(
    "rest",
    [(), ("key",), ("key", b"v" * (redis_module._INLINE + 1), "123"), (b"", 7, "k\u00e9y", b"v")],
)
def test_a_packed_start_and_the_rest_make_the_whole_command(rest: tuple[Any, ...]) -> None:
    start = (b"EVALSHA", redis_module._GET_SHA, b"2", "base:kv", "base:exp")
    head = redis_module._head(start, len(rest))
    assert b"".join(redis_module._packed(rest, head)) == b"".join(
        redis_module._packed((*start, *rest))
    )


@pytest.mark.anyio
async def test_point_scripts_reuse_their_packed_start_and_batches_do_not_keep_one(
    base: str,
) -> None:
    driver = redis_driver(REDIS_URL, base=base)
    async with Storage(driver) as storage:
        await storage.set("a", 1)
        assert await storage.get("a") == 1
        assert await storage.get("a") == 1
        await storage.set_many({f"k{index}": index for index in range(10)})
        await storage.delete_many([f"k{index}" for index in range(10)])
        assert await storage.get_many(["a", "k1"]) == [1, None]
        assert set(driver._heads) == {(redis_module._SET_SHA, 3), (redis_module._GET_SHA, 2)}
