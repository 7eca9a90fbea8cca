"""An operation cancelled where it yields leaves the store consistent.

The time slice is set to zero so that every pacing check yields, and a second task cancels the
operation after a few of them: part way through a 10,000-item batch, a ``get_many``, a clear.
Afterwards an atomic batch is fully applied (memory: a started batch finishes) or fully absent
(SQLite: rolled back), SQLite's connection is not left inside a transaction, the memory driver's
key index matches its data, and every driver keeps working.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from kvstore import pacing
from kvstore.driver import BaseDriver
from kvstore.drivers._fs_local import LOCK_NAME
from kvstore.drivers.fs import fs_driver
from kvstore.drivers.memory import memory_driver
from kvstore.drivers.sqlite import sqlite_driver

pytestmark = pytest.mark.anyio

SIZE = 10_000
ITEMS = [(f"k:{index:06d}", f"value {index}".encode()) for index in range(SIZE)]
KEYS = [key for key, _ in ITEMS]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def zero_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pacing, "SLICE", 0.0)


HOW = ["CancelScope.cancel", "move_on_after", "fail_after"]


async def _cancel_part_way(operation: Callable[[], Awaitable[object]], how: str) -> int:
    """Run ``operation`` and cancel it at about its third yield; return how often it yielded.

    The deadline forms set the scope's deadline to now, as an expiring timeout would.
    """
    before = pacing.pause_count()
    timeout: Any
    if how == "CancelScope.cancel":
        timeout = anyio.CancelScope()
    elif how == "move_on_after":
        timeout = anyio.move_on_after(3600)
    else:
        timeout = anyio.fail_after(3600)

    async def cancel_soon(scope: anyio.CancelScope) -> None:
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        if how == "CancelScope.cancel":
            scope.cancel()
        else:
            scope.deadline = anyio.current_time()

    try:
        with timeout as scope:
            async with anyio.create_task_group() as group:
                group.start_soon(cancel_soon, scope)
                await operation()
                await anyio.sleep_forever()  # an operation that finished: cancelled here
    except TimeoutError:
        assert how == "fail_after"
    return pacing.pause_count() - before


def _no_transaction_left(path: Path) -> None:
    """Another connection can take the write lock at once: nobody sits inside a transaction."""
    with closing(sqlite3.connect(path, timeout=0, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        other.execute("COMMIT")


async def _works(driver: BaseDriver) -> None:
    await driver.set("after", b"1")
    assert await driver.get("after") == b"1"
    await driver.delete("after")


# -- SQLite: rolled back ------------------------------------------------------------------------


@pytest.mark.parametrize("how", HOW)
async def test_sqlite_batch_cancelled_part_way_is_absent(tmp_path: Path, how: str) -> None:
    driver = sqlite_driver(tmp_path / "kv.db")
    await driver.set("k:000001", b"old")
    yields = await _cancel_part_way(lambda: driver.set_many(ITEMS), how)
    assert yields >= 2  # it was cancelled inside the transaction, not before it began
    _no_transaction_left(tmp_path / "kv.db")
    assert [key async for key in driver.keys()] == ["k:000001"]
    assert await driver.get("k:000001") == b"old"
    await _works(driver)
    await driver.close()


@pytest.mark.parametrize("operation", ["delete_many", "clear"])
@pytest.mark.parametrize("how", HOW)
async def test_sqlite_delete_cancelled_part_way_deletes_nothing(
    tmp_path: Path, how: str, operation: str
) -> None:
    driver = sqlite_driver(tmp_path / "kv.db")
    await driver.set_many(ITEMS)
    run = (lambda: driver.delete_many(KEYS)) if operation == "delete_many" else driver.clear
    await _cancel_part_way(run, how)
    _no_transaction_left(tmp_path / "kv.db")
    assert len([key async for key in driver.keys()]) == SIZE
    await _works(driver)
    await driver.close()


@pytest.mark.parametrize("how", HOW)
async def test_sqlite_get_many_cancelled_part_way_leaves_no_read_transaction(
    tmp_path: Path, how: str
) -> None:
    driver = sqlite_driver(tmp_path / "kv.db")
    await driver.set_many(ITEMS)
    await _cancel_part_way(lambda: driver.get_many(KEYS), how)
    _no_transaction_left(tmp_path / "kv.db")
    assert await driver.get_many(KEYS[:3]) == [value for _, value in ITEMS[:3]]
    await _works(driver)
    await driver.close()


async def test_other_tasks_never_see_or_join_a_half_done_sqlite_batch(tmp_path: Path) -> None:
    driver = sqlite_driver(tmp_path / "kv.db")
    seen: list[int] = []
    done = False

    async def reader() -> None:
        while not done:
            # Each read runs between the batch's steps, never inside its transaction.
            seen.append(len(await driver.get_many(["k:000000", KEYS[-1]])))
            present = [value for value in await driver.get_many([KEYS[0], KEYS[-1]]) if value]
            assert len(present) in (0, 2)
            await driver.set("reader", b"r")

    async with anyio.create_task_group() as group:
        group.start_soon(reader)
        await driver.set_many(ITEMS)
        done = True
    assert seen
    assert await driver.get("reader") == b"r"
    await driver.close()


# -- memory: a started batch finishes -----------------------------------------------------------


async def _memory_consistent(driver: BaseDriver, expected: list[str]) -> None:
    """The key index (scans) and the data (reads) agree."""
    listed = [key async for key in driver.keys()]
    assert listed == sorted(expected)
    values = await driver.get_many(KEYS)
    assert [key for key, value in zip(KEYS, values, strict=True) if value is not None] == [
        key for key in KEYS if key in set(expected)
    ]


@pytest.mark.parametrize("how", HOW)
async def test_memory_batch_cancelled_part_way_is_applied_whole(how: str) -> None:
    driver = memory_driver()
    yields = await _cancel_part_way(lambda: driver.set_many(ITEMS), how)
    assert yields >= 2
    await _memory_consistent(driver, KEYS)
    await _cancel_part_way(lambda: driver.delete_many(KEYS), how)
    await _memory_consistent(driver, [])
    await _works(driver)


@pytest.mark.parametrize("how", HOW)
async def test_memory_clear_cancelled_part_way_keeps_index_and_data_in_step(how: str) -> None:
    driver = memory_driver()
    await driver.set_many(ITEMS)
    await _cancel_part_way(lambda: driver.clear("k:"), how)
    remaining = [key async for key in driver.keys()]
    assert 0 < len(remaining) < SIZE  # cancelled part way: some keys were left
    await _memory_consistent(driver, remaining)
    await _works(driver)


async def test_other_tasks_never_see_a_half_done_memory_batch() -> None:
    driver = memory_driver()
    done = False

    async def reader() -> None:
        while not done:
            present = [value for value in await driver.get_many([KEYS[0], KEYS[-1]]) if value]
            assert len(present) in (0, 2)
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as group:
        group.start_soon(reader)
        await driver.set_many(ITEMS)
        done = True


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_memory_batch_survives_a_native_asyncio_cancel_and_then_raises_it() -> None:
    driver = memory_driver()
    task = asyncio.ensure_future(driver.set_many(ITEMS))
    for _ in range(3):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _memory_consistent(driver, KEYS)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_sqlite_batch_rolls_back_on_a_native_asyncio_cancel(tmp_path: Path) -> None:
    driver = sqlite_driver(tmp_path / "kv.db")
    await driver.set("x", b"1")
    task = asyncio.ensure_future(driver.set_many(ITEMS))
    for _ in range(3):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    _no_transaction_left(tmp_path / "kv.db")
    assert [key async for key in driver.keys()] == ["x"]
    await driver.close()


# -- fs: each file whole --------------------------------------------------------------------------


@pytest.mark.parametrize("how", HOW)
async def test_fs_batch_cancelled_part_way_leaves_whole_files_only(
    tmp_path: Path, how: str
) -> None:
    driver = fs_driver(str(tmp_path / "files"))
    items = ITEMS[:500]
    await _cancel_part_way(lambda: driver.set_many(items), how)
    listed = [key async for key in driver.keys()]
    assert 0 < len(listed) < len(items)  # files have no transactions: a prefix was written
    expected = dict(items)
    for key, value in zip(listed, await driver.get_many(listed), strict=True):
        assert value == expected[key]
    # Nothing half-written: the temporary directory holds only the writers' lock file.
    assert [path.name for path in (tmp_path / "files" / ".tmp").iterdir()] in ([], [LOCK_NAME])
    await _works(driver)
    await driver.close()
