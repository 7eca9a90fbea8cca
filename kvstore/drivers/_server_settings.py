"""One setting of a server driver that may be given in several places, resolved or refused.

A pool size or a timeout can come from a constructor argument, from kvstore's own URL option
(``pool_size``, ``connect_timeout``, ``operation_timeout``) and from the client library's native
name for it (PyMongo's ``maxPoolSize``, ...). Given once, or several times with one value, it
is used; given with different values it is a :class:`~kvstore.errors.ConfigurationError`,
never a silent choice of one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from kvstore.errors import ConfigurationError

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "DEFAULT_OPERATION_TIMEOUT", "resolve", "seconds"]

# The defaults every server driver shares (see the README): an unreachable server is reported
# within about DEFAULT_CONNECT_TIMEOUT, and no operation waits longer than
# DEFAULT_OPERATION_TIMEOUT.
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_OPERATION_TIMEOUT = 10.0

_T = TypeVar("_T", int, float)


def resolve(name: str, given: Iterable[tuple[str, _T | None]], default: _T, *, driver: str) -> _T:
    """Return the value of setting ``name``: the one every place in ``given`` agrees on.

    ``given`` holds ``(place, value)`` pairs, ``value`` ``None`` where that place left it out
    (``("URL option maxPoolSize", 20)``). Without any value, ``default``. Two different values
    raise :class:`ConfigurationError` naming both places.
    """
    chosen: tuple[str, _T] | None = None
    for place, value in given:
        if value is None:
            continue
        if chosen is not None and chosen[1] != value:
            raise ConfigurationError(
                f"{driver}: {name} is given twice with different values: {chosen[1]!r} as "
                f"{chosen[0]} and {value!r} as {place}; give it once"
            )
        if chosen is None:
            chosen = (place, value)
    return default if chosen is None else chosen[1]


def seconds(name: str, value: float | None, *, driver: str) -> float | None:
    """Check that ``value`` (a constructor argument) is ``None`` or a positive finite number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e9:
        raise ConfigurationError(f"{driver}: {name} must be a positive number of seconds")
    return float(value)
