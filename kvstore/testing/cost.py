"""Measure the work an operation does, without a clock, for the suite's scan-cost clauses.

A scan's cost must grow with the keys it yields, not with the keys stored; a scan must stream.
Wall-clock time would make those checks flaky on a loaded machine, so the suite counts instead:

- ``steps``: Python bytecode instructions executed on the calling thread (through
  :func:`sys.settrace` with opcode events), outside the event loop's own code. A driver that
  walks every stored key in Python, even lazily, pays a few steps per key. The loop's code
  (asyncio, trio, anyio) is left out: one turn of the loop runs 300-400 steps of it, and how
  many turns an operation takes depends on the wall clock (drivers yield every millisecond or
  so), so counting them made a measure grow with the machine's load.
- ``peak_bytes``: the most memory allocated at once, on any thread (:mod:`tracemalloc`). A
  driver that sorts, copies or fetches every key, even in C or on a worker thread, pays at least
  a pointer per key.

Neither sees work done inside a database server: a server-side full table scan that sends back
only the matches costs the client what an index lookup costs.
"""

from __future__ import annotations

import os
import sys
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

__all__ = ["Cost", "measure", "measure_best"]


@dataclass(frozen=True, slots=True)
class Cost:
    """What one operation cost: interpreter steps on this thread and peak memory allocated."""

    steps: int
    peak_bytes: int

    def __str__(self) -> str:
        return f"{self.steps} interpreter steps, {self.peak_bytes} bytes at peak"


async def measure(operation: Callable[[], Awaitable[Any]], *, count_steps: bool = True) -> Cost:
    """Run ``operation`` once and return what it cost (``steps`` is 0 unless ``count_steps``).

    Counting steps slows the interpreter several times over, so a caller that needs only memory
    leaves it off.
    """
    steps = 0
    loop_code = _event_loop_directories()

    def trace(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal steps
        if event == "call":
            if frame.f_code.co_filename.startswith(loop_code):
                return None  # not this frame's steps; what it calls is traced again
            frame.f_trace_opcodes = True
            frame.f_trace_lines = False
        elif event == "opcode":
            steps += 1
        return trace

    was_tracing_memory = tracemalloc.is_tracing()
    if not was_tracing_memory:
        tracemalloc.start()
    previous = sys.gettrace()
    start, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    if count_steps:
        sys.settrace(trace)
    try:
        await operation()
    finally:
        if count_steps:
            sys.settrace(previous)
        _, peak = tracemalloc.get_traced_memory()
        if not was_tracing_memory:
            tracemalloc.stop()
    return Cost(steps=steps, peak_bytes=max(0, peak - start))


def _event_loop_directories() -> tuple[str, ...]:
    """The directories of the event loop libraries loaded, each ending with a separator."""
    names = ("asyncio", "anyio", "trio", "sniffio", "outcome")
    modules = [sys.modules.get(name) for name in names]
    files = [getattr(module, "__file__", None) for module in modules]
    found = tuple(os.path.dirname(file) + os.sep for file in files if file)
    return (*found, os.path.dirname(os.__file__) + os.sep + "selectors.py")


async def measure_best(
    operation: Callable[[], Awaitable[Any]], *, runs: int = 5, count_steps: bool = True
) -> Cost:
    """Run ``operation`` ``runs`` times and return the least of each measure.

    Background work (another task, a pool's thread, a client's heartbeat allocating while
    memory is traced process-wide) only ever adds to a measure, so the least of a few runs is
    the operation's own cost; five runs keep a loaded machine from inflating all of them.
    """
    costs = [await measure(operation, count_steps=count_steps) for _ in range(runs)]
    return Cost(
        steps=min(cost.steps for cost in costs),
        peak_bytes=min(cost.peak_bytes for cost in costs),
    )
