"""Checkpoints of the SQLite write-ahead log happen in a thread, never in a write on the loop.

SQLite's own checkpoints run inside the commit that finds the log past 1,000 pages, holding the
event loop for tens of milliseconds. The kvstore driver and the event queue's backend hand them
to a :class:`~kvstore.wal_checkpoints.Checkpointer` instead. With the thread's looks held off,
a write of thousands of pages leaves the database file as it was (everything is in the log);
one look copies it all, and the log starts over at the next commit.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import anyio
import pytest
from eventqueue import create_queue

from kvstore import wal_checkpoints
from kvstore.drivers.sqlite import DEFAULT_TABLE, SQLiteDriver, sqlite_driver
from kvstore.wal_checkpoints import Checkpointer, _frames_in

pytestmark = pytest.mark.anyio

# 60 values of 100 KB: about 1,500 pages, past the 1,000 that call for a checkpoint.
BIG = b"\x01" * 100_000
COUNT = 60


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def no_looks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the writers' nudges wake the thread once at most (the first), so that only
    ``settle`` makes it look again."""
    monkeypatch.setattr(wal_checkpoints, "LOOK_EVERY", 1e9)


def _checkpoint_threads(path: Path) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"WAL checkpoints of {path}"]


def _checkpoints_of(driver: SQLiteDriver) -> Checkpointer:
    checkpoints: Checkpointer = driver._checkpoints
    return checkpoints


@pytest.mark.usefixtures("no_looks")
async def test_the_driver_writes_only_to_the_log_and_the_thread_checkpoints_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "kv.db"
    driver = sqlite_driver(path)
    try:
        await driver.set("first", b"")
        size_before = path.stat().st_size
        for index in range(COUNT):
            await driver.set(f"big:{index:03d}", BIG)
        assert _frames_in(f"{path}-wal") >= 1000
        assert path.stat().st_size == size_before, "a write on the loop copied pages back"

        checkpoints = _checkpoints_of(driver)
        assert await anyio.to_thread.run_sync(checkpoints.settle)
        assert path.stat().st_size >= COUNT * len(BIG), "the thread copied the log back"
        await driver.set("next", b"")
        assert _frames_in(f"{path}-wal") < 10, "the next commit starts the log over"
        assert await driver.get_many([f"big:{i:03d}" for i in range(COUNT)]) == [BIG] * COUNT
    finally:
        await driver.close()


async def test_closing_the_driver_stops_the_thread_and_leaves_the_database_whole(
    tmp_path: Path,
) -> None:
    path = tmp_path / "kv.db"
    driver = sqlite_driver(path)
    await driver.set_many([(f"k:{i:03d}", BIG) for i in range(COUNT)])
    assert _checkpoint_threads(path), "the thread runs while the driver is open"
    await driver.close()
    assert not _checkpoint_threads(path)
    # The last connection to close checkpointed the log and removed it.
    assert not await anyio.Path(f"{path}-wal").exists()
    with closing(sqlite3.connect(path)) as raw:
        assert raw.execute(f'SELECT count(*) FROM "{DEFAULT_TABLE}"').fetchone() == (COUNT,)


async def test_an_in_memory_database_has_no_log_and_no_thread() -> None:
    driver = sqlite_driver(":memory:")
    try:
        await driver.set("k", b"v")
        assert not _checkpoints_of(driver).running
    finally:
        await driver.close()


def test_a_connection_not_in_wal_mode_keeps_its_own_journal_and_gets_no_thread(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rollback.db"
    checkpoints = Checkpointer(str(path), logger=logging.getLogger("test"))
    with closing(sqlite3.connect(path, isolation_level=None)) as writer:
        assert writer.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        assert checkpoints.start(writer) is False
        assert not checkpoints.running
        assert not _checkpoint_threads(path)
        # Left as SQLite sets it: nothing was handed over.
        assert writer.execute("PRAGMA wal_autocheckpoint").fetchone() == (1000,)


@pytest.mark.usefixtures("no_looks")
async def test_the_event_queue_leaves_its_checkpoints_to_the_thread_too(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    async with create_queue(url=f"sqlite:///{path}") as queue:
        await queue.publish("t", {"first": True})
        size_before = path.stat().st_size
        cursors = await queue.publish_many("t", [{"data": "x" * 100_000}] * COUNT)
        assert _frames_in(f"{path}-wal") >= 1000
        assert path.stat().st_size == size_before, "a publish on the loop copied pages back"

        checkpoints: Checkpointer = queue._backend._checkpoints  # type: ignore[attr-defined]
        assert await anyio.to_thread.run_sync(checkpoints.settle)
        assert path.stat().st_size >= COUNT * 100_000
        entries = await queue.recover("t")
        assert [entry.cursor for entry in entries][1:] == cursors
    assert not _checkpoint_threads(path)
    assert not await anyio.Path(f"{path}-wal").exists()


def test_frames_in_counts_the_frames_of_the_current_log(tmp_path: Path) -> None:
    path = str(tmp_path / "raw.db")
    assert _frames_in(f"{path}-wal") == 0, "no log yet"
    with (
        closing(sqlite3.connect(path, isolation_level=None)) as writer,
        closing(sqlite3.connect(path, isolation_level=None)) as checkpointer,
    ):
        writer.execute("PRAGMA journal_mode = WAL")
        writer.execute("PRAGMA wal_autocheckpoint = 0")
        writer.execute("CREATE TABLE t (v BLOB)")
        for rows in (700, 300, 1500):
            for _ in range(rows):
                writer.execute("INSERT INTO t VALUES (?)", (os.urandom(300),))
            counted = _frames_in(f"{path}-wal")
            # A passive checkpoint reports how many frames the log holds.
            _, frames, _ = checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            assert counted == frames
            checkpointer.execute("PRAGMA wal_checkpoint(RESTART)")
            # Over a longer file from an earlier round, the new log is told by its salts.
            writer.execute("INSERT INTO t VALUES (x'00')")
            assert _frames_in(f"{path}-wal") == 1


async def test_closing_in_a_cancelled_scope_still_stops_the_thread(tmp_path: Path) -> None:
    path = tmp_path / "kv.db"
    driver = sqlite_driver(path)
    await driver.set("k", b"v")
    with anyio.CancelScope() as scope:
        scope.cancel()
        await driver.close()
    assert not _checkpoint_threads(path)
    assert not await anyio.Path(f"{path}-wal").exists()


@pytest.mark.usefixtures("no_looks")
async def test_a_reader_holding_a_snapshot_delays_the_restart_and_no_write_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "kv.db"
    driver = sqlite_driver(path)
    try:
        await driver.set("first", b"")
        with closing(sqlite3.connect(path, isolation_level=None)) as reader:
            reader.execute("BEGIN")
            reader.execute(f'SELECT count(*) FROM "{DEFAULT_TABLE}"').fetchall()
            for index in range(COUNT):
                await driver.set(f"big:{index:03d}", BIG)
            checkpoints = _checkpoints_of(driver)
            assert await anyio.to_thread.run_sync(checkpoints.settle)
            await driver.set("during", b"")
            assert _frames_in(f"{path}-wal") > COUNT, "the reader's snapshot keeps the log"
            reader.execute("COMMIT")
        assert await anyio.to_thread.run_sync(checkpoints.settle)
        await driver.set("after", b"")
        assert _frames_in(f"{path}-wal") < 10, "once the reader let go, the log started over"
        assert await driver.get_many(["during", "after", "big:059"]) == [b"", b"", BIG]
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    finally:
        await driver.close()
