"""The SQLite driver: the conformance suite (on a new file, and on a file whose table an earlier
release made WITHOUT ROWID), several processes on one file, lock waits, versions and conditional
writes, and the upgrade of a store in the layout from before versions."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

import kvstore
from kvstore import pacing
from kvstore.conditional import LEGACY_VERSION, Change
from kvstore.driver import LATER
from kvstore.drivers import sqlite as sqlite_module
from kvstore.drivers.sqlite import (
    DEFAULT_TABLE,
    SQLiteDriver,
    default_path,
    from_url,
    sqlite_driver,
)
from kvstore.errors import (
    BackendError,
    BackendUnavailable,
    ConfigurationError,
    Conflict,
    StorageClosed,
)
from kvstore.expiry import Meta
from kvstore.testing import DriverConformance, DriverFactory
from kvstore.testing.clock import TestClock
from kvstore.testing.cost import measure_best


class TestSQLiteFile(DriverConformance):
    manual_clock = True

    @pytest.fixture
    def driver_factory(self, tmp_path: Path, clock: TestClock) -> DriverFactory:
        path = tmp_path / "store" / "kv.db"
        return lambda: sqlite_driver(path, clock=clock)


# The table as every release before rowid tables created it (copied from the driver at commit
# 6c402c1, the last WITHOUT ROWID layout): files written then are used as they are, never
# rewritten, so the whole conformance suite runs on one too.
WITHOUT_ROWID_DDL = (
    f'CREATE TABLE IF NOT EXISTS "{DEFAULT_TABLE}" (key TEXT PRIMARY KEY, '
    f"version INTEGER NOT NULL DEFAULT {LEGACY_VERSION}, expires_at INTEGER, written_at INTEGER, "
    "value BLOB NOT NULL) WITHOUT ROWID"
)
# Its expiry index, as that release made it.
WITHOUT_ROWID_INDEX = (
    f'CREATE INDEX IF NOT EXISTS "{DEFAULT_TABLE}:expires_at" ON "{DEFAULT_TABLE}" (expires_at) '
    "WHERE expires_at IS NOT NULL"
)


def _make_without_rowid_store(path: Path) -> None:
    """Create an empty file in the last WITHOUT ROWID layout, as the release before made it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(WITHOUT_ROWID_DDL)
        conn.execute(WITHOUT_ROWID_INDEX)


def _table_sql(path: Path) -> str:
    with closing(sqlite3.connect(path)) as conn:
        row = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (DEFAULT_TABLE,)
        ).fetchone()
    assert row is not None
    return str(row[0])


class TestSQLiteWithoutRowid(DriverConformance):
    """Every driver behaviour on a file whose table an earlier release made WITHOUT ROWID."""

    manual_clock = True

    @pytest.fixture
    def driver_factory(self, tmp_path: Path, clock: TestClock) -> DriverFactory:
        path = tmp_path / "store" / "kv.db"
        _make_without_rowid_store(path)
        return lambda: sqlite_driver(path, clock=clock)


class TestSQLiteMemory(DriverConformance):
    persistent = False
    manual_clock = True

    @pytest.fixture
    def driver_factory(self, clock: TestClock) -> DriverFactory:
        return lambda: sqlite_driver(":memory:", clock=clock)


# -- helpers --------------------------------------------------------------------------------

SUPPORT = Path(__file__).parent / "sqlite_support"
REPO_ROOT = Path(kvstore.__file__).resolve().parent.parent


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if part
    )
    return env


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def db_path(tmp_path: Path) -> Path:
    """A database file whose table already exists (so another process can lock it)."""
    path = tmp_path / "shared.db"
    driver = sqlite_driver(path)
    await driver.set("existing", b"0")
    await driver.close()
    return path


class LockHolder:
    """A separate process holding the database's write lock until :meth:`release`."""

    def __init__(self, process: Process) -> None:
        self.process = process
        assert process.stdout is not None
        self._lines = BufferedByteReceiveStream(process.stdout)

    async def read_line(self) -> str:
        return (await self._lines.receive_until(b"\n", 100)).decode().strip()

    async def release(self, command: str) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send(f"{command}\n".encode())
        assert await self.read_line() == "released"


@asynccontextmanager
async def lock_held(path: Path, table: str = DEFAULT_TABLE) -> AsyncIterator[LockHolder]:
    """Run ``hold_lock.py`` and return once it reports the write lock taken."""
    script = str(SUPPORT / "hold_lock.py")
    async with await anyio.open_process([sys.executable, script, str(path), table]) as process:
        holder = LockHolder(process)
        try:
            with anyio.fail_after(30):
                assert await holder.read_line() == "locked"
            yield holder
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()


# -- several processes ----------------------------------------------------------------------


def _run_together(
    commands: list[list[str]], *, timeout: float
) -> tuple[list[subprocess.Popen[str]], list[tuple[str, str]]]:
    """Start a child per command, wait until each prints ``ready``, then start them together.

    Returns the processes and their ``(stdout, stderr)``; a child still running on the way out
    is killed.
    """
    processes = [
        subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_child_env(),
            text=True,
        )
        for command in commands
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
        # All are waiting on stdin now: one line each starts them together.
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        results = [process.communicate(timeout=timeout) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return processes, results


def test_four_processes_write_to_one_file_at_once(tmp_path: Path) -> None:
    path = tmp_path / "new" / "shared.db"
    workers, count = 4, 1000
    processes, results = _run_together(
        [
            [sys.executable, str(SUPPORT / "writer.py"), str(path), str(worker), str(count)]
            for worker in range(workers)
        ],
        timeout=300,
    )
    for process, (_, stderr) in zip(processes, results, strict=True):
        assert "locked" not in stderr
        assert process.returncode == 0, stderr

    async def read_back() -> tuple[list[str], list[bytes | None]]:
        driver = sqlite_driver(path)
        try:
            keys = [key async for key in driver.keys("w")]
            return keys, await driver.get_many(keys)
        finally:
            await driver.close()

    keys, values = anyio.run(read_back)
    pairs = [(worker, n) for worker in range(workers) for n in range(count)]
    assert keys == [f"w{worker}:{n:05d}" for worker, n in pairs]
    assert values == [f"{worker}:{n}".encode() for worker, n in pairs]


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.anyio
async def test_waiting_for_another_process_lock_keeps_the_event_loop_running(
    db_path: Path,
) -> None:
    driver = sqlite_driver(db_path, busy_timeout=60)
    await driver.get("open now")
    set_done = anyio.Event()
    ticked = anyio.Event()
    ticks_while_blocked = 0

    async def heartbeat() -> None:
        nonlocal ticks_while_blocked
        while not set_done.is_set():
            ticks_while_blocked += 1
            if ticks_while_blocked >= 5:
                ticked.set()
            await anyio.sleep(0.001)

    async def write() -> None:
        await driver.set("waited", b"after the lock")
        set_done.set()

    try:
        async with lock_held(db_path) as holder, anyio.create_task_group() as tasks:
            tasks.start_soon(write)
            tasks.start_soon(heartbeat)
            # A set that blocked the loop would keep the heartbeat from ever ticking.
            with anyio.fail_after(30):
                await ticked.wait()
            # The other process still holds the lock, so the set cannot have finished.
            assert not set_done.is_set()
            assert ticks_while_blocked >= 5
            await holder.release("commit")
        assert set_done.is_set()
        assert await driver.get("waited") == b"after the lock"
        assert await driver.get("held") == b"1"  # the other process's write is kept too
    finally:
        await driver.close()


@pytest.mark.anyio
async def test_lock_held_longer_than_busy_timeout_raises_backend_unavailable(
    db_path: Path,
) -> None:
    driver = sqlite_driver(db_path, busy_timeout=0.2)
    try:
        async with lock_held(db_path) as holder:
            with pytest.raises(BackendUnavailable) as single:
                await driver.set("late", b"1")
            with pytest.raises(BackendUnavailable):
                await driver.set_many([("late:1", b"1"), ("late:2", b"2")])
            with pytest.raises(BackendUnavailable):
                await driver.clear("")
            # Readers are not blocked by a writer under WAL.
            assert await driver.get("existing") == b"0"
            await holder.release("rollback")
        message = str(single.value)
        assert "database is locked" not in message
        assert str(db_path) in message
        assert "busy_timeout=0.2s" in message
        assert single.value.driver == "sqlite"
        # Nothing was written, and the driver works once the lock is free.
        assert await driver.get_many(["late", "late:1", "late:2"]) == [None, None, None]
        assert [key async for key in driver.keys()] == ["existing"]
        await driver.set("late", b"now")
        assert await driver.get("late") == b"now"
    finally:
        await driver.close()


# -- files, paths and URLs ------------------------------------------------------------------


@pytest.mark.anyio
async def test_values_survive_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "durable.db"
    first = sqlite_driver(path)
    await first.set_many([("a", b"1"), ("b:c", b"\x00\xff" * 1000)])
    await first.set("d", b"")
    await first.delete("a")
    await first.close()

    second = sqlite_driver(path)
    try:
        assert await second.get_many(["a", "b:c", "d"]) == [None, b"\x00\xff" * 1000, b""]
        assert [key async for key in second.keys()] == ["b:c", "d"]
    finally:
        await second.close()
    with closing(sqlite3.connect(path)) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.mark.anyio
async def test_parent_directories_are_created_on_first_use(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c" / "kv.db"
    driver = sqlite_driver(path)
    assert not (tmp_path / "a").exists()  # the constructor does no I/O
    try:
        await driver.set("k", b"v")
        assert path.is_file()
    finally:
        await driver.close()


def test_default_path_honours_agentx_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTX_DIR", str(tmp_path / "agentx"))
    assert default_path() == tmp_path / "agentx" / "data" / "agentx.db"
    assert sqlite_driver().path == str(tmp_path / "agentx" / "data" / "agentx.db")


def test_default_path_is_under_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTX_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert sqlite_driver().path == str(tmp_path / ".agentx" / "data" / "agentx.db")


@pytest.mark.anyio
async def test_create_storage_without_url_uses_the_default_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTX_DIR", str(tmp_path))
    async with kvstore.create_storage() as storage:
        await storage.set("greeting", {"hello": "world"})
    async with kvstore.create_storage(f"sqlite:///{tmp_path}/data/agentx.db") as again:
        assert await again.get("greeting") == {"hello": "world"}


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite://", ":memory:"),
        ("sqlite:///:memory:", ":memory:"),
        ("sqlite:///rel.db", "{cwd}/rel.db"),
        ("sqlite:///sub/dir/rel.db", "{cwd}/sub/dir/rel.db"),
        ("sqlite:///my%20file.db", "{cwd}/my file.db"),
        ("sqlite:////abs/path.db", "/abs/path.db"),
        ("SQLITE:////abs/path.db?table=other", "/abs/path.db"),
    ],
)
def test_url_paths(url: str, path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert from_url(url).path == path.format(cwd=tmp_path)


def test_url_options() -> None:
    driver = from_url("sqlite:////tmp/x.db?table=events_kv&busy_timeout=2.5&synchronous=full")
    assert (driver.table, driver.busy_timeout, driver.synchronous) == ("events_kv", 2.5, "FULL")
    plain = from_url("sqlite:////tmp/x.db")
    assert (plain.table, plain.busy_timeout, plain.synchronous) == (DEFAULT_TABLE, 30.0, "NORMAL")


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://somehost/x.db",
        "sqlite:///x.db?tabel=x",
        "sqlite:///x.db?table=bad-name",
        "sqlite:///x.db?busy_timeout=soon",
        "sqlite:///x.db?busy_timeout=-1",
        "sqlite:///x.db?synchronous=sometimes",
        "sqlite:///x.db#fragment",
        "postgresql:///x.db",
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"."):
        from_url(url)


def test_a_url_given_as_the_path_is_refused_without_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Taken as a path, it would be a database file in a folder named "postgresql:".
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match="create_storage") as caught:
        sqlite_driver("postgresql://root:s3cret@127.0.0.1/test")
    assert "s3cret" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.anyio
async def test_registry_builds_the_driver_from_a_url(tmp_path: Path) -> None:
    async with kvstore.create_storage(f"sqlite:///{tmp_path}/reg.db?table=reg") as storage:
        await storage.set("a:b", [1, 2])
        assert await storage.get("a:b") == [1, 2]
    with closing(sqlite3.connect(tmp_path / "reg.db")) as raw:
        assert raw.execute('SELECT key FROM "reg"').fetchall() == [("a:b",)]


@pytest.mark.parametrize(
    "table",
    ["", "1abc", "kv-store", 'kv"; DROP TABLE x; --', "kv store", "sqlite_master", "é", "a" * 64],
)
def test_table_names_are_validated(table: str) -> None:
    with pytest.raises(ConfigurationError, match="table name"):
        sqlite_driver(":memory:", table=table)


@pytest.mark.parametrize(
    "options",
    [{"busy_timeout": -1}, {"busy_timeout": float("nan")}, {"synchronous": "ALWAYS"}],
)
def test_bad_settings_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match=r"busy_timeout|synchronous"):
        sqlite_driver(":memory:", **options)


@pytest.mark.anyio
async def test_tables_in_one_file_are_separate(tmp_path: Path) -> None:
    path = tmp_path / "two.db"
    first, second = sqlite_driver(path, table="first"), sqlite_driver(path, table="Second_2")
    try:
        await first.set("k", b"1")
        await second.set("k", b"2")
        await first.clear()
        assert await first.get("k") is None
        assert await second.get("k") == b"2"
    finally:
        await first.close()
        await second.close()


@pytest.mark.anyio
async def test_unopenable_path_raises_backend_unavailable_naming_it(tmp_path: Path) -> None:
    directory = tmp_path / "a directory"
    directory.mkdir()
    blocker = tmp_path / "a file"
    blocker.write_text("not a directory")
    for path in (directory, blocker / "under" / "kv.db"):
        driver = sqlite_driver(path)
        with pytest.raises(BackendUnavailable) as caught:
            await driver.set("k", b"v")
        assert str(path) in str(caught.value)
        await driver.close()


@pytest.mark.anyio
async def test_a_file_that_is_not_a_database_raises_backend_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a SQLite database" * 100)
    driver = sqlite_driver(path)
    with pytest.raises(BackendError) as caught:
        await driver.get("k")
    assert str(path) in str(caught.value)
    await driver.close()
    assert path.read_bytes() == b"this is not a SQLite database" * 100


@pytest.mark.anyio
async def test_set_many_columns_writes_rows_as_set_many_does(
    tmp_path: Path, manual: ManualClock
) -> None:
    """Storage's batches come as two lists: every row gets its value, a fresh version of its
    own, the one write time and no expiry, across chunks, and a later pair for a key wins."""
    path = tmp_path / "columns.db"
    count = 2 * sqlite_module._WRITE_CHUNK + 5  # three chunks, the last a short one
    keys = [f"k:{n:04}" for n in range(count)]
    values = [b"v%d" % n for n in range(count)]
    async with _driver(path, manual) as driver:
        await driver.set_expiring("k:0001", b"old", 5)
        await driver.set_many_columns([*keys, "k:0000"], [*values, b"last"])
        assert await driver.get_many(keys) == [b"last", *values[1:]]
        meta = await driver.get_meta("k:0001")
        assert meta is not None
        assert (meta.size, meta.written_at, meta.expires_at) == (2, manual.now, None)
        await driver.set_many_columns([], [])
        assert len([key async for key in driver.keys()]) == count
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute(f'SELECT version, written_at FROM "{DEFAULT_TABLE}"').fetchall()
    assert len({version for version, _ in rows}) == count
    assert {written_at for _, written_at in rows} == {int(manual.now * 1000)}


@pytest.mark.anyio
async def test_set_many_columns_checks_lengths_and_writes_nothing_on_a_failure(
    tmp_path: Path,
) -> None:
    driver = sqlite_driver(tmp_path / "columns.db")
    try:
        await driver.set("before", b"0")
        with pytest.raises(ValueError, match="2 keys for 1 values"):
            await driver.set_many_columns(["e", "f"], [b"1"])
        # None breaks the NOT NULL constraint in a later chunk than the first.
        keys = [f"new:{n:04}" for n in range(600)]
        broken: list[Any] = [*(b"1" for _ in keys), None]
        with pytest.raises(BackendError):
            await driver.set_many_columns([*keys, "broken"], broken)
        assert [key async for key in driver.keys()] == ["before"]
        _no_transaction_left(Path(driver.path))
        await driver.close()
        with pytest.raises(StorageClosed):
            await driver.set_many_columns(["a"], [b"1"])
    finally:
        await driver.close()


@pytest.mark.anyio
async def test_set_many_columns_yields_between_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big batch is written a bounded chunk per statement, with a turn for the loop between."""
    driver = sqlite_driver(tmp_path / "columns.db")
    try:
        await driver.set("before", b"0")
        monkeypatch.setattr(pacing, "SLICE", 0.0)  # every pacing check yields
        before = pacing.pause_count()
        keys = [f"k:{n:04}" for n in range(2 * sqlite_module._WRITE_CHUNK + 1)]
        await driver.set_many_columns(keys, [b"v"] * len(keys))
        # One turn before the transaction, one after each of the first two chunks of three.
        assert pacing.pause_count() - before >= 3
        assert len([key async for key in driver.keys("k:")]) == len(keys)
    finally:
        await driver.close()


@pytest.mark.anyio
async def test_storage_batches_reach_a_subclass_that_changes_set_many(tmp_path: Path) -> None:
    """A test double that overrides set_many (and not set_many_columns) still sees Storage's
    batches."""
    seen: list[int] = []

    class Counting(SQLiteDriver):
        async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
            seen.append(len(items))
            await super().set_many(items)

    arguments = sqlite_module._Arguments(
        tmp_path / "counting.db", DEFAULT_TABLE, 30.0, "NORMAL", time.time
    )
    async with kvstore.Storage(Counting(arguments)) as storage:
        await storage.set_many([("a", 1), ("b", 2)])
        assert seen == [2]
        assert await storage.get_many(["a", "b"]) == [1, 2]


@pytest.mark.anyio
async def test_a_failing_batch_writes_nothing(tmp_path: Path) -> None:
    driver = sqlite_driver(tmp_path / "atomic.db")
    try:
        await driver.set("before", b"0")
        # None breaks the NOT NULL constraint on the second row, after the first was written.
        bad: list[tuple[str, Any]] = [("new", b"1"), ("broken", None)]
        with pytest.raises(BackendError):
            await driver.set_many(bad)
        assert [key async for key in driver.keys()] == ["before"]
        # The same for an expiring batch, the broken row in a later chunk than the first.
        many: list[tuple[str, Any]] = [(f"new:{n:04}", b"1") for n in range(600)]
        many.append(("broken", None))
        with pytest.raises(BackendError):
            await driver.set_many_expiring(many, 30)
        assert [key async for key in driver.keys()] == ["before"]
        await driver.set("after", b"2")  # no transaction was left open
        assert await driver.get("after") == b"2"
    finally:
        await driver.close()


@pytest.mark.anyio
async def test_concurrent_first_uses_share_one_connection(tmp_path: Path) -> None:
    driver = sqlite_driver(tmp_path / "first.db")
    try:
        async with anyio.create_task_group() as tasks:
            for n in range(20):
                tasks.start_soon(driver.set, f"k:{n:02d}", str(n).encode())
        assert [key async for key in driver.keys("k:")] == [f"k:{n:02d}" for n in range(20)]
    finally:
        await driver.close()


@pytest.mark.anyio
async def test_close_during_a_scan_stops_it_with_storage_closed(tmp_path: Path) -> None:
    driver = sqlite_driver(tmp_path / "scan.db")
    await driver.set_many([(f"k:{n:05d}", b"") for n in range(2000)])
    seen = 0

    async def scan_and_close() -> None:
        nonlocal seen
        async for _ in driver.keys("k:"):
            seen += 1
            if seen == 1:
                await driver.close()

    with pytest.raises(StorageClosed):
        await scan_and_close()
    assert seen < 2000


@pytest.mark.anyio
@pytest.mark.parametrize("scan", ["keys", "items"])
async def test_close_during_the_last_page_of_a_scan_still_ends_it_with_storage_closed(
    tmp_path: Path, scan: str
) -> None:
    """Scans check for a close once a page: the page in hand, already read, is handed out, and
    the scan then raises rather than ending as if it had seen every key."""
    driver = sqlite_driver(tmp_path / "scan.db")
    await driver.set_many([(f"k:{n:02d}", b"") for n in range(10)])
    seen = 0

    async def scan_and_close() -> None:
        nonlocal seen
        async for _ in driver.keys("k:") if scan == "keys" else driver.items("k:"):
            seen += 1
            if seen == 1:
                await driver.close()

    with pytest.raises(StorageClosed):
        await scan_and_close()
    assert seen == 10


# How SQLite names the key index in a plan: a rowid table's automatic unique index on key, or
# the table itself (its B-tree is ordered by key) in a WITHOUT ROWID one.
_KEY_INDEX = {"rowid": f"INDEX sqlite_autoindex_{DEFAULT_TABLE}_1", "without rowid": "PRIMARY KEY"}


@pytest.mark.anyio
@pytest.mark.parametrize("layout", list(_KEY_INDEX))
@pytest.mark.parametrize(
    ("statement_name", "params"),
    [
        ("scan", ("user:", 0, 1000, "user;")),
        ("clear_range", ("user:", "user;", 256)),
    ],
)
async def test_prefix_scans_and_clears_are_index_range_searches(
    tmp_path: Path, statement_name: str, params: tuple[object, ...], layout: str
) -> None:
    """Cost follows the matching keys: SQLite searches the key index instead of scanning."""
    if layout == "without rowid":
        _make_without_rowid_store(tmp_path / "plan.db")
    driver = sqlite_driver(tmp_path / "plan.db")
    await driver.set("user:1", b"1")
    statements = (
        [driver._sql_scan[True, True, "key"], driver._sql_scan_all[True, True]]
        if statement_name == "scan"
        else [driver._sql_clear[True]]
    )
    with closing(sqlite3.connect(driver.path)) as conn:
        plans = [
            " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            for sql in statements
        ]
    await driver.close()
    for plan in plans:
        assert "SEARCH" in plan, plan
        assert f"{_KEY_INDEX[layout]} (key>? AND key<?)" in plan, plan
        assert "TEMP B-TREE" not in plan, plan  # no sort: the index gives the key order
    if statement_name == "scan" and layout == "rowid":
        # Without the expiry check, a key scan reads the key index alone.
        assert f"COVERING {_KEY_INDEX[layout]}" in plans[1], plans[1]
    if statement_name == "scan":
        # Whether any row has expired: one probe of the expiry index, not a pass over the table.
        probe = f"USING COVERING INDEX {DEFAULT_TABLE}:expires_at (expires_at<?)"
        assert probe in plans[1], plans[1]


@pytest.mark.anyio
async def test_a_new_table_keeps_its_values_out_of_the_key_index(tmp_path: Path) -> None:
    """A lookup compares keys in an index that holds keys alone, never a value's pages.

    In a WITHOUT ROWID table the search compares the probe with whole rows, reading a big
    value that merely sits next to the key looked up; a new file gets a rowid table instead.
    """
    path = tmp_path / "new.db"
    driver = sqlite_driver(path)
    try:
        await driver.set_many([("a", b"1"), ("big", b"x" * (1 << 20)), ("c", b"3")])
        assert await driver.get("bi") is None  # a miss right next to the big value
        assert await driver.get("big") == b"x" * (1 << 20)
    finally:
        await driver.close()
    assert "WITHOUT ROWID" not in _table_sql(path).upper()
    index = f"sqlite_autoindex_{DEFAULT_TABLE}_1"
    with closing(sqlite3.connect(path)) as conn:
        assert [row[2] for row in conn.execute(f'PRAGMA index_info("{index}")')] == ["key"]
        for sql, params in [
            (driver._sql_get, ("bi",)),
            (driver._sql_get_versioned, ("bi",)),
            (driver._sql_get_meta, ("bi", 0)),
            (f"{driver._sql_select_in}(?, ?)", (0, "bi", "c")),
        ]:
            plan = " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            assert f"SEARCH {DEFAULT_TABLE} USING INDEX {index} (key=?)" in plan, plan
        # The key stays a key: a row without one is refused, as a WITHOUT ROWID table did.
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(f"INSERT INTO \"{DEFAULT_TABLE}\" (key, value) VALUES (NULL, x'00')")


@pytest.mark.anyio
@pytest.mark.parametrize("extra", [-1, 0, 1, sqlite_module._KEY_PAGE])
async def test_a_scan_runs_one_query_per_page_and_none_past_the_last(
    tmp_path: Path, extra: int
) -> None:
    """Every matching key once, in order, with no trailing empty query when pages fit exactly."""
    page = sqlite_module._KEY_PAGE
    count = page + extra
    driver = sqlite_driver(tmp_path / "pages.db")
    wanted = [f"p:{i:05d}" for i in range(count)]
    await driver.set_many([(key, b"v") for key in [*wanted, "q:after", "o:before"]])
    statements: list[str] = []
    conn = driver._conn
    assert conn is not None
    conn.set_trace_callback(statements.append)
    try:
        assert [key async for key in driver.keys("p:")] == wanted
    finally:
        conn.set_trace_callback(None)
        await driver.close()
    scans = [sql for sql in statements if "ORDER BY key" in sql]
    assert len(scans) == -(-count // page)


@pytest.mark.anyio
async def test_a_point_read_leaves_no_read_transaction_open(tmp_path: Path) -> None:
    """Another process's write is seen by every later read, whatever read came before it."""
    driver = sqlite_driver(tmp_path / "fresh.db")
    await driver.set_many([("a", b"1"), ("b", b"1")])
    assert await driver.get("a") == b"1"
    with closing(sqlite3.connect(driver.path, isolation_level=None)) as other:
        other.execute(f'UPDATE "{DEFAULT_TABLE}" SET value = ? WHERE key = ?', (b"2", "b"))
        # A read left open would pin the snapshot and keep the checkpoint from finishing.
        busy, frames, moved = other.execute("PRAGMA wal_checkpoint(FULL)").fetchone()
    try:
        assert await driver.get_many(["b"]) == [b"2"]
        assert [key async for key in driver.keys()] == ["a", "b"]
        assert (busy, moved) == (0, frames)
    finally:
        await driver.close()


@pytest.mark.anyio
async def test_batch_reads_of_every_size_share_a_few_statements(tmp_path: Path) -> None:
    """Right values for every batch size, through few distinct statements (so batches of
    varying sizes do not push the hot statements out of the connection's statement cache)."""
    driver = sqlite_driver(tmp_path / "in.db")
    stored = {f"k:{n:04d}": str(n).encode() for n in range(0, 1200, 2)}  # odd keys are missing
    await driver.set_many(list(stored.items()))
    statements: set[str] = set()
    conn = driver._conn
    assert conn is not None
    conn.set_trace_callback(statements.add)
    try:
        for size in [*range(1, 140), 255, 256, 257, 499, 500, 501, 1100]:
            keys = [f"k:{n:04d}" for n in range(size)]
            assert await driver.get_many(keys) == [stored.get(key) for key in keys], size
        assert await driver.get_many(["k:0002", "k:0001", "k:0002"]) == [b"2", None, b"2"]
    finally:
        conn.set_trace_callback(None)
        await driver.close()
    # The trace shows each statement with its parameters: count the texts up to the list.
    shapes = {sql.count(",") for sql in statements if " IN (" in sql}
    assert len(shapes) <= 11, sorted(shapes)


# -- versions and conditional writes --------------------------------------------------------

# The table as every release before versions created it (copied from the driver at commit
# 8c0e158, the pre-versions layout): a store written then must open and work after the upgrade.
PRE_VERSIONS_DDL = (
    f'CREATE TABLE IF NOT EXISTS "{DEFAULT_TABLE}" '
    "(key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID"
)
# The write statement of that layout, as the old driver ran it.
PRE_VERSIONS_SET = (
    f'INSERT INTO "{DEFAULT_TABLE}" (key, value) VALUES (?, ?) '
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)


def _make_pre_versions_store(path: Path, items: dict[str, bytes]) -> None:
    """Write ``items`` into a new file in the pre-versions layout, as the old driver did."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(PRE_VERSIONS_DDL)
        conn.executemany(PRE_VERSIONS_SET, list(items.items()))


def _columns(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as conn:
        return [row[1] for row in conn.execute(f'PRAGMA table_info("{DEFAULT_TABLE}")')]


# An old table upgraded in place: ADD COLUMN appends the added columns after the value.
UPGRADED_COLUMNS = ["key", "value", "version", "expires_at", "written_at"]


def _has_expiry_index(path: Path) -> bool:
    with closing(sqlite3.connect(path)) as conn:
        found = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?",
            (f"{DEFAULT_TABLE}:expires_at",),
        ).fetchone()
    return found is not None and "WHERE expires_at IS NOT NULL" in found[0]


def _run_counters(path: Path, key: str, workers: int, count: int) -> None:
    """Run ``workers`` processes of ``counter.py`` on ``path``, started together; all must pass."""
    processes, results = _run_together(
        [
            [sys.executable, str(SUPPORT / "counter.py"), str(path), key, str(count)]
            for _ in range(workers)
        ],
        timeout=120,
    )
    for process, (stdout, stderr) in zip(processes, results, strict=True):
        assert process.returncode == 0, stderr
        assert stdout.strip() == "done", stderr


@pytest.mark.anyio
async def test_a_store_in_the_pre_versions_layout_opens_and_works(tmp_path: Path) -> None:
    path = tmp_path / "old" / "kv.db"
    _make_pre_versions_store(path, {"a": b"A", "b": b"B", "c": b"C", "d": b"D"})
    assert _columns(path) == ["key", "value"]

    async with kvstore.Storage(sqlite_driver(path)) as storage:
        # Old values read unchanged, at the legacy version, until they are written.
        assert await storage.get_raw("a") == b"A"
        assert await storage.get_versioned_raw("a") == (b"A", LEGACY_VERSION)
        assert [key async for key in storage.keys()] == ["a", "b", "c", "d"]
        # Conditions on the legacy version work, and a write moves the key off it.
        version = await storage.replace_raw("a", b"A2", LEGACY_VERSION)
        assert version != LEGACY_VERSION
        assert await storage.get_versioned_raw("a") == (b"A2", version)
        with pytest.raises(Conflict):
            await storage.replace_raw("a", b"A3", LEGACY_VERSION)
        with pytest.raises(Conflict):
            await storage.create_raw("b", b"B2")
        await storage.delete_if("c", LEGACY_VERSION)
        # Unconditional writes give new versions too.
        await storage.set_raw("d", b"D2")
        (found,) = [await storage.get_versioned_raw("d")]
        assert found is not None
        assert found.value == b"D2"
        assert found.version != LEGACY_VERSION
        assert await storage.get_many_raw(["a", "b", "c", "d"]) == [b"A2", b"B", None, b"D2"]
    assert _columns(path) == UPGRADED_COLUMNS

    # Opening again finds the layout up to date: nothing changes, "b" is still legacy.
    async with kvstore.Storage(sqlite_driver(path)) as again:
        assert await again.get_versioned_raw("b") == (b"B", LEGACY_VERSION)
        assert await again.get_versioned_raw("a") == (b"A2", version)
    assert _columns(path) == UPGRADED_COLUMNS


def test_several_processes_upgrading_one_old_file_at_once_all_succeed(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _make_pre_versions_store(path, {"counter": b"100", "other": b"kept"})
    # Each process opens the old file right after the start signal and updates one counter.
    _run_counters(path, "counter", workers=6, count=3)
    assert _columns(path) == UPGRADED_COLUMNS
    assert _has_expiry_index(path)

    async def read_back() -> tuple[object, object]:
        async with kvstore.Storage(sqlite_driver(path)) as storage:
            return await storage.get("counter"), await storage.get_versioned_raw("other")

    counter, other = anyio.run(read_back)
    assert counter == 100 + 6 * 3
    assert other == (b"kept", LEGACY_VERSION)


@pytest.mark.anyio
async def test_a_column_added_by_a_racing_process_is_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race made certain: the driver looks before another process adds the column."""
    path = tmp_path / "old.db"
    _make_pre_versions_store(path, {"a": b"A"})
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute(
            f'ALTER TABLE "{DEFAULT_TABLE}" ADD COLUMN version INTEGER NOT NULL DEFAULT 0'
        )
    driver = sqlite_driver(path)
    # What the driver sees of the table: the columns as they were before the other process.
    monkeypatch.setattr(driver, "_sql_columns", "SELECT 0, 'key' UNION ALL SELECT 1, 'value'")
    try:
        assert await driver.get_versioned("a") == (b"A", LEGACY_VERSION)
    finally:
        await driver.close()
    assert _columns(path) == UPGRADED_COLUMNS


@pytest.mark.anyio
async def test_upgrading_a_locked_old_file_waits_for_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _make_pre_versions_store(path, {"a": b"A"})
    driver = sqlite_driver(path, busy_timeout=0.2)
    try:
        async with lock_held(path) as holder:
            # Adding the column needs the write lock another process holds: the open waits for
            # it and gives up with the driver's own error, changing nothing.
            with pytest.raises(BackendUnavailable, match=r"busy_timeout=0\.2s"):
                await driver.get("a")
            assert _columns(path) == ["key", "value"]
            await holder.release("commit")
        # The next use upgrades, and the other process's row written meanwhile is legacy too.
        assert await driver.get_versioned("held") == (b"1", LEGACY_VERSION)
        assert await driver.get_versioned("a") == (b"A", LEGACY_VERSION)
    finally:
        await driver.close()
    assert _columns(path) == UPGRADED_COLUMNS


@pytest.mark.anyio
async def test_an_old_file_opened_read_only_is_left_as_it_is_and_still_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "old.db"
    _make_pre_versions_store(path, {"a": b"A"})
    connect = sqlite3.connect

    def read_only(database: str, **options: Any) -> sqlite3.Connection:
        # As when the file or its directory is not writable for this process.
        connection: sqlite3.Connection = connect(f"file:{database}?mode=ro", uri=True, **options)
        return connection

    monkeypatch.setattr(sqlite3, "connect", read_only)
    driver = sqlite_driver(path)
    try:
        # Reads see the columns the file lacks as what its rows will read as once upgraded.
        assert await driver.get("a") == b"A"
        assert [key async for key in driver.keys()] == ["a"]
        assert [item async for item in driver.items()] == [("a", b"A")]
        assert await driver.get_many(["a", "b"]) == [b"A", None]
        assert await driver.get_versioned("a") == (b"A", LEGACY_VERSION)
        assert await driver.get_meta("a") == Meta(1, None, None, LEGACY_VERSION)
        # Writes fail as on any file this process may only read.
        with pytest.raises(BackendError):
            await driver.set("a", b"A2")
        with pytest.raises(BackendError):
            await driver.set_expiring("a", b"A2", 5)
    finally:
        await driver.close()
    assert _columns(path) == ["key", "value"]
    assert not _has_expiry_index(path)


def test_processes_updating_one_counter_lose_no_increment(tmp_path: Path) -> None:
    path = tmp_path / "counter.db"
    workers, count = 4, 50
    _run_counters(path, "counter", workers, count)

    async def read_back() -> object:
        async with kvstore.Storage(sqlite_driver(path)) as storage:
            return await storage.get("counter")

    assert anyio.run(read_back) == workers * count


@pytest.fixture
async def versioned(tmp_path: Path) -> AsyncIterator[SQLiteDriver]:
    driver = sqlite_driver(tmp_path / "versions.db")
    try:
        yield driver
    finally:
        await driver.close()


@pytest.mark.anyio
async def test_every_write_gives_a_new_version_and_a_delete_drops_it(
    versioned: SQLiteDriver,
) -> None:
    driver = versioned
    assert await driver.get_versioned("k") is None
    seen: set[int] = set()
    for value in (b"1", b"1", b"2"):  # rewriting the same value is a write too
        await driver.set("k", value)
        found = await driver.get_versioned("k")
        assert found is not None
        assert found.value == value
        assert found.version not in seen
        assert found.version != LEGACY_VERSION
        seen.add(found.version)
    await driver.set_many([("m1", b"x"), ("m2", b"x"), ("k", b"3")])
    many = [await driver.get_versioned(key) for key in ("m1", "m2", "k")]
    versions = {found.version for found in many if found is not None}
    assert len(versions) == 3
    assert not versions & seen
    seen |= versions
    await driver.delete("k")
    assert await driver.get_versioned("k") is None
    created = await driver.set_if("k", b"again", None)
    assert created not in seen
    assert await driver.get_versioned("k") == (b"again", created)


@pytest.mark.anyio
async def test_single_key_conditions(versioned: SQLiteDriver) -> None:
    driver = versioned
    first = await driver.set_if("k", b"1", None)
    with pytest.raises(Conflict) as caught:
        await driver.set_if("k", b"other", None)
    assert caught.value.keys == ("k",)
    with pytest.raises(Conflict):
        await driver.set_if("k", b"other", first + 1)
    with pytest.raises(Conflict):
        await driver.set_if("absent", b"other", first)
    with pytest.raises(Conflict):
        await driver.delete_if("k", first + 1)
    with pytest.raises(Conflict):
        await driver.delete_if("absent", first)
    assert await driver.get_versioned("k") == (b"1", first)
    assert await driver.get("absent") is None
    second = await driver.set_if("k", b"2", first)
    assert second != first
    with pytest.raises(Conflict):
        await driver.delete_if("k", first)
    await driver.delete_if("k", second)
    assert await driver.get_versioned("k") is None


@pytest.mark.anyio
async def test_commit_applies_all_and_returns_the_new_versions(versioned: SQLiteDriver) -> None:
    driver = versioned
    await driver.set_many([("a", b"A"), ("b", b"B"), ("c", b"C")])
    a, b, c = [await driver.get_versioned(key) for key in ("a", "b", "c")]
    assert a is not None
    assert b is not None
    assert c is not None
    result = await driver.commit(
        [
            Change.replace("a", b"A2", a.version),
            Change.create("new", b"N"),
            Change.delete("b", b.version),
            Change.check("c", c.version),
            Change.check("gone", None),
            Change.put("d", b"D"),
        ]
    )
    assert result[2:5] == [None, None, None]
    assert await driver.get_versioned("a") == (b"A2", result[0])
    assert await driver.get_versioned("new") == (b"N", result[1])
    assert await driver.get_versioned("d") == (b"D", result[5])
    assert await driver.get_versioned("c") == c  # a check writes nothing
    assert await driver.get("b") is None


@pytest.mark.anyio
async def test_a_commit_with_a_failed_condition_writes_nothing(versioned: SQLiteDriver) -> None:
    driver = versioned
    await driver.set_many([("a", b"A"), ("b", b"B"), ("c", b"C")])
    before = {key: await driver.get_versioned(key) for key in ("a", "b", "c")}
    a = before["a"]
    assert a is not None
    with pytest.raises(Conflict) as caught:
        await driver.commit(
            [
                Change.replace("a", b"A2", a.version),  # holds
                Change.create("b", b"B2"),  # fails: b exists
                Change.put("new", b"N"),  # no condition
                Change.delete("c", a.version),  # fails: c is at another version
                Change.check("absent", LEGACY_VERSION),  # fails: absent
            ]
        )
    assert set(caught.value.keys) == {"b", "c", "absent"}
    assert {key: await driver.get_versioned(key) for key in ("a", "b", "c")} == before
    assert await driver.get("new") is None
    _no_transaction_left(Path(driver.path))


# Large enough that the check and the writes take many statements (and several yields).
BIG = 3000


@pytest.mark.anyio
async def test_a_big_commit_failing_on_its_last_key_writes_nothing(
    versioned: SQLiteDriver,
) -> None:
    driver = versioned
    await driver.set("last", b"taken")
    changes = [Change.create(f"k:{n:05d}", b"v") for n in range(BIG)]
    with pytest.raises(Conflict) as caught:
        await driver.commit([*changes, Change.create("last", b"mine")])
    assert caught.value.keys == ("last",)
    assert [key async for key in driver.keys()] == ["last"]
    await driver.commit(changes)
    assert len([key async for key in driver.keys("k:")]) == BIG


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.anyio
async def test_a_cancelled_big_commit_leaves_nothing(
    versioned: SQLiteDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver = versioned
    await driver.set("k:00000", b"old")
    old = await driver.get_versioned("k:00000")
    assert old is not None
    changes = [
        Change.replace("k:00000", b"new", old.version),
        *(Change.create(f"k:{n:05d}", b"v") for n in range(1, BIG)),
    ]
    monkeypatch.setattr(pacing, "SLICE", 0.0)  # every pacing check yields
    before = pacing.pause_count()
    with anyio.CancelScope() as scope:

        async def cancel_soon() -> None:
            # It yields after each step: 6 steps check 500 keys each, then each writes 256
            # rows. Cancelled after 10 yields, it has written some rows and not all.
            while pacing.pause_count() - before < 10:
                await anyio.lowlevel.checkpoint()
            scope.cancel()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(cancel_soon)
            await driver.commit(changes)
            pytest.fail("the commit finished before it was cancelled")
    assert scope.cancelled_caught
    monkeypatch.setattr(pacing, "SLICE", 0.001)
    _no_transaction_left(Path(driver.path))
    assert [key async for key in driver.keys()] == ["k:00000"]
    assert await driver.get_versioned("k:00000") == old
    # The same commit applies whole afterwards.
    await driver.commit(changes)
    assert len([key async for key in driver.keys("k:")]) == BIG


@pytest.mark.anyio
async def test_other_tasks_see_a_big_commit_whole_or_not_at_all(
    versioned: SQLiteDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver = versioned
    monkeypatch.setattr(pacing, "SLICE", 0.0)
    changes = [Change.create(f"k:{n:05d}", b"v") for n in range(BIG)]
    first, last = changes[0].key, changes[-1].key
    seen: list[tuple[bytes | None, ...]] = []
    done = anyio.Event()

    async def watch() -> None:
        # One read of both keys (one statement), while the commit runs.
        while not done.is_set():
            seen.append(tuple(await driver.get_many([first, last])))

    async def run() -> None:
        await driver.commit(changes)
        done.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(watch)
        tasks.start_soon(run)
    assert seen
    assert set(seen) <= {(None, None), (b"v", b"v")}


@pytest.mark.anyio
async def test_two_connections_committing_on_one_key_exactly_one_wins(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    drivers = [sqlite_driver(path), sqlite_driver(path)]
    outcomes: list[str] = []

    async def commit(index: int) -> None:
        # Each batch is big enough to yield while it holds the write lock.
        changes = [Change.create(f"d{index}:{n:05d}", b"v") for n in range(BIG)]
        try:
            await drivers[index].commit([*changes, Change.create("race", str(index).encode())])
        except Conflict as error:
            outcomes.append(f"conflict on {error.keys}")
        else:
            outcomes.append(f"won {index}")

    try:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tasks:
                for index in range(2):
                    tasks.start_soon(commit, index)
        assert len(outcomes) == 2
        assert sorted(outcomes)[0] == "conflict on ('race',)"
        winner = int(sorted(outcomes)[1].removeprefix("won "))
        assert await drivers[0].get("race") == str(winner).encode()
        written = [key async for key in drivers[0].keys("d")]
        assert written == [f"d{winner}:{n:05d}" for n in range(BIG)]
    finally:
        for driver in drivers:
            await driver.close()


@pytest.mark.anyio
async def test_a_commit_of_checks_alone_needs_no_write_lock(db_path: Path) -> None:
    driver = sqlite_driver(db_path, busy_timeout=0.2)
    try:
        found = await driver.get_versioned("existing")
        assert found is not None
        async with lock_held(db_path) as holder:
            # Another process holds the write lock: checks still read, writes wait and give up.
            assert await driver.commit([Change.check("existing", found.version)]) == [None]
            with pytest.raises(Conflict):
                await driver.commit([Change.check("existing", None)])
            with pytest.raises(BackendUnavailable):
                await driver.commit([Change.replace("existing", b"1", found.version)])
            await holder.release("rollback")
        assert await driver.get_versioned("existing") == found
    finally:
        await driver.close()


@pytest.mark.anyio
async def test_get_versioned_reports_foreign_values_like_get(tmp_path: Path) -> None:
    path = tmp_path / "foreign.db"
    driver = sqlite_driver(path)
    try:
        await driver.set("a", b"A")
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            # Another program's rows, written without a version, read at the legacy version.
            other.execute(f'INSERT INTO "{DEFAULT_TABLE}" (key, value) VALUES (?, ?)', ("b", b"B"))
            other.execute(
                f'INSERT INTO "{DEFAULT_TABLE}" (key, value) VALUES (?, ?)', ("t", "secret")
            )
        assert await driver.get_versioned("b") == (b"B", LEGACY_VERSION)
        with pytest.raises(BackendError) as caught:
            await driver.get_versioned("t")
        assert "'t'" in str(caught.value)
        assert "TEXT" in str(caught.value)
        assert "secret" not in str(caught.value)
    finally:
        await driver.close()


@pytest.mark.anyio
async def test_the_inline_single_key_calls_answer_like_the_awaited_ones(
    tmp_path: Path, manual: ManualClock
) -> None:
    """Storage's hot path calls try_get/try_set/try_delete; each answers as get/set/delete
    would, and declines (for the awaited method to run) when it must not answer inline."""
    path = tmp_path / "inline.db"
    driver = sqlite_driver(path, clock=manual)
    await driver.get("open now")
    driver._pacer.deadline = float("inf")  # no turn is due: every call may answer inline
    try:
        assert driver.try_set("k", b"v") is True
        assert driver.try_get("k") == b"v"
        assert await driver.get_versioned("k") is not None  # a new version, as set gives
        assert _raw_rows(path)["k"] == (None, 4_000_000_000_000)
        assert driver.try_get("missing") is None
        assert driver.try_delete("k") is True
        assert driver.try_get("k") is None
        await driver.set_expiring("e", b"v", 1)
        assert driver.try_get("e") == b"v"
        manual.now += 1
        assert driver.try_get("e") is None
        # A value another program wrote that is not a BLOB: declined, and get raises.
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute(f'INSERT INTO "{DEFAULT_TABLE}" (key, value) VALUES (?, ?)', ("t", 5))
        assert driver.try_get("t") is LATER
        # A turn of the event loop is due: every call declines and does nothing.
        driver._pacer.deadline = 0.0
        assert driver.try_get("x") is LATER
        assert driver.try_set("x", b"1") is False
        assert driver.try_delete("t") is False
        assert "x" not in _raw_rows(path)
        assert "t" in _raw_rows(path)
    finally:
        await driver.close()
    assert driver.try_get("k") is LATER
    assert driver.try_set("k", b"v") is False
    assert driver.try_delete("k") is False


@pytest.mark.anyio
async def test_storage_single_key_calls_handle_foreign_values_locks_and_close(
    db_path: Path,
) -> None:
    """Through Storage (the inline path first): a foreign value raises BackendError, a write
    that finds the lock taken waits it out like the awaited call, and a closed store raises."""
    with closing(sqlite3.connect(db_path, isolation_level=None)) as other:
        other.execute(f'INSERT INTO "{DEFAULT_TABLE}" (key, value) VALUES (?, ?)', ("t", "secret"))
    storage = kvstore.Storage(sqlite_driver(db_path, busy_timeout=0.2))
    try:
        for _ in range(2):  # the second time, the key is known valid: Storage's fast path
            with pytest.raises(BackendError) as caught:
                await storage.get("t")
            assert "TEXT" in str(caught.value)
            assert "secret" not in str(caught.value)
        await storage.set("w", 1)
        async with lock_held(db_path) as holder:
            with pytest.raises(BackendUnavailable):
                await storage.set("w", 2)
            with pytest.raises(BackendUnavailable):
                await storage.delete("w")
            await holder.release("rollback")
        assert await storage.get("w") == 1
        await storage.set("w", 3)
        assert await storage.get("w") == 3
    finally:
        await storage.close()
    with pytest.raises(StorageClosed):
        await storage.get("w")
    with pytest.raises(StorageClosed):
        await storage.set("w", 4)
    with pytest.raises(StorageClosed):
        await storage.delete("w")


@pytest.mark.anyio
async def test_versions_made_by_sqlite_are_fresh_and_in_range(tmp_path: Path) -> None:
    """set and set_many let SQLite make each row's version: one per row, in 1 .. 2**52 like
    new_version(), never the legacy version."""
    path = tmp_path / "versions.db"
    driver = sqlite_driver(path)
    try:
        await driver.set_many([(f"k:{n:04}", b"v") for n in range(2000)])
        await driver.set("k:0000", b"w")
        await driver.set_many_expiring([("k:0001", b"e")], 60)
    finally:
        await driver.close()
    with closing(sqlite3.connect(path)) as conn:
        versions = [row[0] for row in conn.execute(f'SELECT version FROM "{DEFAULT_TABLE}"')]
    assert len(versions) == 2000
    assert len(set(versions)) == 2000
    assert all(type(v) is int and 1 <= v <= 2**52 for v in versions)


def _no_transaction_left(path: Path) -> None:
    """Another connection can take the write lock at once: nobody sits inside a transaction."""
    with closing(sqlite3.connect(path, timeout=0, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        other.execute("COMMIT")


# -- expiry ----------------------------------------------------------------------------------

# The table as the release before expiry created it (the driver at commit 43cb44e, the
# pre-expiry layout), and its write statement: a store written then must open, keep its data and
# gain TTLs.
PRE_EXPIRY_DDL = (
    f'CREATE TABLE IF NOT EXISTS "{DEFAULT_TABLE}" (key TEXT PRIMARY KEY, value BLOB NOT NULL, '
    f"version INTEGER NOT NULL DEFAULT {LEGACY_VERSION}) WITHOUT ROWID"
)
PRE_EXPIRY_SET = (
    f'INSERT INTO "{DEFAULT_TABLE}" (key, value, version) VALUES (?, ?, ?) '
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version"
)


def _make_pre_expiry_store(path: Path, rows: dict[str, tuple[bytes, int]]) -> None:
    """Write ``rows`` (value, version) into a new file in the pre-expiry layout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(PRE_EXPIRY_DDL)
        conn.executemany(PRE_EXPIRY_SET, [(k, v, n) for k, (v, n) in rows.items()])


def _raw_rows(path: Path) -> dict[str, tuple[int | None, int | None]]:
    """Every row in the file, read directly: key -> (expires_at, written_at) in milliseconds."""
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute(f'SELECT key, expires_at, written_at FROM "{DEFAULT_TABLE}"')
        return {key: (expires_at, written_at) for key, expires_at, written_at in rows}


class ManualClock:
    """A clock that stands still until moved: seconds since the epoch."""

    def __init__(self, now: float = 4_000_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def manual() -> ManualClock:
    return ManualClock()


@asynccontextmanager
async def _driver(path: Path, clock: ManualClock) -> AsyncIterator[SQLiteDriver]:
    driver = sqlite_driver(path, clock=clock)
    try:
        yield driver
    finally:
        await driver.close()


@pytest.mark.anyio
async def test_a_store_in_the_pre_expiry_layout_opens_keeps_its_data_and_gains_ttls(
    tmp_path: Path, manual: ManualClock
) -> None:
    path = tmp_path / "old" / "kv.db"
    _make_pre_expiry_store(path, {"a": (b"A", 11), "b": (b"BB", 22), "c": (b"C", 33)})
    assert _columns(path) == ["key", "value", "version"]

    async with _driver(path, manual) as driver:
        # Old rows read as before: never expiring, versions kept, no write time known.
        assert [key async for key in driver.keys()] == ["a", "b", "c"]
        assert await driver.get_versioned("b") == (b"BB", 22)
        assert await driver.get_meta("b") == Meta(
            size=2, written_at=None, expires_at=None, version=22
        )
        # They gain TTLs, without a rewrite (expire) or with one.
        assert await driver.expire("a", 5)
        await driver.set_expiring("b", b"B2", 10)
        now = 4_000_000_000
        assert await driver.get_meta("a") == Meta(1, None, now + 5, 11)
        meta_b = await driver.get_meta("b")
        assert meta_b is not None
        assert (meta_b.written_at, meta_b.expires_at) == (now, now + 10)
        manual.now += 5
        assert await driver.get("a") is None
        assert [key async for key in driver.keys()] == ["b", "c"]
        assert await driver.purge_expired() == 1
    assert _columns(path) == UPGRADED_COLUMNS
    assert _has_expiry_index(path)
    assert _raw_rows(path) == {
        "b": (4_000_000_010_000, 4_000_000_000_000),
        "c": (None, None),
    }


@pytest.mark.anyio
async def test_a_new_table_keeps_the_expiry_before_the_value(tmp_path: Path) -> None:
    """A scan's expiry check and get_meta read cells before the value, never its pages (in a
    rowid table they read the row the key index points to, stopping before the value)."""
    async with _driver(tmp_path / "new.db", ManualClock()) as driver:
        await driver.set("k", b"v")
    assert _columns(tmp_path / "new.db") == [
        "key",
        "version",
        "expires_at",
        "written_at",
        "value",
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("layout", ["rowid", "without rowid"])
async def test_key_scans_leave_out_expired_keys_whether_or_not_any_has_expired(
    tmp_path: Path, manual: ManualClock, layout: str
) -> None:
    """A key scan skips the per-key expiry check while no row has expired: the keys that will
    expire are listed until they do, and from then on every expired key is left out."""
    path = tmp_path / "scan.db"
    if layout == "without rowid":
        _make_without_rowid_store(path)
    async with _driver(path, manual) as driver:
        await driver.set("a", b"A")
        await driver.set_many_expiring([("b", b"B"), ("d", b"D")], 10)
        await driver.set_expiring("c", b"C", 1)
        assert [key async for key in driver.keys()] == ["a", "b", "c", "d"]
        manual.now += 1  # "c" expires, not yet purged
        assert [key async for key in driver.keys()] == ["a", "b", "d"]
        assert [key async for key in driver.keys("c")] == []
        assert await driver.purge_expired() == 1
        assert [key async for key in driver.keys()] == ["a", "b", "d"]
        manual.now += 9
        assert [key async for key in driver.keys()] == ["a"]
        assert [item async for item in driver.items()] == [("a", b"A")]
        # The scan's read transaction ends with its page: no snapshot stays pinned.
        assert driver._db is not None
        assert not driver._db.in_transaction


@pytest.mark.anyio
async def test_a_without_rowid_store_is_used_as_it_is(tmp_path: Path, manual: ManualClock) -> None:
    """A file from the release before rowid tables: its rows read and write, nothing rewritten."""
    path = tmp_path / "old.db"
    _make_without_rowid_store(path)
    now = 4_000_000_000  # the manual clock's, in seconds; the table holds milliseconds
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.executemany(
            f'INSERT INTO "{DEFAULT_TABLE}" (key, value, version, written_at, expires_at) '
            "VALUES (?, ?, ?, ?, ?)",
            [
                ("a", b"A", 11, (now - 1) * 1000, None),
                ("big", b"x" * (1 << 20), 12, (now - 1) * 1000, None),
                ("c", b"C", 13, (now - 1) * 1000, (now + 5) * 1000),
            ],
        )
    before = _table_sql(path)

    async with _driver(path, manual) as driver:
        assert await driver.get_versioned("a") == (b"A", 11)
        assert await driver.get("bi") is None
        assert await driver.get_meta("c") == Meta(1, now - 1, now + 5, 13)
        assert [item async for item in driver.items()] == [
            ("a", b"A"),
            ("big", b"x" * (1 << 20)),
            ("c", b"C"),
        ]
        # Conditional writes, plain writes and batches.
        version = await driver.set_if("a", b"A2", 11)
        with pytest.raises(Conflict):
            await driver.set_if("a", b"A3", 11)
        with pytest.raises(Conflict):
            await driver.delete_if("big", 99)
        await driver.delete_if("big", 12)
        await driver.set_many([("d", b"D"), ("e", b"E")])
        await driver.delete("e")
        assert await driver.get_many(["a", "big", "c", "d", "e"]) == [b"A2", None, b"C", b"D", None]
        assert await driver.get_versioned("a") == (b"A2", version)
        # Expiry, and the purge through the index that release made.
        await driver.set_expiring("d", b"D2", 1)
        manual.now += 5
        assert [key async for key in driver.keys()] == ["a"]
        assert await driver.purge_expired() == 2
        await driver.clear()
        assert [key async for key in driver.keys()] == []
    assert _table_sql(path) == before
    assert _raw_rows(path) == {}


@pytest.mark.anyio
async def test_purge_expired_deletes_expired_rows_through_the_index(
    tmp_path: Path, manual: ManualClock
) -> None:
    path = tmp_path / "purge.db"
    async with _driver(path, manual) as driver:
        await driver.set_many_expiring([(f"short:{n:03}", b"x") for n in range(300)], 1)
        await driver.set_many_expiring([(f"long:{n}", b"x") for n in range(5)], 60)
        await driver.set("plain", b"x")
        manual.now += 1  # the short ones expire at this very instant
        assert len(_raw_rows(path)) == 306  # expired, but not removed yet
        assert await driver.purge_expired(limit=120) == 120
        assert len(_raw_rows(path)) == 186
        assert await driver.purge_expired() == 180
        assert await driver.purge_expired() == 0
        assert sorted(_raw_rows(path)) == [
            "long:0",
            "long:1",
            "long:2",
            "long:3",
            "long:4",
            "plain",
        ]

        # The delete finds its rows through the partial index on the expiry instant.
        assert driver._db is not None
        plan = " ".join(
            row[3] for row in driver._db.execute(f"EXPLAIN QUERY PLAN {driver._sql_purge}", (0, 1))
        )
    assert f"USING COVERING INDEX {DEFAULT_TABLE}:expires_at (expires_at<?)" in plan, plan


@pytest.mark.anyio
async def test_expiring_writes_purge_a_small_batch_at_most_once_a_second(
    tmp_path: Path, manual: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "auto.db"
    # The driver's monotonic clock, moved by the test: real time plus an offset.
    offset = 0.0
    real_monotonic = time.monotonic
    monkeypatch.setattr(sqlite_module, "monotonic", lambda: real_monotonic() + offset)
    async with _driver(path, manual) as driver:
        await driver.set_expiring("first", b"x", 0.5)  # purges now (nothing yet); next in 1 s
        await driver.set_many_expiring([(f"e:{n:03}", b"x") for n in range(250)], 1)
        manual.now += 2

        # Plain writes never purge: the no-TTL path does nothing more than before.
        await driver.set("plain", b"x")
        await driver.set_many([("plain2", b"x")])
        # Within the second, expiring writes do not purge either.
        await driver.set_expiring("soon", b"x", 30)
        assert len(_raw_rows(path)) == 254

        # Once the second has passed, the next expiring write purges one small batch.
        offset += 1.0
        await driver.set_expiring("later", b"x", 30)
        rows = _raw_rows(path)
        assert len(rows) == 255 - 100
        assert "first" not in rows  # oldest expiry first

        offset += 1.0
        assert await driver.expire("soon", 60)
        assert len(_raw_rows(path)) == 155 - 100

        offset += 1.0
        await driver.set_many_expiring([("batch", b"x")], 30)
        rows = _raw_rows(path)
        assert sorted(rows) == ["batch", "later", "plain", "plain2", "soon"]
        assert rows["soon"] == (4_000_000_062_000, 4_000_000_002_000)


@pytest.mark.anyio
async def test_instants_come_from_the_driver_clock_in_whole_milliseconds(tmp_path: Path) -> None:
    """SQLite runs in this process: its clock is the backend's. Two processes (here two
    drivers) on one file agree through the clock they read, the wall clock in real use."""
    path = tmp_path / "clock.db"
    writer_clock, reader_clock = ManualClock(1_700_000_000.0004), ManualClock(1_700_000_000.0)
    async with _driver(path, writer_clock) as writer, _driver(path, reader_clock) as reader:
        await writer.set_expiring("k", b"v", 2.0006)
        await writer.set("plain", b"v")
        # now = 1_700_000_000_000 ms (rounded), expiry = now + 2001 ms (the TTL rounded).
        assert _raw_rows(path) == {
            "k": (1_700_000_002_001, 1_700_000_000_000),
            "plain": (None, 1_700_000_000_000),
        }
        reader_clock.now = 1_700_000_002.0004  # 1_700_000_002_000 ms: one before the instant
        assert await reader.get("k") == b"v"
        reader_clock.now = 1_700_000_002.001  # the instant itself: expired
        assert await reader.get("k") is None
        assert await writer.get("k") == b"v"  # the writer's clock has not got there
        assert await reader.get_meta("k") is None
        assert not await reader.expire("k", 10)


@pytest.mark.anyio
async def test_get_meta_is_one_statement_that_does_not_read_the_value(
    tmp_path: Path, manual: ManualClock
) -> None:
    async with _driver(tmp_path / "meta.db", manual) as driver:
        big = os.urandom(200_000)
        await driver.set_expiring("big", big, 30)
        assert driver._db is not None
        statements: list[str] = []
        driver._db.set_trace_callback(statements.append)
        meta = await driver.get_meta("big")
        driver._db.set_trace_callback(None)
        assert meta is not None
        assert meta.size == len(big)
        assert meta.expires_at == 4_000_000_030
        assert len(statements) == 1, statements
        assert "length(value)" in statements[0]


@pytest.mark.anyio
async def test_get_meta_reports_foreign_values_like_get(tmp_path: Path) -> None:
    path = tmp_path / "foreign.db"
    async with _driver(path, ManualClock()) as driver:
        await driver.set("t", b"x")
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute(f"UPDATE \"{DEFAULT_TABLE}\" SET value = 'secret' WHERE key = 't'")
        with pytest.raises(BackendError) as caught:
            await driver.get_meta("t")
    assert "TEXT" in str(caught.value)
    assert "secret" not in str(caught.value)


@pytest.mark.anyio
async def test_a_scan_among_expired_keys_costs_what_a_scan_of_the_live_ones_does(
    tmp_path: Path, manual: ManualClock
) -> None:
    """keys(prefix) over 10,000 keys of which 9,000 have expired, against 1,000 live keys alone:
    SQLite skips the expired rows in the query, from the expiry cell of the key's row, so the
    client's work (interpreter steps, memory) follows the keys yielded."""
    async with _driver(tmp_path / "scan.db", manual) as driver:
        await driver.set_many_expiring([(f"mix:{n:05}", b"v" * 100) for n in range(9000)], 1)
        live = [
            (f"{prefix}:{n:05}", b"v" * 100)
            for prefix in ("mix", "live")
            for n in range(9000, 10000)
        ]
        await driver.set_many(live)
        manual.now += 1

        async def scan(prefix: str) -> None:
            count = 0
            async for _ in driver.keys(prefix):
                count += 1
            assert count == 1000

        alone = await measure_best(lambda: scan("live:"))
        among = await measure_best(lambda: scan("mix:"))
    assert among.steps <= 2.5 * alone.steps, (among, alone)
    assert among.peak_bytes <= 2.5 * alone.peak_bytes, (among, alone)


@pytest.mark.anyio
async def test_conditional_writes_treat_an_expired_row_as_absent(
    tmp_path: Path, manual: ManualClock
) -> None:
    path = tmp_path / "cond.db"
    async with _driver(path, manual) as driver:
        await driver.set_expiring("k", b"old", 1)
        old = await driver.get_versioned("k")
        assert old is not None
        manual.now += 1
        assert await driver.get_versioned("k") is None
        with pytest.raises(Conflict):
            await driver.set_if("k", b"x", old.version)
        with pytest.raises(Conflict):
            await driver.delete_if("k", old.version)
        with pytest.raises(Conflict):
            await driver.commit([Change.replace("k", b"x", old.version)])
        # Still there physically, and still expired: creating over it succeeds, for good.
        assert "k" in _raw_rows(path)
        version = await driver.set_if("k", b"new", None)
        assert await driver.get_versioned("k") == (b"new", version)
        assert _raw_rows(path)["k"] == (None, 4_000_000_001_000)
        await driver.set_expiring("j", b"old", 1)
        manual.now += 1
        await driver.commit([Change.create("j", b"new"), Change.check("gone", None)])
        assert await driver.get("j") == b"new"
        assert _raw_rows(path)["j"] == (None, 4_000_000_002_000)


@pytest.mark.anyio
async def test_an_expiry_cell_that_is_not_a_number_never_expires_for_any_read(
    tmp_path: Path,
) -> None:
    """Point reads judge the expiry in Python and scans in SQL; on a cell another program
    wrote they agree: text sorts after every number in SQLite, so it never expires."""
    path = tmp_path / "foreign-expiry.db"
    async with _driver(path, ManualClock()) as driver:
        await driver.set("k", b"v")
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute(f'UPDATE "{DEFAULT_TABLE}" SET expires_at = ? WHERE key = ?', ("x", "k"))
        assert await driver.get("k") == b"v"
        assert await driver.get_versioned("k") is not None
        assert await driver.get_many(["k"]) == [b"v"]
        assert [key async for key in driver.keys()] == ["k"]
