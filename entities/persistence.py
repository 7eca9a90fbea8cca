"""create_persistence: the three repositories over one storage, in one namespace.

Records live under the ``agentx`` namespace of the storage by default (``agentx:images:...``), so
the same database or Redis base can hold other data beside them without collisions; pass
``namespace=""`` to keep them at the storage's root (as the key layout in :mod:`entities.keys`).
"""

from __future__ import annotations

from collections.abc import Generator
from types import TracebackType
from typing import Any, Self

from entities.containers import ContainerRepository
from entities.images import ImageRepository
from entities.keys import CONTAINERS, KeyLayout
from entities.sessions import SessionRepository
from kvstore import create_storage
from kvstore.driver import Driver
from kvstore.storage import Storage

__all__ = ["DEFAULT_NAMESPACE", "Persistence", "PersistenceOpening", "create_persistence"]

DEFAULT_NAMESPACE = "agentx"


class Persistence:
    """The repositories for containers, images and sessions, sharing one storage.

    ``storage`` is the namespaced view the records live in. Closing closes the storage if this
    object created it (from a driver, a URL or the default); a :class:`Storage` passed in stays
    open, since its owner closes it.
    """

    __slots__ = ("_owned", "_view", "containers", "images", "sessions", "storage")

    def __init__(self, storage: Storage, *, namespace: str, owned: Storage | None) -> None:
        self._view = storage.with_prefix(namespace) if namespace else None
        self.storage = self._view if self._view is not None else storage
        self._owned = owned
        layout = KeyLayout(self.storage.base)
        self.sessions = SessionRepository(self.storage, layout)
        self.images = ImageRepository(self.storage, layout, self.sessions)
        self.containers = ContainerRepository(self.storage, layout, self.images, self.sessions)

    async def close(self) -> None:
        """Stop using the storage, closing it if this object owns it; idempotent."""
        if self._view is not None:
            await self._view.close()
        if self._owned is not None:
            await self._owned.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


def create_persistence(
    source: Storage | Driver | str | None = None, *, namespace: str = DEFAULT_NAMESPACE
) -> PersistenceOpening:
    """Open a :class:`Persistence` over ``source``, connected so that errors surface at once.

    ``source`` is a kvstore driver, a :class:`Storage`, a URL (``"redis://..."``,
    ``"sqlite:///agentx.db"``, see :func:`kvstore.create_storage`) or ``None`` for the default
    SQLite file under ``~/.agentx``. ``namespace`` must follow the key rules (``""`` for none).

    Use the result as ``async with create_persistence(...) as persistence:`` (closed at the end
    of the block), or ``persistence = await create_persistence(...)`` (then close it yourself);
    ``async with await create_persistence(...)`` works too. Nothing is opened until then.
    """
    return PersistenceOpening(source, namespace)


class PersistenceOpening:
    """What :func:`create_persistence` returns: await it, or enter it with ``async with``.

    Like a coroutine, it is used once: opening it a second time raises ``RuntimeError``. If
    opening fails (a bad URL or namespace, an unreachable backend), whatever it had opened is
    closed again before the error propagates.
    """

    __slots__ = ("_namespace", "_opened", "_source", "_used")

    def __init__(self, source: Storage | Driver | str | None, namespace: str) -> None:
        self._source = source
        self._namespace = namespace
        self._used = False
        self._opened: Persistence | None = None

    def __await__(self) -> Generator[Any, None, Persistence]:
        return self._open().__await__()

    async def __aenter__(self) -> Persistence:
        self._opened = await self._open()
        return self._opened

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._opened is not None:
            await self._opened.close()

    async def _open(self) -> Persistence:
        if self._used:
            raise RuntimeError("create_persistence(...) was already awaited or entered once")
        self._used = True
        # A Storage passed in belongs to the caller: only one made here is closed on failure.
        if isinstance(self._source, Storage):
            storage, owned = self._source, None
        else:
            storage = owned = create_storage(self._source)
        try:
            if owned is not None:
                await owned.open()
            persistence = Persistence(storage, namespace=self._namespace, owned=owned)
            await _probe(persistence)
        except BaseException:
            if owned is not None:
                await owned.close()
            raise
        return persistence


async def _probe(persistence: Persistence) -> None:
    # Drivers without an open step (Redis) connect on first use: one read makes an unreachable
    # backend fail here rather than at the first repository call.
    await persistence.storage.has(CONTAINERS.rstrip(":"))
