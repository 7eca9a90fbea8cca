"""Where the blocking facade is called from: a lone thread, a running event loop, many threads.

A notebook is simulated by calling the blocking API from a coroutine running on asyncio (and on
trio); it must not deadlock, and on asyncio it runs the storage's loop inline, with no thread.
Eight threads share one storage. The loop thread is a daemon and
stops when the storage closes; errors keep their types and tracebacks.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import trio

from kvstore.drivers.memory import memory_driver
from kvstore.errors import ConfigurationError, Conflict, StorageClosed
from kvstore.sync import BlockingCallInLoop, Storage, create_storage
from tests.sync.conftest import Backend

pytestmark = pytest.mark.timeout(240)

THREADS = 8
ROUNDS = 25


def _loop_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "kvstore.sync loop"]


def test_calls_from_inside_a_running_asyncio_loop_do_not_deadlock(storage: Storage) -> None:
    async def notebook_cell() -> object:
        storage.set("cell", {"n": 1})
        value = storage.get("cell")
        storage.set_many({f"x{n}": n for n in range(300)})
        return value, len(list(storage.keys("x")))

    assert asyncio.run(notebook_cell()) == ({"n": 1}, 300)
    assert storage.get("cell") == {"n": 1}  # and from plain code again, on the same loop


def test_a_notebook_cell_runs_calls_inline_and_may_close_the_storage() -> None:
    before = set(_loop_threads())

    async def notebook_cell() -> object:
        storage = create_storage("memory://")
        storage.set("cell", [1, 2])
        value = storage.get("cell")
        assert set(_loop_threads()) == before  # no thread hop from a running asyncio loop
        running = asyncio.get_running_loop()
        storage.close()  # shuts the storage's loop down from inside the running one
        assert asyncio.get_running_loop() is running  # and gives the cell its loop back
        await asyncio.sleep(0)
        return value

    assert asyncio.run(notebook_cell()) == [1, 2]


def test_calls_from_inside_a_running_trio_loop_do_not_deadlock(storage: Storage) -> None:
    async def trio_program() -> object:
        storage.set("t", [1])
        return storage.get("t")

    assert trio.run(trio_program) == [1]


def test_eight_threads_share_one_storage(storage: Storage) -> None:
    storage.set("counter", 0)

    def work(thread: int) -> None:
        for n in range(ROUNDS):
            storage.set(f"t{thread}:{n:03}", n)
            assert storage.get(f"t{thread}:{n:03}") == n
            # Eight writers race on one key: allow as many tries as there are increments.
            storage.update(
                "counter",
                lambda value: value + 1,  # type: ignore[operator]
                attempts=THREADS * ROUNDS,
            )
        assert list(storage.keys(f"t{thread}:")) == [f"t{thread}:{n:03}" for n in range(ROUNDS)]

    with ThreadPoolExecutor(THREADS) as pool:
        for done in [pool.submit(work, thread) for thread in range(THREADS)]:
            done.result()
    assert storage.get("counter") == THREADS * ROUNDS
    assert len(list(storage.keys("t"))) == THREADS * ROUNDS


def test_a_lone_thread_without_a_loop_starts_no_thread(backend: Backend) -> None:
    before = threading.active_count()
    with backend.storage() as storage:
        storage.set("a", 1)
        assert storage.get("a") == 1
        assert threading.active_count() <= before + _driver_threads(backend)
        storage.clear()


def _driver_threads(backend: Backend) -> int:
    # aiosqlite runs each connection in a thread of its own; no other driver starts one here.
    return 1 if backend.name.startswith("sqlite") else 0


def _waiting_on_io() -> Storage:
    """A memory storage whose driver says it waits for I/O, as a server driver's does.

    Calls from a second thread then go to the loop thread, the path of every server driver.
    """
    driver = memory_driver()
    driver.inline = False
    return create_storage(driver)


def test_a_second_thread_runs_an_inline_drivers_calls_itself(tmp_path: Path) -> None:
    before = set(_loop_threads())
    for url in ("memory://", f"sqlite:///{tmp_path}/t.db", f"file://{tmp_path}/files"):
        with create_storage(url) as storage:
            storage.set("a", 1)
            with ThreadPoolExecutor(4) as pool:
                assert list(pool.map(storage.get, ["a"] * 40)) == [1] * 40
            assert set(_loop_threads()) == before, url  # no hop: the calls took turns inline


def test_the_loop_thread_is_a_daemon_and_stops_when_the_storage_closes() -> None:
    before = set(_loop_threads())
    storage = _waiting_on_io()
    _move_to_loop_thread(storage)
    started = set(_loop_threads()) - before
    assert started
    assert all(thread.daemon for thread in started)
    view = storage.with_prefix("v")
    storage.close()
    assert not any(thread.is_alive() for thread in started)
    with pytest.raises(StorageClosed):
        view.get("a")


def _move_to_loop_thread(storage: Storage) -> None:
    """Call ``storage`` from a second thread: its loop moves to the loop thread for good."""
    other = threading.Thread(target=storage.get, args=("a",))
    other.start()
    other.join()


def test_an_unclosed_storage_does_not_keep_the_process_alive() -> None:
    script = textwrap.dedent(
        """
        import threading
        from kvstore.sync import create_storage

        storage = create_storage("memory://")
        worker = threading.Thread(target=storage.set, args=("a", 1))
        worker.start()
        worker.join()
        assert storage.get("a") == 1
        print("done")
        """
    )
    finished = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip() == "done"


class Refused(Exception):
    """An error of the caller's own type, raised on the loop."""


def _refuse(value: object) -> object:
    raise Refused(f"no change to {value!r}")


@pytest.mark.parametrize("where", ["inline", "loop-thread"])
def test_errors_keep_their_type_and_traceback(where: str) -> None:
    with (create_storage("memory://") if where == "inline" else _waiting_on_io()) as storage:
        if where == "loop-thread":
            _move_to_loop_thread(storage)
        storage.create("k", 1)
        with pytest.raises(Refused) as raised:
            storage.update("k", _refuse)
        frames = [frame.name for frame in traceback.extract_tb(raised.value.__traceback__)]
        assert "_refuse" in frames
        assert "update" in frames
        with pytest.raises(Conflict):
            storage.create("k", 2)


@pytest.mark.parametrize("where", ["inline", "loop-thread"])
def test_a_blocking_call_on_the_facades_own_loop_raises_instead_of_hanging(where: str) -> None:
    with (create_storage("memory://") if where == "inline" else _waiting_on_io()) as storage:
        if where == "loop-thread":
            _move_to_loop_thread(storage)
        storage.set("k", 1)
        with pytest.raises(BlockingCallInLoop):
            storage.update("k", lambda value: storage.get("k"))
        assert storage.get("k") == 1


@pytest.mark.parametrize("url", ["sqlite:///", "memory://?bogus=1"])
def test_a_bad_url_raises_configuration_error_and_leaves_no_thread(url: str) -> None:
    before = set(_loop_threads())
    with pytest.raises(ConfigurationError):
        create_storage(url)
    assert set(_loop_threads()) == before
