"""The contenders of one driver behind one small interface: ours, the raw client, the peers.

Every contender is a :class:`KV`; an operation a contender does not offer is listed in its
``unsupported`` set and shows as "no API". A peer whose package is missing shows as "not
installed". The raw baselines are the ones the per-driver ``bench_*`` modules define (same
schema, pragmas and encoding as the driver, best batch forms), plus small ones here for the
fs driver, Redis and PostgreSQL, whose older benchmarks inline them.

Settings that differ between contenders are stated where the contender is built: the raw Redis
client writes plain keys and keeps, in the same MULTI, the sorted-set key index its scans read;
the raw MariaDB client runs each blocking PyMySQL call in a worker thread (what an async caller
must do); and the peers run
with their defaults except where noted (``journal_mode=WAL`` for sqlitedict).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, ClassVar

import orjson

from benchmarks.method import NOT_INSTALLED
from kvstore.drivers.sqlite import _CACHE_KIB
from kvstore.keys import prefix_successor
from kvstore.storage import Storage

__all__ = ["DRIVERS", "FILETREE", "KV", "OBJECT_KEPT", "UNJUDGED_PEERS", "open_contenders"]

DRIVERS = ("memory", "sqlite", "fs", "redis", "postgresql", "mysql", "mongodb")
URLS = {
    "redis": os.environ.get("KVSTORE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "postgresql": os.environ.get(
        "KVSTORE_TEST_POSTGRESQL_URL", "postgresql://root@127.0.0.1:5432/test"
    ),
    "mysql": os.environ.get("KVSTORE_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
}
Items = Sequence[tuple[str, Any]]

# aiocache's memory cache as configured by default: it stores the caller's object itself.
OBJECT_KEPT = "aiocache (object kept)"
#: (driver, peer) pairs shown for reference but not judged by "ours/best peer": they do other
#: work than ours. aiocache's default memory cache keeps the caller's object (no encoding, no
#: copy: values need not be JSON and a later mutation changes what is stored); the same cache
#: with a JsonSerializer ("aiocache+json") gives our guarantee and is the one judged.
UNJUDGED_PEERS = frozenset({("memory", OBJECT_KEPT)})
#: The fs driver's peer: py-key-value's FileTreeStore (one file per key, as ours).
FILETREE = "py-key-value (filetree)"


class KV:
    """One contender's key-value operations, values being JSON-compatible objects."""

    unsupported: ClassVar[frozenset[str]] = frozenset()

    async def set(self, key: str, value: Any) -> None:
        """Store one value."""
        raise NotImplementedError

    async def get(self, key: str) -> Any:
        """Read one value (None when missing)."""
        raise NotImplementedError

    async def delete(self, key: str) -> None:
        """Delete one key."""
        raise NotImplementedError

    async def set_many(self, items: Items) -> None:
        """Store many values in the contender's batch form."""
        raise NotImplementedError

    async def get_many(self, keys: list[str]) -> list[Any]:
        """Read many values in the contender's batch form."""
        raise NotImplementedError

    async def scan(self, prefix: str) -> list[str]:
        """Return the keys starting with ``prefix``, sorted."""
        raise NotImplementedError

    async def fill(self, items: Items) -> None:
        """Load data before a timed operation (the batch form, or one at a time without one)."""
        if "set_many" in self.unsupported:
            for key, value in items:
                await self.set(key, value)
        else:
            await self.set_many(items)

    async def settle(self) -> None:
        """Bring the backend to a comparable state after a fill (e.g. ANALYZE)."""

    async def reset(self) -> None:
        """Remove everything written so far."""
        raise NotImplementedError


class OursKV(KV):
    """``Storage`` over our driver."""

    def __init__(self, storage: Storage, settle: Callable[[], Awaitable[None]] | None = None):
        self.storage = storage
        self._settle = settle

    async def set(self, key: str, value: Any) -> None:
        await self.storage.set(key, value)

    async def get(self, key: str) -> Any:
        return await self.storage.get(key)

    async def delete(self, key: str) -> None:
        await self.storage.delete(key)

    async def set_many(self, items: Items) -> None:
        await self.storage.set_many(items)

    async def get_many(self, keys: list[str]) -> list[Any]:
        return await self.storage.get_many(keys)

    async def scan(self, prefix: str) -> list[str]:
        return [key async for key in self.storage.keys(prefix)]

    async def settle(self) -> None:
        if self._settle is not None:
            await self._settle()

    async def reset(self) -> None:
        await self.storage.clear()


class BaselineKV(KV):
    """A raw baseline of the ``bench_*`` modules (``set_batch``/``get_batch``) as a KV."""

    def __init__(self, baseline: Any, settle: Callable[[], Awaitable[None]] | None = None):
        self.baseline = baseline
        self._settle = settle

    async def set(self, key: str, value: Any) -> None:
        await self.baseline.set(key, value)

    async def get(self, key: str) -> Any:
        return await self.baseline.get(key)

    async def delete(self, key: str) -> None:
        await self.baseline.delete(key)

    async def set_many(self, items: Items) -> None:
        await self.baseline.set_batch(items)

    async def get_many(self, keys: list[str]) -> list[Any]:
        result: list[Any] = await self.baseline.get_batch(keys)
        return result

    async def scan(self, prefix: str) -> list[str]:
        result: list[str] = await self.baseline.scan(prefix)
        return result

    async def settle(self) -> None:
        if self._settle is not None:
            await self._settle()

    async def reset(self) -> None:
        await self.baseline.reset()


# -- raw baselines not defined by the bench_* modules ---------------------------------------


class RawFS(KV):
    """Plain file I/O in the driver's layout: segments as directories, ``<last>.kv`` files.

    Writes are atomic like the driver's (a temp file renamed with ``os.replace``; no fsync, the
    driver's default); a delete removes the directories it empties, as the driver's does (an
    ``rmdir`` that fails on a directory still holding files); a scan lists the prefix's
    directory and sorts. Unlike the driver it takes no lock and does not refuse links.
    """

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.made: set[str] = set()
        self.counter = itertools.count()
        os.makedirs(f"{self.root}/.tmp", exist_ok=True)

    def _path(self, key: str) -> tuple[str, str]:
        *folders, name = key.split(":")
        folder = "/".join([self.root, *folders])
        return folder, f"{folder}/{name}.kv"

    async def set(self, key: str, value: Any) -> None:
        folder, path = self._path(key)
        if folder not in self.made:
            os.makedirs(folder, exist_ok=True)
            self.made.add(folder)
        temp = f"{self.root}/.tmp/{next(self.counter)}"
        with open(temp, "wb") as file:  # noqa: ASYNC230 - the blocking baseline
            file.write(orjson.dumps(value))
        os.replace(temp, path)

    async def get(self, key: str) -> Any:
        try:
            with open(self._path(key)[1], "rb") as file:  # noqa: ASYNC230 - the baseline
                return orjson.loads(file.read())
        except FileNotFoundError:
            return None

    async def delete(self, key: str) -> None:
        folder, path = self._path(key)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        # The driver leaves no empty directory behind: neither does a fair baseline.
        while folder != self.root:
            try:
                os.rmdir(folder)
            except OSError:
                return  # not empty: nothing above it is either
            self.made.discard(folder)
            folder = folder.rpartition("/")[0]

    async def set_many(self, items: Items) -> None:
        for key, value in items:
            await self.set(key, value)

    async def get_many(self, keys: list[str]) -> list[Any]:
        return [await self.get(key) for key in keys]

    async def scan(self, prefix: str) -> list[str]:
        # The workload's prefixes end at a segment boundary: one directory listing.
        folder = "/".join([self.root, *prefix.split(":")[:-1]])
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
        return sorted(prefix + name[:-3] for name in names if name.endswith(".kv"))

    async def reset(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        os.makedirs(f"{self.root}/.tmp", exist_ok=True)
        self.made.clear()


class RawRedis(KV):
    """Plain ``redis.asyncio`` commands: SET, GET, DEL, MSET, MGET; scans read a sorted set.

    The sorted set is the key index a prefix scan needs (Redis has no ordered key scan), so
    every write keeps it, as a user who scans must: SET or MSET with ZADD, DEL with ZREM, each
    pair in one MULTI (redis-py's transaction pipeline), so the index never disagrees with the
    values. Reads are the plain GET and MGET.
    """

    def __init__(self, url: str, prefix: str) -> None:
        import redis.asyncio as aioredis

        self.client = aioredis.Redis.from_url(url)
        self.prefix = prefix
        self.index = f"{prefix}~index"

    async def set(self, key: str, value: Any) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.set(self.prefix + key, orjson.dumps(value))
            pipe.zadd(self.index, {key: 0})
            await pipe.execute()

    async def get(self, key: str) -> Any:
        found = await self.client.get(self.prefix + key)
        return None if found is None else orjson.loads(found)

    async def delete(self, key: str) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self.prefix + key)
            pipe.zrem(self.index, key)
            await pipe.execute()

    async def set_many(self, items: Items) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.mset({self.prefix + key: orjson.dumps(value) for key, value in items})
            pipe.zadd(self.index, {key: 0 for key, _ in items})
            await pipe.execute()

    async def get_many(self, keys: list[str]) -> list[Any]:
        found = await self.client.mget([self.prefix + key for key in keys])
        return [None if value is None else orjson.loads(value) for value in found]

    async def scan(self, prefix: str) -> list[str]:
        end = prefix_successor(prefix)
        found = await self.client.zrangebylex(self.index, f"[{prefix}", f"({end}")
        return [key.decode() if isinstance(key, bytes) else key for key in found]

    async def reset(self) -> None:
        doomed = [key async for key in self.client.scan_iter(match=f"{self.prefix}*", count=5000)]
        for start in range(0, len(doomed), 5000):
            await self.client.unlink(*doomed[start : start + 5000])

    async def close(self) -> None:
        """Delete what this run wrote and close the client."""
        await self.reset()
        await self.client.aclose()


class RawPostgreSQL(KV):
    """Raw psycopg 3 on one autocommit connection, the driver's schema, best batch forms.

    Batch arrays go in binary (``%b``), as the driver sends them: text would make both ends
    convert every bytea to hex and back.
    """

    def __init__(self, connection: Any, table: str) -> None:
        self.conn = connection
        self.table = table
        self.upsert = (
            f'INSERT INTO "{table}" (key, value) VALUES (%s, %s) '
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
        )
        self.unnest = (
            f'INSERT INTO "{table}" (key, value) SELECT * FROM unnest(%b::text[], %b::bytea[]) '
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
        )

    @classmethod
    async def open(cls, url: str, table: str) -> RawPostgreSQL:
        """Connect and create the table."""
        import psycopg

        connection = await psycopg.AsyncConnection.connect(url, autocommit=True)
        await connection.execute(
            f'CREATE TABLE "{table}" (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL)'
        )
        return cls(connection, table)

    async def set(self, key: str, value: Any) -> None:
        await self.conn.execute(self.upsert, (key, orjson.dumps(value)))

    async def get(self, key: str) -> Any:
        cursor = await self.conn.execute(
            f'SELECT value FROM "{self.table}" WHERE key = %s', (key,), binary=True
        )
        row = await cursor.fetchone()
        return None if row is None else orjson.loads(row[0])

    async def delete(self, key: str) -> None:
        await self.conn.execute(f'DELETE FROM "{self.table}" WHERE key = %s', (key,))

    async def set_many(self, items: Items) -> None:
        # One statement is atomic in autocommit mode: no BEGIN/COMMIT round trips, as ours.
        await self.conn.execute(
            self.unnest, ([key for key, _ in items], [orjson.dumps(v) for _, v in items])
        )

    async def get_many(self, keys: list[str]) -> list[Any]:
        cursor = await self.conn.execute(
            f'SELECT key, value FROM "{self.table}" WHERE key = ANY(%b::text[])', (keys,),
            binary=True,
        )
        found = {key: value for key, value in await cursor.fetchall()}
        return [None if (raw := found.get(key)) is None else orjson.loads(raw) for key in keys]

    async def scan(self, prefix: str) -> list[str]:
        cursor = await self.conn.execute(
            f'SELECT key FROM "{self.table}" WHERE key >= %s AND key < %s ORDER BY key',
            (prefix, prefix_successor(prefix)),
        )
        return [row[0] for row in await cursor.fetchall()]

    async def vacuum(self, *tables: str) -> None:
        """VACUUM ANALYZE the tables, so that every side scans a table without dead rows."""
        for table in tables:
            await self.conn.execute(f'VACUUM ANALYZE "{table}"')

    async def settle(self) -> None:
        await self.vacuum(self.table)

    async def reset(self) -> None:
        # DELETE, as our driver's clear() does, so both tables carry the same history.
        await self.conn.execute(f'DELETE FROM "{self.table}"')


# -- peers -----------------------------------------------------------------------------------


class PyKeyValue(KV):
    """A py-key-value-aio store (values must be JSON objects; no prefix scan)."""

    unsupported = frozenset({"scan"})

    def __init__(self, store: Any, collection: str = "bench") -> None:
        self.store = store
        self.base = collection
        self.collection = collection
        self.generation = itertools.count()

    async def set(self, key: str, value: Any) -> None:
        await self.store.put(key, value, collection=self.collection)

    async def get(self, key: str) -> Any:
        return await self.store.get(key, collection=self.collection)

    async def delete(self, key: str) -> None:
        await self.store.delete(key, collection=self.collection)

    async def set_many(self, items: Items) -> None:
        await self.store.put_many(
            [key for key, _ in items], [value for _, value in items], collection=self.collection
        )

    async def get_many(self, keys: list[str]) -> list[Any]:
        result: list[Any] = await self.store.get_many(keys, collection=self.collection)
        return result

    async def reset(self) -> None:
        old = self.collection
        # Every generation's name starts with the base, so a teardown can find them all (not
        # every store has destroy_collection: the Redis one does not).
        self.collection = f"{self.base}_{next(self.generation)}"
        with contextlib.suppress(Exception):
            await self.store.destroy_collection(old)


class PyKeyValueFileTree(PyKeyValue):
    """py-key-value's ``FileTreeStore`` as a user gets it: one JSON file per key.

    The fs driver's peer (same backend: a file per key, a directory per collection). Its
    defaults: no key sanitization (the workload's keys are safe file names), path checks that
    ``resolve()`` each key's path, and every write a temp file fsynced, then renamed (the
    directory is not fsynced). That fsync cannot be turned off, where ours and the raw files do
    not sync by default: its writes do more than ours (see the run's notes). At the same
    durability, ``fs_driver(fsync=True)`` (which syncs the directory too), a ``set`` took 4.1 ms
    against its 8.2 ms (300 sets, 6 interleaved rounds, medians, on the busy 2-core VM).
    """

    def __init__(self, directory: Path) -> None:
        from key_value.aio.stores.filetree import FileTreeStore

        self.directory = directory.resolve()  # as the store resolves it
        super().__init__(FileTreeStore(data_directory=self.directory))

    async def reset(self) -> None:
        # The store has no destroy_collection: move to a fresh collection, as the base class
        # does, and remove the old one's directory and metadata file (untimed, like every reset).
        old = self.collection
        await super().reset()
        shutil.rmtree(self.directory / old, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (self.directory / f"{old}-info.json").unlink()


class AioCache(KV):
    """An aiocache cache (no prefix scan)."""

    unsupported = frozenset({"scan"})

    def __init__(self, cache: Any) -> None:
        self.cache = cache

    async def set(self, key: str, value: Any) -> None:
        await self.cache.set(key, value)

    async def get(self, key: str) -> Any:
        return await self.cache.get(key)

    async def delete(self, key: str) -> None:
        await self.cache.delete(key)

    async def set_many(self, items: Items) -> None:
        await self.cache.multi_set(list(items))

    async def get_many(self, keys: list[str]) -> list[Any]:
        result: list[Any] = await self.cache.multi_get(keys)
        return result

    async def reset(self) -> None:
        # aiocache's clear() ignores the cache's own namespace and, on Redis, runs FLUSHDB:
        # it would wipe every other user of the database. Name the namespace explicitly.
        namespace = getattr(self.cache, "namespace", None)
        if namespace:
            await self.cache.clear(namespace=namespace)
        else:
            await self.cache.clear()


class DiskCache(KV):
    """diskcache's ``Cache`` (SQLite WAL, synchronous=NORMAL, pickled values; blocking calls).

    Its batch write is ``set`` in a ``transact()`` block; it has no batch read and no prefix scan.
    """

    unsupported = frozenset({"get_many", "scan"})

    def __init__(self, directory: Path) -> None:
        import diskcache

        self.cache = diskcache.Cache(str(directory))

    async def set(self, key: str, value: Any) -> None:
        self.cache.set(key, value)

    async def get(self, key: str) -> Any:
        return self.cache.get(key)

    async def delete(self, key: str) -> None:
        self.cache.delete(key)

    async def set_many(self, items: Items) -> None:
        with self.cache.transact():
            for key, value in items:
                self.cache.set(key, value)

    async def reset(self) -> None:
        self.cache.clear()


class SqliteDictKV(KV):
    """sqlitedict with ``autocommit=True`` and ``journal_mode=WAL`` (pickled values).

    Its batch write is ``update``; it has no batch read and no prefix scan.
    """

    unsupported = frozenset({"get_many", "scan"})

    def __init__(self, path: Path) -> None:
        from sqlitedict import SqliteDict

        self.data = SqliteDict(str(path), autocommit=True, journal_mode="WAL")

    async def set(self, key: str, value: Any) -> None:
        self.data[key] = value

    async def get(self, key: str) -> Any:
        return self.data.get(key)

    async def delete(self, key: str) -> None:
        with contextlib.suppress(KeyError):
            del self.data[key]

    async def set_many(self, items: Items) -> None:
        self.data.update(items)

    async def reset(self) -> None:
        self.data.clear()


class AioSQLite(KV):
    """aiosqlite with the raw baseline's table, pragmas (WAL, synchronous=NORMAL, page cache)."""

    _TABLE = "agentx_kv"

    def __init__(self, connection: Any) -> None:
        self.conn = connection
        self.upsert = (
            f'INSERT INTO "{self._TABLE}" (key, value) VALUES (?, ?) '
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        )

    @classmethod
    async def open(cls, path: Path) -> AioSQLite:
        """Open the database and create the table."""
        import aiosqlite

        connection = await aiosqlite.connect(path, isolation_level=None)
        await connection.execute("PRAGMA journal_mode = WAL")
        await connection.execute("PRAGMA synchronous = NORMAL")
        # The raw baseline's page cache and kind of table (benchmarks.bench_sqlite.RawSQLite),
        # which are the driver's: with SQLite's 2 MiB cache and a WITHOUT ROWID table it would
        # lose on big values and growth for settings, not for aiosqlite.
        await connection.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
        await connection.execute(
            f'CREATE TABLE IF NOT EXISTS "{cls._TABLE}" '
            "(key TEXT NOT NULL PRIMARY KEY, value BLOB NOT NULL)"
        )
        return cls(connection)

    async def set(self, key: str, value: Any) -> None:
        await self.conn.execute(self.upsert, (key, orjson.dumps(value)))

    async def get(self, key: str) -> Any:
        async with self.conn.execute(
            f'SELECT value FROM "{self._TABLE}" WHERE key = ?', (key,)
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None else orjson.loads(row[0])

    async def delete(self, key: str) -> None:
        await self.conn.execute(f'DELETE FROM "{self._TABLE}" WHERE key = ?', (key,))

    async def set_many(self, items: Items) -> None:
        await self.conn.execute("BEGIN IMMEDIATE")
        await self.conn.executemany(
            self.upsert, [(key, orjson.dumps(value)) for key, value in items]
        )
        await self.conn.execute("COMMIT")

    async def get_many(self, keys: list[str]) -> list[Any]:
        found: dict[str, bytes] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            async with self.conn.execute(
                f'SELECT key, value FROM "{self._TABLE}" WHERE key IN ({marks})', chunk
            ) as cursor:
                found.update({key: value for key, value in await cursor.fetchall()})
        return [None if (raw := found.get(key)) is None else orjson.loads(raw) for key in keys]

    async def scan(self, prefix: str) -> list[str]:
        async with self.conn.execute(
            f'SELECT key FROM "{self._TABLE}" WHERE key >= ? AND key < ? ORDER BY key',
            (prefix, prefix_successor(prefix)),
        ) as cursor:
            return [row[0] for row in await cursor.fetchall()]

    async def reset(self) -> None:
        await self.conn.execute(f'DELETE FROM "{self._TABLE}"')


# -- building one driver's contenders ---------------------------------------------------------


async def _peer(
    stack: AsyncExitStack, build: Callable[[], Awaitable[KV]], close: str | None = None
) -> KV | str:
    """Build a peer, or return "not installed" when its package cannot be imported."""
    try:
        peer = await build()
    except ImportError:
        return NOT_INSTALLED
    if close is not None:
        stack.push_async_callback(_close_quietly, peer, close)
    return peer


async def _close_quietly(peer: KV, how: str) -> None:
    with contextlib.suppress(Exception):
        await _call_path(peer, how)


async def _call_path(root: object, path: str) -> None:
    target: Any = root
    for name in path.split("."):
        target = getattr(target, name)
    result = target()
    if hasattr(result, "__await__"):
        await result


async def open_contenders(
    driver: str, stack: AsyncExitStack, workdir: Path
) -> dict[str, KV | str]:
    """Return ``{"ours": ..., "raw": ..., peer: ...}`` for ``driver``, closed by ``stack``."""
    tag = uuid.uuid4().hex[:8]
    if driver == "memory":
        return await _memory(stack)
    if driver == "sqlite":
        return await _sqlite(stack, workdir)
    if driver == "fs":
        return await _fs(stack, workdir)
    if driver == "redis":
        return await _redis(stack, tag)
    if driver == "postgresql":
        return await _postgresql(stack, tag)
    if driver == "mysql":
        return await _mysql(stack, tag)
    if driver == "mongodb":
        return await _mongodb(stack, tag)
    raise ValueError(f"unknown driver {driver!r}; choose from {', '.join(DRIVERS)}")


async def _ours(stack: AsyncExitStack, driver: Any, settle: Any = None) -> OursKV:
    storage = Storage(driver)
    await storage.open()
    stack.push_async_callback(storage.close)
    return OursKV(storage, settle)


async def _memory(stack: AsyncExitStack) -> dict[str, KV | str]:
    from benchmarks.bench_memory import RawDict
    from kvstore.drivers.memory import memory_driver

    async def kv_memory() -> KV:
        from key_value.aio.stores.memory import MemoryStore

        return PyKeyValue(MemoryStore())

    async def aiocache_memory() -> KV:
        from aiocache import SimpleMemoryCache

        return AioCache(SimpleMemoryCache())

    async def aiocache_memory_json() -> KV:
        from aiocache import SimpleMemoryCache
        from aiocache.serializers import JsonSerializer

        return AioCache(SimpleMemoryCache(serializer=JsonSerializer()))

    return {
        "ours": await _ours(stack, memory_driver()),
        "raw": BaselineKV(RawDict()),
        "py-key-value": await _peer(stack, kv_memory),
        # As a user gets it: keeps the caller's object itself (no encoding, no copy), so a later
        # change to the object changes the stored value. Shown, not judged (UNJUDGED_PEERS).
        OBJECT_KEPT: await _peer(stack, aiocache_memory),
        # Configured for our guarantee: stores an encoded copy (stdlib json), decodes on reads.
        "aiocache+json": await _peer(stack, aiocache_memory_json),
    }


async def _sqlite(stack: AsyncExitStack, workdir: Path) -> dict[str, KV | str]:
    from benchmarks.bench_sqlite import RawSQLite
    from kvstore.drivers.sqlite import sqlite_driver

    raw = RawSQLite(workdir / "raw.db")
    stack.callback(raw.close)

    async def diskcache_peer() -> KV:
        return DiskCache(workdir / "diskcache")

    async def sqlitedict_peer() -> KV:
        return SqliteDictKV(workdir / "sqlitedict.db")

    async def aiosqlite_peer() -> KV:
        return await AioSQLite.open(workdir / "aiosqlite.db")

    async def disk_store() -> KV:
        from key_value.aio.stores.disk import DiskStore

        return PyKeyValue(DiskStore(directory=workdir / "kv-disk"))

    return {
        "ours": await _ours(stack, sqlite_driver(workdir / "ours.db")),
        "raw": BaselineKV(raw),
        # py-key-value's disk store is diskcache underneath: a SQLite file, a SQLite peer.
        "py-key-value (disk)": await _peer(stack, disk_store, "store.close"),
        "diskcache": await _peer(stack, diskcache_peer, "cache.close"),
        "sqlitedict": await _peer(stack, sqlitedict_peer, "data.close"),
        "aiosqlite": await _peer(stack, aiosqlite_peer, "conn.close"),
    }


async def _fs(stack: AsyncExitStack, workdir: Path) -> dict[str, KV | str]:
    from kvstore.drivers.fs import fs_driver

    async def file_tree_store() -> KV:
        return PyKeyValueFileTree(workdir / "kv-filetree")

    return {
        "ours": await _ours(stack, fs_driver(str(workdir / "ours"))),
        "raw": RawFS(workdir / "raw"),
        FILETREE: await _peer(stack, file_tree_store),
    }


async def _delete_redis_keys(url: str, pattern: str) -> None:
    """Delete the keys a peer left under ``pattern`` (a benchmark's own, unique prefix)."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await client.delete(*batch)
                batch.clear()
        if batch:
            await client.delete(*batch)
    finally:
        await client.aclose()


async def _redis(stack: AsyncExitStack, tag: str) -> dict[str, KV | str]:
    from kvstore.drivers.redis import redis_driver

    url = URLS["redis"]
    ours = await _ours(stack, redis_driver(url, base=f"bench_{tag}"))
    stack.push_async_callback(ours.storage.clear)
    raw = RawRedis(url, f"bench_raw_{tag}:")
    stack.push_async_callback(raw.close)

    async def kv_redis() -> KV:
        from key_value.aio.stores.redis import RedisStore

        store = RedisStore(url=url)
        collection = f"bench_kv_{tag}"
        stack.push_async_callback(_delete_redis_keys, url, f"{collection}*")
        return PyKeyValue(store, collection)

    async def aiocache_redis() -> KV:
        from aiocache import RedisCache

        return AioCache(RedisCache(endpoint="127.0.0.1", port=6379, namespace=f"bench_ac_{tag}"))

    peers = {
        "py-key-value": await _peer(stack, kv_redis, "reset"),
        "aiocache": await _peer(stack, aiocache_redis, "reset"),
    }
    return {"ours": ours, "raw": raw, **peers}


async def _postgresql(stack: AsyncExitStack, tag: str) -> dict[str, KV | str]:
    from kvstore.drivers.postgresql import postgresql_driver

    url = URLS["postgresql"]
    ours_table, raw_table, peer_table = f"bench_{tag}", f"bench_raw_{tag}", f"bench_kv_{tag}"
    raw = await RawPostgreSQL.open(url, raw_table)

    async def drop() -> None:
        # The driver keeps its expiry index in <table>_expiry.
        for table in (ours_table, f"{ours_table}_expiry", raw_table, peer_table):
            await raw.conn.execute(f'DROP TABLE IF EXISTS "{table}"')
        await raw.conn.close()

    stack.push_async_callback(drop)

    async def kv_postgresql() -> KV:
        from key_value.aio.stores.postgresql import PostgreSQLStore

        store = PostgreSQLStore(url=url, table_name=peer_table)
        await store.__aenter__()
        stack.push_async_callback(store.__aexit__, None, None, None)
        return PyKeyValue(store)

    ours = await _ours(
        stack, postgresql_driver(url, table=ours_table), lambda: raw.vacuum(ours_table)
    )
    return {
        "ours": ours,
        "raw": raw,
        "py-key-value": await _peer(stack, kv_postgresql),
    }


async def _mysql(stack: AsyncExitStack, tag: str) -> dict[str, KV | str]:
    from benchmarks.bench_mysql import RawPyMySQL
    from kvstore.drivers.mysql import mysql_driver

    class LockedPyMySQL(RawPyMySQL):
        """One PyMySQL connection is not thread-safe: concurrent callers take turns on it."""

        lock = asyncio.Lock()

        async def _call(self, work: Callable[[], Any]) -> Any:
            async with self.lock:
                return await super()._call(work)

    url = URLS["mysql"]
    ours_table = f"bench_{tag}"
    raw = LockedPyMySQL(url, f"bench_raw_{tag}", hop=True)
    stack.callback(raw.drop)
    for table in (ours_table, f"{ours_table}_expiry"):  # the driver's expiry hints table
        stack.callback(_drop_mysql_table, url, table)
    return {"ours": await _ours(stack, mysql_driver(url, ours_table)), "raw": BaselineKV(raw)}


def _drop_mysql_table(url: str, table: str) -> None:
    from benchmarks.bench_mysql import RawPyMySQL

    RawPyMySQL(url, table, hop=False).drop()


async def _mongodb(stack: AsyncExitStack, tag: str) -> dict[str, KV | str]:
    from benchmarks.bench_mongodb import RawPyMongo, _server
    from kvstore.drivers.mongodb import mongodb_driver

    url, _label = stack.enter_context(_server(os.environ.get("KVSTORE_TEST_MONGODB_URL") or None))
    raw = RawPyMongo(url, f"bench_raw_{tag}")
    stack.push_async_callback(raw.drop)
    ours_database = f"bench_{tag}"
    stack.push_async_callback(RawPyMongo(url, ours_database).drop)
    driver = mongodb_driver(url, ours_database, operation_timeout=120.0)
    return {"ours": await _ours(stack, driver), "raw": BaselineKV(raw)}
