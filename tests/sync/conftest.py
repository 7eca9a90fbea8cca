"""The drivers the blocking facade is tested on: every local one, and Redis.

``backend`` makes blocking storages on a namespace of the test's own, over a clock the test moves
(manual for the local drivers, the server's own for Redis); ``storage`` is one of them, open and
empty, cleared and closed afterwards. A Redis test fails rather than skips when the server is
down and ``KVSTORE_REQUIRE_SERVERS=1``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from kvstore.driver import Driver
from kvstore.drivers.fs import fs_driver
from kvstore.drivers.memory import memory_driver
from kvstore.drivers.redis import redis_driver
from kvstore.drivers.sqlite import sqlite_driver
from kvstore.sync import Storage, create_storage
from kvstore.testing.clock import TestClock
from tests.support.servers import REDIS_URL, server_unreachable

LOCAL = ["memory", "sqlite-file", "sqlite-memory", "fs"]
EVERY = [*LOCAL, "redis"]


@dataclass
class Backend:
    """A driver under test: how to make blocking storages on it, and the clock they read."""

    name: str
    new_driver: Callable[[], Driver]
    clock: TestClock

    def storage(self) -> Storage:
        """A new blocking storage over a new driver on this test's namespace."""
        return create_storage(self.new_driver())


def _redis_reachable() -> None:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as error:
        server_unreachable(f"Redis at {REDIS_URL} is unreachable: {error}")
    finally:
        client.close()


def make_backend(name: str, tmp_path: Path) -> Backend:
    """The backend ``name`` (one of :data:`EVERY`), with its files under ``tmp_path``."""
    clock = TestClock(manual=name != "redis")
    if name == "memory":
        return Backend(name, lambda: memory_driver(clock=clock), clock)
    if name == "sqlite-file":
        path = tmp_path / "kv.db"
        return Backend(name, lambda: sqlite_driver(path, clock=clock), clock)
    if name == "sqlite-memory":
        return Backend(name, lambda: sqlite_driver(":memory:", clock=clock), clock)
    if name == "fs":
        folder = str(tmp_path / "store")
        return Backend(name, lambda: fs_driver(folder, clock=clock), clock)
    assert name == "redis"
    _redis_reachable()
    base = f"kvtest_sync_{uuid.uuid4().hex[:12]}"
    return Backend(name, lambda: redis_driver(REDIS_URL, base=base), clock)


@pytest.fixture(params=EVERY)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each driver in turn: memory, SQLite (file and in-memory), local files, Redis."""
    return make_backend(str(request.param), tmp_path)


@pytest.fixture
def storage(backend: Backend) -> Iterator[Storage]:
    """An open, empty blocking storage on the backend, closed and emptied afterwards."""
    storage = backend.storage()
    storage.open()
    storage.clear()
    try:
        yield storage
    finally:
        storage.close()
        if backend.name == "redis":  # the server outlives the test: leave nothing behind
            with backend.storage() as cleaner:
                cleaner.clear()
