"""Read-only: every write is refused with :class:`StorageReadOnly` before it reaches the driver."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, NoReturn

from kvstore.conditional import Change
from kvstore.wrappers.base import Wrapper
from kvstore.wrappers.errors import StorageReadOnly

__all__ = ["ReadOnly"]


class ReadOnly(Wrapper):
    """Pass reads through; refuse every write, delete, clear, expiry change and purge.

    A refused operation raises :class:`~kvstore.wrappers.errors.StorageReadOnly` (after
    :class:`~kvstore.errors.StorageClosed` once closed) and writes nothing.
    """

    rank: ClassVar[int] = 30

    def _refuse(self, operation: str) -> NoReturn:
        self.ensure_open()
        raise StorageReadOnly(operation, driver=self.name)

    async def set(self, key: str, value: bytes) -> None:
        # docstring inherited
        self._refuse("set")

    async def delete(self, key: str) -> None:
        # docstring inherited
        self._refuse("delete")

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        # docstring inherited
        self._refuse("set_many")

    async def delete_many(self, keys: Sequence[str]) -> None:
        # docstring inherited
        self._refuse("delete_many")

    async def clear(self, prefix: str = "") -> None:
        # docstring inherited
        self._refuse("clear")

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        # docstring inherited
        self._refuse("commit")

    async def set_if(self, key: str, value: bytes, expected: int | None) -> int:
        # docstring inherited
        self._refuse("set_if")

    async def delete_if(self, key: str, expected: int) -> None:
        # docstring inherited
        self._refuse("delete_if")

    async def set_expiring(self, key: str, value: bytes, ttl: float) -> None:
        # docstring inherited
        self._refuse("set_expiring")

    async def set_many_expiring(self, items: Sequence[tuple[str, bytes]], ttl: float) -> None:
        # docstring inherited
        self._refuse("set_many_expiring")

    async def expire(self, key: str, ttl: float | None) -> bool:
        # docstring inherited
        self._refuse("expire")

    async def purge_expired(self, limit: int = 1000) -> int:
        # docstring inherited
        self._refuse("purge_expired")
