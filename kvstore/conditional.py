"""Conditional writes: versions, the changes of a conditional batch, and the default ``update``.

Every value a driver with the capability stores has a *version*, an opaque positive integer that
changes on every write of the key (unconditional writes included). A reader takes the value and
its version in one call (:meth:`~kvstore.storage.Storage.get_versioned`); a writer then asks the
backend to apply a change only if the key is still at that version, or only if the key is absent.
The backend checks and applies the condition in one atomic step; a failed condition raises
:class:`~kvstore.errors.Conflict` and changes nothing.

Versions are random 52-bit integers, not counters: a key deleted and written again never comes
back at a version a reader saw before (the chance is one in 2**52 per pair of writes), with no
counter to store or to keep across deletes. They fit in a double, so Lua scripts, JSON and every
SQL integer type carry them exactly. ``0`` is the version of a value written before its store was
upgraded to the versioned layout: it is a real version (conditions on it work) that no new write
ever gets.

A driver offers the capability by setting ``conditional_writes = True`` and implementing
:meth:`~kvstore.driver.BaseDriver.get_versioned` and :meth:`~kvstore.driver.BaseDriver.commit`;
the single-key forms derive from ``commit``. A driver without it raises
:class:`~kvstore.errors.NotSupported` naming itself and the capability.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from typing import Final, Generic, NamedTuple, TypeVar

import anyio

__all__ = [
    "ANY_VERSION",
    "LEGACY_VERSION",
    "Action",
    "AnyVersion",
    "Change",
    "Versioned",
    "new_version",
    "retry_pause",
]

V = TypeVar("V")

#: The version of values written before the store was upgraded to the versioned layout.
LEGACY_VERSION: Final = 0
# 52 bits: exact in a Lua number (a double) and in JavaScript-style JSON readers.
_VERSION_BITS = 52


# The first pause after a lost race, and the longest, in seconds.
_FIRST_PAUSE = 0.0005
_LONGEST_PAUSE = 0.05


async def retry_pause(attempt: int) -> None:
    """Pause before retrying a conditional write that lost a race (``attempt`` counts from 0).

    A random time up to a limit that doubles with each attempt (0.5 ms, 1 ms, ... at most 50 ms):
    writers that collided once do not collide again in lockstep, and one that keeps losing to
    faster writers (another process, a busy core) waits long enough to get its turn. An
    immediate retry starved a process among four updating one SQLite counter. ``Storage.update``
    and the entity layer pause with it.
    """
    await anyio.sleep(random.uniform(0, min(_LONGEST_PAUSE, _FIRST_PAUSE * 2**attempt)))


def new_version() -> int:
    """Return a fresh version: a random integer in ``1 .. 2**52``, never :data:`LEGACY_VERSION`."""
    return random.getrandbits(_VERSION_BITS) + 1


class Versioned(NamedTuple, Generic[V]):
    """A value with the version it was read at."""

    value: V
    version: int


class AnyVersion(enum.Enum):
    """The type of :data:`ANY_VERSION`."""

    ANY = "any"

    def __repr__(self) -> str:
        return "ANY_VERSION"


#: A change's ``expected`` that sets no condition: the change applies whatever the key holds.
ANY_VERSION: Final = AnyVersion.ANY


class Action(enum.Enum):
    """What a :class:`Change` does to its key once its condition holds."""

    WRITE = "write"
    DELETE = "delete"
    CHECK = "check"


@dataclass(frozen=True, slots=True)
class Change(Generic[V]):
    """One key's part of a conditional batch: an action and the condition it needs.

    ``expected`` is the condition: a version (the key must hold a value at exactly that
    version), ``None`` (the key must be absent) or :data:`ANY_VERSION` (no condition). ``value``
    is set for :attr:`Action.WRITE` only. Build changes with the class methods, which name the
    usual cases.
    """

    action: Action
    key: str
    value: V | None = None
    expected: int | AnyVersion | None = ANY_VERSION

    @classmethod
    def create(cls, key: str, value: V) -> Change[V]:
        """Write ``value`` only if ``key`` is absent."""
        return cls(Action.WRITE, key, value, None)

    @classmethod
    def replace(cls, key: str, value: V, version: int) -> Change[V]:
        """Write ``value`` only if ``key`` still holds a value at ``version``."""
        return cls(Action.WRITE, key, value, version)

    @classmethod
    def put(cls, key: str, value: V) -> Change[V]:
        """Write ``value`` whatever ``key`` holds (an unconditional write inside the batch)."""
        return cls(Action.WRITE, key, value, ANY_VERSION)

    @classmethod
    def delete(cls, key: str, version: int | AnyVersion = ANY_VERSION) -> Change[V]:
        """Delete ``key``, only if it is at ``version`` when one is given."""
        return cls(Action.DELETE, key, None, version)

    @classmethod
    def check(cls, key: str, version: int | None) -> Change[V]:
        """Write nothing, but fail the batch unless ``key`` is at ``version`` (``None``: absent)."""
        return cls(Action.CHECK, key, None, version)

    def holds_for(self, current: int | None) -> bool:
        """Tell whether the condition holds when the key is at version ``current`` (None: absent).

        The reference a driver without a native check uses; native drivers test the same
        thing in the backend.
        """
        expected = self.expected
        if expected is ANY_VERSION:
            return True
        return current == expected

    def with_key(self, key: str) -> Change[V]:
        """The same change for another key (as routed to a driver)."""
        return Change(self.action, key, self.value, self.expected)
