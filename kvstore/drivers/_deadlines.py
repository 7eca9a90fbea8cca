"""One timer for every operation of a driver, when all of them share one timeout.

``asyncio.timeout`` arms and cancels a timer per use: about 10 µs on a busy machine, several
percent of a Redis round trip. When every operation of a driver has the same timeout, deadlines
fall in the order the operations started, so one timer armed for the oldest pending deadline
serves them all: starting and ending an operation is a dict insertion and removal. The
semantics are those of ``asyncio.timeout``: at the deadline the task is cancelled, and the
cancellation leaves the block as :class:`TimeoutError`, unless someone else also cancelled the
task, whose cancellation then goes on.
"""

from __future__ import annotations

import asyncio
import itertools
from types import TracebackType

__all__ = ["Deadlines"]


class Deadlines:
    """Bounds blocks of one event loop to ``seconds`` each: ``with deadlines(): ...``.

    Use it only inside tasks of one event loop at a time; a new loop starts afresh.
    """

    __slots__ = ("_loop", "_numbers", "_pending", "_seconds", "_timer")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        # Oldest first: insertion order is deadline order, as every block waits ``seconds``.
        self._pending: dict[int, _Watch] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._numbers = itertools.count()

    def __call__(self) -> _Watch:
        """A context manager bounding the block it guards to ``seconds`` from now."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # A former loop's timer will never fire here.
            self._loop, self._timer = loop, None
            self._pending.clear()
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - asyncio always runs coroutines in tasks
            raise RuntimeError("a deadline needs a running task")
        watch = _Watch(self, next(self._numbers), task, loop.time() + self._seconds)
        self._pending[watch.number] = watch
        if self._timer is None:
            self._timer = loop.call_at(watch.deadline, self._expire)
        return watch

    def _expire(self) -> None:
        """Cancel every task past its deadline; arm the timer for the next pending one."""
        self._timer = None
        loop = self._loop
        assert loop is not None  # set by the call that armed this timer
        now = loop.time()
        pending = self._pending
        while pending:
            number = next(iter(pending))
            watch = pending[number]
            if watch.deadline > now:
                self._timer = loop.call_at(watch.deadline, self._expire)
                return
            del pending[number]
            watch.expire()


class _Watch:
    """One bounded block (see :class:`Deadlines`)."""

    __slots__ = ("_cancelling", "_expired", "_owner", "deadline", "number", "task")

    def __init__(
        self, owner: Deadlines, number: int, task: asyncio.Task[object], deadline: float
    ) -> None:
        self._owner = owner
        self.number = number
        self.task = task
        self.deadline = deadline
        # Cancellations already requested when the block began are not ours to turn.
        self._cancelling = task.cancelling()
        self._expired = False

    def expire(self) -> None:
        """The deadline passed: cancel the task (the block ends in TimeoutError)."""
        self._expired = True
        self.task.cancel()

    def __enter__(self) -> _Watch:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if not self._expired:
            # Absent only if a new event loop reset the owner while this block ran.
            self._owner._pending.pop(self.number, None)
            return
        # As asyncio.timeout: our cancellation is withdrawn; if it is what ended the block and
        # nobody else asked to cancel the task meanwhile, the block timed out.
        if self.task.uncancel() <= self._cancelling and kind is asyncio.CancelledError:
            raise TimeoutError from error
