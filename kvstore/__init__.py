"""kvstore: async key-value storage over memory, SQLite, files, Redis, MongoDB, PostgreSQL, MySQL.

Start with :func:`create_storage`::

    async with create_storage("sqlite:///data.db") as storage:
        await storage.set("users:alice", {"name": "Alice"})
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

# The errors are imported eagerly: they are small, and ``eventqueue`` and ``entities`` descend
# from them. Everything else loads on first use (PEP 562), so importing ``kvstore.errors`` (or
# ``kvstore.urls``) from the queue does not pull in the storage layer or importlib.metadata.
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
    PersistenceError,
    SerializationError,
    StorageClosed,
    UnknownScheme,
)

# Library code only emits records, on loggers under "kvstore" (kvstore.redis, kvstore.sqlite,
# ...): one NullHandler here keeps them off stderr until the application configures logging.
logging.getLogger("kvstore").addHandler(logging.NullHandler())

if TYPE_CHECKING:
    from collections.abc import Sequence

    from kvstore.conditional import ANY_VERSION, Change, Versioned
    from kvstore.driver import BaseDriver, Driver
    from kvstore.expiry import Meta
    from kvstore.registry import driver_from_url, register_driver
    from kvstore.storage import Storage
    from kvstore.wrappers import Layer, Wrapper

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
    "PersistenceError",
    "SerializationError",
    "Storage",
    "StorageClosed",
    "UnknownScheme",
    "Versioned",
    "__version__",
    "create_storage",
    "driver_from_url",
    "register_driver",
]

_LAZY = {
    "ANY_VERSION": "kvstore.conditional",
    "Change": "kvstore.conditional",
    "Versioned": "kvstore.conditional",
    "BaseDriver": "kvstore.driver",
    "Driver": "kvstore.driver",
    "Meta": "kvstore.expiry",
    "driver_from_url": "kvstore.registry",
    "register_driver": "kvstore.registry",
    "Storage": "kvstore.storage",
}


def __getattr__(name: str) -> Any:
    """Load the public names outside :mod:`kvstore.errors` on first use (PEP 562)."""
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("agentx-persistence")
        except PackageNotFoundError:  # only in a checkout that was never installed
            found = "0+unknown"
        globals()["__version__"] = found
        return found
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'kvstore' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def create_storage(
    url_or_driver: str | Driver | None = None,
    *,
    wrappers: Sequence[Layer | type[Wrapper]] = (),
) -> Storage:
    """Return a :class:`Storage` for a URL or a driver; it connects on first use.

    URLs: ``memory://``, ``sqlite:///relative.db``, ``sqlite:////absolute.db``,
    ``sqlite:///:memory:``, ``file:///dir`` or another fsspec URL, ``redis://``, ``mongodb://``,
    ``postgresql://`` / ``postgres://``, ``mysql://``, or a scheme a third party registered.
    ``None`` gives the default SQLite file, ``~/.agentx/data/agentx.db`` (``AGENTX_DIR`` moves it).

    ``wrappers`` (wrapper classes, or ``Wrapper.using(...)`` with options) and the wrapper
    options of a URL (``?compress=zstd&read_only=true``, see :mod:`kvstore.wrappers`) wrap the
    driver in the recommended order, whatever order they are given in.
    """
    from kvstore.registry import driver_from_url
    from kvstore.storage import Storage

    layers: list[Layer | type[Wrapper]] = list(wrappers)
    driver: Driver
    if url_or_driver is None:
        from kvstore.drivers.sqlite import sqlite_driver

        driver = sqlite_driver()
    elif isinstance(url_or_driver, str):
        url = url_or_driver
        if "?" in url:  # only then can it carry wrapper options
            from kvstore.wrappers.install import layers_from_options, split_wrapper_options

            url, options = split_wrapper_options(url)
            layers += layers_from_options(options)
        driver = driver_from_url(url)
    else:
        driver = url_or_driver
    if layers:
        from kvstore.wrappers import apply_layers

        driver = apply_layers(driver, layers)
    return Storage(driver)
