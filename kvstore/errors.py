"""The typed errors every part of kvstore raises, and the root the whole distribution shares.

Callers catch these, never a backend client's own exceptions: a driver translates what its client
raises into one of them, and says which driver and which server it was talking to (never a
password).

:class:`PersistenceError` is the one root: every error that ``kvstore``, ``entities`` and
``eventqueue`` raise on purpose descends from it, so ``except PersistenceError`` catches them all.
Each also keeps its standard-library base (``ValueError``, ``LookupError``, ``ImportError``,
``NotImplementedError``) so that existing ``except`` clauses keep working.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "ConfigurationError",
    "Conflict",
    "InvalidKey",
    "InvalidTTL",
    "KVStoreError",
    "MissingDependency",
    "NotSupported",
    "PersistenceError",
    "SerializationError",
    "StorageClosed",
    "UnknownScheme",
]


class PersistenceError(Exception):
    """Root of every error that ``kvstore``, ``entities`` and ``eventqueue`` raise on purpose."""


class KVStoreError(PersistenceError):
    """Base class of every error kvstore raises on purpose."""


class InvalidKey(KVStoreError, ValueError):
    """A key or prefix breaks the key rules; nothing was read or written."""


class InvalidTTL(KVStoreError, ValueError):
    """A TTL is not positive, finite seconds (or a ``timedelta``); nothing was written."""


class SerializationError(KVStoreError, ValueError):
    """A value cannot be stored so that it reads back equal; nothing was written."""


class ConfigurationError(KVStoreError, ValueError):
    """A driver or storage was given settings it cannot use (a bad table name, URL, pool size)."""


class StorageClosed(KVStoreError):
    """The storage or driver was used after ``close()``."""


class BackendError(KVStoreError):
    """The backend refused or failed an operation.

    ``driver`` names the driver (``"postgresql"``) and ``where`` the place it talks to, with any
    password already removed.
    """

    def __init__(self, message: str, *, driver: str, where: str = "") -> None:
        self.driver = driver
        self.where = where
        location = f" at {where}" if where else ""
        super().__init__(f"{driver}{location}: {message}")


class BackendUnavailable(BackendError):
    """The backend cannot be reached (refused, timed out, lost); retrying later may succeed."""


class Conflict(KVStoreError):
    """A conditional write or delete found a key absent, present, or at another version than it
    required; nothing was written.

    ``keys`` names the keys whose condition failed, as the caller spelled them.
    """

    def __init__(self, message: str, *, keys: tuple[str, ...] = ()) -> None:
        self.keys = keys
        super().__init__(message)


class NotSupported(KVStoreError, NotImplementedError):
    """The driver does not offer an optional capability (``capability``) that a call needs.

    Nothing was read or written. ``driver`` names the driver.
    """

    def __init__(self, capability: str, *, driver: str) -> None:
        self.capability = capability
        self.driver = driver
        super().__init__(f"the {driver} driver does not support {capability}")


class UnknownScheme(KVStoreError, ValueError):
    """``create_storage`` was given a URL whose scheme no installed driver handles."""


class MissingDependency(KVStoreError, ImportError):
    """A driver needs an optional dependency that is not installed; the message names the extra."""
