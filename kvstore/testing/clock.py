"""The clock the expiry clauses move: a manual one for local drivers, the real one for servers.

A local driver (memory, SQLite, files) takes a ``clock`` callable; its test class sets
``manual_clock = True`` and hands the suite's ``clock`` fixture to the driver it makes, so that
the clauses move time without sleeping. A server driver reads the server's clock, which no test
can move: there :meth:`TestClock.pass_instant` waits, on the real clock, until the instant has
passed on this machine (the servers here run on it), plus a margin for the backend's rounding.
"""

from __future__ import annotations

import time

import anyio

__all__ = ["TestClock"]

# Past the instant a real-clock wait goes on for: backends keep milliseconds, and a loaded
# machine only ever makes the wait longer, never shorter.
_MARGIN = 0.005
# A fixed starting point for the manual clock: far from the real one, so a driver that reads
# the real clock instead of the one it was given fails the clauses at once.
_MANUAL_START = 4_000_000_000.0


class TestClock:
    """POSIX seconds now: called by the driver, moved by the test.

    ``manual`` clocks stand still until :meth:`advance` or :meth:`pass_instant` move them.
    Real clocks read :func:`time.time` and move by waiting.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, *, manual: bool) -> None:
        self.manual = manual
        self._now = _MANUAL_START

    def __call__(self) -> float:
        """POSIX seconds now, on this clock."""
        return self._now if self.manual else time.time()

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass (instantly on a manual clock)."""
        await self.pass_instant(self() + seconds)

    async def pass_instant(self, instant: float, *, exactly: bool = False) -> None:
        """Return once ``instant`` has been reached.

        A manual clock jumps to ``instant`` itself when ``exactly`` is set (the clauses check
        that a key is gone *at* its expiry instant), else just past it. A real clock waits
        until the instant plus a margin has passed on this machine.
        """
        if self.manual:
            self._now = max(self._now, instant if exactly else instant + 0.001)
            return
        # anyio.sleep may wake a little early on some loops: sleep again for what is left.
        left = instant + _MARGIN - time.time()
        while left > 0:
            await anyio.sleep(left)
            left = instant + _MARGIN - time.time()
