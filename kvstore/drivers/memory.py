"""The memory driver: a dict plus an ordered key index, for tests and short-lived data."""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from itertools import filterfalse, repeat
from typing import cast

from kvstore.conditional import Action, Change, Versioned, new_version
from kvstore.driver import LATER, BaseDriver, Later, conflict
from kvstore.drivers._sorted_keys import SortedKeys
from kvstore.errors import ConfigurationError, StorageClosed
from kvstore.expiry import Clock, Meta, expiry_millis, from_millis, now_millis
from kvstore.keys import prefix_successor
from kvstore.pacing import Gate, Pacer
from kvstore.urls import parse_url, redact_url, take_options

__all__ = ["MemoryDriver", "from_url", "memory_driver"]

# Keys taken from the index per step of a scan: read without yielding, so writes between steps
# cannot disturb a step; each next step restarts after the last key yielded.
_SCAN_PAGE = 256
# Items a batch applies between looks at the clock: a few tens of microseconds of work.
_STEP = 64
# Items a plain set_many applies per step: its step is a few dict updates in C (tens of
# nanoseconds an item), so a step this long is still a few tens of microseconds.
_BULK_STEP = 1024
# Values shorter than this are stored as a fresh copy. orjson returns its result in a buffer
# that keeps about 4 KB of heap behind it however short the value (measured: 4.2 KB of RSS per
# retained 200-byte value, 0.36 KB for a copy); a copy of a short value costs tens of
# nanoseconds. Beyond this size the overhead is a few percent and the copy would cost more.
_COMPACT_BELOW = 64 * 1024
# Copies bytes: joining a value with b"" makes a new object, where bytes(value) returns value.
_JOIN = b"".join
# Single operations between looks at the clock. Each takes about a microsecond, while reading
# the clock takes a tenth of that: reading it every time would cost the 10 % budget alone.
_CREDIT = 64
# Expiring writes purge at most this many expired keys, at most once per _PURGE_EVERY seconds.
_AUTO_PURGE = 100
_PURGE_EVERY = 1.0


@dataclass(frozen=True, slots=True)
class _Arguments:
    """The arguments of :func:`memory_driver`, handed to :class:`MemoryDriver` as one value."""

    clock: Clock


_DEFAULTS = _Arguments(time.time)

# What the driver keeps under a key: the value and when it was written (clock seconds), and its
# version once one was handed out. A write stores a new entry without one, which is how any write
# drops the version (see the class docstring).
_Entry = tuple[bytes, float] | tuple[bytes, float, int]


class MemoryDriver(BaseDriver):
    """Keeps values in process memory; each instance is its own empty store.

    Build it with :func:`memory_driver` (or ``memory://``); the class is for annotations,
    ``isinstance`` and test doubles that subclass it (``MemoryDriver()`` takes no arguments).

    Operations run inline and give the event loop a turn about every millisecond. Batches
    (``set_many``, ``delete_many``) and ``get_many`` are atomic: one that yields part way holds
    the driver, so other tasks' operations wait until it is done, and once it has started
    writing it finishes even if cancelled (the cancellation is raised afterwards). ``clear``
    removes keys a step at a time; a cancelled clear leaves the keys it had not reached yet.

    Versions cost nothing until asked for: a key gets one the first time a versioned read, a
    conditional write or ``get_meta`` needs it, kept in the key's entry (the int and one more
    slot), and any write of the key stores an entry without one, so the next one asked for is
    new.

    Expiry reads ``clock`` (POSIX seconds; the wall clock by default). While no key expires,
    operations pay one test of an empty dict. An operation that meets an expired key removes
    it; a heap of expiry instants lets :meth:`purge_expired` (and expiring writes, once a
    second) remove the others without scanning.
    """

    name = "memory"
    supports_trio = True
    atomic_batches = True
    conditional_writes = True
    expiry = True
    inline = True

    def __init__(self, arguments: _Arguments = _DEFAULTS) -> None:
        clock = arguments.clock
        # Each key's value, write time (clock seconds) and version (if any), as one entry. Kept
        # in dicts of their own, a write time cost every delete a second removal (about 6 % of
        # a delete through Storage) and every write a second insertion, for get_meta alone; a
        # version kept in a dict cost every later write of its key a removal, and an export
        # (which reads get_meta, so gives every key a version) 165 MiB of RSS for 1,000,000
        # keys, against 46 in the entries.
        self._values: dict[str, _Entry] = {}
        self._clock = clock
        # When expiring keys expire (ms). Tested as ``if self._expiry:`` on the write paths: one
        # test of an empty dict while no key expires.
        self._expiry: dict[str, int] = {}
        # (instant, key) for every expiry set; entries whose key has since changed are skipped.
        self._deadlines: list[tuple[int, str]] = []
        self._last_purge = -math.inf  # on the driver's clock
        # Ordered index of the keys, so that a prefix scan costs log(n) plus the matches.
        self._index = SortedKeys()
        self._pacer = Pacer()
        self._gate = Gate()
        # Operations left before the next look at the clock; zero sends every operation down the
        # slow path (_turn), which is how closing and a batch holding the driver are noticed.
        # Tested as ``if credit:`` and decremented by hand: the cheapest form (about 15 ns).
        self._credit = _CREDIT

    # -- pacing -------------------------------------------------------------------------------

    async def _turn(self) -> None:
        """The slow path of every operation: closed? a batch running? time to yield?

        Returns with no await left before the caller's synchronous work, so that work runs with
        the driver open and no batch half done.
        """
        pacer = self._pacer
        paused = False
        while True:
            self.ensure_open()
            if self._gate.closed:
                await self._gate.wait()
            elif not paused and pacer.due():
                await pacer.pause()
                paused = True
            else:
                self._credit = _CREDIT
                return

    def mark_closed(self) -> None:
        # docstring inherited
        super().mark_closed()
        # No credit: every later operation takes the slow path, which raises.
        self._credit = 0

    async def _run_steps(self, step: Callable[[], bool], *, finish: bool) -> None:
        """Run ``step`` until it returns False, alone among this driver's operations.

        Each step is bounded work that runs without yielding. Between steps the driver yields
        when a slice has passed, holding the gate so that no other operation sees a half-done
        batch. With ``finish`` (writes) cancellation waits until the last step has run.
        """
        await self._turn()
        held = False
        interruption: BaseException | None = None
        pacer = self._pacer
        try:
            while step():
                if not pacer.due():
                    continue
                if not held:
                    self._gate.close()
                    self._credit = 0  # others take the slow path, and wait at the gate
                    held = True
                if finish:
                    interruption = interruption or await pacer.pause_shielded()
                else:
                    await pacer.pause()
                if self._closed:
                    raise StorageClosed(f"the {self.name} driver was closed during a batch")
        finally:
            if held:
                self._gate.open()
        if interruption is not None:
            raise interruption

    # -- single keys --------------------------------------------------------------------------

    def try_get(self, key: str) -> bytes | Later | None:
        # docstring inherited
        credit = self._credit
        if not credit:
            return LATER  # the slow path: closed, a batch running, or time to yield
        self._credit = credit - 1
        if self._expiry:
            self._reap(key, now_millis(self._clock))
        # Opcodes rather than a call of values.get: a miss 0.27 against 0.29 us through Storage
        # (A/B medians), a hit no dearer. (For delete, `in` and `del` cost more than one pop.)
        values = self._values
        return values[key][0] if key in values else None

    async def get(self, key: str) -> bytes | None:
        # docstring inherited
        found = self.try_get(key)
        if found is LATER:
            await self._turn()  # leaves credit, so the read below goes through
            found = self.try_get(key)
        return cast("bytes | None", found)

    def try_set(self, key: str, value: bytes) -> bool:
        # docstring inherited
        credit = self._credit
        if not credit:
            return False
        self._credit = credit - 1
        if type(value) is bytes and len(value) < _COMPACT_BELOW:
            value = _JOIN((value, b""))  # _stored, inlined on the hot path
        else:
            value = _stored(value)
        # _put inlined, and SortedKeys.add for a key that was never ordered.
        values = self._values
        if key in values:
            if self._expiry:
                self._expiry.pop(key, None)
        else:
            index = self._index
            if index.removed:
                index.add(key)
            else:
                index.pending[key] = None
        values[key] = (value, self._clock())
        return True

    async def set(self, key: str, value: bytes) -> None:
        # docstring inherited
        if not self.try_set(key, value):
            value = _stored(value)  # the caller's buffer as it is now, not after the await
            await self._turn()
            self._put(key, value)

    def _put(self, key: str, value: bytes, version: int | None = None) -> None:
        """Store ``value`` under ``key``, with ``version`` if a conditional write gave it one:
        the new entry replaces any earlier version, and the key's expiry is dropped."""
        values = self._values
        if key in values:
            # Only a key that is there can have an expiry (_remove drops it).
            if self._expiry:
                self._expiry.pop(key, None)
        else:
            self._index.add(key)
        if version is None:
            values[key] = (value, self._clock())
        else:
            values[key] = (value, self._clock(), version)

    def try_delete(self, key: str) -> bool:
        # docstring inherited
        credit = self._credit
        if not credit:
            return False
        self._credit = credit - 1
        # _remove, inlined on the hot path.
        if self._values.pop(key, None) is not None:
            # SortedKeys.remove, inlined: pending maps keys to None, so the default 0 comes
            # back only for a key already ordered (one dict operation instead of two).
            index = self._index
            if index.pending.pop(key, 0) is not None:
                index.removed[key] = None
            if self._expiry:
                self._expiry.pop(key, None)
        return True

    async def delete(self, key: str) -> None:
        # docstring inherited
        if not self.try_delete(key):
            await self._turn()
            self._remove(key)

    def _remove(self, key: str) -> None:
        if self._values.pop(key, None) is not None:
            self._index.remove(key)
            if self._expiry:
                self._expiry.pop(key, None)

    # -- expiry -------------------------------------------------------------------------------

    def _reap(self, key: str, now_ms: int) -> None:
        """Remove ``key`` if it has expired by ``now_ms``: to every operation it is gone."""
        deadline = self._expiry.get(key)
        if deadline is not None and deadline <= now_ms:
            self._remove(key)

    def _set_expiry(self, key: str, deadline: int) -> None:
        self._expiry[key] = deadline
        heapq.heappush(self._deadlines, (deadline, key))
        if len(self._deadlines) > 2 * len(self._expiry) + 1024:
            # Rewritten and re-expired keys leave stale entries behind: rebuild now and then.
            self._deadlines = [(when, name) for name, when in self._expiry.items()]
            heapq.heapify(self._deadlines)

    def _purge(self, limit: int) -> int:
        now_ms = now_millis(self._clock)
        deadlines, removed = self._deadlines, 0
        while deadlines and removed < limit and deadlines[0][0] <= now_ms:
            deadline, key = heapq.heappop(deadlines)
            if self._expiry.get(key) == deadline:
                self._remove(key)
                removed += 1
        return removed

    def _purge_now_and_then(self) -> None:
        """The automatic purge expiring writes run: a small batch, at most once a second."""
        now = self._clock()
        if not 0 <= now - self._last_purge < _PURGE_EVERY:
            self._last_purge = now
            self._purge(_AUTO_PURGE)

    async def set_expiring(self, key: str, value: bytes, ttl: float) -> None:
        # docstring inherited
        await self._turn()
        self._put(key, _stored(value))
        self._set_expiry(key, expiry_millis(now_millis(self._clock), ttl))
        self._purge_now_and_then()

    async def set_many_expiring(self, items: Sequence[tuple[str, bytes]], ttl: float) -> None:
        # docstring inherited
        pairs = [(key, _stored(value)) for key, value in items]
        deadline = expiry_millis(now_millis(self._clock), ttl)
        done = 0

        def step() -> bool:
            nonlocal done
            for key, value in pairs[done : done + _STEP]:
                self._put(key, value)
                self._set_expiry(key, deadline)
            done += _STEP
            return done < len(pairs)

        await self._run_steps(step, finish=True)
        self._purge_now_and_then()

    async def expire(self, key: str, ttl: float | None) -> bool:
        # docstring inherited
        await self._turn()
        now_ms = now_millis(self._clock)
        if self._expiry:
            self._reap(key, now_ms)
        if key not in self._values:
            return False
        if ttl is None:
            self._expiry.pop(key, None)
        else:
            self._set_expiry(key, expiry_millis(now_ms, ttl))
            self._purge_now_and_then()
        return True

    async def get_meta(self, key: str) -> Meta | None:
        # docstring inherited
        await self._turn()
        return self._meta(key, now_millis(self._clock) if self._expiry else 0)

    async def get_meta_many(self, keys: Sequence[str]) -> list[Meta | None]:
        # docstring inherited
        found: list[Meta | None] = []

        def step() -> bool:
            start = len(found)
            now_ms = now_millis(self._clock) if self._expiry else 0
            found.extend([self._meta(key, now_ms) for key in keys[start : start + _STEP]])
            return len(found) < len(keys)

        await self._run_steps(step, finish=False)
        return found

    def _meta(self, key: str, now_ms: int) -> Meta | None:
        """:meth:`get_meta` of ``key`` at ``now_ms`` (0 when no key expires), without yielding."""
        if self._expiry:
            self._reap(key, now_ms)
        version = self._version_of(key)
        if version is None:
            return None
        deadline = self._expiry.get(key)
        entry = self._values[key]
        return Meta(
            size=len(entry[0]),
            written_at=entry[1],
            expires_at=None if deadline is None else from_millis(deadline),
            version=version,
        )

    async def purge_expired(self, limit: int = 1000) -> int:
        # docstring inherited
        await self._turn()
        return self._purge(limit)

    # -- versions -----------------------------------------------------------------------------

    def _version_of(self, key: str) -> int | None:
        """The version of ``key``, handing one out if it has none yet; None if absent."""
        entry = self._values.get(key)
        if entry is None:
            return None
        if len(entry) == 3:
            return entry[2]
        version = new_version()
        self._values[key] = (entry[0], entry[1], version)
        return version

    def _apply(self, change: Change[bytes]) -> int | None:
        if change.action is Action.WRITE:
            value = change.value
            assert value is not None
            version = new_version()
            self._put(change.key, _stored(value), version)
            return version
        if change.action is Action.DELETE:
            self._remove(change.key)
        return None

    async def get_versioned(self, key: str) -> Versioned[bytes] | None:
        # docstring inherited
        await self._turn()
        if self._expiry:
            self._reap(key, now_millis(self._clock))
        version = self._version_of(key)
        return None if version is None else Versioned(self._values[key][0], version)

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        # docstring inherited
        if len(changes) == 1:
            # The usual commit (set_if, delete_if, an entity's counter): checked and applied
            # with no await between, which is atomic here, without the steps' closure and gate
            # (Storage.replace 15-17 against 19-22 us, create 13-15 against 16-20).
            (change,) = changes
            await self._turn()
            if self._expiry:
                self._reap(change.key, now_millis(self._clock))
            if not change.holds_for(self._version_of(change.key)):
                raise conflict([change.key])
            return [self._apply(change)]
        # Single-threaded: checking every condition and then applying every change with the
        # gate held (no other operation of this driver runs between) is the atomic step.
        failed: list[str] = []
        versions: list[int | None] = []
        checked = applied = 0

        def step() -> bool:
            nonlocal checked, applied
            if checked < len(changes):
                if self._expiry:
                    now_ms = now_millis(self._clock)
                    for change in changes[checked : checked + _STEP]:
                        self._reap(change.key, now_ms)
                for change in changes[checked : checked + _STEP]:
                    if not change.holds_for(self._version_of(change.key)):
                        failed.append(change.key)
                checked += _STEP
                return checked < len(changes) or not failed
            versions.extend(self._apply(change) for change in changes[applied : applied + _STEP])
            applied += _STEP
            return applied < len(changes)

        await self._run_steps(step, finish=True)
        if failed:
            raise conflict(failed)
        return versions

    # -- scans --------------------------------------------------------------------------------

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        # docstring inherited
        async for page in self._live_pages(prefix):
            for key in page:
                yield key

    async def items(self, prefix: str = "") -> AsyncIterator[tuple[str, bytes]]:
        # docstring inherited
        # The values of a page are read as soon as the page arrives, in the same step (no await
        # lies between), so each pair is what the store held at that moment. The base class's
        # form (keys() into get_many) cost two more generator steps per item.
        async for page in self._live_pages(prefix):
            # Read per page: clear() swaps in a new dict between pages.
            values = self._values
            for pair in [(key, values[key][0]) for key in page]:
                yield pair

    async def _live_pages(self, prefix: str) -> AsyncIterator[list[str]]:
        """Yield the live keys under ``prefix`` in order, a page at a time, yielding the loop
        between pages.

        The keys of a page that have expired are removed from the store here, so that a later
        scan does not meet them again; the caller reads whatever else it needs of a page before
        its next await.
        """
        await self._turn()
        below = prefix_successor(prefix)
        page = self._index.page(prefix, inclusive=True, below=below, limit=_SCAN_PAGE)
        while page:
            # The keys of this page that expire at all, found in C.
            expiring = self._expiry.keys() & page if self._expiry else None
            if expiring:
                now_ms = now_millis(self._clock)
                for key in expiring:
                    self._reap(key, now_ms)
                values = self._values
                yield [key for key in page if key in values]
            else:
                yield page
            if len(page) < _SCAN_PAGE:
                return
            await self._turn()
            page = self._index.page(page[-1], inclusive=False, below=below, limit=_SCAN_PAGE)

    # -- batches ------------------------------------------------------------------------------

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        # docstring inherited
        found: list[bytes | None] = []

        def step() -> bool:
            start = len(found)
            part = keys[start : start + _STEP * 4]
            if self._expiry:
                now_ms = now_millis(self._clock)
                for key in part:
                    self._reap(key, now_ms)
            values = self._values
            found.extend([values[key][0] if key in values else None for key in part])
            return len(found) < len(keys)

        await self._run_steps(step, finish=False)
        return found

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        # docstring inherited
        await self._set_many([key for key, _ in items], _all_stored([value for _, value in items]))

    async def set_many_columns(
        self, keys: list[str], values: list[bytes], *, owned: bool = False
    ) -> None:
        # docstring inherited
        if type(self).set_many is not MemoryDriver.set_many:
            # A subclass (a test double) that changes set_many still sees every batch.
            await super().set_many_columns(keys, values, owned=owned)
            return
        if len(keys) != len(values):
            raise ValueError(f"{len(keys)} keys for {len(values)} values")
        # Owned values are already the compact copies _stored would make: kept as they are.
        await self._set_many(keys, values if owned else _all_stored(values))

    async def _set_many(self, keys: list[str], values: list[bytes]) -> None:
        done = 0

        def step() -> bool:
            nonlocal done
            self._put_many(keys[done : done + _BULK_STEP], values[done : done + _BULK_STEP])
            done += _BULK_STEP
            return done < len(keys)

        await self._run_steps(step, finish=True)

    def _put_many(self, keys: list[str], values: list[bytes]) -> None:
        """:meth:`_put` for many keys, in bulk: dict updates in C instead of a call per key.

        One write time for the whole step, as a batch reads one instant for its expiry.
        """
        stored = self._values
        self._index.add_many(filterfalse(stored.__contains__, keys))
        # Entries made in C (zip reuses its result tuples only when they are dropped: these are
        # kept, so each is a new tuple).
        stored.update(zip(keys, zip(values, repeat(self._clock())), strict=True))
        if self._expiry:
            expiry = self._expiry
            for key in keys:
                expiry.pop(key, None)

    async def delete_many(self, keys: Sequence[str]) -> None:
        # docstring inherited
        done = 0

        def step() -> bool:
            nonlocal done
            for key in keys[done : done + _STEP]:
                self._remove(key)
            done += _STEP
            return done < len(keys)

        await self._run_steps(step, finish=True)

    async def clear(self, prefix: str = "") -> None:
        # docstring inherited
        await self._turn()
        if not prefix:
            values, index = self._detach()
            await _release(values, index, self._pacer)
            return
        below = prefix_successor(prefix)
        while page := self._index.page(prefix, inclusive=True, below=below, limit=_SCAN_PAGE):
            for key in page:
                self._remove(key)
            await self._turn()

    def _detach(self) -> tuple[dict[str, _Entry], SortedKeys]:
        """Swap in an empty store, in one step, and return the old one."""
        values, index = self._values, self._index
        self._values, self._index = {}, SortedKeys()
        self._expiry, self._deadlines = {}, []
        return values, index

    async def close(self) -> None:
        # docstring inherited
        self.mark_closed()
        values, index = self._detach()
        await _release(values, index, self._pacer)


async def _release(values: dict[str, _Entry], index: SortedKeys, pacer: Pacer) -> None:
    """Free a detached store a step at a time: freeing a million values at once takes tens of
    milliseconds, all on the event loop."""
    while values:
        for _ in range(min(len(values), _SCAN_PAGE * 8)):
            values.popitem()
        await pacer.tick()
    while index.drop_chunk():
        await pacer.tick()


def _stored(value: bytes) -> bytes:
    """``value`` as the driver keeps it: ``bytes`` of its own, compact when it is short."""
    if type(value) is not bytes:
        return bytes(value)  # never keep a reference to a caller's mutable buffer
    if len(value) < _COMPACT_BELOW:
        return _JOIN((value, b""))
    return value


def _all_stored(values: list[bytes]) -> list[bytes]:
    """:func:`_stored` of each of ``values``: in one pass in C when all are short ``bytes``."""
    if set(map(type, values)) <= {bytes} and max(map(len, values), default=0) < _COMPACT_BELOW:
        return list(map(_JOIN, zip(values, repeat(b""))))
    return [_stored(value) for value in values]


def memory_driver(*, clock: Clock = time.time) -> MemoryDriver:
    """Return a new, empty in-memory driver whose expiry reads ``clock``."""
    return MemoryDriver(_Arguments(clock))


def from_url(url: str) -> MemoryDriver:
    """Build a new, empty memory driver from ``memory://``.

    The URL takes no user, host, path or option: anything after ``memory://`` raises
    :class:`~kvstore.errors.ConfigurationError` (fsspec's in-memory filesystem is
    ``fs+memory://NAME``, served by the fs driver).
    """
    parsed = parse_url(url, schemes=("memory",))
    take_options(parsed.options, {}, where="memory")
    if parsed.username is not None or parsed.password is not None or parsed.hosts or parsed.path:
        raise ConfigurationError(
            f"{redact_url(url)!r}: a memory:// URL names nothing after the scheme (for fsspec's "
            "in-memory filesystem write fs+memory://NAME)"
        )
    return memory_driver()
