"""How long SQLite writes hold the event loop: checkpoints in the driver's thread against SQLite's
own, inside the writes, side by side in one process.

Run: ``python -m benchmarks.loop_stalls [--writes N] [--rounds R]``. Each round writes ``N``
200-byte values one ``set`` at a time through the SQLite driver (and publishes ``N`` events to
the SQLite event queue) to a new file while another task counts its turns of the loop, once with
the checkpoint thread and once with it refused (``Checkpointer.start`` returning False, so the
writer keeps SQLite's automatic checkpoints). It prints, per mode, the writes a second and the
gaps between the other task's turns: how many passed 5 ms, the 99.9th percentile, the longest.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.lowlevel
from eventqueue import create_queue

from benchmarks.workloads import VALUE
from kvstore.drivers.sqlite import sqlite_driver
from kvstore.storage import Storage
from kvstore.wal_checkpoints import Checkpointer

_STALL = 0.005


@dataclass
class Run:
    """One timed run: its writes a second and the gaps between the other task's turns."""

    rate: float
    gaps: list[float]

    @property
    def stalls(self) -> int:
        return sum(gap > _STALL for gap in self.gaps)

    @property
    def p999(self) -> float:
        ordered = sorted(self.gaps)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.999))]


@contextmanager
def _sqlite_checkpoints() -> Iterator[None]:
    """Refuse the checkpoint thread: the writer keeps SQLite's own checkpoints."""
    start = Checkpointer.start
    Checkpointer.start = lambda self, writer: False  # type: ignore[method-assign]
    try:
        yield
    finally:
        Checkpointer.start = start  # type: ignore[method-assign]


async def _beside_a_counter(writes: int, write: Callable[[int], Awaitable[object]]) -> Run:
    gaps: list[float] = []
    writing = True

    async def count_turns() -> None:
        last = time.perf_counter()
        while writing:
            await anyio.lowlevel.checkpoint()
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async with anyio.create_task_group() as group:
        group.start_soon(count_turns)
        start = time.perf_counter()
        for index in range(writes):
            await write(index)
        rate = writes / (time.perf_counter() - start)
        writing = False
    return Run(rate, gaps)


async def _sets(folder: Path, writes: int) -> Run:
    async with Storage(sqlite_driver(folder / "kv.db")) as storage:
        return await _beside_a_counter(writes, lambda i: storage.set(f"k:{i:07d}", VALUE))


async def _publishes(folder: Path, writes: int) -> Run:
    async with create_queue(url=f"sqlite:///{folder / 'queue.db'}") as queue:
        return await _beside_a_counter(writes, lambda i: queue.publish("t", VALUE))


async def main(writes: int, rounds: int) -> None:
    """Print the comparison table."""
    runs: dict[tuple[str, str], list[Run]] = {}
    for _ in range(rounds):
        for workload, body in (("set", _sets), ("publish", _publishes)):
            for mode in ("thread", "sqlite"):
                with tempfile.TemporaryDirectory() as folder:
                    if mode == "sqlite":
                        with _sqlite_checkpoints():
                            run = await body(Path(folder), writes)
                    else:
                        run = await body(Path(folder), writes)
                runs.setdefault((workload, mode), []).append(run)
    print(f"{writes:,} writes of about 200 bytes, {rounds} rounds, medians")
    print("operation  checkpoints         writes/s   stalls > 5 ms   p99.9 gap   longest gap")
    for (workload, mode), done in runs.items():
        name = "driver thread" if mode == "thread" else "SQLite, inline"
        rate = statistics.median(run.rate for run in done)
        stalls = statistics.median(run.stalls for run in done)
        p999 = statistics.median(run.p999 for run in done) * 1000
        longest = statistics.median(max(run.gaps) for run in done) * 1000
        print(
            f"{workload:<10} {name:<18} {rate:>9,.0f}   {stalls:>13g}   {p999:>6.2f} ms"
            f"   {longest:>8.1f} ms"
        )
    sets = [
        a.rate / b.rate for a, b in zip(runs["set", "thread"], runs["set", "sqlite"], strict=True)
    ]
    publishes = [
        a.rate / b.rate
        for a, b in zip(runs["publish", "thread"], runs["publish", "sqlite"], strict=True)
    ]
    print(
        f"thread / inline, writes a second (median of the rounds' ratios): set "
        f"{statistics.median(sets):.2f}, publish {statistics.median(publishes):.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    anyio.run(main, arguments.writes, arguments.rounds)
