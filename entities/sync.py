"""Blocking repositories, for scripts, notebooks and threads: the entity API without ``await``.

::

    from entities.sync import create_persistence

    with create_persistence("sqlite:///agentx.db") as persistence:
        persistence.containers.save_container(record)
        images = persistence.images.find_images_by_container_id("c1")

Each repository method has the name, arguments, result and errors of its async twin in
:mod:`entities`, which it runs on the storage's event loop (see :mod:`kvstore.sync`). Callbacks
such as ``on_error`` run on that loop: they must not call the blocking API themselves.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from entities.containers import ContainerRepository as AsyncContainers
from entities.images import ImageRepository as AsyncImages
from entities.persistence import DEFAULT_NAMESPACE
from entities.persistence import Persistence as AsyncPersistence
from entities.persistence import create_persistence as create_async
from entities.sessions import SessionRepository as AsyncSessions
from kvstore.driver import Driver
from kvstore.errors import StorageClosed
from kvstore.storage import Storage as AsyncStorage
from kvstore.sync.runner import Mirrored, Runner, mirror
from kvstore.sync.storage import Storage

__all__ = [
    "ABSENT",
    "ContainerRepository",
    "ImageRepository",
    "Persistence",
    "SessionRepository",
    "create_persistence",
]

#: Public members of the async repositories with no blocking twin, and why.
ABSENT: dict[str, str] = {
    "repository": "the generic repository underneath is async: use the async API for it",
    "__aenter__": "the blocking persistence is a plain context manager (`with`)",
    "__aexit__": "the blocking persistence is a plain context manager (`with`)",
}


class ContainerRepository(Mirrored[AsyncContainers]):
    """Blocking :class:`entities.ContainerRepository`: containers, and the cascade on delete."""

    __slots__ = ()

    save_container = mirror(AsyncContainers.save_container)
    find_container_by_id = mirror(AsyncContainers.find_container_by_id)
    find_all_containers = mirror(AsyncContainers.find_all_containers)
    container_exists = mirror(AsyncContainers.container_exists)
    delete_container = mirror(AsyncContainers.delete_container)


class ImageRepository(Mirrored[AsyncImages]):
    """Blocking :class:`entities.ImageRepository`: images, indexed by name and container."""

    __slots__ = ()

    save_image = mirror(AsyncImages.save_image)
    find_image_by_id = mirror(AsyncImages.find_image_by_id)
    find_all_images = mirror(AsyncImages.find_all_images)
    find_images_by_name = mirror(AsyncImages.find_images_by_name)
    find_images_by_container_id = mirror(AsyncImages.find_images_by_container_id)
    update_metadata = mirror(AsyncImages.update_metadata)
    delete_image = mirror(AsyncImages.delete_image)


class SessionRepository(Mirrored[AsyncSessions]):
    """Blocking :class:`entities.SessionRepository`: sessions and their messages."""

    __slots__ = ()

    save_session = mirror(AsyncSessions.save_session)
    find_session_by_id = mirror(AsyncSessions.find_session_by_id)
    find_sessions_by_image_id = mirror(AsyncSessions.find_sessions_by_image_id)
    find_session_by_image_id = mirror(AsyncSessions.find_session_by_image_id)
    find_sessions_by_container_id = mirror(AsyncSessions.find_sessions_by_container_id)
    find_all_sessions = mirror(AsyncSessions.find_all_sessions)
    add_message = mirror(AsyncSessions.add_message)
    get_messages = mirror(AsyncSessions.get_messages)
    clear_messages = mirror(AsyncSessions.clear_messages)
    delete_session = mirror(AsyncSessions.delete_session)


class Persistence:
    """The blocking repositories for containers, images and sessions, sharing one storage.

    ``storage`` is the blocking view the records live in. Closing closes the storage if
    :func:`create_persistence` created it; a blocking :class:`~kvstore.sync.Storage` passed in
    stays open, since its owner closes it.
    """

    __slots__ = ("_released", "_runner", "_target", "containers", "images", "sessions", "storage")

    def __init__(self, persistence: AsyncPersistence, runner: Runner) -> None:
        """Mirror ``persistence``, whose calls go through ``runner`` (holding one use of it)."""
        self._target = persistence
        self._runner = runner
        self._released = False
        self.storage = Storage(persistence.storage, runner, owner=False)
        self.containers = ContainerRepository(persistence.containers, runner)
        self.images = ImageRepository(persistence.images, runner)
        self.sessions = SessionRepository(persistence.sessions, runner)

    def close(self) -> None:
        """Stop using the storage, closing it if this object owns it; idempotent."""
        if self._released:
            return
        self._released = True
        try:
            self._runner.run(self._target.close())
        finally:
            self._runner.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def create_persistence(
    source: Storage | Driver | str | None = None, *, namespace: str = DEFAULT_NAMESPACE
) -> Persistence:
    """Return a blocking :class:`Persistence` over ``source``, connected so errors surface now.

    ``source`` is a kvstore driver, a URL, ``None`` for the default SQLite file under
    ``~/.agentx``, or a blocking :class:`kvstore.sync.Storage` (which the persistence shares,
    on its loop, and leaves open). As :func:`entities.create_persistence` otherwise.
    """
    if isinstance(source, Storage):
        runner = source._runner
        target: AsyncStorage | Driver | str | None = source.async_storage
    else:
        runner = Runner(closed_error=lambda: StorageClosed("the storage is closed"))
        target = source
    runner.acquire()
    try:
        persistence = runner.run(_open(target, namespace))
    except BaseException:
        runner.release()
        raise
    return Persistence(persistence, runner)


async def _open(source: AsyncStorage | Driver | str | None, namespace: str) -> AsyncPersistence:
    # Awaited here rather than mirrored, so that any awaitable create_persistence returns works.
    return await create_async(source, namespace=namespace)
