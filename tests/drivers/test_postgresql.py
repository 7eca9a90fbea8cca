"""The PostgreSQL driver against a real server: the conformance suite, schema, pool, outages."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import types
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, cast

import anyio
import psycopg
import pytest
from hypothesis import given, settings
from psycopg.conninfo import conninfo_to_dict

import kvstore.drivers.postgresql as postgresql_module
from kvstore import create_storage
from kvstore.drivers.postgresql import PostgreSQLDriver, from_url, postgresql_driver
from kvstore.errors import BackendError, BackendUnavailable, ConfigurationError
from kvstore.expiry import Meta
from kvstore.storage import Storage
from kvstore.testing import DriverConformance, DriverFactory
from kvstore.testing.clock import TestClock
from kvstore.testing.cost import measure_best
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
from tests.support.sql_conditional import (
    SQLAdapter,
    SQLConditionalWrites,
    check_a_conditional_write_survives_a_dropped_pool,
)


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
    assert columns == [
        ("key", "text", "C"),
        ("value", "bytea", None),
        ("version", "bigint", None),
        ("expires_at", "bigint", None),
        ("written_at", "bigint", None),
    ]


@pytest.mark.anyio
async def test_prefix_scans_are_index_range_scans(admin: psycopg.Connection, table: str) -> None:
    driver = postgresql_driver(POSTGRESQL_URL, table=table)
    async with Storage(driver) as storage:
        await storage.set_many({f"k:{index}": index for index in range(50)})
    # As autovacuum leaves a table: an index-only scan then reads no heap page.
    admin.execute(f'VACUUM ANALYZE "{table}"')
    # The scan's own statement, planned without the option of reading the whole table.
    with admin.transaction():
        admin.execute("SET LOCAL enable_seqscan = off")
        query = driver._scan_joined[(True, True)].replace("%s", "'k:'", 1).replace("%s", "'k;'")
        plan = "\n".join(row[0] for row in admin.execute("EXPLAIN ANALYZE " + query))
    # The primary key carries expires_at: the expiry filter needs no second index and no row.
    assert f"Index Only Scan using {table}_pkey" in plan, plan
    assert "key >= 'k:'" in plan, plan
    assert "key < 'k;'" in plan, plan
    assert "Heap Fetches: 0" in plan, plan
@pytest.mark.anyio
async def test_a_key_holding_a_newline_is_scanned_whole_on_every_page(
    admin: psycopg.Connection, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pages come back as one newline-joined text; a key written around Storage may hold a
    # newline, and the page holding it must still yield it whole, in order, once.
    monkeypatch.setattr(postgresql_module, "SCAN_PAGE", 2)
    driver = postgresql_driver(POSTGRESQL_URL, table=table)
    try:
        await driver.set_many([(key, b"v") for key in ("k:a", "k:c", "k:d", "k:e", "k:g")])
        admin.execute(
            f'INSERT INTO "{table}" (key, value) VALUES (%s, %s), (%s, %s)',
            ("k:b\nx", b"v", "k:f\n", b"v"),
        )
        expected = ["k:a", "k:b\nx", "k:c", "k:d", "k:e", "k:f\n", "k:g"]
        assert [key async for key in driver.keys("k:")] == expected
        assert [key async for key in driver.keys("")] == expected
        assert [key async for key in driver.keys("k:f")] == ["k:f\n"]
        assert [key async for key in driver.keys("k:z")] == []
    finally:
        await driver.close()


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
async def test_set_many_versions_drawn_by_the_server_are_fresh_and_in_range(table: str) -> None:
    # set_many lets the server draw each row's version (random() per row), in new_version()'s
    # range: every key gets its own, and a rewrite gives every key a new one.
    driver = postgresql_driver(POSTGRESQL_URL, table=table)
    keys = [f"v:{index:04d}" for index in range(1_000)]

    async def versions() -> list[int]:
        found = [await driver.get_versioned(key) for key in keys]
        return [item.version for item in found if item is not None]

    try:
        await driver.set_many([(key, b"1") for key in keys])
        first = await versions()
        await driver.set_many_expiring([(key, b"2") for key in keys], 60)
        second = await versions()
    finally:
        await driver.close()
    assert len(first) == len(second) == len(keys)
    assert all(type(version) is int and 1 <= version <= 2**52 for version in first + second)
    # 2,000 draws of 52 bits: a repeat would mean the draws are not independent per row.
    assert len(set(first) | set(second)) == 2 * len(keys)


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
    private_postgresql: PostgreSQLInstance,
    outage_storage: Storage,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="kvstore.postgresql")
    await check_restart_between_operations(outage_storage, private_postgresql)
    # The pooled connections the restart killed were dropped (a pool reset), and that was logged.
    assert any(
        record.name == "kvstore.postgresql" and "dropped" in record.getMessage()
        for record in caplog.records
    )


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


class _Watched:
    """A stand-in connection for the deadline watch: what ``_abort`` reads, over a socket pair."""

    def __init__(self) -> None:
        self.ours, self.peer = socket.socketpair()
        self.peer.setblocking(False)
        self.pgconn = types.SimpleNamespace(socket=self.ours.fileno())

    def shut_down(self) -> bool:
        """Whether ``_abort`` shut the socket down: the peer then reads end of file at once."""
        try:
            return self.peer.recv(1) == b""
        except BlockingIOError:
            return False

    def close(self) -> None:
        self.ours.close()
        self.peer.close()


def test_one_timer_watches_every_operation_at_the_earliest_deadline() -> None:
    driver = postgresql_driver("postgresql://h/d")
    loop = asyncio.new_event_loop()
    late, early, later = _Watched(), _Watched(), _Watched()
    try:
        now = loop.time()
        driver._watch(loop, cast(Any, late), now + 100)
        assert driver._watcher is not None
        assert driver._watcher.when() == now + 100
        # An operation that waited for its connection can carry an earlier deadline.
        driver._watch(loop, cast(Any, early), now + 50)
        assert driver._watcher.when() == now + 50
        driver._watch(loop, cast(Any, later), now + 200)
        assert driver._watcher.when() == now + 50
        # The early operation ends; when the timer runs, nothing is due: it moves on.
        driver._running.pop(cast(Any, early))
        driver._check_deadlines()
        assert driver._watcher is not None
        assert driver._watcher.when() == now + 100
        assert not any(watched.shut_down() for watched in (late, early, later))
    finally:
        for watched in (late, early, later):
            watched.close()
        loop.close()


def test_the_watch_shuts_down_only_the_connections_past_their_deadline() -> None:
    driver = postgresql_driver("postgresql://h/d")
    loop = asyncio.new_event_loop()
    overdue, running = _Watched(), _Watched()
    try:
        now = loop.time()
        driver._watch(loop, cast(Any, overdue), now - 1)
        driver._watch(loop, cast(Any, running), now + 100)
        driver._check_deadlines()
        assert overdue.shut_down()
        assert not running.shut_down()
        assert list(driver._running) == [cast(Any, running)]
        assert driver._watcher is not None
        assert driver._watcher.when() == now + 100
        # Once every operation has ended, a run of the timer leaves no timer behind.
        driver._running.clear()
        driver._check_deadlines()
        assert driver._watcher is None
    finally:
        overdue.close()
        running.close()
        loop.close()


def test_the_watch_follows_the_driver_to_another_event_loop() -> None:
    driver = postgresql_driver("postgresql://h/d")
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    one, two = _Watched(), _Watched()
    try:
        driver._watch(first, cast(Any, one), first.time() + 100)
        driver._running.clear()
        # The first loop's timer will never run on the second: the watch starts over there.
        due = second.time() + 200
        driver._watch(second, cast(Any, two), due)
        assert driver._watch_loop is second
        assert driver._watcher is not None
        assert driver._watcher.when() == due
    finally:
        one.close()
        two.close()
        first.close()
        second.close()


@pytest.mark.anyio
async def test_operations_leave_the_watch_when_they_end(table: str) -> None:
    driver = postgresql_driver(POSTGRESQL_URL, table=table)
    async with Storage(driver) as storage:
        await storage.set("a", 1)
        assert await storage.get("a") == 1
        assert [key async for key in storage.keys()] == ["a"]
        assert driver._running == {}


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


class _PostgreSQL(SQLAdapter):
    """The shared conditional-write tests' view of PostgreSQL, through the ``admin`` connection."""

    url = POSTGRESQL_URL
    factory_path = "kvstore.drivers.postgresql:postgresql_driver"
    pre_versions_table = _PRE_VERSIONS_TABLE

    def __init__(self, admin: psycopg.Connection) -> None:
        self.admin = admin

    @staticmethod
    def marker(table: str) -> str:
        """The application_name of the connections a driver from :meth:`driver` opens."""
        return f"sqlsrv-{table}"

    def driver(self, table: str, **options: Any) -> PostgreSQLDriver:
        # Tagged, so that the server's view of this driver's connections can be found.
        url = _with_options(POSTGRESQL_URL, application_name=self.marker(table))
        return postgresql_driver(url, table=table, **options)

    def quote(self, name: str) -> str:
        return f'"{name}"'

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = self.admin.execute(sql, parameters)
        # A statement without a result (DDL, INSERT) has no rows to fetch.
        return [] if cursor.description is None else cursor.fetchall()

    def raw_key(self, key: str) -> str:
        return key

    def insert_uncommitted(self, table: str, key: str, value: bytes) -> psycopg.Connection:
        writer = psycopg.connect(POSTGRESQL_URL, connect_timeout=5)
        # Not autocommit: the INSERT opens a transaction that stays open until told.
        writer.execute(f'INSERT INTO "{table}" (key, value) VALUES (%s, %s)', (key, value))
        return writer

    def commit_is_waiting(self, table: str) -> bool:
        waiting = self.admin.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = %s AND wait_event_type = 'Lock'",
            (self.marker(table),),
        ).fetchone()
        return waiting == (1,)


class TestPostgreSQLConditionalWrites(SQLConditionalWrites):
    """The shared conditional-write tests, and those that only PostgreSQL runs."""

    @pytest.fixture
    def sql(self, admin: psycopg.Connection) -> _PostgreSQL:
        return _PostgreSQL(admin)

    @pytest.mark.anyio
    async def test_a_conditional_write_goes_through_once_after_the_server_dropped_the_pool(
        self, sql: _PostgreSQL, helper_table: str
    ) -> None:
        async def drop_pool() -> None:
            # As an idle-session timeout or a restart would: the pooled connection is closed
            # (the call waits until the backend is gone).
            ended = sql.query(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (sql.marker(helper_table),),
            )
            assert ended == [(True,)]

        async with Storage(sql.driver(helper_table)) as storage:
            await check_a_conditional_write_survives_a_dropped_pool(storage, drop_pool)


# -- expiry: the server's clock, physical purges, the upgrade of older tables, scan cost ------

# The table as the driver created it before expiry existed (kvstore at commit 43cb44e,
# PostgreSQLDriver._create with its _ADDED_COLUMNS): the pre-expiry layout, copied as it was.
_PRE_EXPIRY_TABLE = (
    'CREATE TABLE {quoted} (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL, '
    "version bigint NOT NULL DEFAULT 0)"
)
# A TTL short enough to wait for, long enough that a batch is written before it passes.
_SHORT_TTL = 0.5


def _count_rows(admin: psycopg.Connection, table: str, where: str = "true") -> int:
    row = admin.execute(f'SELECT count(*) FROM "{table}" WHERE {where}').fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def no_automatic_purge(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let only a driver's first expiring write purge (a batch that took longer than its TTL
    to write would otherwise lose rows to the purge that follows it, on a loaded machine)."""
    monkeypatch.setattr(postgresql_module, "AUTO_PURGE_INTERVAL", 3600.0)


async def _write_expired(driver: PostgreSQLDriver, keys: Sequence[str]) -> None:
    """Write ``keys`` with a short TTL through the driver, and return once they have expired.

    The driver's first expiring write must have come before (see ``no_automatic_purge``).
    """
    assert driver._purge_due > time.monotonic(), "an expiring write must come first"
    await driver.set_many_expiring([(key, b"gone") for key in keys], _SHORT_TTL)
    # The server stamped the batch before the call returned, on this machine's clock.
    await TestClock(manual=False).pass_instant(time.time() + _SHORT_TTL)


def _server_now(admin: psycopg.Connection) -> float:
    row = admin.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
    assert row is not None
    return float(row[0])


@pytest.mark.anyio
async def test_the_server_clock_stamps_every_write(
    admin: psycopg.Connection, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver = postgresql_driver(POSTGRESQL_URL, table=table)
    try:
        await driver.open()
        before = _server_now(admin)
        # A client clock a century off: nothing the driver writes may follow it.
        monkeypatch.setattr(time, "time", lambda: 4_000_000_000.0)
        await driver.set("plain", b"1")
        await driver.set_expiring("expiring", b"2", 30)
        plain = await driver.get_meta("plain")
        expiring = await driver.get_meta("expiring")
        monkeypatch.undo()
        after = _server_now(admin)
    finally:
        await driver.close()
    assert plain is not None
    assert expiring is not None
    # Milliseconds: the stamps round to the nearest one.
    for meta in (plain, expiring):
        assert meta.written_at is not None
        assert before - 0.001 <= meta.written_at <= after + 0.001
    assert plain.expires_at is None
    assert expiring.written_at is not None
    assert expiring.expires_at == pytest.approx(expiring.written_at + 30, abs=1e-6)


@pytest.mark.anyio
async def test_get_meta_is_one_statement_and_sizes_without_reading_the_value(
    table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver = postgresql_driver(POSTGRESQL_URL, table=table)
    try:
        big = bytes(range(256)) * 4096  # 1 MiB, stored compressed out of line (TOAST)
        await driver.set("big", big)
        statements: list[str] = []
        execute = psycopg.AsyncConnection.execute

        async def counted(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            statements.append(str(query))
            return await execute(self, query, *args, **kwargs)

        monkeypatch.setattr(psycopg.AsyncConnection, "execute", counted)
        meta = await driver.get_meta("big")
        monkeypatch.undo()
    finally:
        await driver.close()
    assert meta is not None
    assert meta.size == len(big)
    assert statements == [driver._get_meta]
    assert "octet_length(value)" in driver._get_meta


@pytest.mark.anyio
@pytest.mark.usefixtures("no_automatic_purge")
async def test_purge_expired_deletes_expired_rows_through_the_expiry_index(
    admin: psycopg.Connection, table: str
) -> None:
    driver = postgresql_driver(POSTGRESQL_URL, table=table)
    try:
        await driver.set_many([(f"live:{index}", b"v") for index in range(5)])
        await driver.set_many_expiring([(f"later:{index}", b"v") for index in range(5)], 600)
        await _write_expired(driver, [f"gone:{index:02d}" for index in range(30)])
        # Expired but not purged: absent to reads, still in the table.
        assert await driver.get("gone:00") is None
        assert _count_rows(admin, table) == 40
        assert await driver.purge_expired(10) == 10
        assert _count_rows(admin, table, "key LIKE 'gone:%'") == 20
        assert await driver.purge_expired() == 20
        assert await driver.purge_expired() == 0
    finally:
        await driver.close()
    remaining = admin.execute(f'SELECT key FROM "{table}" ORDER BY key').fetchall()
    assert [key for (key,) in remaining] == [
        *(f"later:{index}" for index in range(5)), *(f"live:{index}" for index in range(5))
    ]
    # The purge's statement finds expired rows through the partial index, not a table scan.
    with admin.transaction():
        admin.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(
            row[0] for row in admin.execute("EXPLAIN " + driver._purge.replace("%s", "100"))
        )
    assert f"{table}_expires_at" in plan, plan


@pytest.mark.anyio
@pytest.mark.usefixtures("no_automatic_purge")
async def test_expiring_writes_purge_a_small_batch_at_most_once_per_interval(
    admin: psycopg.Connection, table: str
) -> None:
    # The interval is an hour here: the driver's first expiring write purges, and then only
    # one after the test says the interval has passed.
    driver = postgresql_driver(POSTGRESQL_URL, table=table)
    expired = postgresql_module.AUTO_PURGE_BATCH + 50
    try:
        await driver.set_expiring("fresh", b"v", 600)
        await _write_expired(driver, [f"gone:{index:04d}" for index in range(expired)])
        # Within the interval neither an expiring write nor a plain one purges.
        assert await driver.expire("fresh", 900) is True
        await driver.set("plain", b"v")
        await driver.set_many([("plain2", b"v")])
        assert _count_rows(admin, table, "key LIKE 'gone:%'") == expired
        # Once the interval has passed, the next expiring write purges one small batch.
        driver._purge_due = 0.0
        await driver.set_expiring("fresh2", b"v", 600)
        assert _count_rows(admin, table, "key LIKE 'gone:%'") == 50
        driver._purge_due = 0.0
        assert await driver.expire("fresh", None) is True
        assert _count_rows(admin, table, "key LIKE 'gone:%'") == 0
    finally:
        await driver.close()
    assert _count_rows(admin, table) == 4


@pytest.mark.anyio
async def test_a_table_from_before_expiry_is_upgraded_in_place(
    admin: psycopg.Connection, table: str
) -> None:
    admin.execute(_PRE_EXPIRY_TABLE.format(quoted=f'"{table}"'))
    admin.execute(
        f'INSERT INTO "{table}" (key, value, version) VALUES (%s, %s, 7), (%s, %s, 0)',
        ("a", b'"old a"', "b", b'"old b"'),
    )
    async with Storage(postgresql_driver(POSTGRESQL_URL, table=table)) as storage:
        assert await storage.get("a") == "old a"
        meta = await storage.get_meta("a")
        assert meta == Meta(size=len(b'"old a"'), written_at=None, expires_at=None, version=7)
        # Old rows gain TTLs; the value, version and (unknown) write time stay.
        assert await storage.expire("a", 600) is True
        meta = await storage.get_meta("a")
        assert meta is not None
        assert meta.expires_at is not None
        assert (meta.written_at, meta.version) == (None, 7)
        await storage.set("b", "new b", ttl=600)
        meta = await storage.get_meta("b")
        assert meta is not None
        assert meta.written_at is not None
        assert meta.expires_at is not None
    indexes: dict[str, str] = dict(
        admin.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", (table,)
        ).fetchall()
    )
    # The primary key was rebuilt under its old name, covering the expiry.
    assert set(indexes) == {f"{table}_pkey", f"{table}_expires_at"}
    assert indexes[f"{table}_pkey"].endswith("(key) INCLUDE (expires_at)")
    assert indexes[f"{table}_expires_at"].endswith("(expires_at) WHERE (expires_at IS NOT NULL)")


@pytest.mark.anyio
async def test_drivers_upgrading_one_pre_expiry_table_at_once_all_succeed(
    admin: psycopg.Connection, table: str
) -> None:
    admin.execute(_PRE_EXPIRY_TABLE.format(quoted=f'"{table}"'))
    admin.execute(f'INSERT INTO "{table}" (key, value, version) VALUES (%s, %s, 3)', ("k", b"v"))
    drivers = [postgresql_driver(POSTGRESQL_URL, table=table, pool_size=1) for _ in range(6)]
    found: list[Meta | None] = [None] * len(drivers)

    async def read(index: int, driver: PostgreSQLDriver) -> None:
        found[index] = await driver.get_meta("k")

    try:
        async with anyio.create_task_group() as group:
            for index, driver in enumerate(drivers):
                group.start_soon(read, index, driver)
    finally:
        for driver in drivers:
            await driver.close()
    assert found == [Meta(size=1, written_at=None, expires_at=None, version=3)] * len(drivers)


@pytest.mark.anyio
@pytest.mark.usefixtures("no_automatic_purge")
async def test_a_scan_over_mostly_expired_keys_costs_what_its_live_keys_cost(
    admin: psycopg.Connection, table: str
) -> None:
    driver = postgresql_driver(POSTGRESQL_URL, table=table)
    many = [f"x:{index:05d}" for index in range(10_000)]
    try:
        await driver.set_expiring("first", b"v", 600)
        # 9,000 expired through the API, the other 1,000 (every tenth) live among them; and
        # 1,000 live keys alone under another prefix.
        await _write_expired(driver, [key for index, key in enumerate(many) if index % 10])
        await driver.set_many([(key, b"live") for key in many[::10]])
        await driver.set_many([(f"y:{index:05d}", b"live") for index in range(1000)])
        # Index-only scans read no heap page only where the visibility map says so, which
        # autovacuum sets in time; VACUUM sets it now, the same for both scans.
        admin.execute(f'VACUUM ANALYZE "{table}"')

        async def count(prefix: str) -> None:
            assert len([key async for key in driver.keys(prefix)]) == 1000

        mostly_expired = await measure_best(lambda: count("x:"))
        live = await measure_best(lambda: count("y:"))
    finally:
        await driver.close()
    assert mostly_expired.steps <= 2.5 * live.steps, (mostly_expired, live)
    assert mostly_expired.peak_bytes <= 2.5 * live.peak_bytes, (mostly_expired, live)
    # The server skips the expired rows on the index alone: no heap page is read.
    query = driver._scan_joined[(True, True)].replace("%s", "'x:'", 1).replace("%s", "'x;'")
    plan = "\n".join(row[0] for row in admin.execute("EXPLAIN ANALYZE " + query))
    assert f"Index Only Scan using {table}_pkey" in plan, plan
    assert "Heap Fetches: 0" in plan, plan


@pytest.mark.anyio
async def test_a_table_name_of_the_longest_length_gets_indexes_of_its_own(
    admin: psycopg.Connection,
) -> None:
    # 63 characters: "<table>_expires_at" would be truncated to the table's own name.
    table = f"kvtest_{uuid.uuid4().hex}".ljust(63, "t")
    try:
        async with Storage(postgresql_driver(POSTGRESQL_URL, table=table)) as storage:
            await storage.set("a", 1, ttl=600)
            assert await storage.purge_expired() == 0
            assert [key async for key in storage.keys("")] == ["a"]
        names = [
            name
            for (name,) in admin.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = %s", (table,)
            ).fetchall()
        ]
        assert len(names) == 2
        assert all(name != table and len(name) <= 63 for name in names)
    finally:
        admin.execute(f'DROP TABLE IF EXISTS "{table}"')
