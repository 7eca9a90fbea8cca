"""PostgreSQL: ``Storage`` over the PostgreSQL driver next to raw psycopg 3 async, same work.

Run with ``python -m benchmarks.bench_postgresql [URL]`` (default: the shared test server). The
driver and the raw client use two tables of the same schema, unique to this run, dropped after.

The raw side runs the same statements on one dedicated ``AsyncConnection`` in autocommit mode:
no pool, no error translation, the cheapest way psycopg offers (a concurrent application needs a
pool, so point reads are also compared with raw psycopg through psycopg-pool). For batches it
is given its best forms (``unnest`` arrays, sent in binary as the driver sends them, in one
statement, and ``executemany``, which psycopg pipelines).
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import psycopg
from psycopg_pool import AsyncConnectionPool

from benchmarks.harness import Report, time_async
from kvstore.drivers.postgresql import postgresql_driver
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
    ours_table, raw_table = f"kvbench_{tag}", f"kvbench_raw_{tag}"
    raw = await psycopg.AsyncConnection.connect(url, autocommit=True)
    # The same pool class and settings the driver uses, for the "raw but pooled" rows.
    pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
        url, kwargs={"autocommit": True}, min_size=1, max_size=10, open=False
    )
    await pool.open()
    storage = Storage(postgresql_driver(url, table=ours_table))
    report = Report(f"postgresql ({url}) through Storage vs raw psycopg async")
    await raw.execute(
        f'CREATE TABLE "{raw_table}" (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL)'
    )
    upsert = (
        f'INSERT INTO "{raw_table}" (key, value) VALUES (%s, %s) '
        "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
    )
    select = f'SELECT value FROM "{raw_table}" WHERE key = %s'
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
                lambda i: raw.execute(upsert, (f"s:{i}", orjson.dumps(VALUE))), SEQUENTIAL
            )

        await point("set (upsert)", ours_set, raw_set)

        async def ours_get() -> float:
            return await time_async(lambda i: storage.get(f"s:{i}"), SEQUENTIAL)

        async def raw_get() -> float:
            async def one(i: int) -> object:
                cursor = await raw.execute(select, (f"s:{i}",), binary=True)
                row = await cursor.fetchone()
                return None if row is None else orjson.loads(row[0])

            return await time_async(one, SEQUENTIAL)

        await point("get", ours_get, raw_get)

        async def raw_pooled_get() -> float:
            async def one(i: int) -> object:
                connection = await pool.getconn()
                try:
                    cursor = await connection.execute(select, (f"s:{i}",), binary=True)
                    row = await cursor.fetchone()
                finally:
                    await pool.putconn(connection)
                return None if row is None else orjson.loads(row[0])

            return await time_async(one, SEQUENTIAL)

        async def raw_pooled_context_get() -> float:
            async def one(i: int) -> object:
                async with pool.connection() as connection:
                    cursor = await connection.execute(select, (f"s:{i}",), binary=True)
                    row = await cursor.fetchone()
                return None if row is None else orjson.loads(row[0])

            return await time_async(one, SEQUENTIAL)

        await point("get vs raw getconn/putconn", ours_get, raw_pooled_get)
        await point("get vs raw pool.connection()", ours_get, raw_pooled_context_get)

        async def ours_miss() -> float:
            return await time_async(lambda i: storage.get(f"missing:{i}"), SEQUENTIAL)

        async def raw_miss() -> float:
            async def one(i: int) -> object:
                cursor = await raw.execute(select, (f"missing:{i}",), binary=True)
                return await cursor.fetchone()

            return await time_async(one, SEQUENTIAL)

        await point("get miss", ours_miss, raw_miss)

        delete = f'DELETE FROM "{raw_table}" WHERE key = %s'

        async def ours_delete() -> float:
            await storage.set_many((f"d:{i}", VALUE) for i in range(SEQUENTIAL))
            return await time_async(lambda i: storage.delete(f"d:{i}"), SEQUENTIAL)

        async def raw_delete() -> float:
            async with raw.cursor() as cursor:
                await cursor.executemany(
                    upsert, [(f"d:{i}", orjson.dumps(VALUE)) for i in range(SEQUENTIAL)]
                )
            return await time_async(lambda i: raw.execute(delete, (f"d:{i}",)), SEQUENTIAL)

        await point("delete", ours_delete, raw_delete)

        # -- batches ------------------------------------------------------------------------
        batch_keys = [f"b:{i:05d}" for i in range(BATCH)]
        batch = {key: {"n": i} for i, key in enumerate(batch_keys)}
        unnest = (
            f'INSERT INTO "{raw_table}" (key, value) SELECT * FROM unnest(%b::text[], %b::bytea[]) '
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
        )

        async def ours_set_many() -> float:
            return await time_async(lambda _: storage.set_many(batch), 1)

        async def raw_unnest() -> float:
            async def one(_: int) -> None:
                values = [orjson.dumps(value) for value in batch.values()]
                # One statement is atomic in autocommit mode, as the driver relies on.
                await raw.execute(unnest, (list(batch), values))

            return await time_async(one, 1)

        async def raw_executemany() -> float:
            async def one(_: int) -> None:
                async with raw.transaction(), raw.cursor() as cursor:
                    await cursor.executemany(
                        upsert, [(key, orjson.dumps(value)) for key, value in batch.items()]
                    )

            return await time_async(one, 1)

        await report.compare("set_many 10k vs unnest", BATCH, ours_set_many, raw_unnest)
        await report.compare("set_many 10k vs executemany", BATCH, ours_set_many, raw_executemany,
                             rounds=2)

        select_many = f'SELECT key, value FROM "{raw_table}" WHERE key = ANY(%b::text[])'

        async def ours_get_many() -> float:
            return await time_async(lambda _: storage.get_many(batch_keys), 1)

        async def raw_get_many() -> float:
            async def one(_: int) -> None:
                cursor = await raw.execute(select_many, (batch_keys,), binary=True)
                found = {key: orjson.loads(value) for key, value in await cursor.fetchall()}
                [found.get(key) for key in batch_keys]

            return await time_async(one, 1)

        await report.compare("get_many 10k vs = ANY", BATCH, ours_get_many, raw_get_many)

        # -- prefix scan: 1,000 matching keys among 100,000 -----------------------------------
        for start in range(0, SCAN_TOTAL, BATCH):
            chunk = {f"scan:{i:06d}": i for i in range(start, start + BATCH)}
            await storage.set_many(chunk)
            async with raw.transaction():
                await raw.execute(unnest, (list(chunk), [b"1"] * len(chunk)))
        await raw.execute(f'ANALYZE "{raw_table}"')
        await raw.execute(f'ANALYZE "{ours_table}"')
        prefix = "scan:000"  # scan:000000 .. scan:000999
        successor = prefix_successor(prefix)
        scan = f'SELECT key FROM "{raw_table}" WHERE key >= %s AND key < %s ORDER BY key'

        async def ours_scan() -> float:
            async def one(_: int) -> None:
                found = [key async for key in storage.keys(prefix)]
                assert len(found) == SCAN_MATCHES

            return await time_async(one, 1)

        async def raw_scan() -> float:
            async def one(_: int) -> None:
                cursor = await raw.execute(scan, (prefix, successor))
                assert len(await cursor.fetchall()) == SCAN_MATCHES

            return await time_async(one, 1)

        await report.compare("scan 1k/100k vs one range query", SCAN_MATCHES, ours_scan, raw_scan)
        print(report.render())
    finally:
        await storage.close()
        await raw.execute(f'DROP TABLE IF EXISTS "{raw_table}"')
        await raw.execute(f'DROP TABLE IF EXISTS "{ours_table}"')
        await raw.close()
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
        "KVSTORE_TEST_POSTGRESQL_URL", "postgresql://root@127.0.0.1:5432/test")))
