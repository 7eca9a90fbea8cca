"""Wrappers: drivers that wrap a driver to add compression, encryption, limits and telemetry.

Compose them in code, innermost first::

    driver = Compression(Encryption(sqlite_driver("x.db"), keys=keys, current="k1"))

or let :func:`~kvstore.create_storage` apply them in the recommended order, from its
``wrappers`` argument (``[Compression, ValueSizeLimit.using(limit=1 << 20)]``) or from URL
options (``sqlite:///x.db?compress=zstd&max_value_size=1048576``; see
:mod:`kvstore.wrappers.install`). The recommended order, outermost first: tracing, statistics,
read-only, value-size limit, compression, encryption, retry, then the driver.

Each wrapper offers conditional writes, expiry, atomic batches and trio exactly when the driver
it wraps does. Without wrappers nothing is added to any call.
"""

from __future__ import annotations

from kvstore.wrappers.base import Layer, ValueCodec, Wrapper, apply_layers, find_wrapper
from kvstore.wrappers.compression import Compression
from kvstore.wrappers.encryption import Encryption, parse_keyring
from kvstore.wrappers.errors import (
    DecryptionError,
    StorageReadOnly,
    UnreadableValue,
    ValueTooLarge,
)
from kvstore.wrappers.read_only import ReadOnly
from kvstore.wrappers.retry import Retry
from kvstore.wrappers.size_limit import ValueSizeLimit
from kvstore.wrappers.statistics import OperationStats, Statistics
from kvstore.wrappers.tracing import Tracing

__all__ = [
    "Compression",
    "DecryptionError",
    "Encryption",
    "Layer",
    "OperationStats",
    "ReadOnly",
    "Retry",
    "Statistics",
    "StorageReadOnly",
    "Tracing",
    "UnreadableValue",
    "ValueCodec",
    "ValueSizeLimit",
    "ValueTooLarge",
    "Wrapper",
    "apply_layers",
    "find_wrapper",
    "parse_keyring",
]
