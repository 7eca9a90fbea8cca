"""Expiry (TTL) and key metadata: the values, the rules and the arithmetic every driver shares.

A TTL is a number of seconds (``int`` or ``float``) or a :class:`~datetime.timedelta`; it must be
positive and finite. The backend turns it into an absolute expiry instant in the same step as the
write, reading its own clock: the server's clock on server backends (Redis ``TIME`` inside the
script, ``now()`` in SQL), the wall clock (or an injected clock) on local ones. From that instant
on the key is absent for every operation, whether or not anything has physically removed it yet.

Instants are POSIX seconds kept at millisecond resolution: a TTL rounds to the nearest
millisecond, and to at least one. :class:`Meta` reports them as ``float`` seconds.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import time
from collections.abc import Callable
from datetime import timedelta

from kvstore.errors import InvalidTTL

__all__ = [
    "DEFAULT_TTL",
    "EXPIRY",
    "TTL",
    "Clock",
    "DefaultTTL",
    "Meta",
    "expiry_millis",
    "from_millis",
    "now_millis",
    "to_millis",
    "ttl_millis",
    "ttl_seconds",
]

#: The capability name :class:`~kvstore.errors.NotSupported` carries for TTLs and metadata.
EXPIRY = "expiry (TTL) and metadata"

#: What a TTL may be given as.
TTL = float | int | timedelta


class DefaultTTL(enum.Enum):
    """The type of :data:`DEFAULT_TTL`."""

    DEFAULT_TTL = "the storage's default TTL"


#: What a write's ``ttl`` argument is when the caller leaves it out: the storage's (or view's)
#: default TTL applies. ``ttl=None`` says "never expires" even where a default is set.
DEFAULT_TTL = DefaultTTL.DEFAULT_TTL

#: A clock: POSIX seconds now. Local drivers take one so that tests move time without sleeping.
Clock = Callable[[], float]


@dataclasses.dataclass(frozen=True, slots=True)
class Meta:
    """What ``get_meta`` reports about a live key, read in one backend round trip.

    ``size`` is the value's length in bytes. ``written_at`` is when the value was last written
    (``None`` for a value an older release wrote, before write times were kept) and
    ``expires_at`` when it expires (``None``: never), both POSIX seconds on the backend's clock
    (see the module docstring). ``version`` is the value's version on a driver with conditional
    writes, ``None`` on one without.
    """

    size: int
    written_at: float | None
    expires_at: float | None = None
    version: int | None = None

    def remaining(self, now: float | None = None) -> float | None:
        """Seconds left until expiry as seen at ``now`` (default: this machine's clock), or None."""
        if self.expires_at is None:
            return None
        return self.expires_at - (time.time() if now is None else now)


def ttl_seconds(ttl: object) -> float:
    """Return ``ttl`` as positive, finite seconds; raise :class:`InvalidTTL` for anything else."""
    if isinstance(ttl, timedelta):
        seconds = ttl.total_seconds()
    elif isinstance(ttl, (int, float)) and not isinstance(ttl, bool):
        seconds = float(ttl)
    else:
        raise InvalidTTL(
            f"a TTL is seconds (int or float) or a timedelta, not {type(ttl).__name__}"
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidTTL(f"a TTL must be positive and finite, not {ttl!r}")
    return seconds


def to_millis(seconds: float) -> int:
    """POSIX seconds as whole milliseconds, rounded to the nearest (so ``from_millis`` inverts)."""
    return round(seconds * 1000)


def from_millis(millis: int) -> float:
    """Whole milliseconds as POSIX seconds."""
    return millis / 1000


def ttl_millis(ttl: float) -> int:
    """A validated TTL in whole milliseconds: rounded, and never below one."""
    return max(1, round(ttl * 1000))


def expiry_millis(now_ms: int, ttl: float) -> int:
    """The expiry instant, in milliseconds, of a write at ``now_ms`` with ``ttl`` seconds."""
    return now_ms + ttl_millis(ttl)


def now_millis(clock: Clock) -> int:
    """``clock`` read as whole milliseconds."""
    return to_millis(clock())
