"""A minimal third-party driver: a dict, kept sorted on demand.

Writing a driver takes one class with five methods; :class:`~kvstore.driver.BaseDriver` derives
the batch operations. ``tests/test_example_driver.py`` runs the shipped conformance suite on it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from kvstore.driver import BaseDriver


class DictDriver(BaseDriver):
    """Stores values in a plain dict; scans sort the matching keys."""

    name = "dict"
    supports_trio = True

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}

    async def get(self, key: str) -> bytes | None:
        """Return the value under ``key``, or ``None``."""
        self.ensure_open()
        return self._data.get(key)

    async def set(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``."""
        self.ensure_open()
        self._data[key] = value

    async def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        self.ensure_open()
        self._data.pop(key, None)

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Yield matching keys in code point order (a snapshot; fine for an example)."""
        self.ensure_open()
        for key in sorted(key for key in self._data if key.startswith(prefix)):
            yield key

    async def close(self) -> None:
        """Forget everything; later use raises ``StorageClosed``."""
        self.mark_closed()
        self._data.clear()
