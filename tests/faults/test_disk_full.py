"""Disk full, on a small tmpfs: the local drivers fail with typed errors and lose nothing.

The store shares a 2 MiB tmpfs with a ballast file. Values go in until the disk is full; further
single writes, overwrites, batches and deletes then either succeed or raise a
:class:`~kvstore.errors.BackendError` (never ``OSError`` or ``sqlite3.Error``); every write that
returned is still there, whole; a failed SQLite batch wrote nothing (a failed fs batch may have
written some of its files, each whole). Deleting the ballast frees space and the same storage
works again, and the store reopens intact. Skipped, with the reason, where no tmpfs can be
mounted (it needs root).
"""

from __future__ import annotations

import os
import random
import sqlite3
from collections.abc import Awaitable, Iterator
from contextlib import closing
from pathlib import Path

import pytest

from kvstore.drivers._fs_local import LOCK_NAME, TEMP_DIR
from kvstore.errors import BackendError
from kvstore.storage import Storage
from tests.faults.tmpfs import small_tmpfs
from tests.faults.workload import DriverKind, open_driver

pytestmark = pytest.mark.anyio

DISK = 2 << 20
BALLAST = 512 << 10
VALUE = 16 << 10


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "disk", DISK) as directory:
        yield directory


def _value(key: str, size: int = VALUE) -> bytes:
    return f"{key}|".encode() + random.randbytes(size)


async def _failure(call: Awaitable[None]) -> BackendError | None:
    """Await ``call``; return the typed error it raised, or None if it succeeded."""
    try:
        await call
    except Exception as error:
        failure = error
    else:
        return None
    assert isinstance(failure, BackendError), (
        f"a full disk raised untyped {type(failure).__module__}.{type(failure).__qualname__}: "
        f"{failure}"
    )
    return failure


async def _contents(storage: Storage) -> dict[str, bytes]:
    keys = [key async for key in storage.keys()]
    values = await storage.get_many_raw(keys)
    assert None not in values
    return {key: value for key, value in zip(keys, values, strict=True) if value is not None}


async def _fill(storage: Storage) -> tuple[dict[str, bytes], BackendError]:
    """Write values until one write fails; return the acknowledged ones and the error."""
    stored: dict[str, bytes] = {}
    for n in range(DISK // VALUE * 2):
        key = f"k:{n:04d}"
        value = _value(key)
        error = await _failure(storage.set_raw(key, value))
        if error is not None:
            return stored, error
        stored[key] = value
    pytest.fail("the disk never filled up")


async def _batch_while_full(
    kind: DriverKind, storage: Storage, stored: dict[str, bytes], pairs: dict[str, bytes]
) -> None:
    """Try a batch on the full disk and record in ``stored`` what it wrote."""
    if await _failure(storage.set_many_raw(pairs)) is None:
        stored.update(pairs)
        return
    found = await storage.get_many_raw(list(pairs))
    for (key, value), now in zip(pairs.items(), found, strict=True):
        if kind == "sqlite":
            assert now == stored.get(key), f"a failed SQLite batch still wrote {key!r}"
        else:
            assert now in (stored.get(key), value), f"{key!r} was torn by a failed batch"
        if now is not None:
            stored[key] = now


def _integrity(path: Path) -> str:
    with closing(sqlite3.connect(path)) as conn:
        return ", ".join(row[0] for row in conn.execute("PRAGMA integrity_check"))


@pytest.mark.parametrize("kind", ["sqlite", "fs"])
async def test_a_full_disk_raises_typed_errors_and_loses_nothing(
    kind: DriverKind, disk: Path
) -> None:
    ballast = disk / "ballast"
    ballast.write_bytes(bytes(BALLAST))
    path = disk / ("kv.db" if kind == "sqlite" else "store")
    storage = Storage(open_driver(kind, path))
    try:
        stored, first = await _fill(storage)
        assert len(stored) >= 16, f"only {len(stored)} values fit: {first}"
        assert kind in str(first)

        # While the disk is full: overwrites, new keys, batches and deletes.
        for attempt in range(4):
            victim = random.choice(sorted(stored))
            bigger = _value(victim, 4 * VALUE)
            if await _failure(storage.set_raw(victim, bigger)) is None:
                stored[victim] = bigger
            fresh = f"full:{attempt}"
            value = _value(fresh)
            if await _failure(storage.set_raw(fresh, value)) is None:
                stored[fresh] = value
            pairs = {f"batch:{attempt}:{n}": _value(f"batch:{attempt}:{n}") for n in range(8)}
            await _batch_while_full(kind, storage, stored, pairs)
            doomed = sorted(stored)[attempt]
            if await _failure(storage.delete(doomed)) is None:
                del stored[doomed]
        assert await _contents(storage) == stored

        # Space freed: the same storage takes writes again.
        ballast.unlink()
        value = _value("after:one")
        await storage.set_raw("after:one", value)
        stored["after:one"] = value
        pairs = {f"after:{n}": _value(f"after:{n}") for n in range(4)}
        await storage.set_many_raw(pairs)
        stored.update(pairs)
        await storage.delete("k:0000")
        stored.pop("k:0000", None)
        assert await _contents(storage) == stored
    finally:
        await storage.close()

    # The store reopens as it was: intact, nothing half-written left behind.
    if kind == "sqlite":
        assert _integrity(path) == "ok"
    else:
        # Only the writers' lock file, never a half-written temporary file.
        assert os.listdir(path / TEMP_DIR) in ([], [LOCK_NAME])
    async with Storage(open_driver(kind, path)) as reopened:
        assert await _contents(reopened) == stored


def _fill_with_ballast(disk: Path) -> Path:
    """Fill the disk with one file, to the last byte; return that file."""
    ballast = disk / "ballast"
    with open(ballast, "wb", buffering=0) as file:
        try:
            while True:
                file.write(bytes(64 << 10))
        except OSError:
            pass
        try:
            while True:
                file.write(b"\0")
        except OSError:
            pass
    return ballast


@pytest.mark.parametrize("kind", ["sqlite", "fs"])
async def test_a_store_first_used_on_a_full_disk_fails_typed_then_works(
    kind: DriverKind, disk: Path
) -> None:
    ballast = _fill_with_ballast(disk)
    path = disk / ("kv.db" if kind == "sqlite" else "store")
    async with Storage(open_driver(kind, path)) as storage:
        assert await _failure(storage.set_raw("a", b"1")) is not None
        ballast.unlink()
        await storage.set_raw("a", b"2")
        assert await _contents(storage) == {"a": b"2"}
