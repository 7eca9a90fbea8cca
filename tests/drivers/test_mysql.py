"""The MySQL/MariaDB driver against real servers: the conformance suite, packets, outages."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import pymysql
import pytest
from hypothesis import given, settings

import kvstore.drivers.mysql as mysql_module
from kvstore import create_storage
from kvstore.conditional import Change
from kvstore.drivers._mysql_rows import execute_rows, render_rows
from kvstore.drivers.mysql import (
    AUTO_PURGE_BATCH,
    MySQLDriver,
    expiry_table_name,
    mysql_driver,
    required_max_allowed_packet,
)
from kvstore.errors import BackendError, BackendUnavailable, ConfigurationError
from kvstore.expiry import Meta
from kvstore.storage import Storage
from kvstore.testing import DriverConformance, DriverFactory
from kvstore.testing.clock import TestClock
from tests.support.hostile_urls import MARK, HostileURL, probed_hostile_urls
from tests.support.mariadb_instance import MariaDBInstance, mariadb_available
from tests.support.outage import check_outage_and_recovery, check_restart_between_operations
from tests.support.quiet import silent_server
from tests.support.servers import MYSQL_URL, free_port, server_unreachable
from tests.support.sql_conditional import (
    SQLAdapter,
    SQLConditionalWrites,
    check_a_conditional_write_survives_a_dropped_pool,
)

_SIXTEEN_MIB = 16 * 1024 * 1024


def _unique(label: str = "t") -> str:
    return f"kvtest_{label}_{uuid.uuid4().hex[:12]}"


def _raw(url: str) -> pymysql.connections.Connection:
    """A plain PyMySQL connection for set-up, inspection and clean-up."""
    driver = mysql_driver(url)
    params = {k: v for k, v in driver._params.items() if k != "autocommit"}
    return pymysql.connect(**params, autocommit=True)


@pytest.fixture(scope="module")
def shared_mysql() -> Iterator[pymysql.connections.Connection]:
    """A connection to the shared server, or a skip (a failure in CI) if it is down."""
    try:
        connection = _raw(MYSQL_URL)
    except pymysql.MySQLError as error:
        server_unreachable(f"MySQL/MariaDB at {MYSQL_URL} is unreachable: {error}")
    yield connection
    connection.close()


@pytest.fixture
def tables(shared_mysql: pymysql.connections.Connection) -> Iterator[list[str]]:
    """Collects the tables a test creates on the shared server and drops them afterwards."""
    created: list[str] = []
    yield created
    with shared_mysql.cursor() as cursor:
        for table in created:
            cursor.execute(f"DROP TABLE IF EXISTS `{table}`, `{expiry_table_name(table)}`")


def _table(tables: list[str], label: str = "t") -> str:
    name = _unique(label)
    tables.append(name)
    return name


class TestMySQLDriver(DriverConformance):
    # The shared server's max_allowed_packet (16 MiB) is too small for a 16 MiB value: the
    # 16 MiB clause runs against a private server below (test_sixteen_mib_values_*).
    large_values = False

    @pytest.fixture
    def driver_factory(self, tables: list[str]) -> DriverFactory:
        table = _table(tables)
        # A liveness bound, not the default: the suite's 10,000-key batches share a loaded
        # machine with other tests.
        return lambda: mysql_driver(MYSQL_URL, table, operation_timeout=120)


# -- keys are bytes -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_trailing_space_and_case_make_different_keys(
    tables: list[str], shared_mysql: pymysql.connections.Connection
) -> None:
    table = _table(tables, "pad")
    async with Storage(mysql_driver(MYSQL_URL, table)) as storage:
        await storage.set_many({"a": 1, "a ": 2, "A": 3, "a  ": 4, "\u00e1": 5, "a\u0301": 6})
        assert await storage.get_many(["a", "a ", "A", "a  ", "\u00e1", "a\u0301"]) == [
            1,
            2,
            3,
            4,
            5,
            6,
        ]
        await storage.delete("a ")
        assert await storage.get_many(["a", "a ", "a  "]) == [1, None, 4]
    with shared_mysql.cursor() as cursor:
        cursor.execute(f"SELECT `key` FROM `{table}` ORDER BY `key`")
        stored = [bytes(row[0]) for row in cursor.fetchall()]
    # Stored as the UTF-8 bytes, unpadded, with no collation folding them together.
    assert stored == sorted(key.encode() for key in ["a", "A", "a  ", "\u00e1", "a\u0301"])


@pytest.mark.anyio
async def test_existing_table_with_a_text_key_column_is_refused(
    tables: list[str], shared_mysql: pymysql.connections.Connection
) -> None:
    table = _table(tables, "text")
    with shared_mysql.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE `{table}` (`key` VARCHAR(255) PRIMARY KEY, `value` LONGBLOB NOT NULL)"
        )
    async with Storage(mysql_driver(MYSQL_URL, table)) as storage:
        with pytest.raises(BackendError, match="VARBINARY"):
            await storage.set("a", 1)


@pytest.mark.parametrize("table", ["", "1abc", "a-b", "a`b", "kv; DROP TABLE x", "a" * 65, "é"])
def test_invalid_table_names_are_refused(table: str) -> None:
    with pytest.raises(ConfigurationError):
        mysql_driver(MYSQL_URL, table)


def test_from_url_and_create_storage_accept_both_schemes() -> None:
    for url in ("mysql://u:p@db.example:3307/app", "mariadb://u:p@db.example:3307/app"):
        storage = create_storage(url)
        assert isinstance(storage.driver, MySQLDriver)
        assert storage.driver.where == "db.example:3307/app"


# -- large values and max_allowed_packet ------------------------------------------------------


@pytest.fixture(scope="module")
def big_packet_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBInstance]:
    """A private server with max_allowed_packet=64M, room for 16 MiB values."""
    reason = mariadb_available()
    if reason is not None:
        server_unreachable(reason)
    directory = tmp_path_factory.mktemp("mariadb-64m")
    with MariaDBInstance(directory, max_allowed_packet="64M") as server:
        yield server


@pytest.mark.anyio
async def test_sixteen_mib_values_are_stored_when_the_packet_allows(
    big_packet_server: MariaDBInstance,
) -> None:
    value = (bytes(range(256)) * (_SIXTEEN_MIB // 256 + 1))[: _SIXTEEN_MIB + 1]
    assert required_max_allowed_packet(len(value)) < 64 * 1024 * 1024
    async with Storage(mysql_driver(big_packet_server.url, _unique("big"))) as storage:
        await storage.set_raw("big", value)
        assert await storage.get_raw("big") == value
        await storage.set_many_raw([("big:1", value), ("small", b"s"), ("big:2", value[::-1])])
        assert await storage.get_many_raw(["big:1", "small", "big:2"]) == [
            value,
            b"s",
            value[::-1],
        ]
        await storage.clear()


@pytest.fixture(scope="module")
def small_packet_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBInstance]:
    """A private server with max_allowed_packet=1M, so that the refusal is certain."""
    reason = mariadb_available()
    if reason is not None:
        server_unreachable(reason)
    directory = tmp_path_factory.mktemp("mariadb-1m")
    with MariaDBInstance(directory, max_allowed_packet="1M") as server:
        yield server


@pytest.mark.anyio
async def test_too_big_value_is_refused_naming_max_allowed_packet(
    small_packet_server: MariaDBInstance,
) -> None:
    too_big = b"\x00" * (600 * 1024)  # 1.2 MB as hex: more than the 1 MiB packet
    async with Storage(mysql_driver(small_packet_server.url, _unique("small"))) as storage:
        await storage.set_raw("kept", b"old")
        with pytest.raises(BackendError, match="max_allowed_packet") as raised:
            await storage.set_raw("kept", too_big)
        assert not isinstance(raised.value, BackendUnavailable)
        with pytest.raises(BackendError, match="max_allowed_packet"):
            await storage.set_many_raw([("first", b"1"), ("second", too_big)])
        assert await storage.get_raw("kept") == b"old"
        assert [key async for key in storage.keys()] == ["kept"]
        # Just under the limit still goes through.
        fits = b"\x01" * (1024 * 1024 // 2 - 2048)
        await storage.set_raw("fits", fits)
        assert await storage.get_raw("fits") == fits
        await storage.clear()


# -- outages --------------------------------------------------------------------------------


@pytest.fixture
def private_server(tmp_path: Path) -> Iterator[MariaDBInstance]:
    reason = mariadb_available()
    if reason is not None:
        server_unreachable(reason)
    server = MariaDBInstance(tmp_path / "mariadb")
    server.start()
    yield server
    server.stop()


@pytest.mark.anyio
async def test_outage_raises_unavailable_and_the_same_storage_recovers(
    private_server: MariaDBInstance, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kvstore.mysql")
    driver = mysql_driver(
        private_server.url,
        "outage",
        pool_size=4,
        connect_timeout=1,
        read_timeout=2,
        write_timeout=2,
    )
    storage = Storage(driver)
    await check_outage_and_recovery(storage, private_server, "mysql")
    assert driver.open_connections >= 1
    await check_restart_between_operations(storage, private_server)
    await storage.close()
    # The pooled connection the restart killed was replaced, and that was logged.
    assert any(
        record.name == "kvstore.mysql" and "retrying once" in record.getMessage()
        for record in caplog.records
    )


@pytest.mark.anyio
async def test_a_hung_server_times_out_as_unavailable(private_server: MariaDBInstance) -> None:
    driver = mysql_driver(
        private_server.url,
        "hung",
        pool_size=2,
        connect_timeout=1,
        read_timeout=1,
        write_timeout=1,
    )
    async with Storage(driver) as storage:
        await storage.set("k", 1)
        private_server.pause()
        try:
            with pytest.raises(BackendUnavailable):
                await storage.get("k")
            with pytest.raises(BackendUnavailable):
                await storage.set_many({"a": 1, "b": 2})
        finally:
            private_server.resume()
        assert await storage.get("k") == 1


# -- concurrency and pooling ----------------------------------------------------------------


@pytest.fixture
def private_database(shared_mysql: pymysql.connections.Connection) -> Iterator[str]:
    """A database of this test's own on the shared server, so its connections can be counted."""
    name = _unique("db")
    with shared_mysql.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}`")
    yield name
    with shared_mysql.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.mark.anyio
async def test_200_concurrent_tasks_lose_nothing_and_stay_within_the_pool(
    private_database: str, shared_mysql: pymysql.connections.Connection
) -> None:
    pool_size = 5
    url = MYSQL_URL.rsplit("/", 1)[0] + "/" + private_database
    # A liveness bound, not a speed claim: on a loaded machine 200 tasks queueing for 5
    # connections may each wait long for their turn.
    driver = mysql_driver(url, "kv", pool_size=pool_size, operation_timeout=300)
    storage = Storage(driver)
    observed: list[int] = []

    def count_server_connections() -> int:
        with shared_mysql.cursor() as cursor:
            cursor.execute(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = %s",
                (private_database,),
            )
            row = cursor.fetchone()
        return int(row[0]) if row else 0

    async def worker(task: int) -> None:
        for index in range(5):
            key = f"task:{task:03d}:{index}"
            await storage.set(key, [task, index])
            assert await storage.get(key) == [task, index]
        await storage.set_many({f"batch:{task:03d}:{index}": task for index in range(3)})
        observed.append(driver.open_connections)

    async def monitor(done: anyio.Event) -> None:
        while not done.is_set():
            observed.append(await anyio.to_thread.run_sync(count_server_connections))
            await anyio.sleep(0.01)  # sampling interval of the observer, not synchronisation

    done = anyio.Event()
    try:
        async with anyio.create_task_group() as outer:
            outer.start_soon(monitor, done)
            async with anyio.create_task_group() as group:
                for task in range(200):
                    group.start_soon(worker, task)
            done.set()

        keys = [key async for key in storage.keys("task:")]
        assert len(keys) == 200 * 5
        assert await storage.get_many(keys) == [[int(k[5:8]), int(k[9:])] for k in keys]
        assert len([key async for key in storage.keys("batch:")]) == 200 * 3
        assert max(observed) <= pool_size
        assert count_server_connections() <= pool_size
    finally:
        await storage.close()
    assert driver.open_connections == 0


# -- errors never show passwords; a missing client names the extra --------------------------


@pytest.mark.anyio
async def test_errors_never_show_the_password(shared_mysql: pymysql.connections.Connection) -> None:
    secret = "Sup3r-s3cret-pw"
    unreachable = Storage(
        mysql_driver(f"mysql://root:{secret}@127.0.0.1:{free_port()}/test", connect_timeout=1)
    )
    with pytest.raises(BackendUnavailable) as raised:
        await unreachable.get("a")
    assert secret not in str(raised.value)
    assert secret not in repr(raised.value)
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__
    assert "127.0.0.1" in str(raised.value)

    wrong_user = Storage(mysql_driver(f"mysql://kvstore_nobody:{secret}@127.0.0.1:3306/test"))
    with pytest.raises(BackendError) as refused:
        await wrong_user.set("a", 1)
    assert secret not in str(refused.value)
    await unreachable.close()
    await wrong_user.close()


# -- URLs: parsed as PyMySQL's connect arguments, refused when malformed, never leaking --------


def test_url_options_reach_the_driver_and_pymysql() -> None:
    driver = mysql_driver(
        "mariadb://app%40corp:p%2Fw%40rd@[::1]:3307/shop?pool_size=3&connect_timeout=1.5"
        "&operation_timeout=4&ssl_disabled=true"
    )
    assert (driver.pool_size, driver.connect_timeout, driver.operation_timeout) == (3, 1.5, 4.0)
    assert driver._params["host"] == "::1"
    assert driver._params["port"] == 3307
    assert driver._params["user"] == "app@corp"
    assert driver._params["password"] == "p/w@rd"
    assert driver._params["database"] == "shop"
    assert driver._params["ssl_disabled"] is True
    assert driver.where == "[::1]:3307/shop"
    assert "p/w@rd" not in repr(driver)
    assert "p%2Fw" not in repr(driver)


def test_defaults_bound_every_wait() -> None:
    driver = mysql_driver("mysql://u@db.example/app")
    assert (driver.pool_size, driver.connect_timeout, driver.operation_timeout) == (10, 5.0, 10.0)
    assert driver.where == "db.example:3306/app"


def test_native_read_timeout_sets_the_operation_timeout() -> None:
    assert mysql_driver("mysql://u@h/app?read_timeout=7").operation_timeout == 7.0
    assert mysql_driver("mysql://u@h/app", read_timeout=3, write_timeout=3).operation_timeout == 3


@pytest.mark.parametrize(
    ("url", "arguments"),
    [
        ("mysql://u@h/app?pool_size=3", {"pool_size": 4}),
        ("mysql://u@h/app?connect_timeout=3", {"connect_timeout": 4}),
        ("mysql://u@h/app?operation_timeout=3&read_timeout=4", {}),
        ("mysql://u@h/app?operation_timeout=3", {"write_timeout": 4}),
    ],
)
def test_one_setting_given_twice_differently_is_refused(
    url: str, arguments: dict[str, float]
) -> None:
    with pytest.raises(ConfigurationError, match="more than once"):
        mysql_driver(url, **arguments)  # type: ignore[arg-type]


HOSTILE_MYSQL_URLS = [
    "mysql://root:pw@127.0.0.1:70000/test",  # port out of range
    "mysql://root:pw@127.0.0.1:0/test",
    "mysql://root:pw@127.0.0.1:-1/test",
    "mysql://root:pw@127.0.0.1:33o6/test",
    "mysql://root:pw@[::1/test",  # unclosed IPv6
    "mysql://root:pw@[::zz]:3306/test",  # not an IPv6 address
    "mysql://root:pw@::1:3306/test",  # IPv6 without brackets
    "mysql://root:pw@127.0.0.1/test?bogus=1",  # unknown option
    "mysql://root:pw@127.0.0.1/test?pool_size=0",
    "mysql://root:pw@127.0.0.1/test?pool_size=lots",
    "mysql://root:pw@127.0.0.1/test?connect_timeout=-1",
    "mysql://root:pw@127.0.0.1/test?operation_timeout=nan",
    "mysql://root:pw@127.0.0.1/test?ssl_disabled=maybe",
    "mysql://root:pw@127.0.0.1/test?pool_size=2&pool_size=3",
    "mysql://root:Sup3r/s3cret@127.0.0.1/test",  # unencoded '/' in the password
    "mysql://root:Sup3r@s3cret@127.0.0.1/test",  # unencoded '@' in the password
    "mysql://root:pw@127.0.0.1",  # no database
    "mysql://root:pw@127.0.0.1/",
    "mysql://root:pw@127.0.0.1/test/extra",  # ambiguous database
    "mysql://root:pw@a,b/test",  # several hosts
    "mysql://root:pw@127.0.0.1/test#frag",
    "postgresql://root:pw@127.0.0.1/test",
]


@pytest.mark.parametrize("url", HOSTILE_MYSQL_URLS)
def test_malformed_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        mysql_driver(url)
    for secret in ("Sup3r", "s3cret"):
        assert secret not in str(raised.value)


@settings(max_examples=150, deadline=None)
@given(probed_hostile_urls(("mysql", "mariadb")))
def test_hostile_passwords_never_show(drawn: tuple[HostileURL, bool]) -> None:
    case, probe = drawn
    refused: ConfigurationError | None = None
    try:
        driver = mysql_driver(case.url)
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
    if case.spelling == "encoded":
        assert driver._params["password"] == case.password


@pytest.mark.anyio
async def test_unreachable_server_is_reported_within_the_connect_timeout_and_silently(
    capfd: pytest.CaptureFixture[str],
) -> None:
    # Nothing listens on the port: refused at once. The bound is generous (a liveness check).
    storage = Storage(mysql_driver(f"mysql://root:pw@127.0.0.1:{free_port()}/test"))
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
            mysql_driver(
                f"mysql://root@127.0.0.1:{port}/test?connect_timeout=1&operation_timeout=2"
            )
        )
        try:
            with anyio.fail_after(60), pytest.raises(BackendUnavailable):
                await storage.get("a")
            with anyio.fail_after(60), pytest.raises(BackendUnavailable):
                await storage.set("a", 1)
        finally:
            await storage.close()


# -- conditional writes: versions, the upgrade of older tables, races -------------------------

# The table as the driver created it before versions existed (kvstore at commit 8c0e158,
# MySQLDriver._create_table): the pre-versions layout, copied as it was.
_PRE_VERSIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS {quoted} ("
    "`key` VARBINARY(1024) NOT NULL PRIMARY KEY, "
    "`value` LONGBLOB NOT NULL"
    ") ENGINE=InnoDB ROW_FORMAT=DYNAMIC"
)


class _MySQL(SQLAdapter):
    """The shared conditional-write tests' view of MySQL, through the ``shared_mysql`` one."""

    url = MYSQL_URL
    factory_path = "kvstore.drivers.mysql:mysql_driver"
    pre_versions_table = _PRE_VERSIONS_TABLE

    def __init__(self, connection: pymysql.connections.Connection) -> None:
        self.connection = connection

    def driver(self, table: str, **options: Any) -> MySQLDriver:
        return mysql_driver(MYSQL_URL, table, **options)

    def quote(self, name: str) -> str:
        return f"`{name}`"

    def drop_table(self, table: str) -> None:
        """Drop ``table`` and its expiry hints table if they exist."""
        self.query(
            f"DROP TABLE IF EXISTS {self.quote(table)}, {self.quote(expiry_table_name(table))}"
        )

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, parameters)
            return list(cursor.fetchall())

    def raw_key(self, key: str) -> bytes:
        # The key column is VARBINARY: the driver writes it as UTF-8 bytes.
        return key.encode()

    def insert_uncommitted(
        self, table: str, key: str, value: bytes
    ) -> pymysql.connections.Connection:
        writer = _raw(MYSQL_URL)
        try:
            writer.begin()
            with writer.cursor() as cursor:
                cursor.execute(
                    f"INSERT INTO `{table}` (`key`, `value`) VALUES (%s, %s)", (key.encode(), value)
                )
        except BaseException:
            writer.close()
            raise
        return writer

    def commit_is_waiting(self, table: str) -> bool:
        # The commit's locking read is seen on the server; it cannot end before the writer.
        rows = self.query(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE %s",
            (f"SELECT `key`, `version`, `expires_at` FROM `{table}` %FOR UPDATE",),
        )
        return bool(rows and rows[0][0])


class TestMySQLConditionalWrites(SQLConditionalWrites):
    """The shared conditional-write tests, and those that only MySQL/MariaDB runs."""

    @pytest.fixture
    def sql(self, shared_mysql: pymysql.connections.Connection) -> _MySQL:
        return _MySQL(shared_mysql)

    @pytest.mark.anyio
    async def test_a_table_from_before_versions_is_upgraded_in_place(
        self, sql: SQLAdapter, helper_table: str
    ) -> None:
        await super().test_a_table_from_before_versions_is_upgraded_in_place(sql, helper_table)
        # MySQL's own: the added column has the type, nullability and default it is given.
        assert sql.query(
            "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT "
            "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
            "AND TABLE_NAME = %s AND COLUMN_NAME = 'version'",
            (helper_table,),
        ) == [("version", "bigint(20)", "NO", "0")]

    @pytest.mark.anyio
    async def test_a_conditional_write_goes_through_once_after_the_server_dropped_the_pool(
        self, private_database: str, shared_mysql: pymysql.connections.Connection
    ) -> None:
        # A database of its own, so that the storage's connections are the ones found there.
        url = MYSQL_URL.rsplit("/", 1)[0] + "/" + private_database

        def connections() -> list[int]:
            with shared_mysql.cursor() as cursor:
                cursor.execute(
                    "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s",
                    (private_database,),
                )
                return [int(row[0]) for row in cursor.fetchall()]

        async def drop_pool() -> None:
            # As wait_timeout or a restart would: the server closes the pooled connection.
            killed = connections()
            assert len(killed) == 1
            with shared_mysql.cursor() as cursor:
                cursor.execute(f"KILL CONNECTION {killed[0]}")
            # The server ends the thread a moment after KILL returns: poll for it, bounded.
            for _ in range(1000):
                if not connections():
                    break
                await anyio.sleep(0.01)
            else:
                pytest.fail("the killed connection never went away")

        async with Storage(mysql_driver(url, "kv")) as storage:
            await check_a_conditional_write_survives_a_dropped_pool(storage, drop_pool)


# -- expiry: what the suite cannot see ------------------------------------------------------

# The layout from before expiry: versions, no expiry columns or their indexes.
_PRE_EXPIRY_TABLE = (
    "CREATE TABLE {quoted} ("
    "`key` VARBINARY(1024) NOT NULL PRIMARY KEY, "
    "`value` LONGBLOB NOT NULL, "
    "`version` BIGINT NOT NULL DEFAULT 0"
    ") ENGINE=InnoDB ROW_FORMAT=DYNAMIC"
)
# Expiry tests wait on the real clock for a TTL this short (the server's clock decides).
_SHORT = 0.5


def _query(
    connection: pymysql.connections.Connection, sql: str, args: Sequence[Any] = ()
) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, args)
        return list(cursor.fetchall())


def _server_ms(connection: pymysql.connections.Connection) -> int:
    """The server's clock, in milliseconds since the epoch, read through a raw connection."""
    (row,) = _query(connection, "SELECT UNIX_TIMESTAMP(NOW(6)) * 1000")
    return int(row[0])


def _stored(connection: pymysql.connections.Connection, table: str) -> list[str]:
    """Every key physically in ``table``, expired or not."""
    return [bytes(row[0]).decode() for row in _query(connection, f"SELECT `key` FROM `{table}`")]


async def _until_a_purge_is_due(driver: MySQLDriver, *, also: float) -> None:
    """Wait for the POSIX instant ``also`` and for the driver's next piggy-backed purge."""
    due = time.time() + max(0.0, driver._next_purge - time.monotonic())
    await TestClock(manual=False).pass_instant(max(also, due))


@pytest.mark.anyio
async def test_purge_expired_deletes_the_rows_through_the_hints_index(
    tables: list[str], shared_mysql: pymysql.connections.Connection
) -> None:
    table = _table(tables, "purge")
    driver = mysql_driver(MYSQL_URL, table)
    async with Storage(driver) as storage:
        await storage.set_many({f"gone:{n:02}": n for n in range(25)}, ttl=_SHORT)
        deadline = time.time() + _SHORT
        await storage.set_many({"live": 1})
        await storage.set_many({"long": 2}, ttl=30)
        await TestClock(manual=False).pass_instant(deadline)
        # Expired, absent, and still there until something deletes them.
        assert [key async for key in storage.keys()] == ["live", "long"]
        assert len(_stored(shared_mysql, table)) == 27
        assert await storage.purge_expired(limit=10) == 10
        assert len(_stored(shared_mysql, table)) == 17
        assert await storage.purge_expired() == 15
        assert await storage.purge_expired() == 0
        assert sorted(_stored(shared_mysql, table)) == ["live", "long"]
        # The purged keys' hints went with them; the long-lived key's stays.
        assert _stored(shared_mysql, expiry_table_name(table)) == ["long"]
        # In a hints table of some size (on a handful of rows a full scan is cheaper, and the
        # server knows it), the purge finds due hints through their index on expires_at.
        await storage.set_many({f"more:{n:04}": n for n in range(2000)}, ttl=30)
    hints = expiry_table_name(table)
    _query(shared_mysql, f"ANALYZE TABLE `{hints}`")
    now = _server_ms(shared_mysql)
    (plan,) = _query(shared_mysql, f"EXPLAIN {driver._sql_purge}", (now, AUTO_PURGE_BATCH))
    assert (plan[2], plan[3], plan[5]) == (hints, "range", "kv_hint_expires_at"), plan


@pytest.mark.anyio
async def test_expiring_writes_purge_a_small_batch_and_plain_writes_never(
    tables: list[str], shared_mysql: pymysql.connections.Connection
) -> None:
    table = _table(tables, "auto")
    driver = mysql_driver(MYSQL_URL, table)
    async with Storage(driver) as storage:
        gone = {f"gone:{n:03}": n for n in range(AUTO_PURGE_BATCH + 20)}
        await storage.set_many(gone, ttl=_SHORT)
        await _until_a_purge_is_due(driver, also=time.time() + _SHORT)
        # Plain writes and reads cost nothing extra: no purge, however long it has been.
        await storage.set("plain", 1)
        await storage.set_many({"plain2": 2})
        assert await storage.get_many(["plain", *gone]) == [1] + [None] * len(gone)
        assert len(_stored(shared_mysql, table)) == len(gone) + 2
        # An expiring write purges one small batch, through the index.
        await storage.set("short", 3, ttl=30)
        assert len(_stored(shared_mysql, table)) == 20 + 3
        # ... and no more within the next second, whatever else expires meanwhile.
        await storage.set("next", 4, ttl=30)
        assert len(_stored(shared_mysql, table)) == 20 + 4
        await _until_a_purge_is_due(driver, also=0.0)
        assert await storage.expire("next", 60)
        assert sorted(_stored(shared_mysql, table)) == ["next", "plain", "plain2", "short"]


@pytest.mark.anyio
async def test_the_servers_clock_decides_in_milliseconds(
    tables: list[str], shared_mysql: pymysql.connections.Connection
) -> None:
    table = _table(tables, "clock")
    async with Storage(mysql_driver(MYSQL_URL, table)) as storage:
        before = _server_ms(shared_mysql)
        await storage.set("one", "v", ttl=12.3456)
        await storage.set_many({"a": 1, "b": 2}, ttl=7)
        await storage.set("plain", 1)
        await storage.expire("a", 100)
        after = _server_ms(shared_mysql)
        rows = {
            bytes(key).decode(): (written, expires)
            for key, written, expires in _query(
                shared_mysql, f"SELECT `key`, `written_at`, `expires_at` FROM `{table}`"
            )
        }
        # Server milliseconds, between two reads of the server's clock; the TTL is added in
        # whole milliseconds (rounded), one instant for the batch.
        for written, _ in rows.values():
            assert before - 1 <= written <= after + 1, (before, rows, after)
        assert rows["one"][1] == rows["one"][0] + 12346
        assert rows["b"][1] == rows["b"][0] + 7000
        assert rows["a"][0] == rows["b"][0]
        assert before + 100_000 - 1 <= rows["a"][1] <= after + 100_000 + 1
        assert rows["plain"][1] is None
        meta = await storage.get_meta("one")
        assert meta is not None
        assert (meta.written_at, meta.expires_at) == (rows["one"][0] / 1000, rows["one"][1] / 1000)


@pytest.mark.anyio
async def test_expire_reports_a_live_key_it_leaves_as_it_was(tables: list[str]) -> None:
    # Without CLIENT_FOUND_ROWS an UPDATE that changes nothing reports 0 rows, as for a missing
    # key: expire must still say the key was there.
    async with Storage(mysql_driver(MYSQL_URL, _table(tables, "same"))) as storage:
        await storage.set("k", 1)
        assert await storage.expire("k", None)
        assert await storage.expire("k", None)
        assert not await storage.expire("missing", None)
        assert not await storage.expire("missing", 5)
        assert await storage.get_meta("missing") is None


@pytest.mark.anyio
async def test_get_meta_is_one_statement_and_never_reads_the_value(
    tables: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Storage(mysql_driver(MYSQL_URL, _table(tables, "meta"))) as storage:
        await storage.set_raw("k", b"x" * 100_000, ttl=30)
        statements: list[str] = []
        rows: list[Any] = []
        execute = pymysql.cursors.Cursor.execute
        fetchone = pymysql.cursors.Cursor.fetchone

        def counting(cursor: pymysql.cursors.Cursor, sql: str, args: Any = None) -> int:
            statements.append(sql)
            return execute(cursor, sql, args)

        def fetching(cursor: pymysql.cursors.Cursor) -> Any:
            row = fetchone(cursor)
            rows.append(row)
            return row

        monkeypatch.setattr(pymysql.cursors.Cursor, "execute", counting)
        monkeypatch.setattr(pymysql.cursors.Cursor, "fetchone", fetching)
        meta = await storage.get_meta("k")
        monkeypatch.undo()
        assert meta is not None
        assert meta.size == 100_000
        assert len(statements) == 1, statements
        assert "LENGTH(`value`)" in statements[0]
        # The size came back, not the 100,000 bytes.
        assert all(not isinstance(field, bytes) for row in rows for field in row)


@pytest.mark.anyio
async def test_scans_are_a_range_of_the_primary_key(
    tables: list[str], shared_mysql: pymysql.connections.Connection
) -> None:
    table = _table(tables, "scan")
    driver = mysql_driver(MYSQL_URL, table)
    async with Storage(driver) as storage:
        await storage.set_many({f"a:{n:04}": n for n in range(500)})
        await storage.set_many({f"b:{n:04}": n for n in range(500)}, ttl=30)
        assert len([key async for key in storage.keys("a:")]) == 500
    # Every page's statement reads these rows (as one GROUP_CONCAT, or as rows).
    sql = driver._page_sql(inclusive=True, bounded=True)
    plans = _query(shared_mysql, f"EXPLAIN {sql}", [b"a:", b"a;"])
    joined = f"SELECT GROUP_CONCAT(`key`), COUNT(*) FROM ({sql}) AS page"
    plans += _query(shared_mysql, f"EXPLAIN {joined}", [b"a:", b"a;"])
    table_plans = [plan for plan in plans if plan[2] == table]
    assert len(table_plans) == 2, plans
    for plan in table_plans:
        # The prefix's range of the clustered rows, in key order (no sort), whatever the expiries.
        assert (plan[3], plan[5]) == ("range", "PRIMARY"), plan
        assert "filesort" not in (plan[9] or ""), plan


@pytest.mark.anyio
async def test_keys_written_around_storage_are_scanned_whole_on_every_page(
    tables: list[str], shared_mysql: pymysql.connections.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A page comes back as one newline-joined value: a key holding a newline (written around
    # Storage), or a result longer than GROUP_CONCAT's limit, must still come back whole.
    monkeypatch.setattr(mysql_module, "SCAN_PAGE", 2)
    table = _table(tables, "nl")
    driver = mysql_driver(MYSQL_URL, table)
    try:
        await driver.set_many([(key, b"v") for key in ("k:a", "k:c", "k:d", "k:e", "k:g")])
        _query(
            shared_mysql,
            f"INSERT INTO `{table}` (`key`, `value`) VALUES (%s, %s), (%s, %s)",
            [b"k:b\nx", b"v", b"k:f\n", b"v"],
        )
        expected = ["k:a", "k:b\nx", "k:c", "k:d", "k:e", "k:f\n", "k:g"]
        assert [key async for key in driver.keys("k:")] == expected
        assert [key async for key in driver.keys("")] == expected
        assert [key async for key in driver.keys("k:f")] == ["k:f\n"]
        assert [key async for key in driver.keys("k:z")] == []
        # Long keys overflowing a small GROUP_CONCAT limit: the cut page is read as rows, whether
        # the cut drops whole keys or falls inside the last one (no newline missing then).
        long_keys = [f"l:{index}:{'x' * 1000}" for index in range(2)]
        await driver.set_many([(key, b"v") for key in long_keys])
        monkeypatch.setattr(
            mysql_module, "_SESSION_INIT", "SET time_zone = '+00:00', group_concat_max_len = 1500"
        )
        small = mysql_driver(MYSQL_URL, table)
        try:
            assert [key async for key in small.keys("l:")] == long_keys
            monkeypatch.setattr(mysql_module, "SCAN_PAGE", 1000)
            assert [key async for key in small.keys("")] == sorted(expected + long_keys)
        finally:
            await small.close()
    finally:
        await driver.close()


@pytest.mark.anyio
async def test_a_table_from_before_expiry_is_upgraded_and_keeps_its_data(
    tables: list[str], shared_mysql: pymysql.connections.Connection
) -> None:
    table = _table(tables, "preexp")
    _query(shared_mysql, _PRE_EXPIRY_TABLE.format(quoted=f"`{table}`"))
    for key, value, version in [("a", b'"old a"', 11), ("b", b"[1]", 22), ("c", b"3", 33)]:
        _query(
            shared_mysql,
            f"INSERT INTO `{table}` (`key`, `value`, `version`) VALUES (%s, %s, %s)",
            (key.encode(), value, version),
        )
    async with Storage(mysql_driver(MYSQL_URL, table)) as storage:
        assert [key async for key in storage.keys()] == ["a", "b", "c"]
        assert await storage.get_many(["a", "b", "c"]) == ["old a", [1], 3]
        # Old rows: never expire, no write time, their versions kept.
        assert await storage.get_meta("a") == Meta(size=7, written_at=None, version=11)
        assert await storage.expire("b", _SHORT)
        deadline = time.time() + _SHORT
        await storage.set("c", 4, ttl=30)
        meta = await storage.get_meta("b")
        assert meta is not None
        assert (meta.version, meta.written_at) == (22, None)
        await TestClock(manual=False).pass_instant(deadline)
        assert await storage.get("b") is None
        assert await storage.purge_expired() == 1
    columns = _query(
        shared_mysql,
        "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT "
        "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
        "AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
        (table,),
    )
    assert [tuple(column) for column in columns[3:]] == [
        ("expires_at", "bigint(20)", "YES", "NULL"),
        ("written_at", "bigint(20)", "YES", "NULL"),
    ]
    indexes = _query(
        shared_mysql,
        "SELECT INDEX_NAME, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX) "
        "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() "
        "AND TABLE_NAME = %s GROUP BY INDEX_NAME ORDER BY INDEX_NAME",
        (table,),
    )
    # No secondary index on the main table: writes without a TTL pay for none.
    assert [tuple(index) for index in indexes] == [("PRIMARY", "key")]
    hint_indexes = _query(
        shared_mysql,
        "SELECT INDEX_NAME, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX) "
        "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() "
        "AND TABLE_NAME = %s GROUP BY INDEX_NAME ORDER BY INDEX_NAME",
        (expiry_table_name(table),),
    )
    assert [tuple(index) for index in hint_indexes] == [
        ("kv_hint_expires_at", "expires_at"),
        ("PRIMARY", "key"),
    ]
    assert sorted(_stored(shared_mysql, table)) == ["a", "c"]
    assert _stored(shared_mysql, expiry_table_name(table)) == ["c"]


@pytest.mark.anyio
async def test_a_table_with_half_of_the_expiry_step_is_refused(
    tables: list[str], shared_mysql: pymysql.connections.Connection
) -> None:
    table = _table(tables, "half")
    _query(shared_mysql, _PRE_EXPIRY_TABLE.format(quoted=f"`{table}`"))
    _query(shared_mysql, f"ALTER TABLE `{table}` ADD COLUMN `expires_at` BIGINT NULL")
    async with Storage(mysql_driver(MYSQL_URL, table)) as storage:
        with pytest.raises(BackendError, match="written_at"):
            await storage.get("a")


@pytest.mark.anyio
async def test_plain_writes_and_deletes_never_touch_the_hints(
    tables: list[str], shared_mysql: pymysql.connections.Connection
) -> None:
    table = _table(tables, "plain")
    hints = expiry_table_name(table)
    async with Storage(mysql_driver(MYSQL_URL, table)) as storage:
        await storage.set("a", 1)
        await storage.set_many({"b": 2, "c": 3})
        await storage.delete("a")
        assert _stored(shared_mysql, hints) == []
        await storage.set("d", 4, ttl=30)
        await storage.set_many({"e": 5}, ttl=30)
        assert await storage.expire("b", 30)
        assert sorted(_stored(shared_mysql, hints)) == ["b", "d", "e"]
        # A plain rewrite, a cleared expiry and a delete leave the hints to the purge.
        await storage.set("d", 6)
        assert await storage.expire("b", None)
        await storage.delete_many(["e"])
        assert sorted(_stored(shared_mysql, hints)) == ["b", "d", "e"]
        rows = dict(_query(shared_mysql, f"SELECT `key`, `expires_at` FROM `{hints}`"))
        assert all(isinstance(expires, int) for expires in rows.values())


@pytest.mark.anyio
async def test_the_purge_trusts_the_rows_not_the_hints(
    tables: list[str], shared_mysql: pymysql.connections.Connection
) -> None:
    table = _table(tables, "trust")
    hints = expiry_table_name(table)
    async with Storage(mysql_driver(MYSQL_URL, table)) as storage:
        keys = ["cleared", "deleted", "expired", "later", "rewritten"]
        await storage.set_many(dict.fromkeys(keys, 1), ttl=_SHORT)
        deadline = time.time() + _SHORT
        await storage.set("rewritten", 2)
        assert await storage.expire("cleared", None)
        await storage.delete("deleted")
        # Re-expired later by a write the hint never saw (as a hint lost to a crash would be).
        _query(
            shared_mysql,
            f"UPDATE `{table}` SET `expires_at` = `expires_at` + 60000 WHERE `key` = %s",
            (b"later",),
        )
        (later_expiry,) = _query(
            shared_mysql, f"SELECT `expires_at` FROM `{table}` WHERE `key` = %s", (b"later",)
        )[0]
        await TestClock(manual=False).pass_instant(deadline)
        # Five due hints, one expired row.
        assert await storage.purge_expired() == 1
        assert sorted(_stored(shared_mysql, table)) == ["cleared", "later", "rewritten"]
        # The hint of the later expiry now holds it; the others are gone.
        assert _query(shared_mysql, f"SELECT `key`, `expires_at` FROM `{hints}`") == [
            (b"later", later_expiry)
        ]
        assert await storage.purge_expired() == 0
        assert await storage.get_many(["cleared", "later", "rewritten"]) == [1, 1, 2]


@pytest.mark.anyio
async def test_the_purge_is_bounded_and_counts_the_rows_it_deleted(
    tables: list[str], shared_mysql: pymysql.connections.Connection
) -> None:
    table = _table(tables, "bound")
    async with Storage(mysql_driver(MYSQL_URL, table)) as storage:
        await storage.set_many({f"k{n:02}": n for n in range(30)}, ttl=_SHORT)
        deadline = time.time() + _SHORT
        # Every other key rewritten without a TTL: its hint is due and deletes nothing.
        await storage.set_many({f"k{n:02}": n for n in range(0, 30, 2)})
        await TestClock(manual=False).pass_instant(deadline)
        # Ten hints examined: about half of them delete a row; never more than ten.
        first = await storage.purge_expired(limit=10)
        assert 0 < first < 10
        rest = await storage.purge_expired()
        assert first + rest == 15
        assert len(_stored(shared_mysql, table)) == 15
        assert _stored(shared_mysql, expiry_table_name(table)) == []


@pytest.mark.anyio
async def test_clear_removes_the_hints_of_its_range(
    tables: list[str], shared_mysql: pymysql.connections.Connection
) -> None:
    table = _table(tables, "clear")
    async with Storage(mysql_driver(MYSQL_URL, table)) as storage:
        await storage.set_many({"a:1": 1, "a:2": 2, "b:1": 3}, ttl=60)
        await storage.clear("a:")
        assert _stored(shared_mysql, expiry_table_name(table)) == ["b:1"]
        await storage.clear()
        assert _stored(shared_mysql, expiry_table_name(table)) == []
        assert _stored(shared_mysql, table) == []


def test_the_hints_table_name_fits_mysqls_limit() -> None:
    assert expiry_table_name("kv") == "kv_expiry"
    assert expiry_table_name("a" * 57) == "a" * 57 + "_expiry"
    long_one, long_two = "a" * 60 + "bcde", "a" * 60 + "bcdf"
    assert len(expiry_table_name(long_one)) <= 64
    assert expiry_table_name(long_one) != expiry_table_name(long_two)


@pytest.mark.anyio
async def test_a_table_with_a_64_character_name_gets_its_hints(
    tables: list[str], shared_mysql: pymysql.connections.Connection
) -> None:
    table = _unique("long").ljust(64, "x")
    tables.append(table)
    async with Storage(mysql_driver(MYSQL_URL, table)) as storage:
        await storage.set("k", 1, ttl=60)
        assert await storage.get("k") == 1
    assert _stored(shared_mysql, expiry_table_name(table)) == ["k"]


# -- batch upserts are rendered by the driver (kvstore.drivers._mysql_rows) ----------------


def test_rows_are_split_into_statements_and_a_big_row_goes_alone() -> None:
    sent: list[bytes] = []

    class Recorder:
        def execute(self, statement: bytes) -> None:
            sent.append(statement)

    rows = render_rows([(b"a", b"x" * 10, 1), (b"b", b"y" * 500, 2), (b"c", b"", 3)], 7)
    assert rows[0] == b"(X'61',X'" + b"78" * 10 + b"',1,7)"
    assert rows[2] == b"(X'63',X'',3,7)"
    execute_rows(Recorder(), "HEAD ", " TAIL", rows, limit=100)  # type: ignore[arg-type]
    # The middle row alone is over the limit: it goes in a statement of its own.
    assert sent == [b"HEAD " + row + b" TAIL" for row in rows]
    sent.clear()
    execute_rows(Recorder(), "HEAD ", " TAIL", rows, limit=10_000)  # type: ignore[arg-type]
    assert sent == [b"HEAD " + b",".join(rows) + b" TAIL"]


@pytest.mark.anyio
async def test_batches_over_several_statements_store_every_byte_exactly(
    tables: list[str],
) -> None:
    # Keys and values with quotes, backslashes, NUL, invalid UTF-8 and SQL: all data. About
    # 2.5 MiB in all, so a set_many and a commit each send several statements.
    hostile = ["'", '"', "\\", "\x00", "`", "%s", "'); DROP TABLE t; --", "é", "\U0001f600"]
    values = {
        f"k:{n:05d}:{hostile[n % len(hostile)]}": bytes([n % 256, 0, 39, 92]) + b"\xff" * 1000
        for n in range(2_500)
    }
    driver = mysql_driver(MYSQL_URL, _table(tables, "rows"), operation_timeout=120)
    try:
        await driver.set_many(list(values.items()))
        assert await driver.get_many(list(values)) == list(values.values())
        await driver.set_many_expiring(list(values.items())[:1_500], 60)
        assert await driver.get_many(list(values)) == list(values.values())
        changed = {key: value[::-1] for key, value in values.items()}
        await driver.commit([Change.put(key, value) for key, value in changed.items()])
        assert await driver.get_many(list(values)) == list(changed.values())
    finally:
        await driver.close()
