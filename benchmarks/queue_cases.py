"""The event queue: publish, publish_many, recover and publish-to-handler latency.

The raw sides are :mod:`benchmarks.queue_bench`'s: the single-row write into the same table with
the same pragmas (SQLite ``INSERT``, Redis ``XADD``, PostgreSQL ``INSERT``), one transaction of
100 rows for a batch, and one ``SELECT``/paged ``XRANGE`` plus JSON decoding for ``recover``,
keeping each event with its position and time as ``recover`` does.
On SQLite the peers are persist-queue's ``SQLiteQueue`` and litequeue's ``LiteQueue``, both set
to WAL with ``synchronous=NORMAL`` like ours (the same durability); neither has a batch publish,
a read of a topic's history or a handler, so those cells say "no API". Latency is ours alone:
milliseconds from ``publish`` starting to the handler running, in one process.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import orjson

from benchmarks.adapters import URLS
from benchmarks.method import NO_API, NOT_INSTALLED, Timed, interleave, stopwatch
from benchmarks.results import QUEUE_TARGET, Row
from benchmarks.sizes import Sizes

__all__ = ["QUEUE_DRIVERS", "run_queue"]

QUEUE_DRIVERS = ("sqlite", "redis", "postgresql")
EVENT = {"type": "text_delta", "data": {"text": "Hello, world", "index": 0}}
BATCH = 100


class _RawQueue:
    """The raw writes and read of one backend."""

    single: Callable[[], Awaitable[object]]
    batch: Callable[[], Awaitable[object]]
    recover: Callable[[], Awaitable[int]]
    load: Callable[[int], Awaitable[None]]


async def run_queue(driver: str, sizes: Sizes, rounds: int, workdir: Path) -> list[Row]:
    """Time the queue operations on ``driver`` (sqlite, redis or postgresql)."""
    from eventqueue import QueueEntry, create_queue

    async with AsyncExitStack() as stack:
        tag = secrets.token_hex(4)
        if driver == "sqlite":
            url = f"sqlite:///{workdir}/queue.db"
            raw = _sqlite_raw(workdir / "raw-queue.db", stack)
        elif driver == "redis":
            url = f"{URLS['redis']}?namespace=bench_q_{tag}"
            raw = await _redis_raw(f"bench_q_{tag}", stack)
        else:
            url = f"{URLS['postgresql']}?namespace=bench_q_{tag}"
            raw = await _postgresql_raw(f"bench_q_{tag}", stack)
        if driver == "postgresql":
            # Registered first so that it runs after the queue has closed.
            stack.push_async_callback(_drop_queue_tables, f"bench_q_{tag}")
        queue = await stack.enter_async_context(create_queue(url=url))
        peers = _queue_peers(workdir, stack) if driver == "sqlite" else {}

        async def ours_single() -> float:
            async def work() -> None:
                for _ in range(sizes.queue_single):
                    await queue.publish("single", EVENT)

            return await stopwatch(work)

        async def raw_single() -> float:
            async def work() -> None:
                for _ in range(sizes.queue_single):
                    await raw.single()

            return await stopwatch(work)

        bodies: dict[str, Timed | str] = {"ours": ours_single, "raw": raw_single}
        for name, peer in peers.items():
            bodies[name] = peer if isinstance(peer, str) else _peer_put(peer, sizes.queue_single)
        rows = [await _row(driver, "queue: publish", sizes.queue_single, bodies, rounds,
                           QUEUE_TARGET)]

        async def ours_batch() -> float:
            async def work() -> None:
                for _ in range(sizes.queue_batches):
                    await queue.publish_many("batch", [EVENT] * BATCH)

            return await stopwatch(work)

        async def raw_batch() -> float:
            async def work() -> None:
                for _ in range(sizes.queue_batches):
                    await raw.batch()

            return await stopwatch(work)

        bodies = {"ours": ours_batch, "raw": raw_batch, **_no_api(peers)}
        rows.append(await _row(driver, f"queue: publish_many {BATCH} (per event)",
                               sizes.queue_batches * BATCH, bodies, rounds, QUEUE_TARGET))

        await queue.publish_many("recover", [EVENT] * sizes.recover)
        await raw.load(sizes.recover)

        async def ours_recover() -> float:
            async def work() -> None:
                assert len(await queue.recover("recover")) == sizes.recover

            return await stopwatch(work)

        async def raw_recover() -> float:
            async def work() -> None:
                assert await raw.recover() == sizes.recover

            return await stopwatch(work)

        bodies = {"ours": ours_recover, "raw": raw_recover, **_no_api(peers)}
        rows.append(await _row(driver, f"queue: recover {sizes.recover:,} (per event)",
                               sizes.recover, bodies, rounds, QUEUE_TARGET))

        arrived = asyncio.Event()

        async def handler(entry: QueueEntry) -> None:
            arrived.set()

        subscription = queue.subscribe("latency", handler)
        await subscription.ready()

        async def ours_latency() -> float:
            total = 0.0
            for _ in range(sizes.latency):
                arrived.clear()
                start = time.perf_counter()
                await queue.publish("latency", EVENT)
                await arrived.wait()
                total += time.perf_counter() - start
            return total

        bodies = {"ours": ours_latency, "raw": NO_API, **_no_api(peers)}
        row = await _row(driver, "queue: publish-to-handler latency", sizes.latency, bodies,
                         rounds, None)
        row.unit = "ms"
        rows.append(row)
        subscription()
        return rows


async def _row(
    driver: str, name: str, count: int, bodies: dict[str, Timed | str], rounds: int,
    target: float | None,
) -> Row:
    return Row("queue", driver, name, await interleave(bodies, count, rounds), target)


def _no_api(peers: dict[str, Any]) -> dict[str, Timed | str]:
    return {name: peer if isinstance(peer, str) else NO_API for name, peer in peers.items()}


def _peer_put(put: Callable[[bytes], object], count: int) -> Timed:
    async def body() -> float:
        start = time.perf_counter()
        for _ in range(count):
            put(orjson.dumps(EVENT))
        return time.perf_counter() - start

    return body


Put = Callable[[bytes], object]


def _queue_peers(workdir: Path, stack: AsyncExitStack) -> dict[str, Put | str]:
    peers: dict[str, Put | str] = {}
    try:
        import persistqueue

        persist = persistqueue.SQLiteQueue(str(workdir / "persistqueue"), auto_commit=True)
        getattr(persist, "_putter").execute("PRAGMA synchronous=NORMAL")  # noqa: B009 - untyped
        stack.callback(persist.close)
        peers["persist-queue"] = persist.put
    except ImportError:
        peers["persist-queue"] = NOT_INSTALLED
    try:
        from litequeue import LiteQueue

        lite = LiteQueue(str(workdir / "litequeue.db"))
        stack.callback(lite.close)
        peers["litequeue"] = lambda data: lite.put(data.decode())
    except ImportError:
        peers["litequeue"] = NOT_INSTALLED
    return peers


def _sqlite_raw(path: Path, stack: AsyncExitStack) -> _RawQueue:
    from benchmarks.queue_bench import _sqlite_raw as connect

    conn = connect(str(path), "NORMAL")
    stack.callback(conn.close)
    sequence = itertools.count(1)
    insert = "INSERT INTO eventqueue_events VALUES (?, ?, ?, ?)"
    raw = _RawQueue()

    async def single() -> None:
        conn.execute(insert, ("single", next(sequence), time.time_ns() // 1_000_000,
                              orjson.dumps(EVENT)))

    async def batch() -> None:
        stamp = time.time_ns() // 1_000_000
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(insert, [("batch", next(sequence), stamp, orjson.dumps(EVENT))
                                  for _ in range(BATCH)])
        conn.execute("COMMIT")

    async def load(count: int) -> None:
        stamp = time.time_ns() // 1_000_000
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(insert, [("recover", i, stamp, orjson.dumps(EVENT))
                                  for i in range(count)])
        conn.execute("COMMIT")

    async def recover() -> int:
        rows = conn.execute(
            "SELECT seq, ts, event FROM eventqueue_events WHERE topic = ? ORDER BY seq",
            ("recover",),
        ).fetchall()
        # Each event with its position and time, as recover returns them: a caller resumes
        # from the position, so a read that dropped it would do less than the API.
        return len([(seq, ts, orjson.loads(event)) for seq, ts, event in rows])

    raw.single, raw.batch, raw.load, raw.recover = single, batch, load, recover
    return raw


async def _redis_raw(namespace: str, stack: AsyncExitStack) -> _RawQueue:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(URLS["redis"])

    async def cleanup() -> None:
        keys = [key async for key in client.scan_iter(match=f"{namespace}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()

    stack.push_async_callback(cleanup)
    stream, history = f"{namespace}:raw", f"{namespace}:rawrecover"
    raw = _RawQueue()

    async def single() -> None:
        await client.xadd(stream, {"t": time.time_ns() // 1_000_000, "e": orjson.dumps(EVENT)})

    async def batch() -> None:
        stamp = time.time_ns() // 1_000_000
        async with client.pipeline(transaction=True) as pipe:
            for _ in range(BATCH):
                pipe.xadd(stream, {"t": stamp, "e": orjson.dumps(EVENT)})
            await pipe.execute()

    async def load(count: int) -> None:
        stamp = time.time_ns() // 1_000_000
        async with client.pipeline(transaction=False) as pipe:
            for _ in range(count):
                pipe.xadd(history, {"t": stamp, "e": orjson.dumps(EVENT)})
            await pipe.execute()

    async def recover() -> int:
        found: list[Any] = []
        start = "-"
        while True:
            page: list[Any] = await client.xrange(history, start, "+", count=500)  # type: ignore[assignment]
            # With its id and time, as in the SQLite baseline.
            found.extend((id_, fields[b"t"], orjson.loads(fields[b"e"])) for id_, fields in page)
            if len(page) < 500:
                return len(found)
            start = "(" + page[-1][0].decode()

    raw.single, raw.batch, raw.load, raw.recover = single, batch, load, recover
    return raw


async def _postgresql_raw(namespace: str, stack: AsyncExitStack) -> _RawQueue:
    import psycopg

    conn = await psycopg.AsyncConnection.connect(URLS["postgresql"], autocommit=True)
    table = f"{namespace}_raw"
    await conn.execute(
        f'CREATE TABLE {table} (topic text COLLATE "C" NOT NULL, seq bigint NOT NULL,'
        " ts bigint NOT NULL, event bytea NOT NULL, PRIMARY KEY (topic, seq))"
    )
    await conn.execute(f"CREATE INDEX ON {table} (ts)")

    async def cleanup() -> None:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.close()

    stack.push_async_callback(cleanup)
    sequence = itertools.count(1)
    insert = f"INSERT INTO {table} VALUES (%s, %s, %s, %s)"
    raw = _RawQueue()

    async def single() -> None:
        await conn.execute(insert, ("single", next(sequence), time.time_ns() // 1_000_000,
                                    orjson.dumps(EVENT)))

    async def batch() -> None:
        stamp = time.time_ns() // 1_000_000
        async with conn.transaction(), conn.cursor() as cursor:
            await cursor.executemany(insert, [("batch", next(sequence), stamp,
                                               orjson.dumps(EVENT)) for _ in range(BATCH)])

    async def load(count: int) -> None:
        stamp = time.time_ns() // 1_000_000
        async with conn.transaction(), conn.cursor() as cursor:
            await cursor.executemany(insert, [("recover", i, stamp, orjson.dumps(EVENT))
                                              for i in range(count)])

    async def recover() -> int:
        # Binary results, as the queue's backend reads its pages: bytea arrives as bytes
        # without the text form's hex step on either side.
        cursor = await conn.execute(
            f"SELECT seq, ts, event FROM {table} WHERE topic = 'recover' ORDER BY seq",
            binary=True,
        )
        # With its position and time, as in the SQLite baseline.
        return len([(seq, ts, orjson.loads(event)) for seq, ts, event in await cursor.fetchall()])

    raw.single, raw.batch, raw.load, raw.recover = single, batch, load, recover
    return raw


async def _drop_queue_tables(namespace: str) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(URLS["postgresql"], autocommit=True) as conn:
        for suffix in ("events", "topics", "cursors"):
            await conn.execute(f"DROP TABLE IF EXISTS {namespace}_{suffix}")
