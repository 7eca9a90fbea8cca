"""The driver protocol and the base class that fills in batch operations.

A driver stores ``bytes`` under already-validated keys. It implements five primitives (``get``,
``set``, ``delete``, ``keys`` and ``close``); :class:`BaseDriver` derives ``get_many``,
``set_many``, ``delete_many``, ``clear`` and ``items`` from them, and a driver overrides those
its backend does faster (pipelines, ``executemany``, range deletes). Whatever it overrides must
keep the contract in the README: the conformance suite (:mod:`kvstore.testing`) runs both paths.

Keys reaching a driver have passed :func:`kvstore.keys.validate_key`; prefixes have passed
:func:`kvstore.keys.validate_prefix`. Values are ``bytes``.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Final, Protocol, cast, runtime_checkable

from kvstore.conditional import Change, Versioned
from kvstore.errors import Conflict, NotSupported, StorageClosed
from kvstore.expiry import EXPIRY, Meta

__all__ = [
    "CONDITIONAL_WRITES",
    "EXPIRY",
    "LATER",
    "BaseDriver",
    "Driver",
    "Later",
    "as_base_driver",
    "conflict",
]

#: The capability name :class:`NotSupported` carries for versioned reads and conditional writes.
CONDITIONAL_WRITES = "conditional writes (versions)"

# How many keys the default ``clear`` deletes per ``delete_many`` call: bounds memory while a
# large prefix is cleared.
CLEAR_CHUNK = 1000


@runtime_checkable
class Driver(Protocol):
    """The minimal async key-value driver: five primitives over ``bytes`` values."""

    async def get(self, key: str) -> bytes | None:
        """Return the value stored under ``key``, or ``None`` if there is none."""
        ...

    async def set(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``, replacing any value whole."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""
        ...

    def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Yield each key that starts with ``prefix`` once, in ascending code point order.

        Streams: memory stays bounded however many keys match.
        """
        ...

    async def close(self) -> None:
        """Release connections and files; idempotent. Later use raises ``StorageClosed``."""
        ...


class Later:
    """The type of :data:`LATER`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "LATER"


#: What :meth:`BaseDriver.try_get` returns when the read must be awaited instead.
LATER: Final = Later()


class BaseDriver(abc.ABC):
    """Base class for drivers: implement the five primitives, override batches if faster.

    ``name`` identifies the driver in errors and in the registry. ``supports_trio`` tells the
    conformance suite whether to run the driver under trio as well as asyncio.
    ``atomic_batches`` says whether ``set_many``, ``delete_many`` and ``commit`` are all or
    nothing; the suite then checks it with a concurrent reader that must never see part of a
    batch. ``inline`` says the driver does its work on the event loop's own thread without
    waiting for I/O (memory, SQLite, local files): its operations never overlap one another, so
    the blocking facade runs calls from any thread in that thread, one at a time, instead of
    handing them to a loop thread; such a driver may also answer :meth:`try_get` and its twins.

    Optional capability: ``conditional_writes`` says the driver keeps a version per value and
    implements :meth:`get_versioned` and :meth:`commit` (see :mod:`kvstore.conditional`); the
    base class's versions of both raise :class:`NotSupported`.

    Optional capability: ``expiry`` says the driver keeps an expiry instant and a write time per
    key and implements :meth:`set_many_expiring`, :meth:`expire`, :meth:`get_meta` (its batch
    form :meth:`get_meta_many` defaults to a loop over it) and :meth:`purge_expired` (see
    :mod:`kvstore.expiry`). On such a driver every operation treats a key whose expiry instant
    has passed as absent, whether or not it was purged; and every plain write (``set``,
    ``set_many``, a conditional write) clears the key's earlier expiry.
    """

    name: str = "driver"
    supports_trio: bool = False
    atomic_batches: bool = False
    conditional_writes: bool = False
    expiry: bool = False
    inline: bool = False
    _closed: bool = False

    @property
    def closed(self) -> bool:
        """Whether :meth:`mark_closed` has run (a driver's ``close`` calls it)."""
        return self._closed

    def mark_closed(self) -> None:
        """Record that the driver is closed: every later :meth:`ensure_open` raises."""
        self._closed = True

    def ensure_open(self) -> None:
        """Raise :class:`StorageClosed` if the driver is closed; every operation calls it first."""
        if self._closed:
            raise StorageClosed(f"the {self.name} driver is closed")

    @abc.abstractmethod
    async def get(self, key: str) -> bytes | None:
        """Return the value stored under ``key``, or ``None`` if there is none."""

    @abc.abstractmethod
    async def set(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``, replacing any value whole."""

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""

    @abc.abstractmethod
    def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Yield each key that starts with ``prefix`` once, in ascending code point order."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and files; idempotent. Later use raises ``StorageClosed``."""

    # -- operations without an await (optional capability) -----------------------------------

    def try_get(self, key: str) -> bytes | Later | None:
        """Do :meth:`get` now, without awaiting, or return :data:`LATER` to have it awaited.

        Declining is always allowed; a driver with ``inline`` declines when it must first give
        the event loop a turn, wait for a batch, or raise (closed).
        """
        return LATER

    def try_set(self, key: str, value: bytes) -> bool:
        """Do :meth:`set` now, without awaiting, and return True; or do nothing, return False."""
        return False

    def try_delete(self, key: str) -> bool:
        """Do :meth:`delete` now, without awaiting, and return True; or do nothing, return False."""
        return False

    # -- conditional writes (optional capability) ---------------------------------------------

    async def get_versioned(self, key: str) -> Versioned[bytes] | None:
        """Return the value of ``key`` with its version, read in one step, or ``None``."""
        raise NotSupported(CONDITIONAL_WRITES, driver=self.name)

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        """Apply ``changes`` (each key at most once) if every condition holds, else raise.

        Every condition is checked against the state before the batch. If one fails, raise
        :class:`Conflict` naming the failing keys and write nothing: with ``atomic_batches`` the
        check and the writes are one atomic step. A driver without transactions checks and
        applies key by key in order, stopping at the first failure (earlier changes stay) and
        says so in its documentation. Return the new version of each written key and ``None``
        for each delete and check, in the order given.
        """
        raise NotSupported(CONDITIONAL_WRITES, driver=self.name)

    async def set_if(self, key: str, value: bytes, expected: int | None) -> int:
        """Write ``value`` only if ``key`` is at version ``expected`` (``None``: absent).

        Return the new version; raise :class:`Conflict`, writing nothing, otherwise. The default
        is a one-change :meth:`commit`; a driver may override it with a faster path.
        """
        change = (
            Change.create(key, value) if expected is None else Change.replace(key, value, expected)
        )
        version = (await self.commit([change]))[0]
        assert version is not None  # a write always returns its version
        return version

    async def delete_if(self, key: str, expected: int) -> None:
        """Delete ``key`` only if it is at version ``expected``; raise :class:`Conflict` if not."""
        await self.commit([Change.delete(key, expected)])

    # -- expiry and metadata (optional capability) --------------------------------------------

    async def set_expiring(self, key: str, value: bytes, ttl: float) -> None:
        """Store ``value`` under ``key`` to expire ``ttl`` seconds (validated) from now.

        "Now" is read from the backend's clock in the same step as the write. The default is a
        one-item :meth:`set_many_expiring`; a driver may override it with a faster path.
        """
        await self.set_many_expiring([(key, value)], ttl)

    async def set_many_expiring(self, items: Sequence[tuple[str, bytes]], ttl: float) -> None:
        """Store every ``(key, value)`` pair, each to expire ``ttl`` seconds from now.

        One instant is read for the whole batch; a later pair for the same key wins. All or
        nothing when ``atomic_batches`` is true, like :meth:`set_many`.
        """
        raise NotSupported(EXPIRY, driver=self.name)

    async def expire(self, key: str, ttl: float | None) -> bool:
        """Make a live ``key`` expire ``ttl`` seconds from now, or never (``None``).

        The value, its version and its write time stay as they are. Return whether the key was
        live (nothing changes for a missing or expired key).
        """
        raise NotSupported(EXPIRY, driver=self.name)

    async def get_meta(self, key: str) -> Meta | None:
        """Return the size, write time, expiry and version of a live ``key``, in one step.

        ``None`` for a missing or expired key.
        """
        raise NotSupported(EXPIRY, driver=self.name)

    async def get_meta_many(self, keys: Sequence[str]) -> list[Meta | None]:
        """Return :meth:`get_meta` of each of ``keys`` in the order asked, ``None`` if absent.

        What a bulk reader such as an export calls once a page instead of once a key. The
        default asks :meth:`get_meta` key by key; drivers read a chunk of keys per round trip.
        """
        return [await self.get_meta(key) for key in keys]

    async def purge_expired(self, limit: int = 1000) -> int:
        """Physically remove up to ``limit`` keys whose expiry has passed; return how many.

        Bounded work found through an index on the expiry instant, never a scan of the store.
        Drivers also purge on their own (piggy-backed on writes, or natively); this is what a
        background sweeper calls.
        """
        raise NotSupported(EXPIRY, driver=self.name)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return the values of ``keys`` in the order asked, ``None`` for each missing key."""
        return [await self.get(key) for key in keys]

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Store every ``(key, value)`` pair; a later pair for the same key wins.

        The default writes one key at a time and so is not atomic; a driver whose backend has
        transactions overrides it to write all or nothing.
        """
        for key, value in items:
            await self.set(key, value)

    async def set_many_columns(
        self, keys: list[str], values: list[bytes], *, owned: bool = False
    ) -> None:
        """:meth:`set_many` for pairs given as two lists of equal length, as ``Storage`` has them.

        ``owned`` says that each value is a compact ``bytes`` object made for this write (not
        a caller's buffer, nor an encoder's result with spare capacity behind it), which a
        driver keeping values in memory may keep as it is instead of copying it. The default
        pairs the lists up for :meth:`set_many`.
        """
        await self.set_many(list(zip(keys, values, strict=True)))

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Remove every key in ``keys``; missing keys are skipped silently.

        Not atomic by default, like :meth:`set_many`.
        """
        for key in keys:
            await self.delete(key)

    async def clear(self, prefix: str = "") -> None:
        """Remove every key that ``keys(prefix)`` yields.

        The default collects keys in chunks before deleting them, so that a driver whose scan
        cannot survive concurrent deletes is never asked to.
        """
        await delete_scanned(self, prefix)

    def items(self, prefix: str = "") -> AsyncIterator[tuple[str, bytes]]:
        """Yield ``(key, value)`` for each key that starts with ``prefix``, in key order.

        A key deleted between the scan and the read is skipped.
        """
        return read_in_pages(self.keys(prefix), self.get_many)


def conflict(keys: Sequence[str]) -> Conflict:
    """The :class:`Conflict` a driver raises when the conditions on ``keys`` failed."""
    shown = ", ".join(repr(key) for key in keys[:5])
    more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
    return Conflict(
        f"the condition on {shown}{more} no longer holds: nothing was written", keys=tuple(keys)
    )


async def delete_scanned(
    driver: BaseDriver, prefix: str, wanted: Callable[[str], bool] | None = None
) -> None:
    """Delete the keys ``driver.keys(prefix)`` yields (those ``wanted`` accepts), in chunks.

    Each chunk is collected before it is deleted, so no scan runs across its own deletes.
    """
    while True:
        chunk: list[str] = []
        exhausted = True
        async for key in driver.keys(prefix):
            if wanted is None or wanted(key):
                chunk.append(key)
                if len(chunk) >= CLEAR_CHUNK:
                    exhausted = False
                    break
        if chunk:
            await driver.delete_many(chunk)
        if exhausted:
            return


async def read_in_pages(
    keys: AsyncIterator[str], get_many: Callable[[list[str]], Awaitable[list[bytes | None]]]
) -> AsyncIterator[tuple[str, bytes]]:
    """Yield ``(key, value)`` for each key of ``keys``, reading values a page at a time.

    A key whose value is gone by the time its page is read is skipped.
    """
    page: list[str] = []
    async for key in keys:
        page.append(key)
        if len(page) >= CLEAR_CHUNK:
            for pair in await _present(page, get_many):
                yield pair
            page = []
    for pair in await _present(page, get_many):
        yield pair


async def _present(
    page: list[str], get_many: Callable[[list[str]], Awaitable[list[bytes | None]]]
) -> list[tuple[str, bytes]]:
    if not page:
        return []
    values = await get_many(page)
    return [(key, value) for key, value in zip(page, values, strict=True) if value is not None]


class _PrimitivesOnly(BaseDriver):
    """Wraps any :class:`Driver`, exposing its five primitives and the base class's batches.

    Its capabilities pass through (a :class:`BaseDriver` with ``conditional_writes`` keeps
    them); wrappers that change one behaviour subclass it.
    """

    def __init__(self, inner: Driver) -> None:
        self.inner = inner
        self.name = str(getattr(inner, "name", type(inner).__name__))
        self.supports_trio = bool(getattr(inner, "supports_trio", False))
        # Capabilities pass through: only the batch paths are the base class's.
        self.conditional_writes = bool(getattr(inner, "conditional_writes", False))
        self.expiry = bool(getattr(inner, "expiry", False))

    async def get(self, key: str) -> bytes | None:
        # docstring inherited
        return await self.inner.get(key)

    async def set(self, key: str, value: bytes) -> None:
        # docstring inherited
        await self.inner.set(key, value)

    async def delete(self, key: str) -> None:
        # docstring inherited
        await self.inner.delete(key)

    def keys(self, prefix: str = "") -> AsyncIterator[str]:
        # docstring inherited
        return self.inner.keys(prefix)

    async def close(self) -> None:
        # docstring inherited
        await self.inner.close()

    async def get_versioned(self, key: str) -> Versioned[bytes] | None:
        # docstring inherited
        if not self.conditional_writes:
            return await super().get_versioned(key)
        return await cast(BaseDriver, self.inner).get_versioned(key)

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        # docstring inherited
        if not self.conditional_writes:
            return await super().commit(changes)
        return await cast(BaseDriver, self.inner).commit(changes)

    async def set_many_expiring(self, items: Sequence[tuple[str, bytes]], ttl: float) -> None:
        # docstring inherited
        if not self.expiry:
            return await super().set_many_expiring(items, ttl)
        # The default batch path: one expiring write per key, as set_many does with set.
        inner = cast(BaseDriver, self.inner)
        for key, value in items:
            await inner.set_expiring(key, value, ttl)

    async def set_expiring(self, key: str, value: bytes, ttl: float) -> None:
        # docstring inherited
        if not self.expiry:
            return await super().set_expiring(key, value, ttl)
        await cast(BaseDriver, self.inner).set_expiring(key, value, ttl)

    async def expire(self, key: str, ttl: float | None) -> bool:
        # docstring inherited
        if not self.expiry:
            return await super().expire(key, ttl)
        return await cast(BaseDriver, self.inner).expire(key, ttl)

    async def get_meta(self, key: str) -> Meta | None:
        # docstring inherited
        if not self.expiry:
            return await super().get_meta(key)
        return await cast(BaseDriver, self.inner).get_meta(key)

    async def purge_expired(self, limit: int = 1000) -> int:
        # docstring inherited
        if not self.expiry:
            return await super().purge_expired(limit)
        return await cast(BaseDriver, self.inner).purge_expired(limit)


def as_base_driver(driver: Driver, *, default_batches: bool = False) -> BaseDriver:
    """Return ``driver`` as a :class:`BaseDriver`.

    A driver that already is one is returned as it is, unless ``default_batches`` is true: then
    it is wrapped so that its own batch methods are bypassed in favour of the base class's, which
    is how the conformance suite checks both paths. A plain :class:`Driver` is always wrapped.
    """
    if isinstance(driver, BaseDriver) and not default_batches:
        return driver
    if not isinstance(driver, Driver):
        raise TypeError(
            f"{type(driver).__name__} is not a kvstore driver: it needs async get, set, delete, "
            "close and an async-iterator keys(prefix)"
        )
    return _PrimitivesOnly(driver)
