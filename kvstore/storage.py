"""Storage: the front every caller uses, over one driver or several mounted ones.

It validates keys once, encodes values as JSON, routes keys to mounted drivers and gives
namespaced views. Drivers see only valid keys and ``bytes``.

Batches are checked, encoded and decoded a bounded step at a time, giving the event loop a turn
between steps when a time slice has passed (:mod:`kvstore.pacing`), so that a large batch on an
inline driver never holds the loop for long. Everything is checked before anything is written.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from functools import partial
from types import TracebackType
from typing import Self, TypeVar

import anyio
import anyio.lowlevel

from kvstore.conditional import ANY_VERSION, Action, Change, Versioned, retry_pause
from kvstore.driver import (
    LATER,
    BaseDriver,
    Driver,
    Later,
    as_base_driver,
    delete_scanned,
    read_in_pages,
)
from kvstore.errors import Conflict, InvalidKey, NotSupported, SerializationError, StorageClosed
from kvstore.expiry import DEFAULT_TTL, EXPIRY, TTL, DefaultTTL, Meta, ttl_seconds
from kvstore.keys import RECENTLY_VALID, all_valid_keys, join, validate_key, validate_prefix
from kvstore.mounts import MountTable, Source, merge_sorted
from kvstore.pacing import Pacer
from kvstore.serialization import (
    JSONValue,
    decode,
    decode_many,
    encode,
    encode_many,
    encode_many_copies,
)

__all__ = ["Storage"]

_In = TypeVar("_In")
_V = TypeVar("_V")
_Out = TypeVar("_Out")

# Items a batch checks, encodes or decodes per step: at most a few hundred microseconds.
_STEP = 256
# How many times ``update`` tries by default before it gives up with the last Conflict.
UPDATE_ATTEMPTS = 16


async def _in_steps(
    pacer: Pacer, items: list[_In], work: Callable[[list[_In]], list[_Out]]
) -> list[_Out]:
    """Return ``work`` applied to ``items``, a step at a time, yielding between steps if due."""
    if len(items) <= _STEP:
        return work(items)
    done: list[_Out] = []
    for start in range(0, len(items), _STEP):
        done += work(items[start : start + _STEP])
        await pacer.tick()
    return done


class Storage:
    """JSON key-value storage over a driver, with batches, namespaced views and mounts.

    ``Storage(driver)`` takes ownership of ``driver``: closing the storage closes it. Values are
    JSON (see :mod:`kvstore.serialization`); :meth:`get_raw` and :meth:`set_raw` pass bytes
    through. Use it as ``async with Storage(driver) as storage:`` or call :meth:`close`.

    ``ttl`` (seconds or a ``timedelta``) is a default expiry for this storage's writes that name
    none; a write's own ``ttl`` overrides it, and ``ttl=None`` on a write means "never expires".
    """

    __slots__ = ("_base", "_closed", "_fast", "_table", "_ttl")

    def __init__(self, driver: Driver, *, ttl: TTL | None = None) -> None:
        self._table = MountTable(as_base_driver(driver))
        # Where the single-key fast path reads its driver: the table for the root storage.
        self._fast: MountTable | _NoFastPath = self._table
        self._base = ""
        self._closed = False
        self._ttl = None if ttl is None else ttl_seconds(ttl)

    @classmethod
    def _view(cls, table: MountTable, base: str, ttl: float | None) -> Storage:
        view = cls.__new__(cls)
        view._table = table
        view._fast = _NO_FAST_PATH
        view._base = base
        view._closed = False
        view._ttl = ttl
        return view

    @property
    def base(self) -> str:
        """The namespace this storage's keys live under (``""`` for the root storage)."""
        return self._base

    @property
    def default_ttl(self) -> float | None:
        """The TTL in seconds given to writes that name none, or ``None`` (they never expire)."""
        return self._ttl

    @property
    def driver(self) -> BaseDriver:
        """The root driver (mounted drivers serve their own bases)."""
        return self._table.root

    @property
    def closed(self) -> bool:
        """Whether this storage was closed (a view also reads as closed once its root is)."""
        return self._closed or self._table.closed

    # -- keys -------------------------------------------------------------------------------

    def _ensure_open(self) -> None:
        if self._closed or self._table.closed:
            raise StorageClosed("the storage is closed")

    def _full_key(self, key: str) -> str:
        validate_key(key)
        if not self._base:
            return key
        full = join(self._base, key)
        try:
            return validate_key(full)
        except InvalidKey as error:
            raise InvalidKey(f"key {key!r} under the view {self._base!r}: {error}") from None

    def _route(self, key: str) -> tuple[BaseDriver, str]:
        # The hot path of every single-key operation: kept flat on purpose.
        table = self._table
        if self._closed or table.closed:
            raise StorageClosed("the storage is closed")
        if self._base:
            full = self._full_key(key)
        elif type(key) is str and key in RECENTLY_VALID:
            full = key  # seen valid before: skip even the call into validate_key
        else:
            full = validate_key(key)
        return table.resolve(full) if table.has_mounts else (table.root, full)

    def _base_width(self) -> int:
        """How many leading characters of a driver key are this storage's base and separator:
        cut them off to make this storage's key."""
        return len(self._base) + 1 if self._base else 0

    # -- single keys ------------------------------------------------------------------------

    # The single-key hot paths (get, set, delete) first try the common case inline: a storage
    # without a base over one open driver (_fast.direct), a key seen valid before; then the
    # key is its own driver key, and an inline driver (memory) may answer without an await.
    # Anything else goes through _route. Kept flat on purpose: a helper call costs what the
    # fast path saves.

    async def get(self, key: str) -> JSONValue | None:
        """Return the JSON value stored under ``key``, or ``None`` if there is none."""
        data: bytes | Later | None
        driver = self._fast.direct
        if driver is None or type(key) is not str or key not in RECENTLY_VALID:
            driver, driver_key = self._route(key)
            data = await driver.get(driver_key)
        elif (data := driver.try_get(key)) is LATER:
            data = await driver.get(key)
        return None if data is None else decode(data, key)  # type: ignore[arg-type]

    async def set(
        self, key: str, value: JSONValue, *, ttl: TTL | DefaultTTL | None = DEFAULT_TTL
    ) -> None:
        """Store ``value`` as JSON under ``key``, to expire after ``ttl`` if one applies.

        Without a TTL (none given and no default, or ``ttl=None``) the key never expires, and any
        earlier expiry of it is cleared. Raises :class:`~kvstore.errors.SerializationError`,
        writing nothing, when the value would not read back equal (tuples read back as lists);
        :class:`~kvstore.errors.InvalidTTL` for a TTL that is not positive and finite;
        :class:`~kvstore.errors.NotSupported` for a TTL on a driver without expiry.
        """
        if ttl is DEFAULT_TTL:
            ttl = self._ttl
        driver = self._fast.direct
        if driver is None or type(key) is not str or key not in RECENTLY_VALID:
            driver, key = self._route(key)
        if ttl is None:
            data = encode(value)
            if not driver.try_set(key, data):
                await driver.set(key, data)
        else:
            seconds = _ttl_for(driver, ttl)
            await driver.set_expiring(key, encode(value), seconds)

    async def get_raw(self, key: str) -> bytes | None:
        """Return the bytes stored under ``key`` unchanged, or ``None``."""
        driver, driver_key = self._route(key)
        return await driver.get(driver_key)

    async def set_raw(
        self,
        key: str,
        value: bytes | bytearray | memoryview,
        *,
        ttl: TTL | DefaultTTL | None = DEFAULT_TTL,
    ) -> None:
        """Store ``value`` (bytes, bytearray or memoryview) under ``key`` unchanged.

        ``ttl`` works as in :meth:`set`.
        """
        data = _as_bytes(value)
        driver, driver_key = self._route(key)
        if ttl is DEFAULT_TTL:
            ttl = self._ttl
        if ttl is None:
            await driver.set(driver_key, data)
        else:
            await driver.set_expiring(driver_key, data, _ttl_for(driver, ttl))

    async def has(self, key: str) -> bool:
        """Tell whether a value is stored under ``key``."""
        driver, driver_key = self._route(key)
        return await driver.get(driver_key) is not None

    async def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""
        driver = self._fast.direct
        if driver is None or type(key) is not str or key not in RECENTLY_VALID:
            driver, key = self._route(key)
        if not driver.try_delete(key):
            await driver.delete(key)

    # -- expiry and metadata ----------------------------------------------------------------

    async def expire(self, key: str, ttl: TTL | None) -> bool:
        """Make ``key`` expire ``ttl`` from now, or never (``None``), without rewriting it.

        Return whether the key was there to change (False for a missing or expired key). The
        value, its version and its write time stay. Raises :class:`~kvstore.errors.NotSupported`
        on a driver without expiry.
        """
        driver, driver_key = self._route(key)
        seconds = None if ttl is None else ttl_seconds(ttl)
        if not driver.expiry:
            raise NotSupported(EXPIRY, driver=driver.name)
        return await driver.expire(driver_key, seconds)

    async def get_meta(self, key: str) -> Meta | None:
        """Return the size, write time, expiry and version of ``key``, or ``None`` if absent.

        Read in one backend round trip. Raises :class:`~kvstore.errors.NotSupported` on a driver
        without expiry and metadata.
        """
        driver, driver_key = self._route(key)
        return await driver.get_meta(driver_key)

    async def purge_expired(self, limit: int = 1000) -> int:
        """Physically remove up to ``limit`` expired keys from each driver; return how many.

        Expired keys are already absent to every operation; this frees their space. Drivers
        purge on their own too (see the README); call this, or run :meth:`sweep_expired`, to
        bound the space expired keys hold between writes.
        """
        self._ensure_open()
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit is a positive int, not {limit!r}")
        drivers = [driver for driver in self._table.drivers() if driver.expiry]
        if not drivers:
            raise NotSupported(EXPIRY, driver=self._table.root.name)
        removed = 0
        for driver in drivers:
            removed += await driver.purge_expired(limit)
        return removed

    async def sweep_expired(self, *, every: float = 60.0, limit: int = 1000) -> None:
        """Purge expired keys every ``every`` seconds until cancelled: a background sweeper.

        Each round purges ``limit`` keys at a time until a purge finds fewer, so the space held
        by expired keys stays bounded however fast they expire. Run it in a task group.
        """
        if not math.isfinite(every) or every <= 0:
            raise ValueError(f"every is positive, finite seconds, not {every!r}")
        while True:
            while await self.purge_expired(limit) >= limit:
                await anyio.lowlevel.checkpoint()
            await anyio.sleep(every)

    # -- conditional writes -----------------------------------------------------------------

    async def get_versioned(self, key: str) -> Versioned[JSONValue] | None:
        """Return the JSON value of ``key`` with its version, read in one step, or ``None``.

        Raises :class:`~kvstore.errors.NotSupported` on a driver without conditional writes.
        """
        found = await self.get_versioned_raw(key)
        return None if found is None else Versioned(decode(found.value, key), found.version)

    async def get_versioned_raw(self, key: str) -> Versioned[bytes] | None:
        """Return the bytes of ``key`` with their version, or ``None``."""
        driver, driver_key = self._route(key)
        return await driver.get_versioned(driver_key)

    async def create(self, key: str, value: JSONValue) -> int:
        """Store ``value`` only if ``key`` is absent; return its version.

        Raises :class:`~kvstore.errors.Conflict`, writing nothing, if the key holds a value.
        """
        return await self._set_if(key, encode(value), None)

    async def create_raw(self, key: str, value: bytes | bytearray | memoryview) -> int:
        """:meth:`create` for bytes stored unchanged."""
        return await self._set_if(key, _as_bytes(value), None)

    async def replace(self, key: str, value: JSONValue, version: int) -> int:
        """Store ``value`` only if ``key`` is still at ``version``; return the new version.

        Raises :class:`~kvstore.errors.Conflict`, writing nothing, if the key is absent or was
        written since ``version`` was read.
        """
        return await self._set_if(key, encode(value), _check_version(version))

    async def replace_raw(
        self, key: str, value: bytes | bytearray | memoryview, version: int
    ) -> int:
        """:meth:`replace` for bytes stored unchanged."""
        return await self._set_if(key, _as_bytes(value), _check_version(version))

    async def _set_if(self, key: str, data: bytes, expected: int | None) -> int:
        driver, driver_key = self._route(key)
        try:
            return await driver.set_if(driver_key, data, expected)
        except Conflict as error:
            raise _conflict_on([key], error) from None

    async def delete_if(self, key: str, version: int) -> None:
        """Remove ``key`` only if it is still at ``version``.

        Raises :class:`~kvstore.errors.Conflict`, deleting nothing, if the key is absent or at
        another version.
        """
        driver, driver_key = self._route(key)
        try:
            await driver.delete_if(driver_key, _check_version(version))
        except Conflict as error:
            raise _conflict_on([key], error) from None

    async def update(
        self,
        key: str,
        change: Callable[[JSONValue | None], JSONValue],
        *,
        attempts: int = UPDATE_ATTEMPTS,
    ) -> JSONValue:
        """Read ``key``, store ``change(value)`` if nobody wrote it meanwhile, retry if they did.

        ``change`` receives the current value (``None`` when the key is absent) and returns the
        new one; it may run several times, so it must not have side effects. Returns the value
        stored. After a conflict it pauses a random, growing time
        (:func:`~kvstore.conditional.retry_pause`) before the next attempt; after ``attempts``
        conflicts in a row the last :class:`~kvstore.errors.Conflict` is raised. Exceptions
        ``change`` raises propagate, writing nothing.
        """
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValueError(f"attempts must be a positive int, not {attempts!r}")
        driver, driver_key = self._route(key)
        for attempt in range(attempts):
            found = await driver.get_versioned(driver_key)
            current = None if found is None else decode(found.value, key)
            new_value = change(current)
            try:
                await driver.set_if(
                    driver_key, encode(new_value), None if found is None else found.version
                )
            except Conflict as error:
                if attempt + 1 == attempts:
                    raise _conflict_on([key], error, tries=attempts) from None
                await retry_pause(attempt)
                continue
            return new_value
        raise AssertionError("unreachable")  # pragma: no cover

    async def commit(self, changes: Iterable[Change[JSONValue]]) -> list[int | None]:
        """Apply a conditional batch of JSON changes (see :class:`~kvstore.conditional.Change`).

        Each key may appear once. If any condition fails, raises
        :class:`~kvstore.errors.Conflict` naming the failing keys; on a driver with
        ``atomic_batches`` nothing was written. Returns the new version of each written key
        and ``None`` for deletes and checks, in order. Every key must belong to one driver:
        a batch that spans mounts raises :class:`~kvstore.errors.NotSupported`.
        """
        given = _checked(changes)
        encoded = await _in_steps(
            self._table.pacer,
            given,
            lambda part: [
                change
                if change.action is not Action.WRITE
                else Change(change.action, change.key, encode(change.value), change.expected)
                for change in part
            ],
        )
        return await self._commit_encoded(encoded)

    async def commit_raw(self, changes: Iterable[Change[bytes]]) -> list[int | None]:
        """:meth:`commit` with bytes values stored unchanged."""
        return await self._commit_encoded(
            [
                change
                if change.action is not Action.WRITE
                else Change(change.action, change.key, _as_bytes(change.value), change.expected)
                for change in _checked(changes)
            ]
        )

    async def _commit_encoded(self, changes: list[Change[bytes]]) -> list[int | None]:
        self._ensure_open()
        full_keys = await _in_steps(
            self._table.pacer, [change.key for change in changes], self._full_keys
        )
        if len(set(full_keys)) != len(full_keys):
            raise InvalidKey("a key appears more than once in one commit")
        if not full_keys:
            return []
        if self._table.has_mounts:
            groups = await self._group(full_keys)
            if len(groups) > 1:
                raise NotSupported(
                    "a conditional batch across mounted drivers", driver=self._table.root.name
                )
            ((driver, _, driver_keys),) = groups.values()
        else:
            driver, driver_keys = self._table.root, full_keys
        routed = [
            change.with_key(driver_key)
            for change, driver_key in zip(changes, driver_keys, strict=True)
        ]
        try:
            return await driver.commit(routed)
        except Conflict as error:
            # Name the keys as the caller spelled them.
            by_driver_key = dict(zip(driver_keys, (change.key for change in changes), strict=True))
            raise _conflict_on([by_driver_key.get(key, key) for key in error.keys], error) from None

    # -- batches ----------------------------------------------------------------------------

    def _full_keys(self, keys: list[str]) -> list[str]:
        # Without a base a valid key is its own full key: one check of the batch in C then
        # replaces a call per key; a batch with an invalid key goes key by key to say which.
        if not self._base and all_valid_keys(keys):  # type: ignore[arg-type]
            return keys
        return [self._full_key(key) for key in keys]

    async def _group(
        self, full_keys: list[str]
    ) -> dict[int, tuple[BaseDriver, list[int], list[str]]]:
        """Group positions of ``full_keys`` by owning driver: id -> (driver, positions, keys)."""
        routes = await _in_steps(
            self._table.pacer, full_keys, lambda part: [self._table.resolve(k) for k in part]
        )
        groups: dict[int, tuple[BaseDriver, list[int], list[str]]] = {}
        for position, (driver, driver_key) in enumerate(routes):
            group = groups.setdefault(id(driver), (driver, [], []))
            group[1].append(position)
            group[2].append(driver_key)
        return groups

    async def _read_many(
        self,
        keys: Iterable[str],
        read: Callable[[BaseDriver, list[str]], Awaitable[list[_V | None]]],
    ) -> list[_V | None]:
        """``read`` each owning driver's share of ``keys``; the answers in the order asked."""
        self._ensure_open()
        full_keys = await _in_steps(self._table.pacer, _key_list(keys), self._full_keys)
        if not self._table.has_mounts:
            return await read(self._table.root, full_keys)
        found: list[_V | None] = [None] * len(full_keys)
        for driver, positions, driver_keys in (await self._group(full_keys)).values():
            for position, answer in zip(positions, await read(driver, driver_keys), strict=True):
                found[position] = answer
        return found

    async def get_many_raw(self, keys: Iterable[str]) -> list[bytes | None]:
        """Return the bytes of each key in ``keys``, in the order asked, ``None`` if missing."""
        return await self._read_many(keys, lambda driver, part: driver.get_many(part))

    async def get_meta_many(self, keys: Iterable[str]) -> list[Meta | None]:
        """Return :meth:`get_meta` of each key in ``keys``, in the order asked, ``None`` if absent.

        What a bulk reader (an export, a report of expiries) calls once a page rather than once
        a key: every built-in driver reads a chunk of keys per backend round trip. Raises
        :class:`~kvstore.errors.NotSupported` on a driver without expiry and metadata.
        """
        return await self._read_many(keys, lambda driver, part: driver.get_meta_many(part))

    async def get_many(self, keys: Iterable[str]) -> list[JSONValue | None]:
        """Return the JSON value of each key in ``keys`` in the order asked, ``None`` if missing."""
        key_list = _key_list(keys)
        raw = await self.get_many_raw(key_list)
        try:
            return await _in_steps(self._table.pacer, raw, decode_many)
        except SerializationError:
            # Decode one by one only now, to name the key whose value is not JSON.
            for key, data in zip(key_list, raw, strict=True):
                if data is not None:
                    decode(data, key)
            raise

    async def set_many(
        self,
        items: Mapping[str, JSONValue] | Iterable[tuple[str, JSONValue]],
        *,
        ttl: TTL | DefaultTTL | None = DEFAULT_TTL,
    ) -> None:
        """Store many values at once; with repeated keys the last one wins.

        Every key, value and the TTL are checked before anything is written. On a driver whose
        backend has transactions the batch is all or nothing; across mounts, each driver's share
        is. ``ttl`` works as in :meth:`set`, with one expiry instant for the whole batch.
        """
        seconds = self._resolved_ttl(ttl)
        pairs = list(items.items() if isinstance(items, Mapping) else items)
        keys = [key for key, _ in pairs]
        values = [value for _, value in pairs]
        # Encoded a step at a time, but every result is held until the write: say how many.
        encoded = await _in_steps(
            self._table.pacer, values, partial(encode_many, held=len(values))
        )
        await self._set_many_encoded(keys, encoded, seconds, owned=encode_many_copies(len(values)))

    async def set_many_raw(
        self,
        items: Mapping[str, bytes] | Iterable[tuple[str, bytes]],
        *,
        ttl: TTL | DefaultTTL | None = DEFAULT_TTL,
    ) -> None:
        """Store many byte values at once, like :meth:`set_many` without JSON."""
        seconds = self._resolved_ttl(ttl)
        pairs = list(items.items() if isinstance(items, Mapping) else items)
        keys = [key for key, _ in pairs]
        await self._set_many_encoded(keys, [_as_bytes(value) for _, value in pairs], seconds)

    def _resolved_ttl(self, ttl: TTL | DefaultTTL | None) -> float | None:
        if ttl is DEFAULT_TTL:
            return self._ttl
        return None if ttl is None else ttl_seconds(ttl)

    async def _set_many_encoded(
        self, keys: list[str], values: list[bytes], ttl: float | None, *, owned: bool = False
    ) -> None:
        self._ensure_open()
        full_keys = await _in_steps(self._table.pacer, keys, self._full_keys)
        if not full_keys:
            if ttl is not None:
                _ttl_for(self._table.root, ttl)
            return
        if not self._table.has_mounts:
            if ttl is None:
                # As two lists, as they are here: the memory driver takes them without pairing
                # and splitting them again, and keeps owned values without a second copy.
                await self._table.root.set_many_columns(full_keys, values, owned=owned)
                return
            await _write(self._table.root, list(zip(full_keys, values, strict=True)), ttl)
            return
        groups = await self._group(full_keys)
        if ttl is not None:
            for driver, _, _ in groups.values():
                _ttl_for(driver, ttl)  # every driver can expire keys, before any writes
        for driver, positions, driver_keys in groups.values():
            await _write(
                driver,
                [
                    (key, values[position])
                    for key, position in zip(driver_keys, positions, strict=True)
                ],
                ttl,
            )

    async def delete_many(self, keys: Iterable[str]) -> None:
        """Remove every key in ``keys``; missing keys are skipped."""
        self._ensure_open()
        full_keys = await _in_steps(self._table.pacer, _key_list(keys), self._full_keys)
        if not full_keys:
            return
        if not self._table.has_mounts:
            await self._table.root.delete_many(full_keys)
            return
        for driver, _, driver_keys in (await self._group(full_keys)).values():
            await driver.delete_many(driver_keys)

    # -- scans ------------------------------------------------------------------------------

    def _sources(self, prefix: str) -> list[Source]:
        self._ensure_open()
        validate_prefix(prefix)
        full_prefix = join(self._base, prefix) if self._base else prefix
        if not self._table.has_mounts:
            return [Source(self._table.root, full_prefix, "", ())]
        return self._table.sources(full_prefix)

    def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Yield every key that starts with ``prefix``, once each, in ascending code point order.

        The prefix is a plain string prefix (``"ap"`` matches ``app`` and ``apple``); ``""``
        yields every key. The scan streams, and spans mounted drivers in key order. An invalid
        prefix or a closed storage raises at the call.
        """
        sources = self._sources(prefix)
        if len(sources) == 1 and not sources[0].key_base and not sources[0].shadowed:
            stream = sources[0].driver.keys(sources[0].driver_prefix)
            # The common case: hand out the driver's own iterator, with no extra async layer
            # per key.
            return stream if not self._base else self._strip_base(stream)
        return self._strip_base(merge_sorted([source.keys() for source in sources]))

    async def _strip_base(self, stream: AsyncIterator[str]) -> AsyncIterator[str]:
        pacer = self._table.pacer
        cut = self._base_width()
        handed_out = 0
        async for full in stream:
            yield full[cut:]
            handed_out += 1
            if handed_out % _STEP == 0:
                # A driver hands out a page of keys without yielding; merging mounts and the
                # caller's work per key must not hold the loop for a whole page.
                await pacer.tick()

    async def items(self, prefix: str = "") -> AsyncIterator[tuple[str, JSONValue]]:
        """Yield ``(key, value)`` for every key that starts with ``prefix``, in key order."""
        # The driver's pairs decoded here directly rather than through items_raw: one async
        # generator step per item instead of two (get_messages of 1,000 on memory, about 10 %).
        stream, cut = self._item_stream(prefix)
        pacer = self._table.pacer
        decoded = 0
        async for full, data in stream:
            key = full[cut:]
            yield key, decode(data, key)
            decoded += 1
            if decoded % _STEP == 0:
                # A driver hands out a page of values without yielding: decoding a page (and
                # the caller's work on each value) must not hold the loop for that long.
                await pacer.tick()

    async def items_raw(self, prefix: str = "") -> AsyncIterator[tuple[str, bytes]]:
        """Yield ``(key, bytes)`` for every key that starts with ``prefix``, in key order.

        A key deleted while the scan runs may be skipped.
        """
        stream, cut = self._item_stream(prefix)
        async for full, data in stream:
            yield full[cut:], data

    def _item_stream(self, prefix: str) -> tuple[AsyncIterator[tuple[str, bytes]], int]:
        """The pairs a scan of ``prefix`` reads, and how many leading characters of each key to
        cut off to make it this storage's key (its base and the separator, if any)."""
        sources = self._sources(prefix)
        if len(sources) == 1 and not sources[0].key_base and not sources[0].shadowed:
            return sources[0].driver.items(sources[0].driver_prefix), self._base_width()
        # Across mounts: keys() merges the sources and already gives this storage's keys.
        return read_in_pages(self.keys(prefix), self.get_many_raw), 0

    async def clear(self, prefix: str = "") -> None:
        """Remove every key that :meth:`keys` with the same ``prefix`` would yield."""
        for source in self._sources(prefix):
            if not source.shadowed:
                await source.driver.clear(source.driver_prefix)
                continue
            # Keys of deeper mounts live in other drivers: delete this driver's own keys only.
            await delete_scanned(source.driver, source.driver_prefix, source.owns_driver_key)

    # -- views and mounts -------------------------------------------------------------------

    def with_prefix(self, base: str, *, ttl: TTL | DefaultTTL | None = DEFAULT_TTL) -> Storage:
        """Return a view whose keys live under ``base:`` in this storage.

        The view's key ``k`` is this storage's ``base:k``; its scans and clears never reach
        outside ``base:``. The view shares this storage's drivers: closing the view only stops
        the view, closing this storage stops both. It keeps this storage's default TTL unless
        given its own ``ttl`` (``None``: its writes never expire unless they say so).
        """
        self._ensure_open()
        return Storage._view(self._table, self._full_key(base), self._resolved_ttl(ttl))

    def mount(self, base: str, driver: Driver) -> None:
        """Serve the keys under ``base:`` from ``driver`` (which the storage now owns).

        A key belongs to the deepest mount whose base it falls under; the driver sees the key
        without ``base:``. Keys the root driver already held under ``base:`` are hidden, not
        moved, until the mount is removed.
        """
        self._ensure_open()
        self._table.add(self._full_key(base), as_base_driver(driver))

    async def unmount(self, base: str, *, close: bool = True) -> BaseDriver:
        """Stop serving ``base`` from its mount, close that driver unless told not to, return it."""
        self._ensure_open()
        driver = self._table.remove(self._full_key(base))
        if close:
            await driver.close()
        return driver

    # -- lifetime ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect every driver that has an ``open`` step, so errors surface now, not later."""
        self._ensure_open()
        for driver in self._table.drivers():
            opener = getattr(driver, "open", None)
            if opener is not None:
                await opener()

    async def close(self) -> None:
        """Close the storage; idempotent. A view closes only itself, the root everything."""
        if self._closed:
            return
        self._closed = True
        if self._base or self._table.closed:
            return
        self._table.close()
        for driver in self._table.drivers():
            await driver.close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        view = f" base={self._base!r}" if self._base else ""
        return f"<Storage driver={self._table.root.name}{view}>"


class _NoFastPath:
    """What a view reads as its fast path: none, since its keys are not its driver's keys."""

    __slots__ = ()
    direct: BaseDriver | None = None


_NO_FAST_PATH = _NoFastPath()


def _ttl_for(driver: BaseDriver, ttl: TTL) -> float:
    """``ttl`` validated, once ``driver`` is known to expire keys: nothing is written otherwise."""
    seconds = ttl_seconds(ttl)
    if not driver.expiry:
        raise NotSupported(EXPIRY, driver=driver.name)
    return seconds


async def _write(driver: BaseDriver, items: list[tuple[str, bytes]], ttl: float | None) -> None:
    if ttl is None:
        await driver.set_many(items)
    else:
        await driver.set_many_expiring(items, ttl)


def _check_version(version: object) -> int:
    # No version is above 2**52 (new_version()), so a driver may store them in any integer type.
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= 2**52:
        raise ValueError(
            f"a version is an int in 0 .. 2**52 read from get_versioned, not {version!r}"
        )
    return version


def _checked(changes: Iterable[Change[_V]]) -> list[Change[_V]]:
    """``changes`` as a list, once each is known to be a Change with a valid action and version."""
    given = list(changes)
    for change in given:
        if not isinstance(change, Change):
            raise TypeError(f"commit takes Change objects, not {type(change).__name__}")
        if not isinstance(change.action, Action):
            raise ValueError(f"a Change's action is an Action, not {change.action!r}")
        if change.expected is not None and change.expected is not ANY_VERSION:
            _check_version(change.expected)
    return given


def _conflict_on(keys: list[str], cause: Conflict, *, tries: int = 1) -> Conflict:
    """The driver's conflict, re-raised with the keys as the caller named them."""
    shown = ", ".join(repr(key) for key in keys[:5])
    more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
    after = f" after {tries} attempts" if tries > 1 else ""
    error = Conflict(
        f"the condition on {shown}{more} no longer holds{after}: nothing was written",
        keys=tuple(keys),
    )
    error.__cause__ = None
    return error


def _key_list(keys: Iterable[str]) -> list[str]:
    if isinstance(keys, str):
        raise InvalidKey("expected an iterable of keys, got a single str")
    return list(keys)


def _as_bytes(value: object) -> bytes:
    if type(value) is bytes:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise SerializationError(f"raw values must be bytes, not {type(value).__name__}")
