"""A Redis outage: clean errors while the server is down, and live delivery resumes after.

Uses a private redis-server (tests/support/redis_instance.py) so the shared one is never
stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from eventqueue import QueueUnavailable, create_queue
from eventqueue.testing import DEADLINE, Collector

from tests.support.redis_instance import RedisInstance
from tests.support.servers import server_unreachable

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisInstance]:
    if not RedisInstance.available():
        server_unreachable("redis-server is not installed")
    instance = RedisInstance(tmp_path / "redis")
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


async def test_redis_outage_then_recovery(private_redis: RedisInstance) -> None:
    async with create_queue(url=private_redis.url) as queue:
        collector = Collector()
        consumer = queue.consume("t", "c")
        await queue.subscribe("t", collector).ready()
        first = await queue.publish("t", "before")
        async with asyncio.timeout(DEADLINE):
            assert (await consumer.__anext__()).cursor == first
        await collector.wait_for(1)

        private_redis.stop()
        with pytest.raises(QueueUnavailable) as caught:
            await queue.publish("t", "while down")
        assert "redis" in str(caught.value).lower()

        private_redis.start()
        second = await queue.publish("t", "after")
        assert second > first
        assert [e.event for e in await collector.wait_for(2)] == ["before", "after"]
        async with asyncio.timeout(DEADLINE):
            assert (await consumer.__anext__()).event == "after"
        assert [e.event for e in await queue.recover("t")] == ["before", "after"]
        await consumer.aclose()  # type: ignore[attr-defined]


async def test_publish_after_the_script_cache_was_flushed(private_redis: RedisInstance) -> None:
    # The append script is sent by its digest: a server that forgot it (SCRIPT FLUSH, or a
    # restart) gets it loaded again, and the append runs once.
    async with create_queue(url=private_redis.url) as queue:
        first = await queue.publish("t", 1)
        with redis.Redis(port=private_redis.port) as admin:
            admin.script_flush()
        second = await queue.publish("t", 2)
        with redis.Redis(port=private_redis.port) as admin:
            admin.script_flush()
        third, fourth = await queue.publish_many("t", [3, 4])
        assert first < second < third < fourth
        assert [e.event for e in await queue.recover("t")] == [1, 2, 3, 4]
