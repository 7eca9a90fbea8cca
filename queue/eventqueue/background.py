"""The queue's background work (topic feeds, async handlers, the retention timer) in one place.

anyio has no detached tasks: every task lives in a task group, and a task group must be exited
by the task that entered it, inside the same cancel scopes. A queue is opened either by
``async with`` or on first use, perhaps deep inside a caller's ``fail_after`` or in one task and
closed from another, so its task group cannot live in the caller's task. It lives in a *host*
task of its own instead: the first :meth:`Background.start_soon` starts the host (a plain
asyncio task, or a trio system task), the host enters the task group and runs everything
started in it, and :meth:`Background.aclose` cancels the group and waits until every task in it
has ended. Like the rest of the queue it is used from one event loop thread.

The host never keeps a process alive: ``asyncio.run`` cancels it when the main coroutine returns,
and trio cancels system tasks when the main task ends. Work that blocks a thread (a sync handler)
runs in daemon threads, not here (see :mod:`eventqueue.subscribers`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
from anyio.abc import TaskGroup

__all__ = ["Background", "running_library"]

logger = logging.getLogger("eventqueue")

Work = Callable[[], Coroutine[Any, Any, None]]


def running_library() -> str:
    """Return ``"asyncio"`` or ``"trio"``: the async library running this thread.

    Raises ``RuntimeError`` when neither runs (a sync function called outside an event loop).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return "asyncio"
    try:
        import trio
    except ImportError:  # pragma: no cover - trio is optional
        raise RuntimeError("no running event loop (asyncio or trio)") from None
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        raise RuntimeError("no running event loop (asyncio or trio)") from None
    return "trio"


class Background:
    """A task group owned by a host task, for work that must not belong to any caller's task."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._group: TaskGroup | None = None
        self._pending: list[tuple[Work, str]] = []
        self._host: asyncio.Task[None] | None = None  # kept referenced while it runs (asyncio)
        self._started = False
        self._closing = False
        self._done: anyio.Event | None = None

    def start_soon(self, work: Work, *, name: str) -> None:
        """Run ``await work()`` in the group (soon); nothing happens once closing began.

        Must be called from a task of the event loop the queue uses. ``work`` must handle its
        own errors: an exception escaping it is logged and cancels the rest of the group.
        """
        if self._closing:
            return
        if self._group is not None:
            self._group.start_soon(work, name=name)
            return
        self._pending.append((work, name))
        if not self._started:
            self._start_host()

    def _start_host(self) -> None:
        library = running_library()
        self._started = True
        self._done = anyio.Event()
        if library == "asyncio":
            self._host = asyncio.get_running_loop().create_task(self._run(), name=self._name)
        else:
            import trio

            trio.lowlevel.spawn_system_task(self._run, name=self._name)

    async def _run(self) -> None:
        assert self._done is not None
        try:
            if self._closing:
                return
            async with anyio.create_task_group() as group:
                self._group = group
                if self._closing:  # aclose ran while the group was being entered
                    group.cancel_scope.cancel()
                for work, name in self._pending:
                    group.start_soon(work, name=name)
                self._pending.clear()
                await anyio.sleep_forever()
        except Exception:
            # The work handles its own errors; one that escapes must not crash trio's system
            # nursery or vanish as asyncio's "exception was never retrieved".
            logger.exception("eventqueue background task failed; its siblings were cancelled")
        finally:
            self._group = None
            self._host = None
            self._done.set()

    async def aclose(self) -> None:
        """Cancel every task in the group and wait until all have ended; idempotent."""
        self._closing = True
        self._pending.clear()
        if self._group is not None:
            self._group.cancel_scope.cancel()
        if self._done is not None:
            await self._done.wait()
