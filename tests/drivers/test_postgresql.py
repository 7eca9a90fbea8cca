"""The PostgreSQL driver against a real server: the conformance suite, schema, pool, outages."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

import kvstore.drivers.postgresql as postgresql_module
from kvstore import create_storage
from kvstore.drivers.postgresql import PostgreSQLDriver, from_url, postgresql_driver
from kvstore.errors import BackendError, BackendUnavailable, ConfigurationError
from kvstore.storage import Storage
from kvstore.testing import DriverConformance, DriverFactory
from tests.support.load import check_tasks_share_a_bounded_pool
from tests.support.outage import check_outage_and_recovery, check_restart_between_operations
from tests.support.postgresql_instance import PostgreSQLInstance
from tests.support.servers import POSTGRESQL_URL, free_port, server_unreachable


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _with_options(url: str, **options: str) -> str:
    joined = "&".join(f"{name}={value}" for name, value in options.items())
    return f"{url}{'&' if '?' in url else '?'}{joined}"


@pytest.fixture(scope="module")
def admin() -> Iterator[psycopg.Connection]:
    """A synchronous autocommit connection to the shared server for inspection and clean-up."""
    try:
        connection = psycopg.connect(POSTGRESQL_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        server_unreachable(f"PostgreSQL at {POSTGRESQL_URL} is unreachable: {error}")
    with connection:
        yield connection


@pytest.fixture
def table(admin: psycopg.Connection) -> Iterator[str]:
    """A table name of this test's own, dropped afterwards."""
    name = f"kvtest_{uuid.uuid4().hex[:12]}"
    yield name
    admin.execute(f'DROP TABLE IF EXISTS "{name}"')


class TestPostgreSQLDriver(DriverConformance):
    async_backends = ("asyncio",)

    @pytest.fixture
    def driver_factory(self, table: str) -> DriverFactory:
        return lambda: postgresql_driver(POSTGRESQL_URL, table=table)


@pytest.mark.anyio
async def test_table_is_created_with_a_byte_ordered_key(
    admin: psycopg.Connection, table: str
) -> None:
    async with Storage(postgresql_driver(POSTGRESQL_URL, table=table)) as storage:
        await storage.set("a", 1)
    columns = admin.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), c.collname "
        "FROM pg_attribute a LEFT JOIN pg_collation c ON c.oid = a.attcollation "
        "WHERE a.attrelid = %s::regclass AND a.attnum > 0 ORDER BY a.attnum",
        (f'"{table}"',),
    ).fetchall()
    assert columns == [("key", "text", "C"), ("value", "bytea", None)]


@pytest.mark.anyio
async def test_prefix_scans_are_index_range_scans(admin: psycopg.Connection, table: str) -> None:
    driver = postgresql_driver(POSTGRESQL_URL, table=table)
    async with Storage(driver) as storage:
        await storage.set_many({f"k:{index}": index for index in range(50)})
    # The scan's own statement, planned without the option of reading the whole table.
    with admin.transaction():
        admin.execute("SET LOCAL enable_seqscan = off")
        query = driver._scan[(True, True)].replace("%s", "'k:'", 1).replace("%s", "'k;'")
        plan = "\n".join(row[0] for row in admin.execute("EXPLAIN " + query))
    assert "Index" in plan, plan
    assert f"{table}_pkey" in plan, plan
    assert "key >= 'k:'" in plan, plan
    assert "key < 'k;'" in plan, plan
    assert "Filter" not in plan, plan


@pytest.mark.parametrize("name", ["", "1table", "a-b", 'x"; DROP TABLE y; --', "a.b", "t" * 64])
def test_invalid_table_name_is_refused(name: str) -> None:
    with pytest.raises(ConfigurationError, match="table"):
        postgresql_driver(POSTGRESQL_URL, table=name)


def test_from_url_takes_the_table_and_keeps_libpq_options() -> None:
    driver = from_url("postgres://u:pw@db.example:6543/app?table=tenant_kv&sslmode=require")
    assert isinstance(driver, PostgreSQLDriver)
    assert driver.table == "tenant_kv"
    assert driver.where == "db.example:6543/app"
    assert conninfo_to_dict(driver._conninfo) | {"options": None} == {
        "host": "db.example", "port": "6543", "user": "u", "password": "pw", "dbname": "app",
        "sslmode": "require", "connect_timeout": "5", "tcp_user_timeout": "10000",
        "options": None,
    }


@pytest.mark.anyio
async def test_libpq_options_from_the_url_reach_the_connection(
    admin: psycopg.Connection, table: str
) -> None:
    marker = f"kvtest-{uuid.uuid4().hex[:10]}"
    url = _with_options(POSTGRESQL_URL, application_name=marker, sslmode="disable")
    async with Storage(postgresql_driver(url, table=table)) as storage:
        await storage.set("a", 1)
        rows = admin.execute(
            "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s ON s.pid = a.pid "
            "WHERE a.application_name = %s",
            (marker,),
        ).fetchall()
    assert rows, "no connection carried the application_name given in the URL"
    assert all(ssl is False for (ssl,) in rows)
    # An sslmode that cannot be met here must be obeyed, not dropped: the connection fails
    # and the error says why.
    failing = _with_options(POSTGRESQL_URL, sslmode="verify-full", sslrootcert="/nonexistent/ca")
    storage = Storage(postgresql_driver(failing, table=table, operation_timeout=3))
    try:
        with pytest.raises(BackendUnavailable) as caught:
            await storage.get("a")
    finally:
        await storage.close()
    assert "ssl" in str(caught.value).lower()


@pytest.mark.anyio
async def test_create_storage_reaches_the_driver_by_url(table: str) -> None:
    async with create_storage(_with_options(POSTGRESQL_URL, table=table)) as storage:
        assert isinstance(storage.driver, PostgreSQLDriver)
        assert storage.driver.table == table
        await storage.set("a:b", [1])
    async with Storage(postgresql_driver(POSTGRESQL_URL, table=table)) as again:
        assert await again.get("a:b") == [1]


@pytest.mark.anyio
async def test_set_many_is_all_or_nothing(admin: psycopg.Connection, table: str) -> None:
    async with Storage(postgresql_driver(POSTGRESQL_URL, table=table)) as storage:
        await storage.set("kept", "old")
        admin.execute(f"ALTER TABLE \"{table}\" ADD CONSTRAINT no_poison CHECK (key <> 'poison')")
        with pytest.raises(BackendError) as caught:
            await storage.set_many({"kept": "new", "fresh": 1, "poison": 2})
        assert not isinstance(caught.value, BackendUnavailable)
        assert await storage.get("kept") == "old"
        assert [key async for key in storage.keys("")] == ["kept"]


@pytest.mark.anyio
async def test_batches_split_into_statements_stay_one_transaction(
    admin: psycopg.Connection, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small limits so that a 50-item batch takes the path a 20,000-item one would.
    monkeypatch.setattr(postgresql_module, "BATCH_CHUNK", 7)
    monkeypatch.setattr(postgresql_module, "BATCH_BYTES", 40)
    async with Storage(postgresql_driver(POSTGRESQL_URL, table=table)) as storage:
        pairs = [(f"k:{index:02d}", index) for index in range(50)] + [("k:03", "last")]
        await storage.set_many(pairs)
        expected: list[object] = list(range(50))
        expected[3] = "last"
        keys = [f"k:{index:02d}" for index in range(50)]
        assert await storage.get_many(keys) == expected
        admin.execute(f"ALTER TABLE \"{table}\" ADD CONSTRAINT no_poison CHECK (key <> 'poison')")
        with pytest.raises(BackendError):
            await storage.set_many(
                [(f"new:{index:02d}", index) for index in range(40)] + [("poison", 1)]
            )
        assert [key async for key in storage.keys("new:")] == []
        await storage.delete_many(keys[::2])
        assert [key async for key in storage.keys("k:")] == keys[1::2]


@pytest.mark.anyio
async def test_two_hundred_concurrent_tasks_share_a_bounded_pool(
    admin: psycopg.Connection, table: str
) -> None:
    marker = f"kvtest-{uuid.uuid4().hex[:10]}"
    pool_size = 5
    url = _with_options(POSTGRESQL_URL, application_name=marker)
    storage = Storage(postgresql_driver(url, table=table, max_size=pool_size))

    def connections() -> int:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (marker,)
        ).fetchone()
        assert row is not None
        return int(row[0])

    await check_tasks_share_a_bounded_pool(storage, connections, pool_size)


@pytest.mark.anyio
async def test_errors_never_show_the_password() -> None:
    secret = "s3cr3t-Pa55word"
    url = f"postgresql://root:{secret}@127.0.0.1:{free_port()}/test"
    storage = Storage(postgresql_driver(url, connect_timeout=1, operation_timeout=2))
    try:
        with pytest.raises(BackendUnavailable) as caught:
            await storage.get("a")
    finally:
        await storage.close()
    assert secret not in str(caught.value)
    assert caught.value.driver == "postgresql"
    assert caught.value.where.startswith("127.0.0.1:")


@pytest.fixture
def private_postgresql() -> Iterator[PostgreSQLInstance]:
    if not PostgreSQLInstance.available():
        server_unreachable("PostgreSQL server binaries are not installed")
    instance = PostgreSQLInstance()
    try:
        instance.start()
        yield instance
    finally:
        instance.remove()


@pytest.fixture
async def outage_storage(private_postgresql: PostgreSQLInstance) -> AsyncIterator[Storage]:
    driver = postgresql_driver(
        private_postgresql.url, table="outage", max_size=4, connect_timeout=1, operation_timeout=1.5
    )
    async with Storage(driver) as storage:
        yield storage


@pytest.mark.anyio
async def test_outage_raises_unavailable_then_recovers_with_every_write(
    private_postgresql: PostgreSQLInstance, outage_storage: Storage
) -> None:
    await check_outage_and_recovery(outage_storage, private_postgresql, "postgresql")


@pytest.mark.anyio
async def test_a_restart_between_operations_goes_unnoticed(
    private_postgresql: PostgreSQLInstance, outage_storage: Storage
) -> None:
    await check_restart_between_operations(outage_storage, private_postgresql)
