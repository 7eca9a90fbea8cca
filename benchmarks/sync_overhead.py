"""What a blocking call costs over the async call it mirrors, on the memory driver.

Run: ``python -m benchmarks.sync_overhead``. Target (issue 11): a blocking ``get``/``set`` costs
at most 100 us more than the async one.

Side by side in one process, in interleaved rounds, reporting medians per call: the async
``get``/``set`` awaited on an event loop; the blocking ones from a plain script (the loop runs in
the calling thread); from a coroutine on a running asyncio loop, as in a notebook cell (the
storage's loop runs in its place, in the same thread); from a second thread (a driver working on
the loop's thread, as memory, SQLite and local files do, runs there too, calls taking turns); and,
for comparison, through the loop thread that a driver waiting on I/O (a server's) uses from a
second thread: one thread hop per call. Only the first three are memory's paths and judged.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from kvstore.drivers.memory import memory_driver
from kvstore.storage import Storage as AsyncStorage
from kvstore.sync import Storage, create_storage

ROUNDS = 15
CALLS = 2000
# A thread hop is ~100x an inline call: fewer calls keep its rounds about as long.
HOP_CALLS = 500
VALUE = {"name": "Alice", "tags": ["a", "b"], "n": 1}


def _per_call(calls: int, operation: Callable[[int], object]) -> float:
    start = time.perf_counter()
    for index in range(calls):
        operation(index)
    return (time.perf_counter() - start) / calls * 1e6


async def _async_round(storage: AsyncStorage, name: str) -> float:
    start = time.perf_counter()
    if name == "get":
        for _ in range(CALLS):
            await storage.get("k")
    else:
        for index in range(CALLS):
            await storage.set(f"k{index % 100}", VALUE)
    return (time.perf_counter() - start) / CALLS * 1e6


def _blocking(storage: Storage, name: str, calls: int) -> float:
    if name == "get":
        return _per_call(calls, lambda _: storage.get("k"))
    return _per_call(calls, lambda index: storage.set(f"k{index % 100}", VALUE))


def _on_the_loop_thread() -> Storage:
    """A memory storage whose calls from a second thread go to its loop thread, as a server's."""
    driver = memory_driver()
    driver.inline = False  # says it waits on I/O: a second thread's call moves the loop
    storage = create_storage(driver)
    other = threading.Thread(target=storage.get, args=("k",))
    other.start()
    other.join()
    return storage


async def _in_a_cell(storage: Storage, name: str, calls: int) -> float:
    return _blocking(storage, name, calls)  # an asyncio loop runs in this thread meanwhile


def main() -> int:
    """Print the medians and the difference per call; exit 1 if a path misses the target."""
    loop = asyncio.new_event_loop()
    async_storage = AsyncStorage(memory_driver())
    inline = create_storage("memory://")
    hop = _on_the_loop_thread()
    second_thread = ThreadPoolExecutor(1)
    for storage in (inline, hop):
        storage.set("k", VALUE)
    loop.run_until_complete(async_storage.set("k", VALUE))
    times: dict[str, list[float]] = {}
    for _ in range(ROUNDS):
        for name in ("get", "set"):
            times.setdefault(f"async {name}", []).append(
                loop.run_until_complete(_async_round(async_storage, name))
            )
            times.setdefault(f"script {name}", []).append(_blocking(inline, name, CALLS))
            times.setdefault(f"notebook {name}", []).append(
                loop.run_until_complete(_in_a_cell(inline, name, CALLS))
            )
            times.setdefault(f"thread {name}", []).append(
                second_thread.submit(_blocking, inline, name, CALLS).result()
            )
            times.setdefault(f"hop {name}", []).append(_blocking(hop, name, HOP_CALLS))
    medians = {label: statistics.median(values) for label, values in times.items()}
    missed = False
    print(f"median per call over {ROUNDS} interleaved rounds (us), memory driver")
    for name in ("get", "set"):
        base = medians[f"async {name}"]
        print(f"  {'async':>8} {name:4} {base:7.2f}")
        for path in ("script", "notebook", "thread", "hop"):
            cost = medians[f"{path} {name}"]
            extra = cost - base
            missed |= extra > 100 and path != "hop"  # hop: the server drivers' path
            print(
                f"  {path:>8} {name:4} {cost:7.2f}  +{extra:6.2f} us over async,"
                f" {cost / base:5.1f}x"
            )
    second_thread.shutdown()
    inline.close()
    hop.close()
    loop.run_until_complete(async_storage.close())
    loop.close()
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
