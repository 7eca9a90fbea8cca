"""Retry: operations that fail with :class:`BackendUnavailable` are tried again, with backoff.

Attempt ``n`` (from 1) that fails waits a random time between 0 and ``min(max_delay, base_delay *
2 ** (n - 1))`` ("full jitter", so that clients that failed together do not retry together)
before the next, up to ``attempts`` attempts in all and never past ``deadline`` seconds after the
first began: a wait that would end past it is not started, and the last error is raised. An
attempt in progress is never cut short (cancelling a write half-way helps no one). Each retry
is logged at WARNING on the ``kvstore.retry`` logger.

What is retried: every read; every unconditional write (``set``, batches, deletes, ``clear``,
``expire``, expiring writes, ``purge_expired``), since doing one twice leaves the store as doing
it once; and a ``commit`` whose every change is unconditional (``ANY_VERSION``). Scans resume
after the last key they yielded (keys come in ascending order), so nothing is yielded twice;
their attempts and deadline count from the last key yielded, so that a long scan survives
failures spread along it. ``items`` uses the driver's own scan until it fails, then goes on with
resumed keys and retried pages of values.

What is not: a conditional write (``set_if``, ``delete_if``, a ``commit`` with a condition).
When it fails with ``BackendUnavailable`` its outcome is unknown: it may have been applied
before the connection dropped, and trying it again would then report a ``Conflict`` for a write
that succeeded (or, for a create, make the caller think someone else created the key). The
error reaches the caller, who reads the key again to learn what happened.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import ClassVar, TypeVar

import anyio

from kvstore.conditional import ANY_VERSION, Change, Versioned
from kvstore.driver import Driver, read_in_pages
from kvstore.errors import BackendUnavailable, ConfigurationError
from kvstore.expiry import Meta
from kvstore.logs import silent_until_configured
from kvstore.wrappers.base import Wrapper, closing

__all__ = ["Retry"]

T = TypeVar("T")

logger = logging.getLogger("kvstore.retry")
silent_until_configured("kvstore.retry")


class _Attempts:
    """The attempts of one operation: counts them and waits between them."""

    __slots__ = ("attempt", "retry", "started")

    def __init__(self, retry: Retry) -> None:
        self.retry = retry
        self.attempt = 1
        self.started = time.monotonic()

    async def wait_or_raise(self, operation: str, error: BackendUnavailable) -> None:
        """Wait before the next attempt, or re-raise ``error`` when none is left."""
        retry = self.retry
        if self.attempt >= retry.attempts:
            raise error
        ceiling = min(retry.max_delay, retry.base_delay * 2 ** (self.attempt - 1))
        delay = retry.random() * ceiling
        if time.monotonic() - self.started + delay > retry.deadline:
            raise error
        if logger.isEnabledFor(logging.WARNING):
            # The message, not the error: a record that handlers keep must not hold the
            # error's traceback (and every frame it references) alive.
            logger.warning(
                "%s on the %s driver failed (attempt %d of %d): %s; retrying in %.3f s",
                operation,
                retry.name,
                self.attempt,
                retry.attempts,
                str(error),
                delay,
            )
        await anyio.sleep(delay)
        self.attempt += 1


class Retry(Wrapper):
    """Retry idempotent operations that raise :class:`BackendUnavailable` (module docstring).

    ``attempts`` (default 5) counts the first; ``deadline`` (default 10 s) bounds the whole
    operation's retrying; waits grow from ``base_delay`` (0.05 s) to at most ``max_delay`` (2 s).
    ``random`` returns a float in [0, 1) and picks each wait (tests pass their own).
    """

    rank: ClassVar[int] = 70

    def __init__(
        self,
        inner: Driver,
        *,
        attempts: int = 5,
        deadline: float = 10.0,
        base_delay: float = 0.05,
        max_delay: float = 2.0,
        random: Callable[[], float] = random.random,
    ) -> None:
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ConfigurationError(
                f"retry attempts must be a whole number >= 1, not {attempts!r}"
            )
        for name, value in (
            ("deadline", deadline),
            ("base_delay", base_delay),
            ("max_delay", max_delay),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigurationError(f"retry {name} must be seconds > 0, not {value!r}")
        super().__init__(inner)
        self.attempts = attempts
        self.deadline = float(deadline)
        self.base_delay = float(base_delay)
        self.max_delay = float(max_delay)
        self.random = random

    async def _call(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        attempts = _Attempts(self)
        while True:
            try:
                return await call()
            except BackendUnavailable as error:
                await attempts.wait_or_raise(operation, error)

    async def _keys_after(
        self, prefix: str, last: str | None, attempts: _Attempts
    ) -> AsyncIterator[str]:
        # Keys come in ascending code point order: after a failure, a new scan skips every key
        # up to the last one yielded. Attempts (and the deadline) count from the last progress,
        # so a long scan survives failures spread along it, not a backend that stays down.
        while True:
            progressed = False
            try:
                async with closing(self.inner.keys(prefix)) as stream:
                    async for key in stream:
                        if last is not None and key <= last:
                            continue
                        last = key
                        progressed = True
                        yield key
                return
            except BackendUnavailable as error:
                if progressed:
                    attempts = _Attempts(self)
                await attempts.wait_or_raise("keys", error)

    async def get(self, key: str) -> bytes | None:
        # docstring inherited
        return await self._call("get", lambda: self.inner.get(key))

    async def set(self, key: str, value: bytes) -> None:
        # docstring inherited
        await self._call("set", lambda: self.inner.set(key, value))

    async def delete(self, key: str) -> None:
        # docstring inherited
        await self._call("delete", lambda: self.inner.delete(key))

    def keys(self, prefix: str = "") -> AsyncIterator[str]:
        # docstring inherited
        return self._keys_after(prefix, None, _Attempts(self))

    async def items(self, prefix: str = "") -> AsyncIterator[tuple[str, bytes]]:
        # docstring inherited
        # The driver's own scan while it works; after a failure, the rest is read as resumed
        # keys and retried pages of values, so no value is read twice.
        last: str | None = None
        try:
            async with closing(self.inner.items(prefix)) as stream:
                async for key, value in stream:
                    last = key
                    yield key, value
            return
        except BackendUnavailable as error:
            attempts = _Attempts(self)
            await attempts.wait_or_raise("items", error)
        rest = read_in_pages(self._keys_after(prefix, last, attempts), self.get_many)
        async with closing(rest):
            async for pair in rest:
                yield pair

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        # docstring inherited
        return await self._call("get_many", lambda: self.inner.get_many(keys))

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        # docstring inherited
        await self._call("set_many", lambda: self.inner.set_many(items))

    async def delete_many(self, keys: Sequence[str]) -> None:
        # docstring inherited
        await self._call("delete_many", lambda: self.inner.delete_many(keys))

    async def clear(self, prefix: str = "") -> None:
        # docstring inherited
        await self._call("clear", lambda: self.inner.clear(prefix))

    async def get_versioned(self, key: str) -> Versioned[bytes] | None:
        # docstring inherited
        return await self._call("get_versioned", lambda: self.inner.get_versioned(key))

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        # docstring inherited
        if any(change.expected is not ANY_VERSION for change in changes):
            return await self.inner.commit(changes)  # outcome unknown on failure: no retry
        return await self._call("commit", lambda: self.inner.commit(changes))

    async def set_if(self, key: str, value: bytes, expected: int | None) -> int:
        # docstring inherited
        return await self.inner.set_if(key, value, expected)  # conditional: no retry

    async def delete_if(self, key: str, expected: int) -> None:
        # docstring inherited
        await self.inner.delete_if(key, expected)  # conditional: no retry

    async def set_expiring(self, key: str, value: bytes, ttl: float) -> None:
        # docstring inherited
        await self._call("set_expiring", lambda: self.inner.set_expiring(key, value, ttl))

    async def set_many_expiring(self, items: Sequence[tuple[str, bytes]], ttl: float) -> None:
        # docstring inherited
        await self._call("set_many_expiring", lambda: self.inner.set_many_expiring(items, ttl))

    async def expire(self, key: str, ttl: float | None) -> bool:
        # docstring inherited
        return await self._call("expire", lambda: self.inner.expire(key, ttl))

    async def get_meta(self, key: str) -> Meta | None:
        # docstring inherited
        return await self._call("get_meta", lambda: self.inner.get_meta(key))

    async def get_meta_many(self, keys: Sequence[str]) -> list[Meta | None]:
        # docstring inherited
        return await self._call("get_meta_many", lambda: self.inner.get_meta_many(keys))

    async def purge_expired(self, limit: int = 1000) -> int:
        # docstring inherited
        return await self._call("purge_expired", lambda: self.inner.purge_expired(limit))
