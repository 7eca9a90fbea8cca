"""MySQL/MariaDB driver through Storage vs raw PyMySQL doing the same work.

Run: ``python -m benchmarks.bench_mysql [URL]`` (default: the shared test server). Targets: at
least 0.85 of raw on sequential get and set, batches within 0.85 of raw's best batch form.

Two baselines, one table each: raw PyMySQL called directly (a plain sync call, which blocks the
event loop and so is not something an async application may do), and the same call wrapped in
``anyio.to_thread.run_sync`` (what an async caller must do). Both use one autocommit connection,
the driver's schema and upsert, orjson values, and the best batch forms: ``executemany`` of the
upsert in one transaction, and one ``IN (...)`` query for the whole batch. The tables have random
names and are dropped afterwards.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Sequence
from typing import TypeVar

import anyio
import anyio.to_thread
import orjson
import pymysql

from benchmarks.core_workload import compare_storage
from benchmarks.harness import Report
from kvstore.drivers.mysql import mysql_driver
from kvstore.keys import prefix_successor
from kvstore.storage import Storage

_T = TypeVar("_T")
DEFAULT_URL = "mysql://root@127.0.0.1:3306/test"


class RawPyMySQL:
    """The raw baseline: one PyMySQL connection, optionally hopping to a worker thread per call."""

    def __init__(self, url: str, table: str, *, hop: bool) -> None:
        params = dict(mysql_driver(url)._params)
        self.conn = pymysql.connect(**params)
        self.table = table
        self.hop = hop
        with self.conn.cursor() as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS `{table}` (`key` VARBINARY(1024) NOT NULL PRIMARY "
                "KEY, `value` LONGBLOB NOT NULL) ENGINE=InnoDB ROW_FORMAT=DYNAMIC"
            )
        self.upsert = (
            f"INSERT INTO `{table}` (`key`, `value`) VALUES (%s, %s) "
            "ON DUPLICATE KEY UPDATE `value` = VALUES(`value`)"
        )

    async def _call(self, work: Callable[[], _T]) -> _T:
        if self.hop:
            return await anyio.to_thread.run_sync(work)
        return work()

    async def set(self, key: str, value: object) -> None:
        data = (key.encode(), orjson.dumps(value))

        def work() -> None:
            with self.conn.cursor() as cursor:
                cursor.execute(self.upsert, data)

        await self._call(work)

    async def get(self, key: str) -> object | None:
        def work() -> bytes | None:
            with self.conn.cursor() as cursor:
                cursor.execute(
                    f"SELECT `value` FROM `{self.table}` WHERE `key` = %s", (key.encode(),)
                )
                row = cursor.fetchone()
            return None if row is None else bytes(row[0])

        raw = await self._call(work)
        return None if raw is None else orjson.loads(raw)

    async def delete(self, key: str) -> None:
        def work() -> None:
            with self.conn.cursor() as cursor:
                cursor.execute(f"DELETE FROM `{self.table}` WHERE `key` = %s", (key.encode(),))

        await self._call(work)

    async def scan(self, prefix: str) -> list[str]:
        end = prefix_successor(prefix)
        assert end is not None

        def work() -> list[str]:
            with self.conn.cursor() as cursor:
                cursor.execute(
                    f"SELECT `key` FROM `{self.table}` WHERE `key` >= %s AND `key` < %s "
                    "ORDER BY `key`",
                    (prefix.encode(), end.encode()),
                )
                return [bytes(row[0]).decode() for row in cursor.fetchall()]

        return await self._call(work)

    async def set_batch(self, items: Sequence[tuple[str, object]]) -> None:
        rows = [(key.encode(), orjson.dumps(value)) for key, value in items]

        def work() -> None:
            self.conn.begin()
            with self.conn.cursor() as cursor:
                cursor.executemany(self.upsert, rows)
            self.conn.commit()

        await self._call(work)

    async def get_batch(self, keys: list[str]) -> list[object | None]:
        encoded = [key.encode() for key in keys]

        def work() -> dict[bytes, bytes]:
            marks = ", ".join(["%s"] * len(encoded))
            with self.conn.cursor() as cursor:
                cursor.execute(
                    f"SELECT `key`, `value` FROM `{self.table}` WHERE `key` IN ({marks})", encoded
                )
                return {bytes(key): bytes(value) for key, value in cursor.fetchall()}

        found = await self._call(work)
        return [None if (raw := found.get(key)) is None else orjson.loads(raw) for key in encoded]

    async def reset(self) -> None:
        def work() -> None:
            with self.conn.cursor() as cursor:
                cursor.execute(f"DELETE FROM `{self.table}`")

        await self._call(work)

    def drop(self) -> None:
        with self.conn.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS `{self.table}`")
        self.conn.close()


async def main() -> None:
    """Print two tables: Storage vs raw sync PyMySQL, and vs raw PyMySQL in a worker thread."""
    url = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_URL
    suffix = uuid.uuid4().hex[:10]
    ours_table = f"bench_ours_{suffix}"
    reports = []
    for hop in (False, True):
        raw = RawPyMySQL(url, f"bench_raw_{suffix}", hop=hop)
        label = "raw PyMySQL in anyio.to_thread" if hop else "raw PyMySQL, plain sync call"
        try:
            async with Storage(mysql_driver(url, ours_table)) as storage:
                report = await compare_storage(
                    Report(f"mysql ({url}): Storage vs {label}"),
                    storage,
                    raw,
                    point_ops=1_000,
                    scan_total=100_000,
                )
                reports.append(report)
        finally:
            raw.drop()
            cleanup = RawPyMySQL(url, ours_table, hop=False)
            cleanup.drop()
    for report in reports:
        print(report.render())


if __name__ == "__main__":
    anyio.run(main)
