"""The typed errors the wrappers raise, under :class:`~kvstore.errors.KVStoreError`."""

from __future__ import annotations

from kvstore.errors import KVStoreError

__all__ = ["DecryptionError", "StorageReadOnly", "UnreadableValue", "ValueTooLarge"]


class StorageReadOnly(KVStoreError):
    """A write reached a read-only storage; nothing was written.

    ``operation`` names the refused driver operation (``"set"``, ``"clear"``...).
    """

    def __init__(self, operation: str, *, driver: str) -> None:
        self.operation = operation
        self.driver = driver
        super().__init__(f"the storage over the {driver} driver is read-only: {operation} refused")


class ValueTooLarge(KVStoreError, ValueError):
    """A value is larger than the storage's value-size limit; nothing was written.

    ``key`` is the key as the driver saw it, ``size`` the value's size in bytes (its stored
    encoding, before any compression or encryption beneath the limit) and ``limit`` the limit.
    """

    def __init__(self, key: str, *, size: int, limit: int) -> None:
        self.key = key
        self.size = size
        self.limit = limit
        super().__init__(
            f"the value of {key!r} is {size} bytes, over the limit of {limit}: nothing was written"
        )


class UnreadableValue(KVStoreError):
    """A stored value cannot be decoded by a wrapper: it is corrupt, or another configuration
    wrote it. ``key`` is the key as the driver saw it."""

    def __init__(self, message: str, *, key: str) -> None:
        self.key = key
        super().__init__(message)


class DecryptionError(UnreadableValue):
    """A value cannot be decrypted: its key id is not in the keyring, the key is wrong, the value
    was altered or copied from another key, or it was never encrypted.

    ``key_id`` names the key id the value says it was encrypted with (``None`` when the value
    carries none); never the key itself.
    """

    def __init__(self, message: str, *, key: str, key_id: str | None = None) -> None:
        self.key_id = key_id
        super().__init__(message, key=key)
