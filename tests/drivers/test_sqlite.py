"""The SQLite driver: the conformance suite, several processes on one file, lock waits."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

import kvstore
from kvstore.drivers.sqlite import DEFAULT_TABLE, default_path, from_url, sqlite_driver
from kvstore.errors import BackendError, BackendUnavailable, ConfigurationError, StorageClosed
from kvstore.testing import DriverConformance, DriverFactory


class TestSQLiteFile(DriverConformance):
    @pytest.fixture
    def driver_factory(self, tmp_path: Path) -> DriverFactory:
        path = tmp_path / "store" / "kv.db"
        return lambda: sqlite_driver(path)


class TestSQLiteMemory(DriverConformance):
    persistent = False

    @pytest.fixture
    def driver_factory(self) -> DriverFactory:
        return lambda: sqlite_driver(":memory:")


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


def test_four_processes_write_to_one_file_at_once(tmp_path: Path) -> None:
    path = tmp_path / "new" / "shared.db"
    workers, count = 4, 1000
    processes = [
        subprocess.Popen(
            [sys.executable, str(SUPPORT / "writer.py"), str(path), str(worker), str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_child_env(),
            text=True,
        )
        for worker in range(workers)
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
        results = [process.communicate(timeout=300) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
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
async def test_a_failing_batch_writes_nothing(tmp_path: Path) -> None:
    driver = sqlite_driver(tmp_path / "atomic.db")
    try:
        await driver.set("before", b"0")
        # None breaks the NOT NULL constraint on the second row, after the first was written.
        bad: list[tuple[str, Any]] = [("new", b"1"), ("broken", None)]
        with pytest.raises(BackendError):
            await driver.set_many(bad)
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
@pytest.mark.parametrize(
    ("statement_name", "params"),
    [
        ("scan", ("user:", "user;", 1000)),
        ("clear_range", ("user:", "user;", 256)),
    ],
)
async def test_prefix_scans_and_clears_are_index_range_searches(
    tmp_path: Path, statement_name: str, params: tuple[object, ...]
) -> None:
    """Cost follows the matching keys: SQLite searches the key index instead of scanning."""
    driver = sqlite_driver(tmp_path / "plan.db")
    await driver.set("user:1", b"1")
    sql = (
        driver._sql_scan[True, True, "key"]
        if statement_name == "scan"
        else driver._sql_clear[True]
    )
    with closing(sqlite3.connect(driver.path)) as conn:
        plan = " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
    await driver.close()
    assert "SEARCH" in plan, plan
    assert "PRIMARY KEY (key>? AND key<?)" in plan, plan
