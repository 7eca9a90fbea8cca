"""Fixtures: a Persistence on memory, SQLite, local files and Redis (isolated, removed after)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis

from entities import Persistence, create_persistence
from kvstore.driver import BaseDriver
from kvstore.drivers.fs import fs_driver
from kvstore.drivers.memory import memory_driver
from kvstore.drivers.redis import redis_driver
from kvstore.drivers.sqlite import sqlite_driver
from kvstore.storage import Storage
from tests.support.servers import REDIS_URL, server_unreachable


@pytest.fixture
def anyio_backend() -> str:
    # The Redis driver is asyncio-only; one backend keeps the run short.
    return "asyncio"


def _redis_base() -> str:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as error:
        server_unreachable(f"Redis at {REDIS_URL} is unreachable: {error}")
    finally:
        client.close()
    return f"kvtest_entities_{uuid.uuid4().hex[:12]}"


def _remove_redis_base(base: str) -> None:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.delete(*(f"{base}:{part}" for part in ("kv", "keys", "ver", "at", "exp")))
    finally:
        client.close()


@pytest.fixture(params=["memory", "sqlite", "fs", "redis"])
async def root_storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    """A root Storage on the backend named by the parameter, emptied of this test's data after."""
    driver: BaseDriver
    base = ""
    if request.param == "memory":
        driver = memory_driver()
    elif request.param == "sqlite":
        driver = sqlite_driver(tmp_path / "entities.db")
    elif request.param == "fs":
        # Entities find a message by a prefix ending inside a segment: the fs layout's own path.
        driver = fs_driver(str(tmp_path / "entities"))
    else:
        base = _redis_base()
        driver = redis_driver(url=REDIS_URL, base=base)
    storage = Storage(driver)
    try:
        yield storage
    finally:
        try:
            if base:
                await storage.clear()
        finally:
            await storage.close()
            if base:
                _remove_redis_base(base)


@pytest.fixture
async def persistence(root_storage: Storage) -> AsyncIterator[Persistence]:
    """A Persistence in the default namespace over ``root_storage`` (which stays the owner)."""
    async with await create_persistence(root_storage) as opened:
        yield opened
