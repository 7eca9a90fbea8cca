"""A sorted set of keys in bounded chunks, for the memory driver's ordered scans.

One flat sorted list makes every insert or delete in the middle move the whole tail: linear in
the number of keys. Chunks of at most ``2 * CHUNK`` keys, found by bisecting the chunks' last
keys, bound that work by the chunk size.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort

__all__ = ["SortedKeys"]

CHUNK = 512


class SortedKeys:
    """Distinct ``str`` keys kept in code point order."""

    __slots__ = ("_chunks", "_lasts")

    def __init__(self) -> None:
        self._chunks: list[list[str]] = []
        # _lasts[i] is the greatest key of _chunks[i]; both lists stay sorted.
        self._lasts: list[str] = []

    def add(self, key: str) -> None:
        """Insert ``key``, which must not be present."""
        if not self._chunks:
            self._chunks.append([key])
            self._lasts.append(key)
            return
        index = min(bisect_left(self._lasts, key), len(self._lasts) - 1)
        chunk = self._chunks[index]
        insort(chunk, key)
        self._lasts[index] = chunk[-1]
        if len(chunk) > 2 * CHUNK:
            tail = chunk[CHUNK:]
            del chunk[CHUNK:]
            self._chunks.insert(index + 1, tail)
            self._lasts[index] = chunk[-1]
            self._lasts.insert(index + 1, tail[-1])

    def remove(self, key: str) -> None:
        """Remove ``key``, which must be present."""
        index = bisect_left(self._lasts, key)
        chunk = self._chunks[index]
        del chunk[bisect_left(chunk, key)]
        if chunk:
            self._lasts[index] = chunk[-1]
        else:
            del self._chunks[index]
            del self._lasts[index]

    def page(self, after: str, *, inclusive: bool, below: str | None, limit: int) -> list[str]:
        """Return up to ``limit`` keys from ``after`` on, below ``below``.

        ``after`` itself is included only if ``inclusive``.
        """
        find = bisect_left if inclusive else bisect_right
        found: list[str] = []
        index = find(self._lasts, after)
        start = -1
        while index < len(self._chunks) and len(found) < limit:
            chunk = self._chunks[index]
            start = find(chunk, after) if start < 0 else 0
            for key in chunk[start : start + limit - len(found)]:
                if below is not None and key >= below:
                    return found
                found.append(key)
            index += 1
        return found

    def drop_chunk(self) -> bool:
        """Remove the last chunk of keys (up to ``2 * CHUNK``); tell whether any keys remain."""
        if self._chunks:
            del self._chunks[-1]
            del self._lasts[-1]
        return bool(self._chunks)

    def clear(self) -> None:
        """Remove every key."""
        self._chunks.clear()
        self._lasts.clear()
