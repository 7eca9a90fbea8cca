"""The shared base of the wrappers: a driver that wraps a driver, and the layers that install one.

A :class:`Wrapper` forwards every operation to the driver it wraps (``inner``) and copies its
name and capabilities, so that a wrapped driver offers conditional writes, expiry, atomic batches
and trio exactly when the inner driver does. A wrapper overrides only what it changes.
:class:`ValueCodec` is the base of the wrappers that transform stored values (compression,
encryption): it encodes on every write path and decodes on every read path.

:class:`Layer` is a wrapper kind with its options, not yet applied: ``create_storage(url,
wrappers=[...])`` and the URL options build layers and :func:`apply_layers` applies them in
the recommended order, whatever order they were given in (see :data:`Wrapper.rank`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from kvstore.conditional import Action, Change, Versioned
from kvstore.driver import BaseDriver, Driver, as_base_driver
from kvstore.errors import ConfigurationError, StorageClosed
from kvstore.expiry import Meta

__all__ = ["Layer", "ValueCodec", "Wrapper", "apply_layers", "closing", "find_wrapper"]

T = TypeVar("T")
W = TypeVar("W", bound="Wrapper")

# How many times ``ValueCodec.get_meta`` reads again when a write lands between its metadata
# read and its value read; beyond that it reports the last value it read.
_META_RACES = 8


@contextlib.asynccontextmanager
async def closing(stream: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Yield ``stream``, closing it (``aclose``) on the way out however the block ends.

    A wrapper that stops reading an inner scan early (its caller stopped, or the scan failed
    half-way) closes it at once, releasing the cursor or page it holds, instead of leaving it to
    the garbage collector's finaliser.
    """
    try:
        yield stream
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()


class Wrapper(BaseDriver):
    """A driver wrapping a driver: every operation is forwarded to ``inner`` unless overridden.

    ``rank`` places the wrapper in the recommended order, smaller ranks outside larger ones:
    tracing (10), statistics (20), read-only (30), value-size limit (40), compression (50),
    encryption (60), retry (70), then the driver. Compression must see plaintext (ciphertext does
    not compress) and the limit the caller's size; retry sits next to the backend so that a retry
    repeats only the backend call.
    """

    rank: ClassVar[int] = 100

    def __init__(self, inner: Driver) -> None:
        self.inner: BaseDriver = as_base_driver(inner)
        # Name and capabilities pass through: errors name the real driver, and the wrapped
        # driver offers exactly what the inner one does.
        self.name = self.inner.name
        self.supports_trio = self.inner.supports_trio
        self.atomic_batches = self.inner.atomic_batches
        self.conditional_writes = self.inner.conditional_writes
        self.expiry = self.inner.expiry

    @classmethod
    def using(cls, **options: Any) -> Layer:
        """Return this wrapper with ``options`` as a :class:`Layer`, for ``create_storage``."""
        return Layer(cls, options)

    @property
    def closed(self) -> bool:
        """Whether this wrapper, or the driver beneath it, is closed."""
        return self._closed or self.inner.closed

    def ensure_open(self) -> None:
        """Raise :class:`StorageClosed` if this wrapper or the driver beneath it is closed."""
        if self._closed or self.inner.closed:
            raise StorageClosed(f"the {self.name} driver is closed")

    # -- the five primitives ------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        """Return the value stored under ``key``, or ``None`` if there is none."""
        return await self.inner.get(key)

    async def set(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``, replacing any value whole."""
        await self.inner.set(key, value)

    async def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""
        await self.inner.delete(key)

    def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Yield each key that starts with ``prefix`` once, in ascending code point order."""
        return self.inner.keys(prefix)

    async def close(self) -> None:
        """Close the driver beneath; idempotent."""
        self.mark_closed()
        await self.inner.close()

    # -- batches: the inner driver's own, so that its atomicity holds -------------------------

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return the values of ``keys`` in the order asked, ``None`` for each missing key."""
        return await self.inner.get_many(keys)

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Store every ``(key, value)`` pair; a later pair for the same key wins."""
        await self.inner.set_many(items)

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Remove every key in ``keys``; missing keys are skipped silently."""
        await self.inner.delete_many(keys)

    async def clear(self, prefix: str = "") -> None:
        """Remove every key that ``keys(prefix)`` yields."""
        await self.inner.clear(prefix)

    def items(self, prefix: str = "") -> AsyncIterator[tuple[str, bytes]]:
        """Yield ``(key, value)`` for each key that starts with ``prefix``, in key order."""
        return self.inner.items(prefix)

    # -- optional capabilities: the inner driver raises NotSupported when it lacks one --------

    async def get_versioned(self, key: str) -> Versioned[bytes] | None:
        """Return the value of ``key`` with its version, read in one step, or ``None``."""
        return await self.inner.get_versioned(key)

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        """Apply ``changes`` if every condition holds, else raise ``Conflict``."""
        return await self.inner.commit(changes)

    async def set_if(self, key: str, value: bytes, expected: int | None) -> int:
        """Write ``value`` only if ``key`` is at version ``expected`` (``None``: absent)."""
        return await self.inner.set_if(key, value, expected)

    async def delete_if(self, key: str, expected: int) -> None:
        """Delete ``key`` only if it is at version ``expected``."""
        await self.inner.delete_if(key, expected)

    async def set_expiring(self, key: str, value: bytes, ttl: float) -> None:
        """Store ``value`` under ``key`` to expire ``ttl`` seconds from now."""
        await self.inner.set_expiring(key, value, ttl)

    async def set_many_expiring(self, items: Sequence[tuple[str, bytes]], ttl: float) -> None:
        """Store every ``(key, value)`` pair, each to expire ``ttl`` seconds from now."""
        await self.inner.set_many_expiring(items, ttl)

    async def expire(self, key: str, ttl: float | None) -> bool:
        """Make a live ``key`` expire ``ttl`` seconds from now, or never (``None``)."""
        return await self.inner.expire(key, ttl)

    async def get_meta(self, key: str) -> Meta | None:
        """Return the size, write time, expiry and version of a live ``key``."""
        return await self.inner.get_meta(key)

    async def get_meta_many(self, keys: Sequence[str]) -> list[Meta | None]:
        """Return the metadata of each of ``keys`` in order, ``None`` for each one absent."""
        return await self.inner.get_meta_many(keys)

    async def purge_expired(self, limit: int = 1000) -> int:
        """Physically remove up to ``limit`` expired keys; return how many."""
        return await self.inner.purge_expired(limit)


class ValueCodec(Wrapper):
    """A wrapper that stores ``encode(key, value)`` and reads back ``decode(key, stored)``.

    Every write path encodes (batches encode every value before anything is written) and every
    read path decodes. ``get_meta`` reports the caller's value size, which the stored size does
    not give: it reads the value once more (see :meth:`value_size`).
    """

    def encode(self, key: str, value: bytes) -> bytes:
        """Return what to store for ``value`` under ``key`` (override)."""
        raise NotImplementedError

    def decode(self, key: str, stored: bytes) -> bytes:
        """Return the caller's value for ``stored`` under ``key`` (override)."""
        raise NotImplementedError

    def value_size(self, key: str, stored: bytes) -> int:
        """The caller's value size for ``stored``; override when a header tells it cheaper."""
        return len(self.decode(key, stored))

    def _encoded(self, items: Iterable[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        return [(key, self.encode(key, value)) for key, value in items]

    async def get(self, key: str) -> bytes | None:
        # docstring inherited
        stored = await self.inner.get(key)
        return None if stored is None else self.decode(key, stored)

    async def set(self, key: str, value: bytes) -> None:
        # docstring inherited
        await self.inner.set(key, self.encode(key, value))

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        # docstring inherited
        found = await self.inner.get_many(keys)
        return [
            None if stored is None else self.decode(key, stored)
            for key, stored in zip(keys, found, strict=True)
        ]

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        # docstring inherited
        await self.inner.set_many(self._encoded(items))

    async def items(self, prefix: str = "") -> AsyncIterator[tuple[str, bytes]]:
        # docstring inherited
        async with closing(self.inner.items(prefix)) as stream:
            async for key, stored in stream:
                yield key, self.decode(key, stored)

    async def get_versioned(self, key: str) -> Versioned[bytes] | None:
        # docstring inherited
        found = await self.inner.get_versioned(key)
        if found is None:
            return None
        return Versioned(self.decode(key, found.value), found.version)

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        # docstring inherited
        encoded = [
            dataclasses.replace(change, value=self.encode(change.key, change.value))
            if change.action is Action.WRITE and change.value is not None
            else change
            for change in changes
        ]
        return await self.inner.commit(encoded)

    async def set_if(self, key: str, value: bytes, expected: int | None) -> int:
        # docstring inherited
        return await self.inner.set_if(key, self.encode(key, value), expected)

    async def set_expiring(self, key: str, value: bytes, ttl: float) -> None:
        # docstring inherited
        await self.inner.set_expiring(key, self.encode(key, value), ttl)

    async def set_many_expiring(self, items: Sequence[tuple[str, bytes]], ttl: float) -> None:
        # docstring inherited
        await self.inner.set_many_expiring(self._encoded(items), ttl)

    async def get_meta(self, key: str) -> Meta | None:
        """Return the metadata of ``key`` with ``size`` the caller's value size.

        Costs one more read than the inner driver's ``get_meta``. On a driver with versions the
        value read is checked to be the one the metadata describes (read again if a write came
        between); without versions a write between the two reads can mix them.
        """
        meta = await self.inner.get_meta(key)
        for _ in range(_META_RACES):
            if meta is None:
                return None
            if not self.conditional_writes:
                stored = await self.inner.get(key)
                if stored is None:
                    return None
                return dataclasses.replace(meta, size=self.value_size(key, stored))
            found = await self.inner.get_versioned(key)
            if found is None:
                return None
            if found.version == meta.version:
                return dataclasses.replace(meta, size=self.value_size(key, found.value))
            meta = await self.inner.get_meta(key)
        return meta

    async def get_meta_many(self, keys: Sequence[str]) -> list[Meta | None]:
        """:meth:`get_meta` key by key: each size needs that key's value read and decoded."""
        return await BaseDriver.get_meta_many(self, keys)


@dataclasses.dataclass(frozen=True, slots=True)
class Layer:
    """A wrapper kind and its options, applied later by :func:`apply_layers`.

    Made by ``Wrapper.using(**options)``. ``repr`` leaves the options out: they may hold keys.
    """

    kind: type[Wrapper]
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __call__(self, driver: Driver) -> Wrapper:
        """Wrap ``driver``."""
        return self.kind(driver, **self.options)

    def __repr__(self) -> str:
        return f"Layer({self.kind.__name__})"


def apply_layers(driver: Driver, layers: Iterable[Layer | type[Wrapper]]) -> Driver:
    """Wrap ``driver`` in ``layers`` in the recommended order (by rank, the innermost first).

    A wrapper class stands for itself with default options. The same kind twice raises
    :class:`ConfigurationError`. No layers return ``driver`` itself: nothing is added.
    """
    normalized = [layer if isinstance(layer, Layer) else _as_layer(layer) for layer in layers]
    kinds = [layer.kind for layer in normalized]
    repeated = sorted({kind.__name__ for kind in kinds if kinds.count(kind) > 1})
    if repeated:
        raise ConfigurationError(f"a wrapper is asked for twice: {', '.join(repeated)}")
    wrapped = driver
    for layer in sorted(normalized, key=lambda layer: layer.kind.rank, reverse=True):
        wrapped = layer(wrapped)
    return wrapped


def _as_layer(kind: object) -> Layer:
    if isinstance(kind, type) and issubclass(kind, Wrapper):
        return Layer(kind)
    raise ConfigurationError(
        f"a wrapper is a Wrapper class or Wrapper.using(...), not {type(kind).__name__}"
    )


def find_wrapper(driver: Driver, kind: type[W]) -> W | None:
    """Return the wrapper of type ``kind`` in the chain from ``driver`` inwards, or ``None``.

    Reach a storage's wrappers with ``find_wrapper(storage.driver, Statistics)``.
    """
    current: object = driver
    while isinstance(current, Wrapper):
        if isinstance(current, kind):
            return current
        current = current.inner
    return None
