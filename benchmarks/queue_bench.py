"""Event queue speed next to the raw operation it wraps, and next to persist-queue.

Run: ``python -m benchmarks.queue_bench [sqlite] [redis] [postgresql]`` (all by default).

Rows per backend (ops/s, best of 3 interleaved rounds; ratio = ours / raw):

- publish one at a time: ``queue.publish`` vs the raw single-row write into the same table with
  the same pragmas (SQLite ``INSERT``, Redis ``XADD``, PostgreSQL ``INSERT``), JSON encoding
  included on both sides.
- publish batched: ``publish_many`` of 100 vs one transaction of 100 raw rows (a pipeline of
  100 ``XADD`` on Redis).
- recover 10,000: ``queue.recover`` vs a raw ``SELECT``/``XRANGE`` of the same rows plus JSON
  decoding.
- SQLite only: publish vs ``persistqueue.SQLiteQueue.put`` (WAL, its default synchronous=FULL,
  JSON serializer).

Then publish-to-handler latency (mean ms over sequential round trips) inside one process, and
across two processes (ping-pong through the queue; one-way latency = round trip / 2). Nothing
here runs in the tests.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from eventqueue import EventQueue, QueueEntry, create_queue

from benchmarks.harness import Report
from tests.support.servers import POSTGRESQL_URL, REDIS_URL

ROUNDS = 3
SINGLE = 1_000
BATCHES = 20
BATCH = 100
RECOVER = 10_000
LATENCY_ROUNDS = 200
ROOT = Path(__file__).resolve().parents[1]

EVENT = {"type": "text_delta", "data": {"text": "Hello, world", "index": 0}}


def _sqlite_raw(path: str, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS eventqueue_events (topic TEXT NOT NULL, seq INTEGER NOT NULL,"
        " ts INTEGER NOT NULL, event BLOB NOT NULL, PRIMARY KEY (topic, seq)) WITHOUT ROWID"
    )
    conn.execute("CREATE INDEX IF NOT EXISTS eventqueue_events_ts ON eventqueue_events (ts)")
    return conn


async def _timed(operation: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await operation()
    return time.perf_counter() - start


async def _latency(publisher: EventQueue, listener: EventQueue, rounds: int) -> float:
    """Mean ms from publish() starting to the handler running, in one process."""
    arrived = asyncio.Event()
    samples: list[float] = []
    started = 0.0

    async def handler(entry: QueueEntry) -> None:
        samples.append(time.perf_counter() - started)
        arrived.set()

    subscription = listener.subscribe("latency", handler)
    await subscription.ready()
    for _ in range(rounds):
        arrived.clear()
        started = time.perf_counter()
        await publisher.publish("latency", EVENT)
        await arrived.wait()
    subscription()
    return statistics.mean(samples) * 1000


ECHO = """
import asyncio, sys
from eventqueue import create_queue
async def main():
    async with create_queue(url=sys.argv[1]) as queue:
        async def echo(entry):
            await queue.publish("pong", entry.event)
        await queue.subscribe("ping", echo).ready()
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
asyncio.run(main())
"""


async def _cross_process_latency(url: str, rounds: int) -> float:
    """Mean one-way ms between two processes (half a ping-pong round trip)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "queue")]))
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        ECHO,
        url,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    assert child.stdin is not None
    assert (await child.stdout.readline()).strip() == b"ready"
    async with create_queue(url=url) as queue:
        got = asyncio.Event()
        samples: list[float] = []
        started = 0.0

        async def pong(entry: QueueEntry) -> None:
            samples.append(time.perf_counter() - started)
            got.set()

        await queue.subscribe("pong", pong).ready()
        for i in range(rounds):
            got.clear()
            started = time.perf_counter()
            await queue.publish("ping", {"i": i})
            await got.wait()
    child.stdin.write(b"stop\n")
    await child.stdin.drain()
    await child.wait()
    return statistics.mean(samples) * 1000 / 2


async def _common_rows(
    report: Report,
    queue: EventQueue,
    raw_single: Callable[[int], Any],
    raw_batch: Callable[[int], Any],
    raw_recover: Callable[[], Any],
) -> None:
    async def ours_single() -> float:
        async def run() -> None:
            for _ in range(SINGLE):
                await queue.publish("single", EVENT)

        return await _timed(run)

    async def theirs_single() -> float:
        async def run() -> None:
            for i in range(SINGLE):
                await raw_single(i)

        return await _timed(run)

    await report.compare("publish one at a time", SINGLE, ours_single, theirs_single, ROUNDS)

    async def ours_batch() -> float:
        async def run() -> None:
            for _ in range(BATCHES):
                await queue.publish_many("batch", [EVENT] * BATCH)

        return await _timed(run)

    async def theirs_batch() -> float:
        async def run() -> None:
            for b in range(BATCHES):
                await raw_batch(b)

        return await _timed(run)

    await report.compare(
        f"publish batched ({BATCH})", BATCHES * BATCH, ours_batch, theirs_batch, ROUNDS
    )

    await queue.publish_many("recover", [EVENT] * RECOVER)

    async def ours_recover() -> float:
        async def run() -> None:
            assert len(await queue.recover("recover")) == RECOVER

        return await _timed(run)

    async def theirs_recover() -> float:
        return await _timed(raw_recover)

    await report.compare(f"recover {RECOVER:,}", RECOVER, ours_recover, theirs_recover, ROUNDS)


async def bench_sqlite(synchronous: str) -> tuple[Report, list[str]]:
    folder = tempfile.mkdtemp(prefix="eqbench_")
    report = Report(f"event queue on SQLite (WAL, synchronous={synchronous})")
    try:
        url = f"sqlite:///{folder}/queue.db?synchronous={synchronous}"
        raw = _sqlite_raw(f"{folder}/raw.db", synchronous)
        seq = iter(range(1, 10**9))

        async def raw_single(i: int) -> None:
            raw.execute(
                "INSERT INTO eventqueue_events VALUES (?, ?, ?, ?)",
                ("single", next(seq), time.time_ns() // 1_000_000, orjson.dumps(EVENT)),
            )

        async def raw_batch(b: int) -> None:
            ts = time.time_ns() // 1_000_000
            raw.execute("BEGIN IMMEDIATE")
            raw.executemany(
                "INSERT INTO eventqueue_events VALUES (?, ?, ?, ?)",
                [("batch", next(seq), ts, orjson.dumps(EVENT)) for _ in range(BATCH)],
            )
            raw.execute("COMMIT")

        raw.executemany(
            "INSERT INTO eventqueue_events VALUES (?, ?, ?, ?)",
            [("recover", i, 0, orjson.dumps(EVENT)) for i in range(RECOVER)],
        )

        async def raw_recover() -> None:
            rows = raw.execute(
                "SELECT seq, ts, event FROM eventqueue_events WHERE topic = ? ORDER BY seq",
                ("recover",),
            ).fetchall()
            assert len([orjson.loads(r[2]) for r in rows]) == RECOVER

        async with create_queue(url=url) as queue:
            await _common_rows(report, queue, raw_single, raw_batch, raw_recover)

            if synchronous == "FULL":
                import persistqueue
                import persistqueue.serializers.json

                peer = persistqueue.SQLiteQueue(
                    f"{folder}/peer", auto_commit=True, serializer=persistqueue.serializers.json
                )

                async def ours() -> float:
                    async def run() -> None:
                        for _ in range(SINGLE):
                            await queue.publish("peer", EVENT)

                    return await _timed(run)

                async def theirs() -> float:
                    async def run() -> None:
                        for _ in range(SINGLE):
                            peer.put(EVENT)

                    return await _timed(run)

                await report.compare("publish vs persistqueue.put", SINGLE, ours, theirs, ROUNDS)
            other = create_queue(url=url)
            async with other:
                local = await _latency(queue, queue, LATENCY_ROUNDS)
                two_objects = await _latency(queue, other, 50)
        cross = await _cross_process_latency(url, 50)
        raw.close()
        notes = [
            f"latency publish->handler, same queue object: {local:.3f} ms",
            f"latency publish->handler, two queue objects (polling): {two_objects:.3f} ms",
            f"latency publish->handler, two processes (one way): {cross:.3f} ms",
        ]
        return report, notes
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def bench_redis() -> tuple[Report, list[str]]:
    import redis.asyncio as aioredis

    namespace = f"eqbench_{secrets.token_hex(4)}"
    url = f"{REDIS_URL}?namespace={namespace}"
    client = aioredis.Redis.from_url(REDIS_URL)
    report = Report("event queue on Redis Streams")
    raw_key = f"{namespace}:raw"
    try:

        async def raw_single(i: int) -> None:
            await client.xadd(raw_key, {"t": time.time_ns() // 1_000_000, "e": orjson.dumps(EVENT)})

        async def raw_batch(b: int) -> None:
            ts = time.time_ns() // 1_000_000
            async with client.pipeline(transaction=True) as pipe:
                for _ in range(BATCH):
                    pipe.xadd(raw_key, {"t": ts, "e": orjson.dumps(EVENT)})
                await pipe.execute()

        recover_key = f"{namespace}:rawrecover"
        async with client.pipeline(transaction=False) as pipe:
            for _ in range(RECOVER):
                pipe.xadd(recover_key, {"t": 0, "e": orjson.dumps(EVENT)})
            await pipe.execute()

        async def raw_recover() -> None:
            rows: list[Any] = []
            start = "-"
            while True:
                page: list[Any] = await client.xrange(  # type: ignore[assignment]
                    recover_key, start, "+", count=500
                )
                rows.extend(orjson.loads(fields[b"e"]) for _, fields in page)
                if len(page) < 500:
                    break
                start = "(" + page[-1][0].decode()
            assert len(rows) == RECOVER

        async with create_queue(url=url) as queue, create_queue(url=url) as other:
            await _common_rows(report, queue, raw_single, raw_batch, raw_recover)
            local = await _latency(queue, queue, LATENCY_ROUNDS)
            two_objects = await _latency(queue, other, LATENCY_ROUNDS)
        cross = await _cross_process_latency(url, LATENCY_ROUNDS)
        notes = [
            f"latency publish->handler, same queue object: {local:.3f} ms",
            f"latency publish->handler, two queue objects: {two_objects:.3f} ms",
            f"latency publish->handler, two processes (one way): {cross:.3f} ms",
        ]
        return report, notes
    finally:
        keys = [key async for key in client.scan_iter(match=f"{namespace}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def bench_postgresql() -> tuple[Report, list[str]]:
    import psycopg

    namespace = f"eqbench_{secrets.token_hex(4)}"
    url = f"{POSTGRESQL_URL}?namespace={namespace}"
    report = Report("event queue on PostgreSQL")
    conn = await psycopg.AsyncConnection.connect(POSTGRESQL_URL, autocommit=True)
    raw_table = f"{namespace}_raw"
    try:
        await conn.execute(
            f'CREATE TABLE {raw_table} (topic text COLLATE "C" NOT NULL, seq bigint NOT NULL,'
            " ts bigint NOT NULL, event bytea NOT NULL, PRIMARY KEY (topic, seq))"
        )
        await conn.execute(f"CREATE INDEX ON {raw_table} (ts)")
        seq = iter(range(1, 10**9))
        insert = f"INSERT INTO {raw_table} VALUES (%s, %s, %s, %s)"

        async def raw_single(i: int) -> None:
            await conn.execute(
                insert, ("single", next(seq), time.time_ns() // 1_000_000, orjson.dumps(EVENT))
            )

        async def raw_batch(b: int) -> None:
            ts = time.time_ns() // 1_000_000
            async with conn.transaction(), conn.cursor() as cur:
                await cur.executemany(
                    insert, [("batch", next(seq), ts, orjson.dumps(EVENT)) for _ in range(BATCH)]
                )

        async with conn.cursor() as cur:
            await cur.executemany(
                insert, [("recover", 10**8 + i, 0, orjson.dumps(EVENT)) for i in range(RECOVER)]
            )

        async def raw_recover() -> None:
            cur = await conn.execute(
                f"SELECT seq, ts, event FROM {raw_table} WHERE topic = 'recover' ORDER BY seq"
            )
            assert len([orjson.loads(r[2]) for r in await cur.fetchall()]) == RECOVER

        async with create_queue(url=url) as queue, create_queue(url=url) as other:
            await _common_rows(report, queue, raw_single, raw_batch, raw_recover)
            local = await _latency(queue, queue, LATENCY_ROUNDS)
            two_objects = await _latency(queue, other, LATENCY_ROUNDS)
        cross = await _cross_process_latency(url, LATENCY_ROUNDS)
        notes = [
            f"latency publish->handler, same queue object: {local:.3f} ms",
            f"latency publish->handler, two queue objects (NOTIFY): {two_objects:.3f} ms",
            f"latency publish->handler, two processes (one way): {cross:.3f} ms",
        ]
        return report, notes
    finally:
        for table in ("raw", "events", "topics", "cursors"):
            await conn.execute(f"DROP TABLE IF EXISTS {namespace}_{table}")
        await conn.close()


async def main(selected: list[str]) -> None:
    runs: dict[str, Callable[[], Awaitable[tuple[Report, list[str]]]]] = {
        "sqlite": lambda: bench_sqlite("FULL"),
        "sqlite-normal": lambda: bench_sqlite("NORMAL"),
        "redis": bench_redis,
        "postgresql": bench_postgresql,
    }
    for name in selected or list(runs):
        report, notes = await runs[name]()
        print(report.render())
        for note in notes:
            print("  " + note)
        print(flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
