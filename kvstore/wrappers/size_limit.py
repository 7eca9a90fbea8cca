"""Value-size limit: a write with a value over the limit raises :class:`ValueTooLarge`.

The check runs before anything is written; a batch is checked whole first, so a batch holding
one value over the limit writes nothing. The size is the stored encoding's (the JSON text that
:class:`~kvstore.storage.Storage` writes), before the compression or encryption beneath it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar

from kvstore.conditional import Action, Change
from kvstore.driver import Driver
from kvstore.errors import ConfigurationError
from kvstore.wrappers.base import Wrapper
from kvstore.wrappers.errors import ValueTooLarge

__all__ = ["ValueSizeLimit"]


class ValueSizeLimit(Wrapper):
    """Refuse values longer than ``limit`` bytes with :class:`ValueTooLarge`, writing nothing."""

    rank: ClassVar[int] = 40

    def __init__(self, inner: Driver, *, limit: int) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigurationError(f"a value-size limit is a whole number >= 1, not {limit!r}")
        super().__init__(inner)
        self.limit = limit

    def _check(self, items: Iterable[tuple[str, bytes | None]]) -> None:
        limit = self.limit
        for key, value in items:
            if value is not None and len(value) > limit:
                self.ensure_open()
                raise ValueTooLarge(key, size=len(value), limit=limit)

    async def set(self, key: str, value: bytes) -> None:
        # docstring inherited
        if len(value) > self.limit:
            self._check([(key, value)])
        await self.inner.set(key, value)

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        # docstring inherited
        self._check(items)
        await self.inner.set_many(items)

    async def set_expiring(self, key: str, value: bytes, ttl: float) -> None:
        # docstring inherited
        if len(value) > self.limit:
            self._check([(key, value)])
        await self.inner.set_expiring(key, value, ttl)

    async def set_many_expiring(self, items: Sequence[tuple[str, bytes]], ttl: float) -> None:
        # docstring inherited
        self._check(items)
        await self.inner.set_many_expiring(items, ttl)

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        # docstring inherited
        self._check((c.key, c.value) for c in changes if c.action is Action.WRITE)
        return await self.inner.commit(changes)

    async def set_if(self, key: str, value: bytes, expected: int | None) -> int:
        # docstring inherited
        if len(value) > self.limit:
            self._check([(key, value)])
        return await self.inner.set_if(key, value, expected)
