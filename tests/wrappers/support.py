"""Helpers shared by the wrapper tests: keys, keyring text and a fault injector."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Sequence
from contextvars import ContextVar

from kvstore.conditional import ANY_VERSION, Change, Versioned
from kvstore.driver import Driver, read_in_pages
from kvstore.errors import BackendUnavailable
from kvstore.expiry import Meta
from kvstore.wrappers import Wrapper
from kvstore.wrappers.base import closing

# Whether the current task's last call to a Flaky driver failed (each task has its own value).
_FAILED_LAST: ContextVar[bool] = ContextVar("_FAILED_LAST", default=False)

KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))
KEYRING = {"k1": KEY_A}


def keyring_text(*entries: tuple[str, bytes]) -> str:
    """The ``ID:BASE64KEY,...`` text an ``encryption_keys_env`` variable holds."""
    return ",".join(f"{key_id}:{base64.b64encode(key).decode()}" for key_id, key in entries)


class Flaky(Wrapper):
    """Fails every ``every``-th retryable call with BackendUnavailable before doing anything.

    A scan fails after yielding ``every // 2`` items, every ``every``-th scan. Conditional writes
    never fail here: the retry wrapper does not retry them, by design. A task's call right after
    one that failed never fails (tracked per task), so concurrent tasks cannot fall into step
    with the failures and exhaust a retry's attempts: test_retry checks exhaustion.
    """

    def __init__(self, inner: Driver, *, every: int = 7) -> None:
        super().__init__(inner)
        self.every = every
        self.calls = 0
        self.failures = 0

    def _due(self) -> bool:
        self.calls += 1
        if _FAILED_LAST.get():
            _FAILED_LAST.set(False)
            return False
        if self.calls % self.every:
            return False
        _FAILED_LAST.set(True)
        self.failures += 1
        return True

    def _maybe_fail(self) -> None:
        self.ensure_open()
        if self._due():
            raise BackendUnavailable("injected failure", driver=self.name)

    async def get(self, key: str) -> bytes | None:
        self._maybe_fail()
        return await self.inner.get(key)

    async def set(self, key: str, value: bytes) -> None:
        self._maybe_fail()
        await self.inner.set(key, value)

    async def delete(self, key: str) -> None:
        self._maybe_fail()
        await self.inner.delete(key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self._maybe_fail()
        return await self.inner.get_many(keys)

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        self._maybe_fail()
        await self.inner.set_many(items)

    async def delete_many(self, keys: Sequence[str]) -> None:
        self._maybe_fail()
        await self.inner.delete_many(keys)

    async def clear(self, prefix: str = "") -> None:
        self._maybe_fail()
        await self.inner.clear(prefix)

    async def get_versioned(self, key: str) -> Versioned[bytes] | None:
        self._maybe_fail()
        return await self.inner.get_versioned(key)

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        if all(change.expected is ANY_VERSION for change in changes):
            self._maybe_fail()
        return await self.inner.commit(changes)

    async def set_expiring(self, key: str, value: bytes, ttl: float) -> None:
        self._maybe_fail()
        await self.inner.set_expiring(key, value, ttl)

    async def set_many_expiring(self, items: Sequence[tuple[str, bytes]], ttl: float) -> None:
        self._maybe_fail()
        await self.inner.set_many_expiring(items, ttl)

    async def expire(self, key: str, ttl: float | None) -> bool:
        self._maybe_fail()
        return await self.inner.expire(key, ttl)

    async def get_meta(self, key: str) -> Meta | None:
        self._maybe_fail()
        return await self.inner.get_meta(key)

    async def purge_expired(self, limit: int = 1000) -> int:
        self._maybe_fail()
        return await self.inner.purge_expired(limit)

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        self.ensure_open()
        fail_at = self.every // 2 if self._due() else -1
        yielded = 0
        async with closing(self.inner.keys(prefix)) as stream:
            async for key in stream:
                if yielded == fail_at:
                    raise BackendUnavailable("injected failure mid-scan", driver=self.name)
                yielded += 1
                yield key

    def items(self, prefix: str = "") -> AsyncIterator[tuple[str, bytes]]:
        # Through this driver's own keys and get_many, so that scans fail here too.
        return read_in_pages(self.keys(prefix), self.get_many)
