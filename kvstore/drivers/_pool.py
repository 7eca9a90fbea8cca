"""A bounded connection pool that connects in the caller's task.

Why not psycopg-pool: it opens connections in a background task and retries failures with a
growing backoff (1 s, 2 s, 4 s...), so a caller learns that the server is unreachable only when
its own wait for a connection times out, learns it without the cause, and after a restart may
wait seconds past the server's return; each failed attempt is also logged at WARNING. Here a
caller that needs a new connection opens it itself, under its own timeout: a refused
connection is reported at once with libpq's reason, a server that is back is used at once, and
nothing runs in the background.
"""

from __future__ import annotations

import asyncio
import select
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["Pool", "peer_closed"]

C = TypeVar("C")


class Pool(Generic[C]):
    """At most ``size`` connections, idle ones reused most-recent first.

    ``connect`` opens a connection (bounded by the caller), ``usable`` says whether an idle
    one may be handed out again, ``discard`` closes one for good.
    """

    def __init__(
        self,
        size: int,
        connect: Callable[[], Awaitable[C]],
        usable: Callable[[C], bool],
        discard: Callable[[C], Awaitable[None]],
    ) -> None:
        self.size = size
        self._connect = connect
        self._usable = usable
        self._discard = discard
        self._slots = asyncio.Semaphore(size)
        self._idle: list[C] = []
        self._closed = False

    async def take(self, deadline: float) -> C:
        """Return a connection, waiting until ``deadline`` (event loop time) at the latest.

        Raises :class:`TimeoutError` when the deadline passed while every slot stayed busy or
        a new connection was still opening, and whatever ``connect`` raises.
        """
        slots = self._slots
        if slots.locked():
            async with asyncio.timeout_at(deadline):
                await slots.acquire()
        else:
            await slots.acquire()  # free: returns at once
        try:
            while self._idle:
                connection = self._idle.pop()
                if self._usable(connection):
                    return connection
                await self._discard(connection)
            async with asyncio.timeout_at(deadline):
                return await self._connect()
        except BaseException:
            slots.release()
            raise

    async def give_back(self, connection: C, *, reusable: bool) -> None:
        """Return a connection taken with :meth:`take`; it is closed unless ``reusable``."""
        try:
            if reusable and not self._closed:
                self._idle.append(connection)
            else:
                await self._discard(connection)
        finally:
            self._slots.release()

    async def drop_idle(self) -> int:
        """Close every idle connection (they died with the server); return how many."""
        idle, self._idle = self._idle, []
        for connection in idle:
            await self._discard(connection)
        return len(idle)

    async def close(self) -> None:
        """Close the idle connections; those in use are closed as they come back."""
        self._closed = True
        await self.drop_idle()


def peer_closed(descriptor: int) -> bool:
    """Tell whether an idle connection's socket has something to read: the server closed it.

    An idle client connection of PostgreSQL or MySQL never receives anything unasked, so
    anything readable (end of file, or the "terminating connection" message a server sends
    before closing) means the connection is dead. One ``poll`` call, no wait. A write that must
    not be sent twice checks this before it is sent, since after a send its outcome on a
    connection that then breaks is unknown and it cannot be retried.
    """
    poller = select.poll()
    poller.register(descriptor, select.POLLIN | select.POLLPRI)
    try:
        return bool(poller.poll(0))
    except OSError:
        return True
