"""The memory driver: a dict plus an ordered key index, for tests and short-lived data."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from kvstore.driver import BaseDriver
from kvstore.drivers._sorted_keys import SortedKeys
from kvstore.errors import ConfigurationError
from kvstore.keys import prefix_successor
from kvstore.urls import parse_url, redact_url, take_options

__all__ = ["MemoryDriver", "from_url", "memory_driver"]

# Keys taken from the index per step of a scan: read without yielding, so writes between steps
# cannot disturb a step; each next step restarts after the last key yielded.
_SCAN_PAGE = 256


class MemoryDriver(BaseDriver):
    """Keeps values in process memory; each instance is its own empty store.

    Every operation completes without yielding to the event loop, so each one, batches
    included, is atomic.
    """

    name = "memory"
    supports_trio = True
    atomic_batches = True

    def __init__(self) -> None:
        self._values: dict[str, bytes] = {}
        # Ordered index of the keys, so that a prefix scan costs log(n) plus the matches.
        self._index = SortedKeys()

    async def get(self, key: str) -> bytes | None:
        # docstring inherited
        if self._closed:
            self.ensure_open()
        return self._values.get(key)

    async def set(self, key: str, value: bytes) -> None:
        # docstring inherited
        if self._closed:
            self.ensure_open()
        self._put(key, value)

    def _put(self, key: str, value: bytes) -> None:
        if key not in self._values:
            self._index.add(key)
        self._values[key] = value

    async def delete(self, key: str) -> None:
        # docstring inherited
        if self._closed:
            self.ensure_open()
        self._remove(key)

    def _remove(self, key: str) -> None:
        if self._values.pop(key, None) is not None:
            self._index.remove(key)

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        # docstring inherited
        self.ensure_open()
        below = prefix_successor(prefix)
        page = self._index.page(prefix, inclusive=True, below=below, limit=_SCAN_PAGE)
        while page:
            for key in page:
                yield key
            self.ensure_open()
            if len(page) < _SCAN_PAGE:
                return
            page = self._index.page(page[-1], inclusive=False, below=below, limit=_SCAN_PAGE)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        # docstring inherited
        self.ensure_open()
        values = self._values
        return [values.get(key) for key in keys]

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        # docstring inherited
        self.ensure_open()
        for key, value in items:
            self._put(key, value)

    async def delete_many(self, keys: Sequence[str]) -> None:
        # docstring inherited
        self.ensure_open()
        for key in keys:
            self._remove(key)

    async def clear(self, prefix: str = "") -> None:
        # docstring inherited
        self.ensure_open()
        if not prefix:
            self._values.clear()
            self._index.clear()
            return
        below = prefix_successor(prefix)
        while page := self._index.page(prefix, inclusive=True, below=below, limit=_SCAN_PAGE):
            for key in page:
                self._remove(key)

    async def close(self) -> None:
        # docstring inherited
        self.mark_closed()
        self._values.clear()
        self._index.clear()


def memory_driver() -> MemoryDriver:
    """Return a new, empty in-memory driver."""
    return MemoryDriver()


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
    return MemoryDriver()
