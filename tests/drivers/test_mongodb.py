"""The MongoDB driver on a real socket: the conformance suite, large values, pool, errors.

The server is ``KVSTORE_TEST_MONGODB_URL`` when set, else SecantusDB (a stand-in, not MongoDB;
the run says so): see ``tests/support/mongodb_server.py``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import anyio
import pymongo
import pymongo.uri_parser
import pytest
from bson.datetime_ms import DatetimeMS
from hypothesis import given, settings
from pymongo import monitoring

from kvstore import create_storage
from kvstore.conditional import LEGACY_VERSION, Change
from kvstore.drivers import mongodb
from kvstore.drivers.mongodb import MongoDBDriver, from_url, mongodb_driver
from kvstore.errors import BackendError, BackendUnavailable, ConfigurationError, Conflict
from kvstore.expiry import Meta
from kvstore.storage import Storage
from kvstore.testing import DriverConformance, DriverFactory
from kvstore.testing.clock import TestClock
from tests.support.hostile_urls import MARK, HostileURL, probed_hostile_urls
from tests.support.mongodb_server import MongoDBTarget, SecantusProcess, mongodb_target
from tests.support.old_release import run_old_code
from tests.support.quiet import silent_server
from tests.support.servers import free_port

__all__ = ["mongodb_target"]  # the session fixture, imported so pytest finds it here


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def sync_client(mongodb_target: MongoDBTarget) -> Iterator[pymongo.MongoClient[dict[str, object]]]:
    """A synchronous client for inspection and clean-up."""
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        mongodb_target.url, serverSelectionTimeoutMS=5000
    )
    yield client
    client.close()


@pytest.fixture
def databases(sync_client: pymongo.MongoClient[dict[str, object]]) -> Iterator[list[str]]:
    """Collects the databases a test uses and drops them afterwards."""
    created: list[str] = []
    yield created
    for name in created:
        sync_client.drop_database(name)


def _database(databases: list[str], label: str = "t") -> str:
    name = f"kvtest_{label}_{uuid.uuid4().hex[:12]}"
    databases.append(name)
    return name


_SUITE_OPERATION_TIMEOUT = 120.0


class TestMongoDBDriver(DriverConformance):
    async_backends = ("asyncio",)
    # SecantusDB runs in this process, so its work would count as the driver's scan cost.
    scan_cost_measurable = True

    @pytest.fixture
    def driver_factory(self, mongodb_target: MongoDBTarget, databases: list[str]) -> DriverFactory:
        database = _database(databases)
        # A liveness bound, not the default: the suite's 10,000-key batches can take longer
        # than 10 s on the stand-in when the machine is loaded.
        return lambda: mongodb_driver(
            mongodb_target.url, database, operation_timeout=_SUITE_OPERATION_TIMEOUT
        )


# -- layout ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_one_document_per_key_with_the_key_as_id(
    mongodb_target: MongoDBTarget,
    databases: list[str],
    sync_client: pymongo.MongoClient[dict[str, object]],
) -> None:
    database = _database(databases, "layout")
    async with Storage(mongodb_driver(mongodb_target.url, database, "kv")) as storage:
        await storage.set_many({"a.b": 1, "$where": 2, "a": 3, "^a.*": 4})
        assert [key async for key in storage.keys("a")] == ["a", "a.b"]
        assert [key async for key in storage.keys("^a.")] == ["^a.*"]
    documents = list(sync_client[database]["kv"].find({}).sort("_id", 1))
    assert [document["_id"] for document in documents] == ["$where", "^a.*", "a", "a.b"]
    # The write time ("at") on every write; no expiry field ("exp") without a TTL.
    assert all(set(document) == {"_id", "v", "ver", "at"} for document in documents)
    assert all(isinstance(document["ver"], int) and document["ver"] > 0 for document in documents)
    assert database + "" in sync_client.list_database_names()


# -- large values are chunked -----------------------------------------------------------------


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make values over 1,000 bytes 'large' so the chunk path is exercised cheaply."""
    monkeypatch.setattr(mongodb, "INLINE_LIMIT", 1000)
    monkeypatch.setattr(mongodb, "CHUNK_SIZE", 300)


@pytest.mark.anyio
@pytest.mark.usefixtures("small_chunks")
async def test_large_values_are_chunked_and_replaced_without_leftovers(
    mongodb_target: MongoDBTarget,
    databases: list[str],
    sync_client: pymongo.MongoClient[dict[str, object]],
) -> None:
    database = _database(databases, "chunks")
    chunks = sync_client[database]["storage.chunks"]
    async with Storage(mongodb_driver(mongodb_target.url, database)) as storage:
        first, second = bytes(range(256)) * 8, b"\x07" * 1500
        await storage.set_raw("big", first)
        assert chunks.count_documents({}) == 7
        await storage.set_raw("big", second)
        assert await storage.get_raw("big") == second
        assert chunks.count_documents({}) == 5, "the first value's chunks are removed"
        await storage.set_many_raw({"big": first, "small": b"s", "big2": second})
        assert await storage.get_many_raw(["big2", "small", "big", "none"]) == [
            second,
            b"s",
            first,
            None,
        ]
        # Overwriting with a small value or deleting leaves chunks that clear() removes.
        await storage.set_raw("big", b"tiny")
        await storage.delete("big2")
        assert await storage.get_raw("big") == b"tiny"
        assert [key async for key in storage.keys()] == ["big", "small"]
        await storage.clear()
        assert chunks.count_documents({}) == 0


@pytest.mark.anyio
@pytest.mark.usefixtures("small_chunks")
async def test_readers_never_see_a_mix_of_two_large_values(
    mongodb_target: MongoDBTarget, databases: list[str]
) -> None:
    database = _database(databases, "mix")
    candidates = [bytes([task]) * 2000 for task in range(6)]
    async with Storage(mongodb_driver(mongodb_target.url, database)) as storage:

        async def writer(value: bytes) -> None:
            for _ in range(4):
                await storage.set_raw("contended", value)

        async def reader() -> None:
            for _ in range(8):
                seen = await storage.get_raw("contended")
                assert seen is None or seen in candidates

        async with anyio.create_task_group() as group:
            for value in candidates:
                group.start_soon(writer, value)
            for _ in range(4):
                group.start_soon(reader)
        assert await storage.get_raw("contended") in candidates


# -- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("database", "collection"),
    [
        ("", "c"),
        ("a.b", "c"),
        ("a b", "c"),
        ("a$", "c"),
        ("d", ""),
        ("d", "a$b"),
        ("d", "system.x"),
        ("x" * 64, "c"),
    ],
)
def test_invalid_names_are_refused(database: str, collection: str) -> None:
    with pytest.raises(ConfigurationError):
        mongodb_driver("mongodb://127.0.0.1", database, collection)


def test_urls_map_to_the_driver() -> None:
    storage = create_storage("mongodb://user:pw@db.example:27018/tenant")
    driver = storage.driver
    assert isinstance(driver, MongoDBDriver)
    assert driver.database_name == "tenant"
    assert driver.collection_name == "storage"
    assert driver.where == "db.example:27018/tenant"
    with pytest.raises(ConfigurationError):
        mongodb_driver("http://db.example")


# -- pool, errors, extras --------------------------------------------------------------------


class _PoolCounter(monitoring.ConnectionPoolListener):
    """Counts open connections of the client's pools."""

    def __init__(self) -> None:
        self.open = 0
        self.peak = 0

    def connection_created(self, event: monitoring.ConnectionCreatedEvent) -> None:
        self.open += 1
        self.peak = max(self.peak, self.open)

    def connection_closed(self, event: monitoring.ConnectionClosedEvent) -> None:
        self.open -= 1

    def pool_created(self, event: monitoring.PoolCreatedEvent) -> None: ...
    def pool_ready(self, event: monitoring.PoolReadyEvent) -> None: ...
    def pool_cleared(self, event: monitoring.PoolClearedEvent) -> None: ...
    def pool_closed(self, event: monitoring.PoolClosedEvent) -> None: ...
    def connection_ready(self, event: monitoring.ConnectionReadyEvent) -> None: ...
    def connection_check_out_started(
        self, event: monitoring.ConnectionCheckOutStartedEvent
    ) -> None: ...
    def connection_check_out_failed(
        self, event: monitoring.ConnectionCheckOutFailedEvent
    ) -> None: ...
    def connection_checked_out(self, event: monitoring.ConnectionCheckedOutEvent) -> None: ...
    def connection_checked_in(self, event: monitoring.ConnectionCheckedInEvent) -> None: ...


# A liveness bound for the load test, not a speed claim: on a loaded 2-core machine, 200 tasks
# queueing for 6 connections may each wait a long time for their turn.
_LOAD_OPERATION_TIMEOUT = 300.0


@pytest.mark.anyio
async def test_200_concurrent_tasks_lose_nothing_and_stay_within_the_pool(
    mongodb_target: MongoDBTarget, databases: list[str]
) -> None:
    pool_size = 6
    counter = _PoolCounter()
    driver = mongodb_driver(
        mongodb_target.url,
        _database(databases, "load"),
        pool_size=pool_size,
        operation_timeout=_LOAD_OPERATION_TIMEOUT,
        event_listeners=[counter],
    )
    storage = Storage(driver)

    async def worker(task: int) -> None:
        for index in range(5):
            key = f"task:{task:03d}:{index}"
            await storage.set(key, [task, index])
            assert await storage.get(key) == [task, index]
        await storage.set_many({f"batch:{task:03d}:{index}": task for index in range(3)})

    try:
        async with anyio.create_task_group() as group:
            for task in range(200):
                group.start_soon(worker, task)
        keys = [key async for key in storage.keys("task:")]
        assert len(keys) == 200 * 5
        assert await storage.get_many(keys) == [[int(k[5:8]), int(k[9:])] for k in keys]
        assert len([key async for key in storage.keys("batch:")]) == 200 * 3
    finally:
        await storage.close()
    # Application connections only: server monitoring uses connections outside the pool.
    assert counter.peak > 0
    assert counter.peak <= pool_size
    assert counter.open == 0


@pytest.mark.anyio
async def test_cancelled_waiters_leave_the_pool_usable(
    mongodb_target: MongoDBTarget, databases: list[str]
) -> None:
    # Many tasks queue for two connections and are cancelled while they wait or run (the path
    # that, inside PyMongo's pool on Python 3.11, left its lock held and hung every later
    # operation, close() and the event loop's teardown). Afterwards the same storage works and
    # closes.
    storage = Storage(
        mongodb_driver(mongodb_target.url, _database(databases, "cancel"), pool_size=2)
    )
    try:
        await storage.set("seed", 0)
        for round_ in range(5):
            with anyio.move_on_after(0.05 * (round_ + 1)):
                async with anyio.create_task_group() as group:
                    for task in range(50):
                        group.start_soon(storage.set, f"c:{round_}:{task}", task)
        await storage.set("after", 1)
        assert await storage.get_many(["seed", "after"]) == [0, 1]
    finally:
        with anyio.fail_after(_LOAD_OPERATION_TIMEOUT):
            await storage.close()


@pytest.mark.anyio
async def test_unreachable_server_is_unavailable_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="kvstore.mongodb")
    secret = "Sup3r-s3cret-pw"
    port = free_port()
    storage = Storage(
        mongodb_driver(
            f"mongodb://admin:{secret}@127.0.0.1:{port}/?authSource=admin",
            "db",
            server_selection_timeout=0.5,
            connect_timeout=0.5,
        )
    )
    for operation in (
        lambda: storage.get("a"),
        lambda: storage.set("a", 1),
        lambda: storage.set_many({"a": 1}),
        lambda: anext(aiter(storage.keys())),
    ):
        with pytest.raises(BackendUnavailable) as raised:
            await operation()
        assert secret not in str(raised.value)
        assert raised.value.driver == "mongodb"
        assert f"127.0.0.1:{port}" in str(raised.value)
    await storage.close()
    # Each failure was logged on kvstore.mongodb (PyMongo reconnects later), without the secret.
    logged = [record.getMessage() for record in caplog.records if record.name == "kvstore.mongodb"]
    assert any("reconnects" in message for message in logged)
    assert not any(secret in message for message in logged)


@pytest.mark.anyio
async def test_server_errors_are_backend_errors(
    mongodb_target: MongoDBTarget,
    databases: list[str],
    sync_client: pymongo.MongoClient[dict[str, object]],
) -> None:
    database = _database(databases, "err")
    # A validator that refuses every document: the server rejects the write.
    sync_client[database].create_collection("kv", validator={"never": {"$exists": True}})
    async with Storage(mongodb_driver(mongodb_target.url, database, "kv")) as storage:
        with pytest.raises(BackendError) as raised:
            await storage.set("a", 1)
        assert not isinstance(raised.value, BackendUnavailable)


# -- URLs: PyMongo's options, kvstore's settings, refusals that never leak --------------------


def test_url_options_reach_the_client() -> None:
    driver = mongodb_driver(
        "mongodb://app:p%2Fw%40rd@a.example:27018,[::1]:27019/tenant?replicaSet=rs0"
        "&authSource=admin&maxPoolSize=7&connectTimeoutMS=1500&readPreference=secondaryPreferred",
        "tenant",
    )
    assert (driver.pool_size, driver.connect_timeout, driver.operation_timeout) == (7, 1.5, 10.0)
    assert driver.where == "a.example:27018,[::1]:27019/tenant"
    assert "p/w@rd" not in repr(driver)
    assert "p%2Fw" not in repr(driver)
    parsed = pymongo.uri_parser.parse_uri(driver._connection_string)
    assert parsed["password"] == "p/w@rd"
    assert parsed["nodelist"] == [("a.example", 27018), ("::1", 27019)]
    assert parsed["options"]["replicaSet"] == "rs0"
    assert parsed["options"]["authSource"] == "admin"


def test_kvstore_names_and_defaults() -> None:
    driver = mongodb_driver("mongodb://h/db?pool_size=4&connect_timeout=2&operation_timeout=3")
    assert (driver.pool_size, driver.connect_timeout, driver.operation_timeout) == (4, 2.0, 3.0)
    default = mongodb_driver("mongodb://h/db")
    assert (default.pool_size, default.connect_timeout, default.operation_timeout) == (
        50,
        5.0,
        10.0,
    )
    assert mongodb_driver("mongodb://h/db?socketTimeoutMS=2500").operation_timeout == 2.5


@pytest.mark.parametrize(
    ("url", "arguments"),
    [
        ("mongodb://h/db?pool_size=3&maxPoolSize=4", {}),
        ("mongodb://h/db?pool_size=3", {"pool_size": 4}),
        ("mongodb://h/db", {"pool_size": 3, "maxPoolSize": 4}),
        ("mongodb://h/db", {"pool_size": 3, "max_pool_size": 4}),
        ("mongodb://h/db?connect_timeout=2&connectTimeoutMS=3000", {}),
        ("mongodb://h/db?operation_timeout=2&socketTimeoutMS=3000", {}),
        ("mongodb://h/db?operation_timeout=2&timeoutMS=3000", {}),
        ("mongodb://h/db?operation_timeout=2", {"operation_timeout": 3}),
    ],
)
def test_one_setting_given_twice_differently_is_refused(
    url: str, arguments: dict[str, float]
) -> None:
    with pytest.raises(ConfigurationError, match="more than once"):
        mongodb_driver(url, **arguments)  # type: ignore[arg-type]


def test_the_same_value_in_both_places_is_accepted() -> None:
    driver = mongodb_driver("mongodb://h/db?pool_size=5&maxPoolSize=5", pool_size=5)
    assert driver.pool_size == 5


HOSTILE_MONGODB_URLS = [
    "mongodb://u:pw@127.0.0.1:70000/db",  # port out of range
    "mongodb://u:pw@127.0.0.1:0/db",
    "mongodb://u:pw@127.0.0.1:27o17/db",
    "mongodb://u:pw@[::1/db",  # unclosed IPv6
    "mongodb://u:pw@[::zz]:27017/db",  # not an IPv6 address
    "mongodb://u:pw@::1:27017/db",  # IPv6 without brackets
    "mongodb://u:pw@a:1,,b:2/db",  # empty host in the list
    "mongodb://u:pw@/db",  # no host
    "mongodb://u:pw@127.0.0.1/db?bogus=1",  # unknown option
    "mongodb://u:pw@127.0.0.1/db?replicaset=a&replicaSet=b",  # twice, differing in case
    "mongodb://u:pw@127.0.0.1/db?maxPoolSize=lots",
    "mongodb://u:pw@127.0.0.1/db?pool_size=0",
    "mongodb://u:pw@127.0.0.1/db?connectTimeoutMS=-5",
    "mongodb://u:pw@127.0.0.1/db?socketTimeoutMS=0",  # 0: wait forever
    "mongodb://u:pw@127.0.0.1/db?timeoutMS=0",
    "mongodb://u:pw@127.0.0.1/db?readPreference=sometimes",
    "mongodb://u:pw@127.0.0.1/db?tls=true&ssl=false",
    "mongodb://u:Sup3r/s3cret@127.0.0.1/db",  # unencoded '/' in the password
    "mongodb://u:Sup3r@s3cret@127.0.0.1/db",  # unencoded '@' in the password
    "mongodb://u:Sup3r:s3cret@127.0.0.1/db?authMechanismProperties=AWS_SESSION_TOKEN:s3cret&x=1",
    "mongodb+srv://u:pw@cluster.example:27017/db",  # SRV takes no port
    "mongodb+srv://u:pw@a.example,b.example/db",  # SRV takes one host
    "mongodb://u:pw@127.0.0.1/db#frag",
    "http://u:pw@127.0.0.1/db",
]
# from_url also refuses an ambiguous database.
HOSTILE_MONGODB_FROM_URLS = [
    "mongodb://u:pw@127.0.0.1/db/extra",
    "mongodb://u:pw@127.0.0.1/db.collection",
]


@pytest.mark.parametrize("url", HOSTILE_MONGODB_URLS + HOSTILE_MONGODB_FROM_URLS)
def test_malformed_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        create_storage(url) if url.startswith("mongodb") else mongodb_driver(url)
    for secret in ("Sup3r", "s3cret"):
        assert secret not in str(raised.value)


@settings(max_examples=150, deadline=None)
@given(probed_hostile_urls(("mongodb", "mongodb+srv")))
def test_hostile_passwords_never_show(drawn: tuple[HostileURL, bool]) -> None:
    case, probe = drawn
    refused: ConfigurationError | None = None
    try:
        driver = from_url(case.url)
    except ConfigurationError as error:
        refused = error
    if refused is not None:
        assert MARK not in str(refused)
        assert MARK not in repr(refused)
        assert probe or case.spelling != "encoded", "an encoded password must be accepted"
        return
    assert not probe, "an unknown option must be refused"
    assert MARK not in repr(driver)
    assert MARK not in driver.where
    if case.spelling == "encoded" and case.scheme == "mongodb":
        assert pymongo.uri_parser.parse_uri(driver._connection_string)["password"] == (
            case.password
        )


@pytest.mark.anyio
async def test_unreachable_server_is_reported_within_the_connect_timeout_and_silently(
    capfd: pytest.CaptureFixture[str],
) -> None:
    # Nothing listens on the port. The bound is generous: a liveness check, not a speed claim.
    storage = Storage(from_url(f"mongodb://u:pw@127.0.0.1:{free_port()}/db?connect_timeout=1"))
    try:
        with anyio.fail_after(60), pytest.raises(BackendUnavailable):
            await storage.get("a")
    finally:
        await storage.close()
    assert capfd.readouterr().err == ""


@pytest.mark.anyio
async def test_a_server_that_never_answers_is_unavailable_within_the_timeouts() -> None:
    # The kernel completes the TCP handshake; nothing ever answers. The bound is generous: a
    # liveness check, not a speed claim.
    with silent_server() as port:
        storage = Storage(
            from_url(f"mongodb://127.0.0.1:{port}/db?connect_timeout=1&operation_timeout=2")
        )
        try:
            with anyio.fail_after(60), pytest.raises(BackendUnavailable):
                await storage.get("a")
            with anyio.fail_after(60), pytest.raises(BackendUnavailable):
                await storage.set("a", 1)
        finally:
            with anyio.fail_after(60):
                await storage.close()


def test_a_url_without_a_database_uses_agentx() -> None:
    assert from_url("mongodb://127.0.0.1:1/?pool_size=2").database_name == "agentx"


# -- conditional writes -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_conditional_writes_are_filtered_operations_that_change_nothing_on_conflict(
    mongodb_target: MongoDBTarget,
    databases: list[str],
    sync_client: pymongo.MongoClient[dict[str, object]],
) -> None:
    database = _database(databases, "cond")
    collection = sync_client[database]["kv"]
    async with Storage(mongodb_driver(mongodb_target.url, database, "kv")) as storage:
        first = await storage.create("k", 1)
        stored = collection.find_one({"_id": "k"}, {"at": 0})
        assert stored == {"_id": "k", "v": b"1", "ver": first}
        with pytest.raises(Conflict) as raised:
            await storage.create("k", 2)
        assert raised.value.keys == ("k",)
        second = await storage.replace("k", 2, first)
        assert second not in (first, LEGACY_VERSION)
        for stale in (first, LEGACY_VERSION):
            with pytest.raises(Conflict):
                await storage.replace("k", 3, stale)
            with pytest.raises(Conflict):
                await storage.delete_if("k", stale)
        assert await storage.get_versioned("k") == (2, second)
        await storage.set("k", 4)  # an unconditional write changes the version too
        third = (await storage.get_versioned("k") or pytest.fail("k is gone")).version
        assert third not in (first, second, LEGACY_VERSION)
        await storage.delete_if("k", third)
        assert await storage.get_versioned("k") is None
        with pytest.raises(Conflict):
            await storage.replace("k", 5, third)
        assert collection.count_documents({}) == 0


@pytest.mark.anyio
async def test_a_store_written_before_versions_reads_at_legacy_version_and_upgrades_in_place(
    mongodb_target: MongoDBTarget,
    databases: list[str],
    sync_client: pymongo.MongoClient[dict[str, object]],
) -> None:
    database = _database(databases, "legacy")
    # The base checkout's own driver writes the collection, small values and a chunked one.
    run_old_code(
        "import sys, anyio\n"
        "from kvstore.drivers import mongodb\n"
        "from kvstore.storage import Storage\n"
        "mongodb.INLINE_LIMIT, mongodb.CHUNK_SIZE = 1000, 300\n"
        "async def main():\n"
        "    async with Storage(mongodb.mongodb_driver(sys.argv[1], sys.argv[2], 'kv')) as s:\n"
        "        await s.set_many({'a': 1, 'b': 2, 'c': 3, 'counter': 0})\n"
        "        await s.set_raw('big', b'x' * 2500)\n"
        "anyio.run(main)\n",
        mongodb_target.url,
        database,
    )
    collection = sync_client[database]["kv"]
    assert collection.count_documents({"ver": {"$exists": True}}) == 0, "the old layout"
    async with Storage(mongodb_driver(mongodb_target.url, database, "kv")) as storage:
        assert await storage.get_versioned("a") == (1, LEGACY_VERSION)
        assert await storage.get_versioned_raw("big") == (b"x" * 2500, LEGACY_VERSION)
        with pytest.raises(Conflict):
            await storage.create("a", 10)
        with pytest.raises(Conflict):
            await storage.replace("a", 10, 12345)
        version = await storage.replace("a", 10, LEGACY_VERSION)
        assert await storage.get_versioned("a") == (10, version)
        with pytest.raises(Conflict):
            await storage.replace("a", 11, LEGACY_VERSION)  # no longer at the legacy version
        await storage.delete_if("b", LEGACY_VERSION)
        results = await storage.commit([Change.check("c", LEGACY_VERSION), Change.put("d", 4)])
        assert results == [None, await _version(storage, "d")]
        assert await storage.update("counter", lambda n: int(n or 0) + 1) == 1
        assert sorted([key async for key in storage.keys()]) == ["a", "big", "c", "counter", "d"]
    # Untouched documents were not rewritten: the upgrade is reading a missing field as 0.
    assert set(collection.find_one({"_id": "c"}) or {}) == {"_id", "v"}


async def _version(storage: Storage, key: str) -> int:
    found = await storage.get_versioned_raw(key)
    assert found is not None
    return found.version


@pytest.mark.anyio
async def test_concurrent_updates_of_one_counter_lose_nothing(
    mongodb_target: MongoDBTarget, databases: list[str]
) -> None:
    tasks, rounds = 10, 20
    driver = mongodb_driver(mongodb_target.url, _database(databases, "counter"), pool_size=10)
    async with Storage(driver) as storage:

        async def worker() -> None:
            for _ in range(rounds):
                # Ten writers on one key: a generous bound on retries, so that the test is
                # about lost updates, not about how unlucky one task can be.
                await storage.update("counter", lambda n: (n or 0) + 1, attempts=1000)

        async with anyio.create_task_group() as group:
            for _ in range(tasks):
                group.start_soon(worker)
        assert await storage.get("counter") == tasks * rounds


@pytest.mark.anyio
async def test_racing_creates_have_exactly_one_winner(
    mongodb_target: MongoDBTarget, databases: list[str]
) -> None:
    driver = mongodb_driver(mongodb_target.url, _database(databases, "create"), pool_size=8)
    async with Storage(driver) as storage:

        async def creator(task: int, key: str, won: list[tuple[int, int]]) -> None:
            try:
                won.append((task, await storage.create(key, task)))
            except Conflict:
                return

        for round_ in range(10):
            key, won = f"race:{round_}", list[tuple[int, int]]()
            async with anyio.create_task_group() as group:
                for task in range(8):
                    group.start_soon(creator, task, key, won)
            assert len(won) == 1
            assert await storage.get_versioned(key) == won[0]


@pytest.mark.anyio
async def test_a_commit_of_several_changes_checks_all_before_writing_any(
    mongodb_target: MongoDBTarget, databases: list[str]
) -> None:
    async with Storage(mongodb_driver(mongodb_target.url, _database(databases, "all"))) as s:
        a = await s.create("a", 1)
        b = await s.create("b", 2)
        with pytest.raises(Conflict) as raised:
            await s.commit(
                [
                    Change.replace("a", 10, a),
                    Change.put("c", 30),
                    Change.replace("b", 20, a),  # stale
                    Change.create("a2", 0),
                    Change.check("z", 5),  # z is absent
                ]
            )
        assert set(raised.value.keys) == {"b", "z"}
        assert await s.get_many(["a", "b", "c", "a2"]) == [1, 2, None, None]
        versions = await s.commit(
            [Change.replace("a", 10, a), Change.put("c", 30), Change.delete("b", b),
             Change.check("z", None), Change.create("d", 4)]
        )
        assert versions[1:4] == [await _version(s, "c"), None, None]
        assert versions[0] == await _version(s, "a")
        assert versions[4] == await _version(s, "d")
        assert await s.get_many(["a", "b", "c", "d"]) == [10, None, 30, 4]


@pytest.mark.anyio
async def test_interference_during_a_commit_stops_it_leaving_earlier_conditional_changes(
    mongodb_target: MongoDBTarget,
    databases: list[str],
    sync_client: pymongo.MongoClient[dict[str, object]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What the class docstring promises when another client writes a key after the commit
    # checked it: the conditional changes before that key stay, it and everything after
    # (unconditional changes included) are not applied, and Conflict names it.
    database = _database(databases, "partial")
    driver = mongodb_driver(mongodb_target.url, database, "kv")
    async with Storage(driver) as s:
        a, b = await s.create("a", 1), await s.create("b", 2)
        c = await s.create("c", 3)
        checked = driver._versions

        async def check_then_interfere(*arguments: object) -> dict[str, int]:
            found = await checked(*arguments)  # type: ignore[arg-type]
            sync_client[database]["kv"].replace_one({"_id": "b"}, {"_id": "b", "v": b"99"})
            return found

        monkeypatch.setattr(driver, "_versions", check_then_interfere)
        with pytest.raises(Conflict) as raised:
            await s.commit(
                [
                    Change.put("free", 0),
                    Change.replace("a", 10, a),
                    Change.replace("b", 20, b),
                    Change.replace("c", 30, c),
                ]
            )
        assert raised.value.keys == ("b",)
        assert await s.get_many(["free", "a", "b", "c"]) == [None, 10, 99, 3]


@pytest.mark.anyio
@pytest.mark.usefixtures("small_chunks")
async def test_conditional_writes_of_large_values_leave_no_stray_chunks(
    mongodb_target: MongoDBTarget,
    databases: list[str],
    sync_client: pymongo.MongoClient[dict[str, object]],
) -> None:
    database = _database(databases, "bigcond")
    chunks = sync_client[database]["storage.chunks"]
    big, bigger = b"a" * 1500, b"b" * 2000  # 5 and 7 chunks of 300 bytes
    async with Storage(mongodb_driver(mongodb_target.url, database)) as s:
        first = await s.create_raw("big", big)
        with pytest.raises(Conflict):
            await s.create_raw("big", bigger)
        with pytest.raises(Conflict):
            await s.replace_raw("big", bigger, first + 1)
        assert chunks.count_documents({}) == 5, "a refused write removes its chunks"
        assert await s.get_versioned_raw("big") == (big, first)
        second = await s.replace_raw("big", bigger, first)
        assert await s.get_versioned_raw("big") == (bigger, second)
        assert chunks.count_documents({}) == 7, "the replaced value's chunks are removed"
        await s.delete_if("big", second)
        assert await s.get_raw("big") is None


# -- expiry -------------------------------------------------------------------------------------
#
# The driver reads the client's clock (see MongoDBDriver's docstring): these tests check that a
# read filters by it at once, that purges remove documents physically (seen with raw PyMongo),
# and that documents from before expiry read as never expiring. Waits are for real instants
# (TestClock.pass_instant), never sleeps.

_SHORT_TTL = 0.5
_LONG_TTL = 60.0
_real_clock = TestClock(manual=False)


@pytest.fixture(scope="module")
def unswept_url(
    mongodb_target: MongoDBTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A stand-in of this module's own whose TTL monitor never runs, so that whatever removes
    an expired document in a test is the driver's purge. (MongoDB's monitor cannot be stopped
    from a client: against a real server these tests are skipped.)"""
    if mongodb_target.real:
        pytest.skip("MongoDB's TTL monitor may remove expired documents before the purge does")
    directory = tmp_path_factory.mktemp("secantus-unswept")
    (directory / "secantusd.toml").write_text("[storage]\nttl_sweep_seconds = 0\n")
    with SecantusProcess(directory) as server:
        yield f"{server.url}?retryWrites=false"


@pytest.fixture
def unswept(unswept_url: str) -> Iterator[tuple[str, pymongo.MongoClient[dict[str, Any]]]]:
    """The unswept server's URL and a raw client on it; each test's databases are dropped."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        unswept_url, serverSelectionTimeoutMS=5000
    )
    before = set(client.list_database_names())
    yield unswept_url, client
    for name in set(client.list_database_names()) - before:
        client.drop_database(name)
    client.close()


def _expired_ids(collection: pymongo.collection.Collection[dict[str, Any]]) -> list[str]:
    """The ids of the documents whose expiry has passed on this machine's clock, raw."""
    now = DatetimeMS(round(time.time() * 1000))
    return sorted(str(d["_id"]) for d in collection.find({"exp": {"$lte": now}}, {"_id": 1}))


@pytest.mark.anyio
async def test_expiring_writes_store_dates_and_create_a_sparse_ttl_index(
    mongodb_target: MongoDBTarget,
    databases: list[str],
    sync_client: pymongo.MongoClient[dict[str, object]],
) -> None:
    database = _database(databases, "ttlidx")
    collection = sync_client[database]["kv"]
    async with Storage(mongodb_driver(mongodb_target.url, database, "kv")) as storage:
        await storage.set("plain", 1)
        # The no-TTL path creates nothing: the index comes with the first expiring write.
        assert mongodb.EXPIRY_INDEX not in collection.index_information()
        before = time.time()
        await storage.set("ttl", 2, ttl=_LONG_TTL)
        after = time.time()
    index = collection.index_information()[mongodb.EXPIRY_INDEX]
    assert index["key"] == [("exp", 1)]
    assert (index["expireAfterSeconds"], index["sparse"]) == (0, True)
    plain = collection.find_one({"_id": "plain"})
    expiring = collection.find_one({"_id": "ttl"})
    assert plain is not None
    assert expiring is not None
    assert "exp" not in plain
    assert isinstance(expiring["exp"], datetime)
    assert isinstance(expiring["at"], datetime)
    written = expiring["at"].replace(tzinfo=UTC).timestamp()
    assert before - 0.002 <= written <= after + 0.002, "the write time is the client's clock"
    expires = expiring["exp"].replace(tzinfo=UTC).timestamp()
    assert expires - written == pytest.approx(_LONG_TTL, abs=0.0005)


@pytest.mark.anyio
async def test_reads_filter_on_the_clients_clock_without_waiting_for_the_ttl_monitor(
    mongodb_target: MongoDBTarget,
    databases: list[str],
    sync_client: pymongo.MongoClient[dict[str, object]],
) -> None:
    database = _database(databases, "clock")
    collection = sync_client[database]["kv"]
    now = round(time.time() * 1000)
    # Documents as the driver writes them, one expired a second ago (a TTL monitor has not
    # run: it runs every 60 s), one expiring in a minute, one with a null expiry.
    collection.insert_many(
        [
            {
                "_id": "past",
                "v": b"1",
                "ver": 7,
                "at": DatetimeMS(now - 5000),
                "exp": DatetimeMS(now - 1000),
            },
            {
                "_id": "future",
                "v": b"2",
                "ver": 8,
                "at": DatetimeMS(now),
                "exp": DatetimeMS(now + 60_000),
            },
            {"_id": "null", "v": b"3", "ver": 9, "at": DatetimeMS(now), "exp": None},
        ]
    )
    async with Storage(mongodb_driver(mongodb_target.url, database, "kv")) as storage:
        assert await storage.get("past") is None
        assert await storage.get_many(["past", "future", "null"]) == [None, 2, 3]
        assert [key async for key in storage.keys()] == ["future", "null"]
        assert await storage.get_meta("past") is None
        assert await storage.expire("past", 30) is False
        meta = await storage.get_meta("future")
        assert meta is not None
        assert meta.expires_at == (now + 60_000) / 1000
        assert (meta.written_at, meta.version, meta.size) == (now / 1000, 8, 1)
        null = await storage.get_meta("null")
        assert null is not None
        assert null.expires_at is None
        # A create writes over the expired document; its old fields are gone.
        await storage.create("past", 4)
    recreated = collection.find_one({"_id": "past"})
    assert recreated is not None
    assert "exp" not in recreated


@pytest.mark.anyio
async def test_purge_expired_removes_documents_physically_and_bounded(
    unswept: tuple[str, pymongo.MongoClient[dict[str, Any]]],
) -> None:
    url, client = unswept
    collection = client["purge"]["kv"]
    async with Storage(mongodb_driver(url, "purge", "kv")) as storage:
        await storage.set_many({f"gone:{n:02}": n for n in range(25)}, ttl=_SHORT_TTL)
        deadline = time.time() + _SHORT_TTL
        await storage.set_many({f"live:{n}": n for n in range(3)})
        await storage.set("long", 1, ttl=_LONG_TTL)
        await _real_clock.pass_instant(deadline)
        assert len(_expired_ids(collection)) == 25, "nothing removes them before the purge"
        assert await storage.purge_expired(limit=10) == 10
        assert len(_expired_ids(collection)) == 15
        assert await storage.purge_expired() == 15
        assert await storage.purge_expired() == 0
        assert _expired_ids(collection) == []
        remaining = sorted(str(d["_id"]) for d in collection.find({}, {"_id": 1}))
        assert remaining == ["live:0", "live:1", "live:2", "long"]


@pytest.mark.anyio
async def test_expiring_writes_purge_a_small_batch_at_most_once_per_interval(
    unswept: tuple[str, pymongo.MongoClient[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, client = unswept
    collection = client["auto"]["kv"]
    # An interval no test outlasts, so that which writes purge does not depend on timing.
    monkeypatch.setattr(mongodb, "AUTO_PURGE_INTERVAL", 3600.0)
    async with (
        Storage(mongodb_driver(url, "auto", "kv")) as writer,
        Storage(mongodb_driver(url, "auto", "kv")) as trigger,
    ):
        await writer.set_many({f"a:{n:02}": n for n in range(20)}, ttl=_SHORT_TTL)
        await _real_clock.pass_instant(time.time() + _SHORT_TTL)
        assert len(_expired_ids(collection)) == 20
        await trigger.set("t:1", 1, ttl=_LONG_TTL)  # the trigger's first expiring write
        assert _expired_ids(collection) == [], "the first expiring write purged the batch"
        await writer.set_many({f"b:{n:02}": n for n in range(10)}, ttl=_SHORT_TTL)
        await _real_clock.pass_instant(time.time() + _SHORT_TTL)
        await trigger.set("t:2", 2, ttl=_LONG_TTL)
        await trigger.expire("t:1", _LONG_TTL)
        await trigger.set("plain", 3)  # a write without a TTL never purges
        assert len(_expired_ids(collection)) == 10, "no second purge within the interval"
        assert await trigger.purge_expired() == 10
    # The batch is small: a purge piggy-backed on a write never takes more than this.
    assert mongodb.AUTO_PURGE_LIMIT <= 100


@pytest.mark.anyio
@pytest.mark.usefixtures("small_chunks")
async def test_purging_an_expired_large_value_removes_its_chunks(
    unswept: tuple[str, pymongo.MongoClient[dict[str, Any]]],
) -> None:
    url, client = unswept
    chunks = client["bigttl"]["storage.chunks"]
    async with Storage(mongodb_driver(url, "bigttl")) as storage:
        await storage.set_raw("big", b"x" * 1500, ttl=_SHORT_TTL)
        deadline = time.time() + _SHORT_TTL
        await storage.set_raw("kept", b"y" * 1500)
        meta = await storage.get_meta("big")
        assert meta is not None
        assert meta.size == 1500
        assert chunks.count_documents({}) == 10
        await _real_clock.pass_instant(deadline)
        assert await storage.get_raw("big") is None
        assert await storage.purge_expired() == 1
        assert chunks.count_documents({}) == 5
        assert await storage.get_raw("kept") == b"y" * 1500


@pytest.mark.anyio
@pytest.mark.usefixtures("small_chunks")
async def test_documents_from_before_expiry_never_expire_and_gain_ttls(
    mongodb_target: MongoDBTarget,
    databases: list[str],
    sync_client: pymongo.MongoClient[dict[str, object]],
) -> None:
    database = _database(databases, "preexp")
    collection = sync_client[database]["kv"]
    chunks = sync_client[database]["kv.chunks"]
    # The layout main wrote before expiry: no "at", no "exp", no "z" on a large value; and one
    # document from before versions too.
    collection.insert_many(
        [
            {"_id": "a", "v": b"1", "ver": 11},
            {"_id": "b", "v": b"22", "ver": 12},
            {"_id": "oldest", "v": b"3"},
            {"_id": "big", "g": "0" * 24, "n": 2, "ver": 13},
        ]
    )
    chunks.insert_many(
        [
            {"_id": f"{'0' * 24}:{index:06d}", "k": "big", "d": b"z" * size}
            for index, size in enumerate((300, 200))
        ]
    )
    async with Storage(mongodb_driver(mongodb_target.url, database, "kv")) as storage:
        assert [key async for key in storage.keys()] == ["a", "b", "big", "oldest"]
        assert await storage.get_many(["a", "b", "oldest"]) == [1, 22, 3]
        metas = {key: await storage.get_meta(key) for key in ("a", "b", "oldest", "big")}
        assert metas == {
            "a": Meta(size=1, written_at=None, expires_at=None, version=11),
            "b": Meta(size=2, written_at=None, expires_at=None, version=12),
            "oldest": Meta(size=1, written_at=None, expires_at=None, version=LEGACY_VERSION),
            "big": Meta(size=500, written_at=None, expires_at=None, version=13),
        }
        assert await storage.expire("a", _SHORT_TTL) is True
        deadline = time.time() + _SHORT_TTL
        assert await storage.expire("b", _LONG_TTL) is True
        await storage.set("oldest", 4, ttl=_LONG_TTL)
        b_meta = await storage.get_meta("b")
        assert b_meta is not None
        assert (b_meta.written_at, b_meta.version) == (None, 12), "expire() rewrote nothing else"
        oldest = await storage.get_meta("oldest")
        assert oldest is not None
        assert oldest.written_at is not None
        assert oldest.expires_at is not None
        await _real_clock.pass_instant(deadline)
        assert await storage.get("a") is None
        assert [key async for key in storage.keys()] == ["b", "big", "oldest"]


class _CommandCounter(monitoring.CommandListener):
    """Records the name of every command the client sends."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None: ...
    def failed(self, event: monitoring.CommandFailedEvent) -> None: ...


@pytest.mark.anyio
async def test_get_meta_is_one_find_and_sends_no_value(
    mongodb_target: MongoDBTarget, databases: list[str]
) -> None:
    counter = _CommandCounter()
    driver = mongodb_driver(
        mongodb_target.url, _database(databases, "meta"), event_listeners=[counter]
    )
    async with Storage(driver) as storage:
        await storage.set_raw("k", b"v" * 10_000, ttl=_LONG_TTL)
        counter.names.clear()
        meta = await storage.get_meta("k")
        assert counter.names == ["find"]
        assert meta is not None
        assert meta.size == 10_000
        assert await storage.get_meta("missing") is None
