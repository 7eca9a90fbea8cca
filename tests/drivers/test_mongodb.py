"""The MongoDB driver on a real socket: the conformance suite, large values, pool, errors.

The server is ``KVSTORE_TEST_MONGODB_URL`` when set, else SecantusDB (a stand-in, not MongoDB;
the run says so): see ``tests/support/mongodb_server.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import anyio
import pymongo
import pytest
from pymongo import monitoring

from kvstore import create_storage
from kvstore.drivers import mongodb
from kvstore.drivers.mongodb import MongoDBDriver, mongodb_driver
from kvstore.errors import BackendError, BackendUnavailable, ConfigurationError
from kvstore.storage import Storage
from kvstore.testing import DriverConformance, DriverFactory
from tests.support.mongodb_server import MongoDBTarget, mongodb_target
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


class TestMongoDBDriver(DriverConformance):
    async_backends = ("asyncio",)

    @pytest.fixture
    def driver_factory(self, mongodb_target: MongoDBTarget, databases: list[str]) -> DriverFactory:
        database = _database(databases)
        return lambda: mongodb_driver(mongodb_target.url, database)


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
    assert all(set(document) == {"_id", "v"} for document in documents)
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
async def test_unreachable_server_is_unavailable_without_the_password() -> None:
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
