"""What a subscriber, a consumer and ``recover`` receive, and the clock that stamps it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Clock", "QueueEntry", "system_clock"]

Clock = Callable[[], int]
"""A callable returning the current time in whole milliseconds since the Unix epoch."""


def system_clock() -> int:
    """Return the wall clock in milliseconds; the default :data:`Clock`."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """One stored event.

    ``cursor`` is an opaque string; within one topic of one backend, a later commit always has a
    greater cursor, and cursors compare correctly as plain strings. ``timestamp`` is the
    publishing queue's clock, in milliseconds, when the event was published; retention uses it.
    ``event`` is the decoded JSON value.
    """

    topic: str
    cursor: str
    event: Any
    timestamp: int
