"""SQLite driver through Storage vs raw ``sqlite3`` with the same schema, pragmas and encoding.

Run: ``python -m benchmarks.bench_sqlite``. Target: at least 0.7 of raw on get and set.

Both sides use their own file in one temporary directory, in WAL mode with
``synchronous=NORMAL``, the driver's ``cache_size``, autocommit, and the driver's original
table layout (``key TEXT NOT NULL PRIMARY KEY, value BLOB NOT NULL``: a rowid table whose key
index holds the keys alone, the kind of table the driver creates in a new file; the driver's
rows also carry a version, an expiry and a write time, whose cost the ratio includes). Both encode
values with orjson (Storage through :mod:`kvstore.serialization`, raw with plain
``orjson.dumps``/``loads``), and both are called through ``async`` functions, so the ratio is
what the driver and Storage add.
Raw batches are the obvious best forms: ``executemany`` inside ``BEGIN IMMEDIATE ... COMMIT``,
and ``IN (...)`` queries of 500 keys.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Sequence
from pathlib import Path

import anyio
import orjson

from benchmarks.core_workload import compare_storage
from benchmarks.harness import Report
from kvstore.drivers.sqlite import _CACHE_KIB, sqlite_driver
from kvstore.keys import prefix_successor
from kvstore.storage import Storage

_TABLE = "agentx_kv"
_CHUNK = 500


class RawSQLite:
    """The raw baseline: ``sqlite3`` used directly, values encoded with orjson."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        # The driver's page cache (kvstore.drivers.sqlite._CACHE_KIB): the same settings.
        self.conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
        # The kind of table a new driver file gets (a rowid table, see _KEY_COLUMN in the
        # driver): a WITHOUT ROWID one would make the baseline read big values on lookups that
        # merely pass them, which the driver no longer does.
        self.conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{_TABLE}" '
            "(key TEXT NOT NULL PRIMARY KEY, value BLOB NOT NULL)"
        )

    async def set(self, key: str, value: object) -> None:
        self.conn.execute(
            f'INSERT INTO "{_TABLE}" (key, value) VALUES (?, ?) '
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, orjson.dumps(value)),
        )

    async def get(self, key: str) -> object | None:
        row = self.conn.execute(f'SELECT value FROM "{_TABLE}" WHERE key = ?', (key,)).fetchone()
        return None if row is None else orjson.loads(row[0])

    async def delete(self, key: str) -> None:
        self.conn.execute(f'DELETE FROM "{_TABLE}" WHERE key = ?', (key,))

    async def scan(self, prefix: str) -> list[str]:
        end = prefix_successor(prefix)
        assert end is not None
        rows = self.conn.execute(
            f'SELECT key FROM "{_TABLE}" WHERE key >= ? AND key < ? ORDER BY key', (prefix, end)
        ).fetchall()
        return [row[0] for row in rows]

    async def set_batch(self, items: Sequence[tuple[str, object]]) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(
            f'INSERT INTO "{_TABLE}" (key, value) VALUES (?, ?) '
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [(key, orjson.dumps(value)) for key, value in items],
        )
        self.conn.execute("COMMIT")

    async def get_batch(self, keys: list[str]) -> list[object | None]:
        found: dict[str, bytes] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            found.update(
                self.conn.execute(
                    f'SELECT key, value FROM "{_TABLE}" WHERE key IN ({marks})', chunk
                ).fetchall()
            )
        return [None if (raw := found.get(key)) is None else orjson.loads(raw) for key in keys]

    async def reset(self) -> None:
        self.conn.execute(f'DELETE FROM "{_TABLE}"')

    def close(self) -> None:
        self.conn.close()


async def main() -> None:
    """Print the SQLite comparison table."""
    with tempfile.TemporaryDirectory(prefix="bench-sqlite-") as directory:
        raw = RawSQLite(Path(directory) / "raw.db")
        try:
            async with Storage(sqlite_driver(Path(directory) / "ours.db")) as storage:
                report = await compare_storage(
                    Report("sqlite: Storage vs raw sqlite3 + orjson"), storage, raw
                )
        finally:
            raw.close()
    print(report.render())


if __name__ == "__main__":
    anyio.run(main)
