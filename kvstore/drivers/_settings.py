"""One setting given under several names (ours, the client's, a URL option, an argument).

A server driver accepts ``connect_timeout``, ``operation_timeout`` and ``pool_size`` both as
constructor arguments and as URL options, and keeps the client library's own names for the same
things working (redis-py's ``socket_timeout``, ``max_connections``; psycopg-pool's ``max_size``).
:func:`settle` picks the one value of such a setting, and refuses a setting given twice with
different values instead of silently preferring one spelling.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TypeVar

from kvstore.errors import ConfigurationError

__all__ = ["settle", "timeout_seconds", "whole_number"]

_T = TypeVar("_T")


def settle(setting: str, given: Mapping[str, _T | None], default: _T, *, where: str) -> _T:
    """Return the value of ``setting`` from ``given`` (spelling -> value or None), or ``default``.

    A spelling is an argument name, or ``?name`` for a URL option. Raises
    :class:`ConfigurationError` naming the spellings when they disagree. Values are numbers or
    short names, never secrets, so the message may show them.
    """
    present = {name: value for name, value in given.items() if value is not None}
    distinct = set(present.values())
    if len(distinct) > 1:
        spelled = ", ".join(f"{name}={value!r}" for name, value in present.items())
        raise ConfigurationError(
            f"{where}: {setting} is given more than once with different values ({spelled}); "
            "give it once"
        )
    return next(iter(present.values())) if present else default


def timeout_seconds(name: str, value: float, *, where: str) -> float:
    """Check that a timeout is a finite number of seconds above zero, and return it as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{where}: {name} must be a number of seconds, not {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{where}: {name} must be finite and above zero, not {value!r}")
    return float(value)


def whole_number(name: str, value: int, *, minimum: int, where: str) -> int:
    """Check that a count (a pool size, a number of retries) is an int of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(
            f"{where}: {name} must be a whole number from {minimum} up, not {value!r}"
        )
    return value
