"""create_persistence: the three repositories over one storage, in one namespace.

Records live under the ``agentx`` namespace of the storage by default (``agentx:images:...``), so
the same database or Redis base can hold other data beside them without collisions; pass
``namespace=""`` to keep them at the storage's root (as the key layout in :mod:`entities.keys`).
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from entities.containers import ContainerRepository
from entities.images import ImageRepository
from entities.keys import CONTAINERS, KeyLayout
from entities.sessions import SessionRepository
from kvstore import create_storage
from kvstore.driver import Driver
from kvstore.storage import Storage

__all__ = ["DEFAULT_NAMESPACE", "Persistence", "create_persistence"]

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


async def create_persistence(
    source: Storage | Driver | str | None = None, *, namespace: str = DEFAULT_NAMESPACE
) -> Persistence:
    """Return a :class:`Persistence` over ``source``, connected so that errors surface now.

    ``source`` is a kvstore driver, a :class:`Storage`, a URL (``"redis://..."``,
    ``"sqlite:///agentx.db"``, see :func:`kvstore.create_storage`) or ``None`` for the default
    SQLite file under ``~/.agentx``. ``namespace`` must follow the key rules (``""`` for none).
    """
    if isinstance(source, Storage):
        persistence = Persistence(source, namespace=namespace, owned=None)
        await _probe(persistence)
        return persistence
    storage = create_storage(source)
    try:
        await storage.open()
        persistence = Persistence(storage, namespace=namespace, owned=storage)
        await _probe(persistence)
    except BaseException:
        await storage.close()
        raise
    return persistence


async def _probe(persistence: Persistence) -> None:
    # Drivers without an open step (Redis) connect on first use: one read makes an unreachable
    # backend fail here rather than at the first repository call.
    await persistence.storage.has(CONTAINERS.rstrip(":"))
