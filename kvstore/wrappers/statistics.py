"""Statistics: operation counts, errors, bytes written and read, and latency percentiles.

Each driver operation has a counter set and a ring of the latest ``samples`` latencies (integer
nanoseconds, written in place: no allocation per call beyond the sample itself). Percentiles are
computed over that ring when :meth:`Statistics.stats` takes a snapshot, so they describe recent
calls, not the whole lifetime. A scan (``keys``, ``items``) counts once, its latency running from
the call to the end of the iteration.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import ClassVar, TypeVar

from kvstore.conditional import Action, Change, Versioned
from kvstore.driver import Driver
from kvstore.errors import ConfigurationError
from kvstore.expiry import Meta
from kvstore.wrappers.base import Wrapper, closing

__all__ = ["OperationStats", "Statistics"]

T = TypeVar("T")

_OPERATIONS = (
    "get",
    "set",
    "delete",
    "keys",
    "get_many",
    "set_many",
    "delete_many",
    "clear",
    "items",
    "get_versioned",
    "commit",
    "set_if",
    "delete_if",
    "set_expiring",
    "set_many_expiring",
    "expire",
    "get_meta",
    "get_meta_many",
    "purge_expired",
)


@dataclasses.dataclass(frozen=True, slots=True)
class OperationStats:
    """One operation's numbers: calls, failed calls, bytes and latency percentiles (seconds).

    ``bytes_in`` counts value bytes written to the store, ``bytes_out`` value bytes read from
    it. ``p50``/``p90``/``p99`` are over the latest calls the ring holds (``None`` before any).
    """

    count: int
    errors: int
    bytes_in: int
    bytes_out: int
    p50: float | None
    p90: float | None
    p99: float | None


class _Recorder:
    __slots__ = ("bytes_in", "bytes_out", "count", "errors", "samples")

    def __init__(self, size: int) -> None:
        self.count = 0
        self.errors = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.samples = [0] * size

    def finish(self, started_ns: int) -> None:
        """Count one call that started at ``started_ns``, keeping its latency in the ring."""
        self.samples[self.count % len(self.samples)] = time.perf_counter_ns() - started_ns
        self.count += 1

    def snapshot(self) -> OperationStats:
        held = sorted(self.samples[: min(self.count, len(self.samples))])

        def rank(percent: int) -> float | None:
            # Nearest rank: the smallest sample with at least ``percent`` % of samples at or
            # below it, in seconds.
            if not held:
                return None
            return held[max(0, -(-len(held) * percent // 100) - 1)] / 1e9

        return OperationStats(
            self.count, self.errors, self.bytes_in, self.bytes_out, rank(50), rank(90), rank(99)
        )


class Statistics(Wrapper):
    """Count every operation, its errors and bytes, and sample its latency.

    ``samples`` (default 1024) is the size of each operation's latency ring. Take a snapshot with
    :meth:`stats`; start over with :meth:`reset`.
    """

    rank: ClassVar[int] = 20

    def __init__(self, inner: Driver, *, samples: int = 1024) -> None:
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ConfigurationError(
                f"statistics samples must be a whole number >= 1, not {samples!r}"
            )
        super().__init__(inner)
        self.samples = samples
        self._recorders = {name: _Recorder(samples) for name in _OPERATIONS}

    def stats(self) -> dict[str, OperationStats]:
        """Return a snapshot of every operation called at least once, by operation name."""
        return {
            name: recorder.snapshot()
            for name, recorder in self._recorders.items()
            if recorder.count
        }

    def reset(self) -> None:
        """Forget every count and sample."""
        self._recorders = {name: _Recorder(self.samples) for name in _OPERATIONS}

    async def _timed(self, name: str, call: Awaitable[T], written: int = 0) -> T:
        # ``call`` is the inner driver's coroutine, created but not started: timing starts here.
        recorder = self._recorders[name]
        start = time.perf_counter_ns()
        try:
            return await call
        except Exception:
            recorder.errors += 1
            raise
        finally:
            recorder.finish(start)
            recorder.bytes_in += written

    def _read(self, name: str, size: int) -> None:
        self._recorders[name].bytes_out += size

    async def get(self, key: str) -> bytes | None:
        # docstring inherited
        value = await self._timed("get", self.inner.get(key))
        if value is not None:
            self._read("get", len(value))
        return value

    async def set(self, key: str, value: bytes) -> None:
        # docstring inherited
        await self._timed("set", self.inner.set(key, value), len(value))

    async def delete(self, key: str) -> None:
        # docstring inherited
        await self._timed("delete", self.inner.delete(key))

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        # docstring inherited
        async for key in self._scan("keys", self.inner.keys(prefix), lambda key: 0):
            yield key

    async def items(self, prefix: str = "") -> AsyncIterator[tuple[str, bytes]]:
        # docstring inherited
        async for pair in self._scan("items", self.inner.items(prefix), lambda pair: len(pair[1])):
            yield pair

    async def _scan(
        self, name: str, stream: AsyncIterator[T], size: Callable[[T], int]
    ) -> AsyncIterator[T]:
        recorder = self._recorders[name]
        start = time.perf_counter_ns()
        try:
            async with closing(stream):
                async for item in stream:
                    recorder.bytes_out += size(item)
                    yield item
        except Exception:
            recorder.errors += 1
            raise
        finally:
            recorder.finish(start)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        # docstring inherited
        values = await self._timed("get_many", self.inner.get_many(keys))
        self._read("get_many", sum(len(value) for value in values if value is not None))
        return values

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        # docstring inherited
        written = sum(len(value) for _, value in items)
        await self._timed("set_many", self.inner.set_many(items), written)

    async def delete_many(self, keys: Sequence[str]) -> None:
        # docstring inherited
        await self._timed("delete_many", self.inner.delete_many(keys))

    async def clear(self, prefix: str = "") -> None:
        # docstring inherited
        await self._timed("clear", self.inner.clear(prefix))

    async def get_versioned(self, key: str) -> Versioned[bytes] | None:
        # docstring inherited
        found = await self._timed("get_versioned", self.inner.get_versioned(key))
        if found is not None:
            self._read("get_versioned", len(found.value))
        return found

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        # docstring inherited
        written = sum(
            len(change.value)
            for change in changes
            if change.action is Action.WRITE and change.value is not None
        )
        return await self._timed("commit", self.inner.commit(changes), written)

    async def set_if(self, key: str, value: bytes, expected: int | None) -> int:
        # docstring inherited
        return await self._timed("set_if", self.inner.set_if(key, value, expected), len(value))

    async def delete_if(self, key: str, expected: int) -> None:
        # docstring inherited
        await self._timed("delete_if", self.inner.delete_if(key, expected))

    async def set_expiring(self, key: str, value: bytes, ttl: float) -> None:
        # docstring inherited
        await self._timed("set_expiring", self.inner.set_expiring(key, value, ttl), len(value))

    async def set_many_expiring(self, items: Sequence[tuple[str, bytes]], ttl: float) -> None:
        # docstring inherited
        written = sum(len(value) for _, value in items)
        await self._timed("set_many_expiring", self.inner.set_many_expiring(items, ttl), written)

    async def expire(self, key: str, ttl: float | None) -> bool:
        # docstring inherited
        return await self._timed("expire", self.inner.expire(key, ttl))

    async def get_meta(self, key: str) -> Meta | None:
        # docstring inherited
        return await self._timed("get_meta", self.inner.get_meta(key))

    async def get_meta_many(self, keys: Sequence[str]) -> list[Meta | None]:
        # docstring inherited
        return await self._timed("get_meta_many", self.inner.get_meta_many(keys))

    async def purge_expired(self, limit: int = 1000) -> int:
        # docstring inherited
        return await self._timed("purge_expired", self.inner.purge_expired(limit))
