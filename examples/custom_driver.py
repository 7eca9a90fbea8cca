"""A minimal third-party driver: a dict for the values and a sorted list for the scans.

Writing a driver takes one class with five methods; :class:`~kvstore.driver.BaseDriver` derives
the batch operations. ``tests/test_example_driver.py`` runs the shipped conformance suite on it.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import AsyncIterator

from kvstore.driver import BaseDriver


class DictDriver(BaseDriver):
    """Stores values in a dict; a sorted list of the keys makes a scan seek to its prefix."""

    name = "dict"
    supports_trio = True

    def __init__(self) -> None:
        self._values: dict[str, bytes] = {}
        self._sorted: list[str] = []

    async def get(self, key: str) -> bytes | None:
        """Return the value under ``key``, or ``None``."""
        self.ensure_open()
        return self._values.get(key)

    async def set(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``."""
        self.ensure_open()
        if key not in self._values:
            insort(self._sorted, key)
        self._values[key] = value

    async def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        self.ensure_open()
        if self._values.pop(key, None) is not None:
            del self._sorted[bisect_left(self._sorted, key)]

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Yield matching keys in code point order, one at a time, from the prefix on."""
        self.ensure_open()
        position = bisect_left(self._sorted, prefix)
        while position < len(self._sorted) and self._sorted[position].startswith(prefix):
            key = self._sorted[position]
            yield key
            self.ensure_open()
            # The caller may have written while we were paused: find our place again.
            position = bisect_right(self._sorted, key)

    async def close(self) -> None:
        """Forget everything; later use raises ``StorageClosed``."""
        self.mark_closed()
        self._values.clear()
        self._sorted.clear()


def from_url(url: str) -> DictDriver:
    """Build a driver for a ``dict://`` URL: the registry passes the whole URL string."""
    return DictDriver()
