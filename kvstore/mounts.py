"""The mount table a storage and its views share: which driver owns which keys.

A key belongs to the deepest mount whose base it falls under (``base:...``), with the part after
``base:`` as the key inside that driver; every other key belongs to the root driver. Prefix scans
that span several drivers merge their streams in key order.
"""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator
from dataclasses import dataclass

from kvstore.driver import BaseDriver
from kvstore.errors import ConfigurationError, StorageClosed
from kvstore.keys import SEPARATOR
from kvstore.pacing import Pacer

__all__ = ["MountTable", "Source"]


@dataclass(frozen=True, slots=True)
class Source:
    """One driver's share of a prefix scan.

    The driver is scanned with ``driver_prefix``; each key it yields is ``key_base`` joined to
    it, and is dropped when it falls under one of ``shadowed`` (bases of deeper mounts whose keys
    live elsewhere).
    """

    driver: BaseDriver
    driver_prefix: str
    key_base: str
    shadowed: tuple[str, ...]

    def full_key(self, driver_key: str) -> str:
        """Return the storage-wide key for a key of this source's driver."""
        return f"{self.key_base}{SEPARATOR}{driver_key}" if self.key_base else driver_key

    def owns(self, full_key: str) -> bool:
        """Tell whether ``full_key`` is served by this source rather than a deeper mount."""
        return not any(full_key.startswith(base) for base in self.shadowed)

    def owns_driver_key(self, driver_key: str) -> bool:
        """Tell whether a key of this source's driver is served by this source."""
        return self.owns(self.full_key(driver_key))

    async def keys(self) -> AsyncIterator[str]:
        """Yield this source's storage-wide keys, in order."""
        async for driver_key in self.driver.keys(self.driver_prefix):
            full = self.full_key(driver_key)
            if not self.shadowed or self.owns(full):
                yield full


class MountTable:
    """Routes keys to drivers; shared by a storage and all of its views."""

    def __init__(self, root: BaseDriver) -> None:
        self.root = root
        self.closed = False
        #: Paces the storage's own batch work (checking, encoding, routing), for all its views.
        self.pacer = Pacer()
        # Read on every operation: a plain attribute is cheaper than len() of the table.
        self.has_mounts = False
        #: The root driver while it serves every key (open, nothing mounted), else None: the
        #: single-key fast path of a storage without a base needs this one test.
        self.direct: BaseDriver | None = root
        # base -> driver, and the bases deepest first so that the first match is the owner.
        self._mounts: dict[str, BaseDriver] = {}
        self._deepest_first: list[str] = []

    def ensure_open(self) -> None:
        """Raise :class:`StorageClosed` once the storage has been closed."""
        if self.closed:
            raise StorageClosed("the storage is closed")

    def close(self) -> None:
        """Mark the table closed: every storage over it stops, views included."""
        self.closed = True
        self.direct = None

    def add(self, base: str, driver: BaseDriver) -> None:
        """Serve the keys under ``base`` from ``driver``; ``base`` must not be mounted already."""
        if base in self._mounts:
            raise ConfigurationError(f"a driver is already mounted at {base!r}; unmount it first")
        self._mounts[base] = driver
        self._deepest_first = sorted(self._mounts, key=len, reverse=True)
        self.has_mounts = True
        self.direct = None

    def remove(self, base: str) -> BaseDriver:
        """Stop serving ``base`` from its mount and return that mount's driver."""
        try:
            driver = self._mounts.pop(base)
        except KeyError:
            raise ConfigurationError(f"nothing is mounted at {base!r}") from None
        self._deepest_first = sorted(self._mounts, key=len, reverse=True)
        self.has_mounts = bool(self._mounts)
        self.direct = None if self.has_mounts or self.closed else self.root
        return driver

    def drivers(self) -> list[BaseDriver]:
        """Return the root driver followed by every mounted driver."""
        return [self.root, *self._mounts.values()]

    def resolve(self, key: str) -> tuple[BaseDriver, str]:
        """Return the driver that owns ``key`` and the key inside that driver."""
        for base in self._deepest_first:
            if key.startswith(base) and key[len(base) : len(base) + 1] == SEPARATOR:
                return self._mounts[base], key[len(base) + 1 :]
        return self.root, key

    def sources(self, prefix: str) -> list[Source]:
        """Return the drivers a scan of ``prefix`` must read, each with its share of the scan."""
        regions = [("", self.root)] + [(base, self._mounts[base]) for base in self._mounts]
        sources: list[Source] = []
        for base, driver in regions:
            region = f"{base}{SEPARATOR}" if base else ""
            if prefix.startswith(region):
                driver_prefix = prefix[len(region) :]
            elif region.startswith(prefix):
                driver_prefix = ""
            else:
                continue
            # Deeper mounts inside this region take their keys away from it.
            shadowed = tuple(
                f"{other}{SEPARATOR}"
                for other in self._mounts
                if other != base and f"{other}{SEPARATOR}".startswith(region)
            )
            sources.append(Source(driver, driver_prefix, base, shadowed))
        return sources


async def merge_sorted(streams: list[AsyncIterator[str]]) -> AsyncIterator[str]:
    """Merge ascending streams of distinct keys into one ascending stream."""
    heap: list[tuple[str, int]] = []
    for index, stream in enumerate(streams):
        first = await anext(stream, None)
        if first is not None:
            heap.append((first, index))
    heapq.heapify(heap)
    while heap:
        key, index = heap[0]
        yield key
        following = await anext(streams[index], None)
        if following is None:
            heapq.heappop(heap)
        else:
            heapq.heapreplace(heap, (following, index))
