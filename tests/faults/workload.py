"""The crash tests' workload: a seeded stream of writes that a child runs and the parent replays.

The child (:mod:`tests.faults.crash_writer`) and the test both call :func:`operations` with the
same seed and get the same operations, values included, so the child only reports how far it got
(``ack N``) and the test knows exactly what each acknowledged operation wrote. Every value names
its key, seed and operation, so a value from any other write, or a torn one, never compares equal.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from kvstore.driver import BaseDriver
from kvstore.drivers.fs import fs_driver
from kvstore.drivers.sqlite import sqlite_driver

DriverKind = Literal["sqlite", "fs"]
Kind = Literal["set", "delete", "set_many", "delete_many", "clear"]

KINDS: Final[tuple[Kind, ...]] = ("set", "delete", "set_many", "delete_many", "clear")
_WEIGHTS: Final = (35, 15, 25, 15, 10)

# Small groups that single writes, batches and clears all touch...
_GROUPS: Final = tuple(f"g{group}" for group in range(4))
_SMALL_KEYS: Final = tuple(f"{group}:k{n:02d}" for group in _GROUPS for n in range(32))
# ...and a wide one for batches of hundreds or thousands of keys, long enough that a kill often
# lands inside one. Creating a file costs far more than inserting a row, hence smaller fs batches.
_WIDE_KEYS: Final = tuple(f"wide:{n:04d}" for n in range(4096))
_CLEAR_PREFIXES: Final = (*(f"{group}:" for group in _GROUPS), "g", "wide:")


@dataclass(frozen=True)
class Operation:
    """One write as the child performs it and as the test's model applies it."""

    kind: Kind
    items: tuple[tuple[str, bytes], ...] = ()
    keys: tuple[str, ...] = ()
    prefix: str = ""

    def apply(self, state: dict[str, bytes]) -> dict[str, bytes]:
        """Return the store's contents after this operation, given ``state`` before it."""
        after = dict(state)
        for key, value in self.items:
            after[key] = value
        for key in self.keys:
            after.pop(key, None)
        if self.kind == "clear":
            after = {key: value for key, value in after.items() if not key.startswith(self.prefix)}
        return after

    async def run(self, driver: BaseDriver) -> None:
        """Perform this operation on ``driver``."""
        if self.kind == "set":
            [(key, value)] = self.items
            await driver.set(key, value)
        elif self.kind == "set_many":
            await driver.set_many(self.items)
        elif self.kind == "delete":
            [key] = self.keys
            await driver.delete(key)
        elif self.kind == "delete_many":
            await driver.delete_many(self.keys)
        else:
            await driver.clear(self.prefix)

    def describe(self) -> str:
        """A short description for failure messages (never the values themselves)."""
        if self.kind == "clear":
            return f"clear({self.prefix!r})"
        count = len(self.items) or len(self.keys)
        return f"{self.kind} of {count} key(s)"


def _value(rng: random.Random, key: str, tag: str) -> bytes:
    # Mostly small, sometimes large enough that a write takes a while and could tear.
    roll = rng.random()
    size = rng.randrange(0, 256) if roll < 0.7 else rng.randrange(256, 16 << 10)
    if roll > 0.97:
        size = rng.randrange(64 << 10, 1 << 20)
    return f"{key}|{tag}|".encode() + rng.randbytes(size)


def _wide_pairs(rng: random.Random, sizes: range, tag: str) -> tuple[tuple[str, bytes], ...]:
    keys = rng.sample(_WIDE_KEYS, rng.choice(sizes))
    return tuple((key, f"{key}|{tag}|".encode() + rng.randbytes(24)) for key in keys)


def _operation(rng: random.Random, kind: Kind, wide_sizes: range, tag: str) -> Operation:
    wide = rng.random() < 0.2
    if kind == "set":
        key = rng.choice(_SMALL_KEYS)
        return Operation(kind, items=((key, _value(rng, key, tag)),))
    if kind == "delete":
        return Operation(kind, keys=(rng.choice(_SMALL_KEYS),))
    if kind == "set_many":
        if wide:
            return Operation(kind, items=_wide_pairs(rng, wide_sizes, tag))
        keys = rng.choices(_SMALL_KEYS, k=rng.randrange(2, 40))  # repeats: a later pair wins
        return Operation(kind, items=tuple((key, _value(rng, key, tag)) for key in keys))
    if kind == "delete_many":
        if wide:
            return Operation(kind, keys=tuple(rng.sample(_WIDE_KEYS, rng.choice(wide_sizes))))
        return Operation(kind, keys=tuple(rng.sample(_SMALL_KEYS, rng.randrange(2, 40))))
    # Clearing everything is rare, so that the store usually has something left to lose.
    prefix = "" if rng.random() < 0.05 else rng.choice(_CLEAR_PREFIXES)
    return Operation(kind, prefix=prefix)


_WIDE_SIZES: Final[dict[DriverKind, range]] = {"sqlite": range(1000, 3000), "fs": range(50, 200)}


def operations(seed: int, driver: DriverKind) -> Iterator[Operation]:
    """Yield the endless operation stream for ``seed``: each kind once first, then at random."""
    rng = random.Random(seed)
    wide_sizes = _WIDE_SIZES[driver]
    first = list(KINDS)
    rng.shuffle(first)
    index = 0
    while True:
        kind = first[index] if index < len(first) else rng.choices(KINDS, _WEIGHTS)[0]
        yield _operation(rng, kind, wide_sizes, f"{seed}/{index}")
        index += 1


def open_driver(kind: DriverKind, path: Path) -> BaseDriver:
    """Return the driver the crash tests exercise, on ``path`` (a file for SQLite, else a dir)."""
    if kind == "sqlite":
        return sqlite_driver(path)
    return fs_driver(str(path))


# Which operations the README (and the driver's docstring) promise are all-or-nothing: SQLite
# runs batches in one transaction and clear as one DELETE; the fs driver writes each file
# atomically but a batch or clear file by file.
ATOMIC: Final[dict[DriverKind, frozenset[Kind]]] = {
    "sqlite": frozenset({"set", "delete", "set_many", "delete_many", "clear"}),
    "fs": frozenset({"set", "delete"}),
}


def _shown(value: bytes | None) -> str:
    # The header names the write (key and seed/operation) without printing megabytes.
    if value is None:
        return "nothing"
    parts = value.split(b"|", 2)
    if len(parts) < 3:
        return f"{len(value)} bytes that no write made (torn?)"
    return f"the value of {parts[0].decode(errors='replace')!r} from write {parts[1].decode()}"


def check_after_kill(
    kind: DriverKind,
    acknowledged: dict[str, bytes],
    in_flight: Operation,
    found: dict[str, bytes],
) -> str:
    """Check what a killed writer left; return how the in-flight operation ended.

    ``acknowledged`` is the store after every acknowledged operation and ``in_flight`` the one
    the writer may have been inside when it died. Each acknowledged write must be there, whole;
    the in-flight operation may have happened or not, and if it is atomic on this driver it
    happened entirely or not at all ("landed" or "lost"); otherwise each key may hold any value
    it passed through ("partial" when that is a mix).
    """
    landed = in_flight.apply(acknowledged)
    if found == acknowledged:
        return "lost"
    if found == landed:
        return "landed"
    assert in_flight.kind not in ATOMIC[kind], (
        f"{in_flight.describe()} was cut part-way on {kind}, which promises it is atomic"
    )
    written: dict[str, set[bytes | None]] = {}
    for key, value in in_flight.items:
        written.setdefault(key, set()).add(value)
    for key in in_flight.keys:
        written.setdefault(key, set()).add(None)
    for key in acknowledged.keys() | found.keys():
        before = acknowledged.get(key)
        allowed = {before} | written.get(key, set())
        if in_flight.kind == "clear" and key.startswith(in_flight.prefix):
            allowed.add(None)
        now = found.get(key)
        assert now in allowed, (
            f"{key!r} holds {_shown(now)}; acknowledged: {_shown(before)}, "
            f"in flight: {in_flight.describe()}"
        )
    return "partial"
