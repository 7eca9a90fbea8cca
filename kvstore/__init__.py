"""kvstore: async key-value storage over memory, SQLite, files, Redis, MongoDB, PostgreSQL, MySQL.

Start with :func:`create_storage`::

    async with create_storage("sqlite:///data.db") as storage:
        await storage.set("users:alice", {"name": "Alice"})
"""

from __future__ import annotations

from kvstore.conditional import ANY_VERSION, Change, Versioned
from kvstore.driver import BaseDriver, Driver
from kvstore.errors import (
    BackendError,
    BackendUnavailable,
    ConfigurationError,
    Conflict,
    InvalidKey,
    InvalidTTL,
    KVStoreError,
    MissingDependency,
    NotSupported,
    SerializationError,
    StorageClosed,
    UnknownScheme,
)
from kvstore.expiry import Meta
from kvstore.registry import driver_from_url, register_driver
from kvstore.storage import Storage

__all__ = [
    "ANY_VERSION",
    "BackendError",
    "BackendUnavailable",
    "BaseDriver",
    "Change",
    "ConfigurationError",
    "Conflict",
    "Driver",
    "InvalidKey",
    "InvalidTTL",
    "KVStoreError",
    "Meta",
    "MissingDependency",
    "NotSupported",
    "SerializationError",
    "Storage",
    "StorageClosed",
    "UnknownScheme",
    "Versioned",
    "create_storage",
    "register_driver",
]


def create_storage(url_or_driver: str | Driver | None = None) -> Storage:
    """Return a :class:`Storage` for a URL or a driver; it connects on first use.

    URLs: ``memory://``, ``sqlite:///relative.db``, ``sqlite:////absolute.db``,
    ``sqlite:///:memory:``, ``file:///dir`` or another fsspec URL, ``redis://``, ``mongodb://``,
    ``postgresql://`` / ``postgres://``, ``mysql://``, or a scheme a third party registered.
    ``None`` gives the default SQLite file, ``~/.agentx/data/agentx.db`` (``AGENTX_DIR`` moves it).
    """
    if url_or_driver is None:
        from kvstore.drivers.sqlite import sqlite_driver

        return Storage(sqlite_driver())
    if isinstance(url_or_driver, str):
        return Storage(driver_from_url(url_or_driver))
    return Storage(url_or_driver)
