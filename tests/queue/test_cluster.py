"""The queue's Redis backend on a Redis Cluster: the conformance suite, and the key layout."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from eventqueue import EventQueue, create_queue
from eventqueue.testing import QueueConformance, QueueFactory
from redis.cluster import ClusterNode, RedisCluster

from tests.support.redis_cluster import RedisCluster as PrivateCluster
from tests.support.redis_cluster import running_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateCluster]:
    """Three masters with one replica each, for this module."""
    yield from running_cluster(tmp_path_factory.mktemp("queue-cluster"))


class TestRedisCluster(QueueConformance):
    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"  # redis.asyncio runs under asyncio only

    @pytest.fixture
    def queue_factory(self, cluster: PrivateCluster) -> QueueFactory:
        url = f"{cluster.url}/?namespace=eq_{secrets.token_hex(6)}"

        def factory(**options: Any) -> EventQueue:
            return create_queue(url=url, **options)

        return factory


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_topics_spread_over_the_nodes_with_stream_and_index_together(
    cluster: PrivateCluster, anyio_backend: str
) -> None:
    namespace = f"eq_{secrets.token_hex(6)}"
    topics = [f"topic{i}" for i in range(30)] + ["a}b", "{x}"]
    async with create_queue(url=f"{cluster.url}/?namespace={namespace}") as queue:
        for topic in topics:
            await queue.publish(topic, {"n": 1})
    node = ClusterNode("127.0.0.1", cluster.ports[0])  # type: ignore[no-untyped-call]
    client = RedisCluster(startup_nodes=[node])
    try:
        nodes = set()
        for topic in topics:
            stream = b"{" + f"{namespace}:{topic}".encode() + b"}:stream"
            index = b"{" + f"{namespace}:{topic}".encode() + b"}:ts"
            same_slot = client.keyslot(stream) == client.keyslot(index)  # type: ignore[no-untyped-call]
            assert same_slot, f"topic {topic!r}: stream and index in different slots"
            assert client.xlen(stream) == 1, f"topic {topic!r} has no stream where expected"
            nodes.add(client.get_node_from_key(stream).port)  # type: ignore[no-untyped-call]
        assert len(nodes) == 3, "thirty topics should reach every master"
        members = client.smembers(f"{{{namespace}}}:topics")
        assert {bytes(member) for member in members} == {topic.encode() for topic in topics}  # type: ignore[arg-type]
    finally:
        client.close()
