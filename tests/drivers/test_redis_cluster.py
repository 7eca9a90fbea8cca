"""The Redis Cluster driver against a private cluster: the whole suite, layout, WAIT, failover."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from redis.cluster import ClusterNode as SyncClusterNode
from redis.cluster import RedisCluster as SyncRedisCluster

from kvstore import create_storage
from kvstore.conditional import Change
from kvstore.drivers.redis_cluster import (
    RedisClusterDriver,
    bucket_of,
    bucket_stem,
    redis_cluster_driver,
)
from kvstore.errors import BackendUnavailable, ConfigurationError, Conflict
from kvstore.storage import Storage
from kvstore.testing import DriverConformance, DriverFactory
from tests.support.redis_cluster import RedisCluster, running_cluster
from tests.support.servers import free_port


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A cluster of three masters with one replica each, shared by this module's tests."""
    yield from running_cluster(tmp_path_factory.mktemp("cluster"))


@pytest.fixture(scope="module")
def inspect(cluster: RedisCluster) -> Iterator[SyncRedisCluster]:
    """A synchronous cluster client, for looking at what the driver stored."""
    node = SyncClusterNode("127.0.0.1", cluster.ports[0])  # type: ignore[no-untyped-call]
    client = SyncRedisCluster(startup_nodes=[node])
    yield client
    client.close()


def _unique_base(label: str = "t") -> str:
    return f"kvtest_{label}_{uuid.uuid4().hex[:12]}"


class TestRedisClusterDriver(DriverConformance):
    async_backends = ("asyncio",)

    @pytest.fixture
    def driver_factory(self, cluster: RedisCluster) -> DriverFactory:
        base = _unique_base()
        return lambda: redis_cluster_driver(cluster.url, base=base)


class TestRedisClusterDriverOneBucket(DriverConformance):
    """One bucket: every batch and commit is one script, atomic as on a single node."""

    async_backends = ("asyncio",)

    @pytest.fixture
    def driver_factory(self, cluster: RedisCluster) -> DriverFactory:
        base = _unique_base("one")
        return lambda: redis_cluster_driver(cluster.url, base=base, buckets=1)


# -- layout ---------------------------------------------------------------------------------


def test_bucket_tags_cover_the_slot_ranges_in_order() -> None:
    from redis.crc import key_slot

    for buckets in (1, 3, 16, 64):
        slots = [key_slot(bucket_stem("app", i, buckets).encode()) for i in range(buckets)]
        assert slots == sorted(slots), f"{buckets} buckets do not follow the slot ranges"
        assert [slot * buckets // 16384 for slot in slots] == list(range(buckets))


def test_keys_spread_over_the_buckets() -> None:
    counts = Counter(bucket_of(f"user:{i}", 16) for i in range(16000))
    assert set(counts) == set(range(16))
    assert min(counts.values()) > 800, f"a bucket got far fewer keys than 1000: {counts}"


@pytest.mark.anyio
async def test_a_base_spreads_over_every_master(
    cluster: RedisCluster, inspect: SyncRedisCluster
) -> None:
    base = _unique_base("spread")
    async with Storage(redis_cluster_driver(cluster.url, base=base)) as storage:
        await storage.set_many({f"k{i:04d}": i for i in range(2000)})
    holding = set()
    for number in range(16):
        stem = bucket_stem(base, number, 16)
        node = inspect.get_node_from_key(f"{stem}:kv")  # type: ignore[no-untyped-call]
        assert inspect.hlen(f"{stem}:kv") > 0, f"bucket {number} is empty"
        holding.add(node.port)
    assert holding == set(cluster.masters()), "the buckets do not reach every master"


@pytest.mark.anyio
async def test_every_client_must_use_the_recorded_bucket_count(
    cluster: RedisCluster, inspect: SyncRedisCluster
) -> None:
    base = _unique_base("count")
    async with Storage(redis_cluster_driver(cluster.url, base=base, buckets=4)) as storage:
        await storage.set("a", 1)
    assert inspect.get(f"{{{base}}}:meta") == b"buckets=4"
    async with Storage(redis_cluster_driver(cluster.url, base=base, buckets=8)) as other:
        with pytest.raises(ConfigurationError, match="buckets=4"):
            await other.set("b", 2)
        with pytest.raises(ConfigurationError, match="buckets=4"):
            await other.get("a")
    async with Storage(redis_cluster_driver(cluster.url, base=base, buckets=4)) as storage:
        assert [key async for key in storage.keys()] == ["a"]
        await storage.clear()
        assert inspect.get(f"{{{base}}}:meta") == b"buckets=4", "clear() forgot the count"


@pytest.mark.anyio
async def test_a_scan_merges_every_bucket_in_order_across_pages(cluster: RedisCluster) -> None:
    base = _unique_base("merge")
    # Enough keys that each of 4 buckets returns several pages (1000 keys a page).
    wanted = {f"p:{i:05d}": i for i in range(6000)}
    async with Storage(redis_cluster_driver(cluster.url, base=base, buckets=4)) as storage:
        await storage.set_many({**wanted, "o:1": 0, "q:1": 0})
        found = [key async for key in storage.keys("p:")]
        assert found == sorted(wanted)
        await storage.clear("p:")
        assert [key async for key in storage.keys()] == ["o:1", "q:1"]


@pytest.mark.anyio
async def test_a_commit_across_buckets_that_fails_a_check_writes_nothing(
    cluster: RedisCluster,
) -> None:
    base = _unique_base("commit")
    async with Storage(redis_cluster_driver(cluster.url, base=base, buckets=16)) as storage:
        keys = [f"k{i}" for i in range(40)]
        assert len({bucket_of(key, 16) for key in keys}) > 1
        await storage.set("k0", "old")
        version = (await storage.get_versioned_raw("k0")).version  # type: ignore[union-attr]
        changes = [Change.put(key, "new") for key in keys[1:]]
        with pytest.raises(Conflict) as raised:
            await storage.commit([Change.replace("k0", "x", version + 1), *changes])
        assert raised.value.keys == ("k0",)
        assert await storage.get_many(keys) == ["old"] + [None] * 39
        versions = await storage.commit([Change.replace("k0", "x", version), *changes])
        assert len(versions) == 40
        assert all(isinstance(v, int) for v in versions)
        assert await storage.get_many(keys) == ["x"] + ["new"] * 39


# -- configuration --------------------------------------------------------------------------


def test_url_options_are_read() -> None:
    driver = redis_cluster_driver(
        "redis+cluster://h1:7000,h2:7001/?base=app&buckets=32&wait_replicas=1"
        "&operation_timeout=3"
    )
    assert (driver.base, driver.buckets, driver.wait_replicas) == ("app", 32, 1)
    assert driver.operation_timeout == 3.0
    assert driver.where == "h1:7000,h2:7001"


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://h:7000/?buckets=0",
        "redis+cluster://h:7000/?buckets=2000",
        "redis+cluster://h:7000/?wait_replicas=-1",
        "redis+cluster://h:7000/?base=a%7Bb",
        "redis+cluster://h:7000/1",
        "redis+cluster://h:7000/?nonsense=1",
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        redis_cluster_driver(url)


def test_a_setting_given_twice_differently_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="buckets"):
        redis_cluster_driver("redis+cluster://h:7000/?buckets=8", buckets=16)


def test_the_scheme_is_registered(cluster: RedisCluster) -> None:
    storage = create_storage(f"{cluster.url}/?base={_unique_base('url')}")
    assert isinstance(storage.driver, RedisClusterDriver)


@pytest.mark.anyio
async def test_an_unreachable_cluster_is_unavailable_within_the_timeout_without_the_password(
) -> None:
    url = f"redis+cluster://u:s3cret@127.0.0.1:{free_port()}/?operation_timeout=1"
    driver = redis_cluster_driver(url)
    assert "s3cret" not in repr(driver)
    async with Storage(driver) as storage:
        with anyio.fail_after(1 + HANG_SLACK):
            with pytest.raises(BackendUnavailable) as raised:
                await storage.get("a")
    assert raised.value.driver == "redis_cluster"
    assert "s3cret" not in str(raised.value)


# -- durability -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_wait_replicas_acknowledges_once_a_replica_has_the_write(
    cluster: RedisCluster, inspect: SyncRedisCluster
) -> None:
    base = _unique_base("wait")
    driver = redis_cluster_driver(cluster.url, base=base, wait_replicas=1)
    async with Storage(driver) as storage:
        await storage.set("a", 1)
        await storage.set_many({f"k{i}": i for i in range(100)})
        await storage.commit([Change.put("c1", 1), Change.put("c2", 2)])
        assert await storage.get("a") == 1
    # Every master has one replica: asking for two can never be met in time.
    driver = redis_cluster_driver(
        cluster.url, base=base, wait_replicas=2, operation_timeout=1
    )
    async with Storage(driver) as storage:
        with pytest.raises(BackendUnavailable, match="wait_replicas=2") as raised:
            await storage.set("b", 2)
        assert raised.value.driver == "redis_cluster"
        # The documented trade: the write was applied on the master all the same.
        assert await storage.get("b") == 2


# -- failover ---------------------------------------------------------------------------------

OUTAGE_TIMEOUT = 3.0
# How long past its operation_timeout an operation may take before it counts as hanging
# (scheduling on a loaded machine); this bounds the check, it is not a speed claim.
HANG_SLACK = 5.0
WRITERS = 6


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    """A cluster for this test alone: it kills one of its masters."""
    yield from running_cluster(tmp_path)


@pytest.mark.anyio
async def test_a_killed_master_fails_over_without_losing_an_acknowledged_write(
    own_cluster: RedisCluster,
) -> None:
    cluster = own_cluster
    driver = redis_cluster_driver(
        cluster.url, base=_unique_base("failover"), wait_replicas=1,
        operation_timeout=OUTAGE_TIMEOUT,
    )
    acknowledged: dict[str, int] = {}
    unavailable: list[str] = []
    phase = {"promoted": False}  # set once the killed node is back, as a replica
    after_promotion = Counter[int]()
    started, recovered = anyio.Event(), anyio.Event()

    async def bounded(what: str, operation: object) -> object:
        """Run one operation: it succeeds or raises BackendUnavailable, and never hangs."""
        with anyio.move_on_after(OUTAGE_TIMEOUT + HANG_SLACK) as scope:
            try:
                return await operation  # type: ignore[misc]
            except BackendUnavailable as error:
                unavailable.append(f"{what}: {error}")
                return None
        assert not scope.cancelled_caught, (
            f"{what} hung past operation_timeout={OUTAGE_TIMEOUT:g}s (+{HANG_SLACK:g}s slack)"
        )
        return None

    async def writer(number: int, stop: anyio.Event) -> None:
        index = 0
        while not stop.is_set():
            key = f"w{number}:{index:06d}"
            index += 1
            before = len(unavailable)
            await bounded(f"set({key!r})", storage.set(key, index))
            if len(unavailable) == before:
                acknowledged[key] = index
                if len(acknowledged) >= 100:
                    started.set()
                if phase["promoted"]:
                    after_promotion[number] += 1
                    if len(after_promotion) == WRITERS and min(after_promotion.values()) >= 20:
                        recovered.set()

    async def reader(stop: anyio.Event) -> None:
        while not stop.is_set():
            await bounded("keys('w0:')", _count(storage, "w0:"))
            await bounded("get('w1:000000')", storage.get("w1:000000"))

    async with Storage(driver) as storage:
        stop = anyio.Event()
        async with anyio.create_task_group() as group:
            for number in range(WRITERS):
                group.start_soon(writer, number, stop)
            group.start_soon(reader, stop)
            with anyio.fail_after(60):
                await started.wait()
            killed = cluster.masters()[0]
            cluster.kill(killed)
            promoted = await anyio.to_thread.run_sync(cluster.wait_promoted, killed)
            # The killed master, restarted, rejoins as a replica of the one that took over.
            # Until then that master has no replica, so wait_replicas=1 writes to its buckets
            # raise BackendUnavailable (after WAIT's timeout): they are not acknowledged.
            await anyio.to_thread.run_sync(cluster.restart, killed)
            await anyio.to_thread.run_sync(cluster.wait_replica_of, killed, promoted)
            phase["promoted"] = True
            # The same storage object recovers: every writer gets writes through again.
            with anyio.fail_after(60):
                await recovered.wait()
            stop.set()

        keys = sorted(acknowledged)
        values = await storage.get_many(keys)
        missing = [key for key, value in zip(keys, values, strict=True)
                   if value != acknowledged[key]]
        assert not missing, (
            f"{len(missing)} of {len(keys)} writes acknowledged with wait_replicas=1 are gone "
            f"after the failover (first: {missing[:5]})"
        )
        await storage.set("after", 1)
        assert await storage.get("after") == 1


async def _count(storage: Storage, prefix: str) -> int:
    return len([key async for key in storage.keys(prefix)])

