"""Values over LARGE_VALUE bypass Lua: the same layout and guarantees as the script paths."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from kvstore.drivers import redis as redis_module
from kvstore.drivers.redis import LARGE_VALUE, RedisDriver, redis_driver
from kvstore.errors import BackendError
from kvstore.storage import Storage
from tests.support.servers import REDIS_URL, server_unreachable

BIG = b"v" * (LARGE_VALUE + 1)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def shared_redis() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as error:
        server_unreachable(f"Redis at {REDIS_URL} is unreachable: {error}")
    yield client
    client.close()


def _names(base: str) -> list[str]:
    return [f"{base}:kv", f"{base}:keys", f"{base}:ver", f"{base}:at", f"{base}:exp"]


@pytest.fixture
def base(shared_redis: redis.Redis) -> Iterator[str]:
    chosen = f"kvtest_large_{uuid.uuid4().hex[:12]}"
    yield chosen
    shared_redis.delete(*_names(chosen))


class _Scripts:
    """Records the digests of the scripts a driver runs and what they returned."""

    def __init__(self, driver: RedisDriver) -> None:
        self.runs: list[tuple[bytes, Any]] = []
        script = driver._script

        async def recorded(client: Any, sha: bytes, *args: Any) -> Any:
            reply = await script(client, sha, *args)
            self.runs.append((sha, reply))
            return reply

        driver._script = recorded  # type: ignore[method-assign]


@pytest.mark.anyio
async def test_a_large_value_is_written_and_read_without_passing_through_lua(
    shared_redis: redis.Redis, base: str
) -> None:
    driver = redis_driver(REDIS_URL, base=base)
    scripts = _Scripts(driver)
    async with Storage(driver) as storage:
        await storage.set_raw("small", b"s", ttl=60)
        await storage.set_raw("big", b"old", ttl=60)
        scripts.runs.clear()
        await driver.set("big", BIG)
        assert scripts.runs == []  # not the write script
        # A driver that wrote (or read) the key as large reads it without a script.
        assert await driver.get("big") == BIG
        assert scripts.runs == []
        # Another one asks the script, which only answers "large" (1), never the value.
        reader = redis_driver(REDIS_URL, base=base)
        read = _Scripts(reader)
        assert await reader.get("big") == BIG
        assert read.runs == [(redis_module._GET_SHA, 1)]
        assert await reader.get("big") == BIG
        assert read.runs == [(redis_module._GET_SHA, 1)]
        # Rewritten small elsewhere: the hint's plain read is exact, and the hint is dropped.
        await driver.set("big", b"now small")
        assert await reader.get("big") == b"now small"
        assert await reader.get("big") == b"now small"
        assert read.runs == [(redis_module._GET_SHA, 1), (redis_module._GET_SHA, b"now small")]
        await reader.close()
        await driver.set("big", BIG)
        # The same bookkeeping as a small write: index entry, fresh version, write time, and
        # the plain write cleared the old expiry.
        assert shared_redis.hget(f"{base}:kv", "big") == BIG
        assert shared_redis.zscore(f"{base}:keys", "big") == 0
        meta = await storage.get_meta("big")
        assert meta is not None
        assert meta.size == len(BIG)
        assert meta.expires_at is None
        assert meta.written_at is not None
        assert meta.version is not None
        assert meta.version > 0
        assert shared_redis.zrange(f"{base}:exp", 0, -1) == [b"small"]
        assert [key async for key in storage.keys()] == ["big", "small"]
        versioned = await storage.get_versioned_raw("big")
        assert versioned is not None
        assert versioned.version == meta.version
        # An expired large value reads as absent, decided by the server's clock.
        shared_redis.zadd(f"{base}:exp", {"big": 1})
        assert await driver.get("big") is None
        # Small values still come straight from the script.
        scripts.runs.clear()
        assert await driver.get("small") == b"s"
        assert scripts.runs == [(redis_module._GET_SHA, b"s")]


@pytest.mark.anyio
async def test_a_large_write_to_a_base_holding_foreign_data_writes_nothing(
    shared_redis: redis.Redis, base: str
) -> None:
    async with Storage(redis_driver(REDIS_URL, base=base)) as storage:
        await storage.set_raw("kept", b"1")
        for name in _names(base)[1:]:
            saved = shared_redis.dump(name)
            shared_redis.delete(name)
            shared_redis.set(name, b"not ours")
            before = shared_redis.hgetall(f"{base}:kv")
            with pytest.raises(BackendError, match="WRONGTYPE"):
                await storage.set_raw("new", BIG)
            assert shared_redis.hgetall(f"{base}:kv") == before
            assert shared_redis.get(name) == b"not ours"
            shared_redis.delete(name)
            if saved is not None:
                shared_redis.restore(name, 0, saved)


@pytest.mark.anyio
async def test_a_write_between_watch_and_exec_sends_the_large_write_through_the_script(
    shared_redis: redis.Redis, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    exchange = redis_module._exchange
    interfered: list[bool] = []

    async def meddling(connection: Any, commands: Any) -> list[Any]:
        if commands[0] == ("MULTI",) and not interfered:
            # Another client writes to the base after the WATCH: the EXEC must abort.
            shared_redis.zadd(f"{base}:keys", {"other": 0})
            interfered.append(True)
        return await exchange(connection, commands)

    monkeypatch.setattr(redis_module, "_exchange", meddling)
    driver = redis_driver(REDIS_URL, base=base)
    scripts = _Scripts(driver)
    async with Storage(driver):
        await driver.set("big", BIG)
    assert interfered == [True]
    assert [sha for sha, _ in scripts.runs] == [redis_module._SET_SHA]
    assert shared_redis.hget(f"{base}:kv", "big") == BIG
    assert shared_redis.zrange(f"{base}:keys", 0, -1) == [b"big", b"other"]
    assert shared_redis.hexists(f"{base}:ver", "big")
