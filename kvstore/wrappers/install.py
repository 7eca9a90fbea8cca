"""Wrappers named by URL options, peeled off the URL before the driver sees it.

The options (any storage URL may carry them; the driver never sees them):

=========================  ===================================================================
``compress=zstd``          :class:`~kvstore.wrappers.compression.Compression`; with
                           ``compress_min_size=BYTES`` and ``compress_level=1..22``
``encryption_keys_env=V``  :class:`~kvstore.wrappers.encryption.Encryption` with the keyring in
                           the environment variable ``V`` (``ID:BASE64KEY,...``, the first one
                           current). A key itself never goes in a URL.
``read_only=true``         :class:`~kvstore.wrappers.read_only.ReadOnly`
``max_value_size=BYTES``   :class:`~kvstore.wrappers.size_limit.ValueSizeLimit`
``retry=ATTEMPTS``         :class:`~kvstore.wrappers.retry.Retry`; with ``retry_deadline=SECONDS``
``stats=true``             :class:`~kvstore.wrappers.statistics.Statistics`
``trace=true``             :class:`~kvstore.wrappers.tracing.Tracing`
=========================  ===================================================================
"""

from __future__ import annotations

import os
from typing import Any, Final

from kvstore.errors import ConfigurationError
from kvstore.urls import (
    boolean,
    positive_float,
    positive_int,
    split_options,
    take_options,
)
from kvstore.wrappers.base import Layer
from kvstore.wrappers.compression import Compression
from kvstore.wrappers.encryption import Encryption, parse_keyring
from kvstore.wrappers.read_only import ReadOnly
from kvstore.wrappers.retry import Retry
from kvstore.wrappers.size_limit import ValueSizeLimit
from kvstore.wrappers.statistics import Statistics
from kvstore.wrappers.tracing import Tracing

__all__ = ["WRAPPER_OPTIONS", "layers_from_options", "split_wrapper_options"]


def _codec(text: str) -> str:
    if text.strip().lower() != "zstd":
        raise ValueError(f"the one compression is zstd, not {text!r}")
    return "zstd"


def _variable(text: str) -> str:
    if not text or "=" in text or "\x00" in text:
        raise ValueError(f"not an environment variable name: {text!r}")
    return text


#: Each wrapper URL option and its converter.
WRAPPER_OPTIONS: Final = {
    "compress": _codec,
    "compress_min_size": positive_int,
    "compress_level": positive_int,
    "encryption_keys_env": _variable,
    "read_only": boolean,
    "max_value_size": positive_int,
    "retry": positive_int,
    "retry_deadline": positive_float,
    "stats": boolean,
    "trace": boolean,
}

# Options that only refine another one.
_REFINES: Final = {
    "compress_min_size": "compress",
    "compress_level": "compress",
    "retry_deadline": "retry",
}


def split_wrapper_options(url: str) -> tuple[str, dict[str, str]]:
    """Return ``url`` without its wrapper options, and those options (decoded, not converted).

    Every other part of the URL is left exactly as written, for the driver to parse. A wrapper
    option given twice or without a value raises :class:`ConfigurationError`.
    """
    return split_options(url, WRAPPER_OPTIONS)


def layers_from_options(options: dict[str, str]) -> list[Layer]:
    """Return the layers the wrapper ``options`` ask for (see the module docstring).

    Raises :class:`ConfigurationError` for a bad value, for a refining option without the one
    it refines, and for a missing or malformed keyring variable (naming the variable, never its
    content).
    """
    taken: dict[str, Any] = take_options(options, WRAPPER_OPTIONS, where="wrapper")
    for option, needs in _REFINES.items():
        if option in taken and needs not in taken:
            raise ConfigurationError(f"the URL option {option!r} needs {needs!r} as well")
    layers: list[Layer] = []
    if "compress" in taken:
        settings = {
            name: taken[option]
            for option, name in (("compress_min_size", "min_size"), ("compress_level", "level"))
            if option in taken
        }
        layers.append(Compression.using(**settings))
    if "encryption_keys_env" in taken:
        variable = taken["encryption_keys_env"]
        text = os.environ.get(variable)
        if not text:
            raise ConfigurationError(
                f"encryption_keys_env names {variable!r}, but that environment variable is "
                "not set (it holds ID:BASE64KEY,... with the current key first)"
            )
        keys, current = parse_keyring(text)
        layers.append(Encryption.using(keys=keys, current=current))
    if taken.get("read_only"):
        layers.append(ReadOnly.using())
    if "max_value_size" in taken:
        layers.append(ValueSizeLimit.using(limit=taken["max_value_size"]))
    if "retry" in taken:
        retry: dict[str, Any] = {"attempts": taken["retry"]}
        if "retry_deadline" in taken:
            retry["deadline"] = taken["retry_deadline"]
        layers.append(Retry.using(**retry))
    if taken.get("stats"):
        layers.append(Statistics.using())
    if taken.get("trace"):
        layers.append(Tracing.using())
    return layers
