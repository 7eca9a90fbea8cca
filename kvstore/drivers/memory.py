"""The memory driver: a dict plus a sorted key list, for tests and short-lived data."""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import AsyncIterator, Sequence

from kvstore.driver import BaseDriver
from kvstore.keys import prefix_successor

__all__ = ["MemoryDriver", "from_url", "memory_driver"]


class MemoryDriver(BaseDriver):
    """Keeps values in process memory; each instance is its own empty store."""

    name = "memory"
    supports_trio = True

    def __init__(self) -> None:
        self._values: dict[str, bytes] = {}
        # Sorted copy of the keys, so that a prefix scan costs log(n) plus the matches.
        self._sorted: list[str] = []

    async def get(self, key: str) -> bytes | None:
        # docstring inherited
        self._ensure_open()
        return self._values.get(key)

    async def set(self, key: str, value: bytes) -> None:
        # docstring inherited
        self._ensure_open()
        self._put(key, value)

    def _put(self, key: str, value: bytes) -> None:
        if key not in self._values:
            insort(self._sorted, key)
        self._values[key] = value

    async def delete(self, key: str) -> None:
        # docstring inherited
        self._ensure_open()
        self._remove(key)

    def _remove(self, key: str) -> None:
        if self._values.pop(key, None) is not None:
            del self._sorted[bisect_left(self._sorted, key)]

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        # docstring inherited
        self._ensure_open()
        end = prefix_successor(prefix)
        position = bisect_left(self._sorted, prefix)
        # Re-find the position after each yield: the caller may write between steps.
        while position < len(self._sorted):
            key = self._sorted[position]
            if end is not None and key >= end:
                return
            yield key
            self._ensure_open()
            position = bisect_right(self._sorted, key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        # docstring inherited
        self._ensure_open()
        values = self._values
        return [values.get(key) for key in keys]

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        # docstring inherited; atomic, as nothing else runs between these steps
        self._ensure_open()
        for key, value in items:
            self._put(key, value)

    async def delete_many(self, keys: Sequence[str]) -> None:
        # docstring inherited; atomic, as nothing else runs between these steps
        self._ensure_open()
        for key in keys:
            self._remove(key)

    async def clear(self, prefix: str = "") -> None:
        # docstring inherited
        self._ensure_open()
        start = bisect_left(self._sorted, prefix)
        end_key = prefix_successor(prefix)
        stop = len(self._sorted) if end_key is None else bisect_left(self._sorted, end_key)
        for key in self._sorted[start:stop]:
            del self._values[key]
        del self._sorted[start:stop]

    async def close(self) -> None:
        # docstring inherited
        self._closed = True
        self._values.clear()
        self._sorted.clear()


def memory_driver() -> MemoryDriver:
    """Return a new, empty in-memory driver."""
    return MemoryDriver()


def from_url(url: str) -> MemoryDriver:
    """Build a memory driver from ``memory://`` (anything after the scheme is ignored)."""
    return MemoryDriver()
