"""Redis Cluster driver vs the single-node Redis driver: a narrow scan and a point read.

Run with ``python -m benchmarks.cluster_bench [CLUSTER_URL [REDIS_URL]]``. Without a cluster URL
it starts a private cluster (three masters, one replica each, as the tests do; needs
``redis-server`` and ``redis-cli``); ``REDIS_URL`` defaults to the shared test server. Both sides
hold the same 100,000 keys under a unique base, deleted afterwards; the rounds are interleaved
and the best round of each side is reported, so noise from the machine hits both alike.

The issue's bounds, checked at the end: a 1,000-of-100,000 prefix scan costs at most 3 times the
single-node scan, and a point read at most 1.5 times the single-node read.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import orjson
from redis.asyncio.cluster import RedisCluster

from benchmarks.harness import Report, time_async
from kvstore.drivers.redis import redis_driver
from kvstore.drivers.redis_cluster import redis_cluster_driver
from kvstore.storage import Storage

TOTAL = 100_000
MATCHES = 1_000
BATCH = 10_000
SCANS = 20
READS = 2_000
ROUNDS = 7
VALUE = {"name": "benchmark", "count": 42, "tags": ["a", "b", "c"]}
SCAN_BOUND = 3.0
READ_BOUND = 1.5


@contextlib.contextmanager
def _cluster(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from tests.support.redis_cluster import RedisCluster

    with tempfile.TemporaryDirectory() as directory:
        cluster = RedisCluster(Path(directory))
        cluster.start()
        try:
            yield cluster.url
        finally:
            cluster.stop()


async def _used_memory(cluster_url: str) -> int:
    """Bytes the cluster's masters use in all (INFO memory's used_memory)."""
    hosts = cluster_url.partition("://")[2].partition("/")[0].split(",")
    host, _, port = hosts[0].rpartition(":")
    client = RedisCluster(host=host, port=int(port))
    try:
        await client.initialize()
        total = 0
        for node in client.get_primaries():
            info = await client.execute_command("INFO", "memory", target_nodes=node)
            total += int(info["used_memory"])
        return total
    finally:
        await client.aclose()


async def _fill(storage: Storage) -> None:
    for start in range(0, TOTAL, BATCH):
        await storage.set_many({f"scan:{i:06d}": VALUE for i in range(start, start + BATCH)})


async def main(cluster_url: str, redis_url: str) -> bool:
    """Run the comparison, print the table; return whether both bounds hold."""
    base = f"kvbench_cluster_{uuid.uuid4().hex[:10]}"
    on_cluster = Storage(redis_cluster_driver(cluster_url, base=base))
    on_node = Storage(redis_driver(redis_url, base=base))
    report = Report("Redis Cluster driver (ours) vs single-node Redis driver (raw column)")
    try:
        before = await _used_memory(cluster_url)
        await _fill(on_cluster)
        per_key = (await _used_memory(cluster_url) - before) / TOTAL
        await _fill(on_node)
        prefix = "scan:000"  # scan:000000 .. scan:000999

        def scanning(storage: Storage) -> Callable[[], Awaitable[float]]:
            async def scans() -> float:
                async def one(_: int) -> None:
                    found = [key async for key in storage.keys(prefix)]
                    assert len(found) == MATCHES, len(found)

                return await time_async(one, SCANS)

            return scans

        def reading(storage: Storage) -> Callable[[], Awaitable[float]]:
            async def reads() -> float:
                return await time_async(lambda i: storage.get(f"scan:{i * 37 % TOTAL:06d}"),
                                        READS)

            return reads

        scan = await report.compare(
            "scan 1k of 100k", SCANS, scanning(on_cluster), scanning(on_node),
            rounds=ROUNDS,
        )
        read = await report.compare(
            "point read", READS, reading(on_cluster), reading(on_node),
            rounds=ROUNDS,
        )
        print(report.render())
        print(f"memory: {per_key:.0f} bytes per key on the masters (keys of 11 characters, "
              f"values of {len(orjson.dumps(VALUE))} bytes; replicas hold as much again)")
        scan_cost, read_cost = 1 / scan.ratio, 1 / read.ratio
        print(f"scan: the cluster costs {scan_cost:.2f}x the single node (bound {SCAN_BOUND}x)")
        print(f"point read: the cluster costs {read_cost:.2f}x the single node "
              f"(bound {READ_BOUND}x)")
        return scan_cost <= SCAN_BOUND and read_cost <= READ_BOUND
    finally:
        await on_cluster.clear()
        await on_node.clear()
        await on_cluster.close()
        await on_node.close()


if __name__ == "__main__":
    given = sys.argv[1] if len(sys.argv) > 1 else None
    single_url = sys.argv[2] if len(sys.argv) > 2 else "redis://127.0.0.1:6379/0"
    with _cluster(given) as url:
        held = asyncio.run(main(url, single_url))
    sys.exit(0 if held else 1)
