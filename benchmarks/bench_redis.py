"""Redis: ``Storage`` over the Redis driver next to raw ``redis.asyncio`` doing the same work.

Run with ``python -m benchmarks.bench_redis [URL]`` (default: the shared test server). Everything
lives under a unique base / key prefix and is deleted afterwards.

Three raw baselines, because they answer different questions:
- plain ``SET``/``GET`` of string keys: what a raw user typically writes; it does less work than
  the driver, which also keeps the ordered index that makes prefix scans cheap;
- ``MULTI HSET ZADD EXEC``: the same hash + index write, done the obvious raw way;
- ``EVALSHA`` of the driver's own script: the same work in the same single round trip.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import Awaitable, Callable

import orjson
import redis.asyncio as aioredis

from benchmarks.harness import Report, time_async
from kvstore.conditional import new_version
from kvstore.drivers.redis import _SET_SCRIPT, redis_driver
from kvstore.keys import prefix_successor
from kvstore.storage import Storage

SEQUENTIAL = 2_000
# More rounds for the point operations: the machine is shared, and the best round is reported.
POINT_ROUNDS = 9
BATCH = 10_000
SCAN_TOTAL = 100_000
SCAN_MATCHES = 1_000
VALUE = {"name": "benchmark", "count": 42, "tags": ["a", "b", "c"]}


async def main(url: str) -> None:
    tag = uuid.uuid4().hex[:10]
    base = f"kvbench_{tag}"
    plain = f"kvbench_raw_{tag}:"
    raw_hash, raw_index = f"kvbench_rawh_{tag}:kv", f"kvbench_rawh_{tag}:keys"
    raw_versions = f"kvbench_rawh_{tag}:ver"
    raw_written, raw_expiries = f"kvbench_rawh_{tag}:at", f"kvbench_rawh_{tag}:exp"
    raw = aioredis.Redis.from_url(url)
    storage = Storage(redis_driver(url, base=base))
    report = Report(f"redis ({url}) through Storage vs raw redis.asyncio")
    encoded = orjson.dumps(VALUE)
    script_sha = await raw.script_load(_SET_SCRIPT)
    async def point(
        label: str, ours: Callable[[], Awaitable[float]], raw: Callable[[], Awaitable[float]]
    ) -> None:
        await report.compare(label, SEQUENTIAL, ours, raw, rounds=POINT_ROUNDS)

    try:
        # -- single operations --------------------------------------------------------------
        async def ours_set() -> float:
            return await time_async(lambda i: storage.set(f"s:{i}", VALUE), SEQUENTIAL)

        async def raw_set() -> float:
            return await time_async(
                lambda i: raw.set(f"{plain}s:{i}", orjson.dumps(VALUE)), SEQUENTIAL
            )

        async def raw_multi_set() -> float:
            async def one(i: int) -> None:
                pipe = raw.pipeline(transaction=True)
                pipe.hset(raw_hash, f"s:{i}", orjson.dumps(VALUE))
                pipe.zadd(raw_index, {f"s:{i}": 0})
                await pipe.execute()

            return await time_async(one, SEQUENTIAL)

        async def raw_script_set() -> float:
            return await time_async(
                lambda i: raw.evalsha(
                    script_sha, 5, raw_hash, raw_index, raw_versions, raw_written,
                    raw_expiries, f"s:{i}",
                    orjson.dumps(VALUE), str(new_version()),
                ),
                SEQUENTIAL,
            )

        await point("set vs SET (plain key)", ours_set, raw_set)
        await point("set vs MULTI HSET+ZADD", ours_set, raw_multi_set)
        await point("set vs EVALSHA (same script)", ours_set, raw_script_set)

        async def ours_get() -> float:
            return await time_async(lambda i: storage.get(f"s:{i}"), SEQUENTIAL)

        async def raw_get() -> float:
            async def one(i: int) -> object:
                found = await raw.get(f"{plain}s:{i}")
                return None if found is None else orjson.loads(found)

            return await time_async(one, SEQUENTIAL)

        async def raw_hget() -> float:
            async def one(i: int) -> object:
                found = await raw.hget(raw_hash, f"s:{i}")
                return None if found is None else orjson.loads(found)

            return await time_async(one, SEQUENTIAL)

        await point("get vs GET (plain key)", ours_get, raw_get)
        await point("get vs HGET", ours_get, raw_hget)

        async def ours_miss() -> float:
            return await time_async(lambda i: storage.get(f"missing:{i}"), SEQUENTIAL)

        async def raw_miss() -> float:
            return await time_async(lambda i: raw.get(f"{plain}missing:{i}"), SEQUENTIAL)

        await point("get miss vs GET miss", ours_miss, raw_miss)

        async def ours_delete() -> float:
            await storage.set_many((f"d:{i}", VALUE) for i in range(SEQUENTIAL))
            return await time_async(lambda i: storage.delete(f"d:{i}"), SEQUENTIAL)

        async def raw_delete() -> float:
            await raw.mset({f"{plain}d:{i}": encoded for i in range(SEQUENTIAL)})
            return await time_async(lambda i: raw.delete(f"{plain}d:{i}"), SEQUENTIAL)

        async def raw_multi_delete() -> float:
            async def one(i: int) -> None:
                pipe = raw.pipeline(transaction=True)
                pipe.hdel(raw_hash, f"d:{i}")
                pipe.zrem(raw_index, f"d:{i}")
                await pipe.execute()

            return await time_async(one, SEQUENTIAL)

        await point("delete vs DEL (plain key)", ours_delete, raw_delete)
        await point("delete vs MULTI HDEL+ZREM", ours_delete, raw_multi_delete)

        # -- batches ------------------------------------------------------------------------
        batch_keys = [f"b:{i:05d}" for i in range(BATCH)]
        batch = {key: {"n": i} for i, key in enumerate(batch_keys)}

        async def ours_set_many() -> float:
            return await time_async(lambda _: storage.set_many(batch), 1)

        async def raw_mset() -> float:
            async def one(_: int) -> None:
                await raw.mset({plain + key: orjson.dumps(value) for key, value in batch.items()})

            return await time_async(one, 1)

        async def raw_multi_set_many() -> float:
            async def one(_: int) -> None:
                pipe = raw.pipeline(transaction=True)
                pipe.hset(raw_hash, mapping={k: orjson.dumps(v) for k, v in batch.items()})
                pipe.zadd(raw_index, dict.fromkeys(batch, 0))
                await pipe.execute()

            return await time_async(one, 1)

        async def raw_pipeline_set() -> float:
            async def one(_: int) -> None:
                pipe = raw.pipeline(transaction=False)
                for key, value in batch.items():
                    pipe.set(plain + key, orjson.dumps(value))
                await pipe.execute()

            return await time_async(one, 1)

        await report.compare("set_many 10k vs MSET", BATCH, ours_set_many, raw_mset)
        await report.compare(
            "set_many 10k vs MULTI HSET+ZADD", BATCH, ours_set_many, raw_multi_set_many
        )
        await report.compare(
            "set_many 10k vs pipelined SETs", BATCH, ours_set_many, raw_pipeline_set
        )

        async def ours_get_many() -> float:
            return await time_async(lambda _: storage.get_many(batch_keys), 1)

        async def raw_mget() -> float:
            async def one(_: int) -> None:
                found = await raw.mget([plain + key for key in batch_keys])
                [None if value is None else orjson.loads(value) for value in found]

            return await time_async(one, 1)

        async def raw_hmget() -> float:
            async def one(_: int) -> None:
                found = await raw.hmget(raw_hash, batch_keys)
                [None if value is None else orjson.loads(value) for value in found]

            return await time_async(one, 1)

        await report.compare("get_many 10k vs MGET", BATCH, ours_get_many, raw_mget)
        await report.compare("get_many 10k vs HMGET", BATCH, ours_get_many, raw_hmget)

        # -- prefix scan: 1,000 matching keys among 100,000 -----------------------------------
        for start in range(0, SCAN_TOTAL, BATCH):
            chunk = {f"scan:{i:06d}": i for i in range(start, start + BATCH)}
            await storage.set_many(chunk)
            await raw.mset({plain + key: b"1" for key in chunk})
            pipe = raw.pipeline(transaction=True)
            pipe.zadd(raw_index, dict.fromkeys(chunk, 0))
            await pipe.execute()
        prefix = "scan:000"  # scan:000000 .. scan:000999
        successor = prefix_successor(prefix)

        async def ours_scan() -> float:
            async def one(_: int) -> None:
                found = [key async for key in storage.keys(prefix)]
                assert len(found) == SCAN_MATCHES

            return await time_async(one, 1)

        async def raw_zrangebylex() -> float:
            async def one(_: int) -> None:
                found = await raw.zrangebylex(raw_index, f"[{prefix}", f"({successor}")
                # Decoded like the driver does, so both sides hand back str keys.
                keys = [key.decode() if isinstance(key, bytes) else key for key in found]
                assert len(keys) == SCAN_MATCHES

            return await time_async(one, 1)

        async def raw_scan_match() -> float:
            async def one(_: int) -> None:
                found = [key async for key in raw.scan_iter(match=f"{plain}{prefix}*", count=1000)]
                assert len(found) == SCAN_MATCHES

            return await time_async(one, 1)

        await report.compare("scan 1k/100k vs one ZRANGEBYLEX", SCAN_MATCHES, ours_scan,
                             raw_zrangebylex)
        await report.compare("scan 1k/100k vs SCAN MATCH", SCAN_MATCHES, ours_scan,
                             raw_scan_match, rounds=2)
        print(report.render())
    finally:
        await storage.clear()
        await storage.close()
        await raw.delete(raw_hash, raw_index, raw_versions, raw_written, raw_expiries)
        doomed = [key async for key in raw.scan_iter(match=f"{plain}*", count=5000)]
        for start in range(0, len(doomed), 5000):
            await raw.unlink(*doomed[start : start + 5000])
        await raw.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
        "KVSTORE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")))
