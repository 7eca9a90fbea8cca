"""The blocking :class:`Storage`: every method runs its async twin on the storage's own loop."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Self

from kvstore import create_storage as create_async
from kvstore.driver import Driver
from kvstore.errors import StorageClosed
from kvstore.expiry import DEFAULT_TTL, TTL, DefaultTTL
from kvstore.serialization import JSONValue
from kvstore.storage import Storage as AsyncStorage
from kvstore.sync.runner import Runner, iterate, mirror

if TYPE_CHECKING:
    from kvstore.wrappers import Layer, Wrapper

__all__ = ["ABSENT", "Storage", "create_storage"]

#: Public members of the async :class:`~kvstore.storage.Storage` with no blocking twin, and why.
ABSENT: dict[str, str] = {
    "sweep_expired": "it runs until cancelled: call purge_expired() on your own schedule",
    "driver": "the driver is an async object bound to the facade's event loop",
    "__aenter__": "the blocking storage is a plain context manager (`with`)",
    "__aexit__": "the blocking storage is a plain context manager (`with`)",
}


def _closed() -> StorageClosed:
    return StorageClosed("the storage is closed")


class Storage:
    """Blocking JSON key-value storage: the async :class:`kvstore.storage.Storage`, call by call.

    Each method has the name, arguments, result and errors of its async twin, which it runs on
    the storage's event loop (see :mod:`kvstore.sync`). It is safe to share between threads. Use
    it as ``with create_storage(url) as storage:`` or call :meth:`close`.
    """

    __slots__ = ("_owner", "_runner", "_target")

    def __init__(self, storage: AsyncStorage, runner: Runner, *, owner: bool) -> None:
        """Mirror ``storage``, whose calls go through ``runner``.

        The root storage (``owner``) holds a use of the runner, released on :meth:`close`; a view
        shares its root's.
        """
        self._target = storage
        self._runner = runner
        self._owner = owner

    @property
    def async_storage(self) -> AsyncStorage:
        """The async storage this mirrors; use it only from code running on its loop."""
        return self._target

    @property
    def base(self) -> str:
        """The namespace this storage's keys live under (``""`` for the root storage)."""
        return self._target.base

    @property
    def default_ttl(self) -> float | None:
        """The TTL in seconds given to writes that name none, or ``None`` (they never expire)."""
        return self._target.default_ttl

    @property
    def closed(self) -> bool:
        """Whether this storage was closed (a view also reads as closed once its root is)."""
        return self._target.closed or self._runner.closed

    # -- single keys, expiry, metadata -------------------------------------------------------
    get = mirror(AsyncStorage.get)
    set = mirror(AsyncStorage.set)
    get_raw = mirror(AsyncStorage.get_raw)
    set_raw = mirror(AsyncStorage.set_raw)
    has = mirror(AsyncStorage.has)
    delete = mirror(AsyncStorage.delete)
    expire = mirror(AsyncStorage.expire)
    get_meta = mirror(AsyncStorage.get_meta)
    get_meta_many = mirror(AsyncStorage.get_meta_many)
    purge_expired = mirror(AsyncStorage.purge_expired)

    # -- conditional writes ------------------------------------------------------------------
    get_versioned = mirror(AsyncStorage.get_versioned)
    get_versioned_raw = mirror(AsyncStorage.get_versioned_raw)
    create = mirror(AsyncStorage.create)
    create_raw = mirror(AsyncStorage.create_raw)
    replace = mirror(AsyncStorage.replace)
    replace_raw = mirror(AsyncStorage.replace_raw)
    delete_if = mirror(AsyncStorage.delete_if)
    # ``change`` runs on the storage's loop: it must not call the blocking API itself.
    update = mirror(AsyncStorage.update)
    commit = mirror(AsyncStorage.commit)
    commit_raw = mirror(AsyncStorage.commit_raw)

    # -- batches -----------------------------------------------------------------------------
    get_many = mirror(AsyncStorage.get_many)
    get_many_raw = mirror(AsyncStorage.get_many_raw)
    set_many = mirror(AsyncStorage.set_many)
    set_many_raw = mirror(AsyncStorage.set_many_raw)
    delete_many = mirror(AsyncStorage.delete_many)
    clear = mirror(AsyncStorage.clear)

    # -- scans -------------------------------------------------------------------------------

    def keys(self, prefix: str = "") -> Generator[str, None, None]:
        """Return an iterator over every key that starts with ``prefix``, in code point order.

        As :meth:`kvstore.storage.Storage.keys`: an invalid prefix or a closed storage raises at
        the call. Keys are fetched from the loop a page at a time, as the iteration goes.
        """
        return iterate(self._runner, self._runner.run_sync(self._target.keys, prefix))

    def items(self, prefix: str = "") -> Generator[tuple[str, JSONValue], None, None]:
        """Return an iterator over ``(key, value)`` for every key under ``prefix``, in key order.

        Fetched a page at a time, as the iteration goes.
        """
        return iterate(self._runner, self._target.items(prefix))

    def items_raw(self, prefix: str = "") -> Generator[tuple[str, bytes], None, None]:
        """Return an iterator over ``(key, bytes)`` for every key under ``prefix``, in key order."""
        return iterate(self._runner, self._target.items_raw(prefix))

    # -- views and mounts --------------------------------------------------------------------

    def with_prefix(self, base: str, *, ttl: TTL | DefaultTTL | None = DEFAULT_TTL) -> Storage:
        """Return a blocking view whose keys live under ``base:`` in this storage.

        As :meth:`kvstore.storage.Storage.with_prefix`; the view runs on this storage's loop.
        """
        view = self._runner.run_sync(self._target.with_prefix, base, ttl=ttl)
        return Storage(view, self._runner, owner=False)

    def mount(self, base: str, driver: Driver) -> None:
        """Serve the keys under ``base:`` from ``driver`` (which the storage now owns)."""
        self._runner.run_sync(self._target.mount, base, driver)

    unmount = mirror(AsyncStorage.unmount)

    # -- lifetime ----------------------------------------------------------------------------
    open = mirror(AsyncStorage.open)

    def close(self) -> None:
        """Close the storage; idempotent. Closing the root also stops its event loop."""
        if self._runner.closed:
            return
        try:
            self._runner.run(self._target.close())
        finally:
            if self._owner:
                self._owner = False
                self._runner.release()

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<blocking {self._target!r}>"


def create_storage(
    url_or_driver: str | Driver | None = None,
    *,
    wrappers: Sequence[Layer | type[Wrapper]] = (),
) -> Storage:
    """Return a blocking :class:`Storage` for a URL or a driver; it connects on first use.

    Takes what :func:`kvstore.create_storage` takes (``None`` for the default SQLite file;
    ``wrappers`` and a URL's wrapper options, see :mod:`kvstore.wrappers`). Raises what it
    raises, such as :class:`~kvstore.errors.ConfigurationError` for a bad URL.
    """
    runner = Runner(closed_error=_closed)
    runner.acquire()
    try:
        storage = runner.run_sync(create_async, url_or_driver, wrappers=wrappers)
    except BaseException:
        runner.release()
        raise
    runner.run_inline_for_all_threads(lambda: _all_drivers_inline(storage))
    return Storage(storage, runner, owner=True)


def _all_drivers_inline(storage: AsyncStorage) -> bool:
    """Whether every driver of ``storage`` does its work on the loop's thread (see Runner)."""
    return all(driver.inline for driver in storage._table.drivers())
