"""The PostgreSQL driver against a real server: the conformance suite, schema, pool, outages."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import anyio
import psycopg
import pytest
from hypothesis import given, settings
from psycopg.conninfo import conninfo_to_dict

import kvstore.drivers.postgresql as postgresql_module
from kvstore import create_storage
from kvstore.conditional import LEGACY_VERSION, Change, Versioned
from kvstore.drivers.postgresql import PostgreSQLDriver, from_url, postgresql_driver
from kvstore.errors import BackendError, BackendUnavailable, ConfigurationError, Conflict
from kvstore.storage import Storage
from kvstore.testing import DriverConformance, DriverFactory
from tests.support.hostile_urls import MARK, HostileURL, hostile_urls
from tests.support.load import check_tasks_share_a_bounded_pool
from tests.support.outage import (
    LIVENESS_SLACK,
    check_outage_and_recovery,
    check_restart_between_operations,
)
from tests.support.postgresql_instance import PostgreSQLInstance
from tests.support.quiet import QuietChild, check_silent_through, silent_server
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
    assert columns == [("key", "text", "C"), ("value", "bytea", None), ("version", "bigint", None)]


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
    # The bound comes from the URL, as users tune pools in the connection string.
    url = _with_options(
        POSTGRESQL_URL, application_name=marker, table=table, pool_size=str(pool_size)
    )
    storage = create_storage(url)
    assert isinstance(storage.driver, PostgreSQLDriver)

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


# -- connection strings -----------------------------------------------------------------------


def _libpq(driver: PostgreSQLDriver) -> dict[str, Any]:
    return conninfo_to_dict(driver._conninfo)


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://u:pw@h1:5433,[::1]:5434/app?table=t2&pool_size=3&sslmode=prefer",
        "host=h1,::1 port=5433,5434 user=u password=pw dbname=app table=t2 pool_size=3 "
        "sslmode=prefer",
        "host = h1,::1  port=5433,5434 user='u' password = 'pw' dbname=app table=t2 pool_size=3 "
        "sslmode=prefer",
    ],
)
def test_a_url_and_a_key_value_string_mean_the_same(text: str) -> None:
    driver = postgresql_driver(text)
    assert driver.table == "t2"
    assert driver._pool.size == 3
    assert driver.where == "h1:5433,[::1]:5434/app"
    given = _libpq(driver)
    assert {name: given[name] for name in ("host", "port", "user", "password", "dbname")} == {
        "host": "h1,::1", "port": "5433,5434", "user": "u", "password": "pw", "dbname": "app",
    }
    assert given["sslmode"] == "prefer"


def test_quoted_and_escaped_key_value_passwords_reach_libpq_exactly() -> None:
    driver = postgresql_driver(r"host=h password='it\'s a \\ pass' dbname=d")
    assert _libpq(driver)["password"] == "it's a \\ pass"
    assert "pass" not in repr(driver)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("postgresql://h/d?bogus=1", "bogus"),
        ("postgresql://h/d?max_connections=1", "max_connections"),
        ("host=h bogus=1", "bogus"),
        ("postgresql://h:0/d", "65535"),
        ("postgresql://h:70000/d", "65535"),
        ("postgresql://[::zz]/d", "IPv6"),
        ("postgresql://h/d?host=other", "host"),
        ("postgresql://h/d?dbname=other", "dbname"),
        ("postgresql://h/d?pool_size=0", "pool_size"),
        ("postgresql://h/d?pool_size=2&max_size=3", "pool_size"),
        ("postgresql://h/d?connect_timeout=0", "connect_timeout"),
        ("postgresql://h/d?operation_timeout=inf", "operation_timeout"),
        ("postgresql://h/d?table=a-b", "table"),
        ("host=h host=i", "twice"),
        ("host=h dbname", "cannot be read"),
        ("host='h", "unterminated"),
        ("mysql://h/d", "postgresql://"),
    ],
)
def test_malformed_or_unknown_connection_strings_are_refused(text: str, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        postgresql_driver(text)


def test_a_setting_given_twice_must_agree() -> None:
    assert postgresql_driver("postgresql://h/d?pool_size=4", max_size=4)._pool.size == 4
    with pytest.raises(ConfigurationError, match="pool_size"):
        postgresql_driver("postgresql://h/d?pool_size=4", pool_size=5)
    with pytest.raises(ConfigurationError, match="connect_timeout"):
        postgresql_driver("host=h connect_timeout=3", connect_timeout=4)
    with pytest.raises(ConfigurationError, match="table"):
        postgresql_driver("postgresql://h/d?table=a", table="b")


def test_timeouts_reach_libpq_and_the_server() -> None:
    driver = postgresql_driver("postgresql://h/d?connect_timeout=0.5&operation_timeout=3")
    given = _libpq(driver)
    assert given["connect_timeout"] == "2"  # libpq's whole seconds, at least 2
    assert driver._connect_timeout == 0.5  # our own deadline holds the exact value
    assert given["tcp_user_timeout"] == "3000"
    assert "statement_timeout=3000" in given["options"]
    defaults = postgresql_driver("postgresql://h/d")
    assert (defaults._connect_timeout, defaults._operation_timeout) == (5.0, 10.0)


@pytest.mark.parametrize(
    "text",
    [
        "host=h password=Zq9SEKRIT Zq9SEKRIT dbname=d",  # a raw space cuts the password
        "host=h password='Zq9SEKRIT dbname=d",
        "host=h password=Zq9SEKRIT Zq9SEKRIT=x dbname=d",  # the piece reads as a keyword
        "postgresql://u@h/d?password=Zq9SEKRIT&Zq9SEKRIT=x",
        "postgresql://u:Zq9SEKRIT@Zq9SEKRIT@h/d",
        "postgresql://u:Zq9SEKRIT/Zq9SEKRIT@h/d",
        "postgresql://u@h/d?password=Zq9SEKRIT&Zq9SEKRIT",
    ],
)
def test_a_refused_connection_string_never_echoes_the_password(text: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        postgresql_driver(text)
    assert MARK not in str(caught.value)
    assert "Zq9" not in str(caught.value)


@settings(max_examples=40, deadline=None)
@given(case=hostile_urls(("postgresql", "postgres", "postgresql-query", "libpq")))
def test_no_piece_of_a_hostile_password_shows_anywhere(case: HostileURL) -> None:
    """Refused with a clean message, or accepted: then repr, where, the unavailability error
    and every log record are clean, and libpq gets the password exactly."""
    try:
        driver = postgresql_driver(case.url, connect_timeout=2, operation_timeout=3)
    except ConfigurationError as error:
        refused: ConfigurationError | None = error
    else:
        refused = None
    if refused is not None:
        assert MARK not in str(refused)
        return
    assert MARK not in repr(driver)
    assert MARK not in driver.where
    if case.spelling == "encoded" or (case.scheme == "libpq" and case.spelling != "raw"):
        assert _libpq(driver)["password"] == case.password
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


async def _first_failure(driver: PostgreSQLDriver) -> BaseException | None:
    storage = Storage(driver)
    try:
        await storage.get("a")
    except BackendUnavailable as error:
        return error
    finally:
        await storage.close()
    return None


# -- bounded waits, silence -------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_refused_connection_is_reported_at_once_with_the_reason() -> None:
    storage = Storage(postgresql_driver(f"postgresql://root@127.0.0.1:{free_port()}/test"))
    try:
        started = anyio.current_time()
        with pytest.raises(BackendUnavailable, match="refused"):
            await storage.get("a")
        # Within the default connect_timeout (5 s), plus slack for a loaded machine.
        assert anyio.current_time() - started < 5 + LIVENESS_SLACK
    finally:
        await storage.close()


@pytest.mark.anyio
async def test_a_server_that_never_answers_is_reported_within_the_default_connect_timeout(
) -> None:
    with silent_server() as port:
        storage = Storage(postgresql_driver(f"postgresql://root@127.0.0.1:{port}/test"))
        try:
            started = anyio.current_time()
            # Ours or libpq's own connect_timeout (the same 5 s) ends it, whichever is first.
            with pytest.raises(BackendUnavailable, match="timeout"):
                await storage.get("a")
            # A liveness bound, generous for a loaded machine: not a speed claim.
            assert anyio.current_time() - started < 5 + LIVENESS_SLACK
        finally:
            await storage.close()


@pytest.mark.anyio
async def test_a_stopped_server_is_reported_within_the_operation_timeout(
    private_postgresql: PostgreSQLInstance,
) -> None:
    driver = postgresql_driver(
        private_postgresql.url, table="paused", connect_timeout=1, operation_timeout=1.5
    )
    async with Storage(driver) as storage:
        await storage.set("a", 1)
        private_postgresql.pause()
        try:
            started = anyio.current_time()
            with pytest.raises(BackendUnavailable, match="operation_timeout"):
                await storage.get("a")
            assert anyio.current_time() - started < 1.5 + LIVENESS_SLACK
        finally:
            private_postgresql.resume()
        assert await storage.get("a") == 1


def test_nothing_reaches_stderr_without_logging_config(
    private_postgresql: PostgreSQLInstance,
) -> None:
    check_silent_through(
        _with_options(private_postgresql.url, operation_timeout="3", connect_timeout="1"),
        private_postgresql.stop,
        private_postgresql.start,
    )
    child = QuietChild(f"postgresql://root@127.0.0.1:{free_port()}/test?connect_timeout=1")
    assert child.phase("refused") == ["unavailable"] * 4
    assert child.finish() == ""


# -- conditional writes: versions, the upgrade of older tables, races -------------------------

# The table as the driver created it before versions existed (kvstore at commit 8c0e158,
# PostgreSQLDriver._create): the pre-versions layout, copied as it was.
_PRE_VERSIONS_TABLE = (
    'CREATE TABLE IF NOT EXISTS {quoted} (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL)'
)


@pytest.fixture
def helper_table(admin: psycopg.Connection) -> Iterator[str]:
    """A table name of this test's own, dropped afterwards."""
    name = f"sqlsrv_helper_{uuid.uuid4().hex[:12]}"
    yield name
    admin.execute(f'DROP TABLE IF EXISTS "{name}"')


def _make_pre_versions_table(admin: psycopg.Connection, table: str, rows: dict[str, Any]) -> None:
    admin.execute(f'DROP TABLE IF EXISTS "{table}"')
    admin.execute(_PRE_VERSIONS_TABLE.format(quoted=f'"{table}"'))
    for key, value in rows.items():
        admin.execute(
            f'INSERT INTO "{table}" (key, value) VALUES (%s, %s)',
            (key, json.dumps(value).encode()),
        )


def _rows(admin: psycopg.Connection, table: str) -> list[tuple[Any, ...]]:
    return admin.execute(f'SELECT key, value, version FROM "{table}" ORDER BY key').fetchall()


@pytest.mark.anyio
async def test_a_table_from_before_versions_is_upgraded_in_place(
    admin: psycopg.Connection, helper_table: str
) -> None:
    _make_pre_versions_table(admin, helper_table, {"a": "old a", "b": "old b", "c": [1]})
    async with Storage(postgresql_driver(POSTGRESQL_URL, table=helper_table)) as storage:
        assert await storage.get("a") == "old a"
        assert await storage.get_versioned("c") == Versioned([1], LEGACY_VERSION)
        with pytest.raises(Conflict):
            await storage.replace("a", "never", 12345)
        with pytest.raises(Conflict):
            await storage.create("a", "never")
        version = await storage.replace("a", "new a", LEGACY_VERSION)
        assert version != LEGACY_VERSION
        assert await storage.get_versioned("a") == Versioned("new a", version)
        await storage.delete_if("b", LEGACY_VERSION)
        assert await storage.get("b") is None
        await storage.set("d", 4)
        assert (await storage.get_versioned("d") or Versioned(None, 0)).version != LEGACY_VERSION
    assert [(key, version == 0) for key, _, version in _rows(admin, helper_table)] == [
        ("a", False), ("c", True), ("d", False)
    ]


@pytest.mark.anyio
async def test_drivers_upgrading_one_old_table_at_once_all_succeed(
    admin: psycopg.Connection, helper_table: str
) -> None:
    for _ in range(3):
        _make_pre_versions_table(admin, helper_table, {"k": "v"})
        # Separate drivers, so separate connections: the ALTERs race on the server.
        drivers = [postgresql_driver(POSTGRESQL_URL, table=helper_table, pool_size=1)
                   for _ in range(8)]
        try:
            found = await asyncio.gather(*(driver.get_versioned("k") for driver in drivers))
        finally:
            for driver in drivers:
                await driver.close()
        assert found == [Versioned(b'"v"', LEGACY_VERSION)] * len(drivers)
        assert _rows(admin, helper_table) == [("k", b'"v"', 0)]


@pytest.mark.anyio
async def test_a_failed_commit_writes_nothing(admin: psycopg.Connection, helper_table: str) -> None:
    async with Storage(postgresql_driver(POSTGRESQL_URL, table=helper_table)) as storage:
        version_a = await storage.create("a", 1)
        await storage.set("b", 2)
        before = _rows(admin, helper_table)
        with pytest.raises(Conflict) as caught:
            await storage.commit([
                Change.replace("a", 10, version_a),  # holds
                Change.create("new", 3),  # holds
                Change.delete("a2"),  # no condition
                Change.check("absent", None),  # holds
                Change.create("b", 20),  # fails: b exists
                Change.check("c", 7),  # fails: c is absent
            ])
        assert sorted(caught.value.keys) == ["b", "c"]
        # Nothing written, and no placeholder row left behind.
        assert _rows(admin, helper_table) == before
        # The same batch without the failing changes goes through whole.
        versions = await storage.commit([
            Change.replace("a", 10, version_a),
            Change.create("new", 3),
            Change.check("absent", None),
            Change.check("b", (await storage.get_versioned("b") or Versioned(0, 0)).version),
        ])
        written_a, version_new, *checks = versions
        assert checks == [None, None]
        assert written_a is not None
        assert version_new is not None
        assert await storage.get_versioned("a") == Versioned(10, written_a)
        assert await storage.get_versioned("new") == Versioned(3, version_new)
    assert [key for key, _, _ in _rows(admin, helper_table)] == ["a", "b", "new"]


@pytest.mark.anyio
async def test_concurrent_creators_of_one_key_exactly_one_wins(
    admin: psycopg.Connection, helper_table: str
) -> None:
    async with Storage(postgresql_driver(POSTGRESQL_URL, table=helper_table)) as storage:
        for round_number in range(5):
            prize = f"prize:{round_number}"
            winners: list[int] = []

            async def racer(index: int, prize: str = prize, winners: list[int] = winners) -> None:
                try:
                    if index % 2:
                        await storage.create(prize, index)
                    else:
                        # A batch: its own key is written only if it wins the prize too.
                        await storage.commit(
                            [Change.create(prize, index), Change.put(f"{prize}:{index}", index)]
                        )
                except Conflict:
                    return
                winners.append(index)

            await asyncio.gather(*(racer(index) for index in range(16)))
            assert len(winners) == 1
            assert await storage.get(prize) == winners[0]
            mine = [key async for key in storage.keys(f"{prize}:")]
            assert mine == ([f"{prize}:{winners[0]}"] if winners[0] % 2 == 0 else [])


@pytest.mark.anyio
async def test_concurrent_updates_from_tasks_lose_nothing(helper_table: str) -> None:
    async with Storage(postgresql_driver(POSTGRESQL_URL, table=helper_table)) as storage:

        async def by_commit() -> None:
            # The same increment as a batch, with a check that holds: commits and update's
            # single-key writes must exclude each other too.
            while True:
                found = await storage.get_versioned("counter")
                change = (
                    Change.create("counter", 1)
                    if found is None
                    else Change.replace("counter", cast(int, found.value) + 1, found.version)
                )
                try:
                    await storage.commit([change, Change.check("absent", None)])
                except Conflict:
                    continue
                return

        async def worker(index: int) -> None:
            for _ in range(10):
                if index % 2:
                    await by_commit()
                else:
                    # Many attempts: this checks that no increment is lost, not how few
                    # retries twenty tasks on one key need.
                    await storage.update("counter", lambda n: (n or 0) + 1, attempts=10_000)

        await asyncio.gather(*(worker(index) for index in range(20)))
        assert await storage.get("counter") == 200


_COUNTER_WORKER = """
import asyncio, sys
from kvstore.drivers.postgresql import postgresql_driver
from kvstore.storage import Storage

async def main(url, table, times):
    async with Storage(postgresql_driver(url, table=table)) as storage:
        for _ in range(times):
            await storage.update("counter", lambda n: (n or 0) + 1, attempts=100_000)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def test_concurrent_updates_from_four_processes_lose_nothing(
    admin: psycopg.Connection, helper_table: str
) -> None:
    # The processes also race to create the table.
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _COUNTER_WORKER, POSTGRESQL_URL, helper_table, "50"],
            stderr=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    for process in processes:
        _, errors = process.communicate(timeout=240)
        assert process.returncode == 0, errors.decode()
    rows = admin.execute(f'SELECT key, value FROM "{helper_table}"').fetchall()
    assert [(key, json.loads(value)) for key, value in rows] == [("counter", 200)]


@pytest.mark.anyio
async def test_a_conditional_write_goes_through_once_after_the_server_dropped_the_pool(
    admin: psycopg.Connection, helper_table: str
) -> None:
    marker = f"sqlsrv-{uuid.uuid4().hex[:10]}"
    url = _with_options(POSTGRESQL_URL, application_name=marker)
    async with Storage(postgresql_driver(url, table=helper_table)) as storage:
        version = await storage.create("k", 1)
        # As an idle-session timeout or a restart would: the pooled connection is closed
        # (the call waits until the backend is gone).
        ended = admin.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE application_name = %s",
            (marker,),
        ).fetchall()
        assert ended == [(True,)]
        # A conditional write is never sent twice; it is sent on a live connection instead of
        # failing on the dead one, and applied once (a replay would conflict with itself).
        written = await storage.replace("k", 2, version)
        assert await storage.get_versioned("k") == Versioned(2, written)


@pytest.mark.anyio
@pytest.mark.parametrize("other_commits", [True, False])
async def test_a_commit_checks_against_a_concurrent_insert_once_it_ends(
    admin: psycopg.Connection, helper_table: str, other_commits: bool
) -> None:
    marker = f"sqlsrv-{uuid.uuid4().hex[:10]}"
    url = _with_options(POSTGRESQL_URL, application_name=marker)
    async with Storage(postgresql_driver(url, table=helper_table)) as storage:
        await storage.set("other", 0)
        with psycopg.connect(POSTGRESQL_URL, connect_timeout=5) as writer:
            # Another client's transaction has inserted "k" and not ended yet.
            writer.execute(
                f'INSERT INTO "{helper_table}" (key, value) VALUES (%s, %s)', ("k", b"1")
            )
            commit = asyncio.ensure_future(
                storage.commit([Change.check("k", None), Change.put("mine", 1)])
            )
            # The commit must wait for that transaction, not decide on what it saw before.
            for _ in range(1000):
                waiting = admin.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE application_name = %s AND wait_event_type = 'Lock'",
                    (marker,),
                ).fetchone()
                if waiting == (1,):
                    break
                await asyncio.sleep(0.01)
            else:
                pytest.fail("the commit never waited for the other transaction")
            assert not commit.done()
            if other_commits:
                writer.commit()
            else:
                writer.rollback()
        if other_commits:
            with pytest.raises(Conflict):
                await commit
            assert await storage.get("mine") is None
        else:
            await commit
            assert await storage.get("mine") == 1
            assert await storage.get("k") is None
    assert ("k" in [key for key, _, _ in _rows(admin, helper_table)]) is other_commits


@pytest.mark.anyio
async def test_every_unconditional_write_gives_a_new_version(helper_table: str) -> None:
    async with Storage(postgresql_driver(POSTGRESQL_URL, table=helper_table)) as storage:
        seen: set[int] = set()

        async def version_of(key: str) -> int:
            found = await storage.get_versioned(key)
            assert found is not None
            return found.version

        for _ in range(3):
            await storage.set("k", 1)  # the same value: still a new version
            seen.add(await version_of("k"))
            await storage.set_many({"k": 1, "j": 2})
            seen.add(await version_of("k"))
        assert len(seen) == 6
        assert LEGACY_VERSION not in seen
        old = await version_of("j")
        await storage.delete("j")
        assert await storage.get_versioned("j") is None
        with pytest.raises(Conflict):
            await storage.replace("j", 3, old)
