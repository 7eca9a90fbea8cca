"""Cooperative time slices for drivers that run inline on the event loop.

The local drivers (memory, SQLite, local files) do their work without a thread hop, because a hop
costs far more than the work. Nothing then gives other tasks a turn, so each such driver keeps a
:class:`Pacer`: its operations check, cheaply, whether the loop has been held for a time slice
(:data:`SLICE`, 1 ms) since the pacer last yielded, and if so yield with
``anyio.lowlevel.checkpoint()`` (asyncio and trio alike) before going on. Long loops (batches,
scans, clears) check between bounded chunks of work, so no single step holds the loop for much
more than one slice.

A time check costs a clock read (about 0.1 µs here), more than 10 % of a memory-driver operation,
so a driver whose operations take about a microsecond reads the clock only every so many
operations (it counts them itself); the others read it each time.

:class:`Gate` lets one multi-step operation (an atomic batch that yields part way) run alone
among its driver's operations: the others wait until it has finished, so nobody sees or joins a
half-done batch.
"""

from __future__ import annotations

from time import monotonic

import anyio
import anyio.lowlevel

__all__ = ["SLICE", "Gate", "Pacer", "pause_count"]

SLICE = 0.001
"""Seconds of inline work after which a pacer yields to the event loop (read at each yield)."""

_pauses = 0


def pause_count() -> int:
    """Return how many times any pacer has yielded in this process (for tests and profiling)."""
    return _pauses


class Pacer:
    """Decides when a run of inline work gives the event loop a turn.

    ``deadline`` is the monotonic time after which the next check yields; hot paths compare
    ``time.monotonic()`` with it inline, which is cheaper than a call. One pacer serves one
    driver (or one storage), used from one event loop at a time.
    """

    __slots__ = ("deadline",)

    def __init__(self) -> None:
        # Zero: the first check yields, which costs one checkpoint per driver.
        self.deadline = 0.0

    def due(self) -> bool:
        """Tell whether a time slice has passed since this pacer last yielded."""
        return monotonic() >= self.deadline

    async def pause(self) -> None:
        """Yield to the event loop now (a cancellation point) and start a new slice."""
        global _pauses
        await anyio.lowlevel.checkpoint()
        _pauses += 1
        self.deadline = monotonic() + SLICE

    async def pause_shielded(self) -> BaseException | None:
        """Yield to the event loop now without being cancelled; start a new slice.

        For a batch that must finish once it has started writing. anyio and trio cancel scopes
        do not interrupt it; a native asyncio cancellation (``task.cancel()``,
        ``asyncio.timeout``) still arrives here, and is returned instead of raised, for the
        caller to raise once its batch is whole.
        """
        global _pauses
        try:
            await anyio.lowlevel.cancel_shielded_checkpoint()
        except BaseException as interruption:  # re-raised by the caller, after finishing
            return interruption
        finally:
            _pauses += 1
            self.deadline = monotonic() + SLICE
        return None

    async def tick(self) -> None:
        """Yield if a slice has passed; for loops, between bounded chunks of work."""
        if monotonic() >= self.deadline:
            await self.pause()


class Gate:
    """Lets one multi-step operation run alone among its driver's operations, across yields.

    The operation calls :meth:`close` before its first yield and :meth:`open` when it is done
    (in a ``finally``); every other operation calls :meth:`wait` before it touches the data.
    """

    __slots__ = ("_opened",)

    def __init__(self) -> None:
        self._opened: anyio.Event | None = None

    @property
    def closed(self) -> bool:
        """Whether an operation holds the gate."""
        return self._opened is not None

    def close(self) -> None:
        """Take the gate for the running operation; it must be open."""
        assert self._opened is None, "the gate is already held"
        self._opened = anyio.Event()

    def open(self) -> None:
        """Release the gate and wake the operations waiting for it."""
        opened, self._opened = self._opened, None
        if opened is not None:
            opened.set()

    async def wait(self) -> None:
        """Return once nobody holds the gate (at once if nobody does)."""
        while self._opened is not None:
            await self._opened.wait()
