"""MongoDB driver through Storage vs raw ``pymongo.AsyncMongoClient`` doing the same work.

Run: ``python -m benchmarks.bench_mongodb [URL] [--point-ops N] [--scan-total N]
[--operation-timeout SECONDS]`` (defaults 1,000, 100,000 and 120). Without a URL it starts
SecantusDB in-process:
a STAND-IN speaking MongoDB's wire protocol, not MongoDB, so its absolute figures say nothing
about MongoDB's speed; the ratios still measure what the driver and Storage add on top of the
same client talking to the same socket.

Both sides acknowledge a write once it is journaled (``journal=True``, the driver's default),
so that both do the same work. Both sides use their own database with a random name (dropped
afterwards), ``{_id: key, v:
Binary(orjson)}`` documents and the best batch forms: one unordered ``bulk_write`` of upserting
``ReplaceOne`` for a batch set, and ``$in`` queries for a batch get, of 500 keys each when the
server is SecantusDB (its ``$in`` takes time quadratic in the list's length: one list of 10,000
keys takes about a minute there) and of the whole batch on a real MongoDB.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import anyio
import orjson
from bson import Binary
from pymongo import AsyncMongoClient, ReplaceOne

from benchmarks.core_workload import compare_storage
from benchmarks.harness import Report
from kvstore.drivers.mongodb import mongodb_driver
from kvstore.keys import prefix_successor
from kvstore.storage import Storage


class RawPyMongo:
    """The raw baseline: ``AsyncMongoClient`` used directly."""

    def __init__(self, url: str, database: str, *, in_chunk: int = 500) -> None:
        self.client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, journal=True)
        self.in_chunk = in_chunk
        self.database = database
        self.collection = self.client[database]["storage"]

    async def set(self, key: str, value: object) -> None:
        await self.collection.replace_one(
            {"_id": key}, {"_id": key, "v": Binary(orjson.dumps(value))}, upsert=True
        )

    async def get(self, key: str) -> object | None:
        document = await self.collection.find_one({"_id": key})
        return None if document is None else orjson.loads(document["v"])

    async def delete(self, key: str) -> None:
        await self.collection.delete_one({"_id": key})

    async def scan(self, prefix: str) -> list[str]:
        end = prefix_successor(prefix)
        cursor = self.collection.find({"_id": {"$gte": prefix, "$lt": end}}, {"_id": 1})
        return [str(document["_id"]) async for document in cursor.sort("_id", 1)]

    async def set_batch(self, items: Sequence[tuple[str, object]]) -> None:
        await self.collection.bulk_write(
            [
                ReplaceOne(
                    {"_id": key}, {"_id": key, "v": Binary(orjson.dumps(value))}, upsert=True
                )
                for key, value in items
            ],
            ordered=False,
        )

    async def get_batch(self, keys: list[str]) -> list[object | None]:
        found: dict[str, bytes] = {}
        for start in range(0, len(keys), self.in_chunk):
            chunk = keys[start : start + self.in_chunk]
            async for document in self.collection.find({"_id": {"$in": chunk}}):
                found[str(document["_id"])] = document["v"]
        return [None if (raw := found.get(key)) is None else orjson.loads(raw) for key in keys]

    async def reset(self) -> None:
        await self.collection.delete_many({})

    async def drop(self) -> None:
        await self.client.drop_database(self.database)
        await self.client.close()


@contextlib.contextmanager
def _server(url: str | None) -> Iterator[tuple[str, str]]:
    if url:
        yield url, "MongoDB at " + url.rpartition("@")[2]
        return
    from secantus import SecantusDBServer

    with (
        tempfile.TemporaryDirectory(prefix="bench-secantus-") as directory,
        SecantusDBServer(storage_path=directory) as server,
    ):
        yield str(server.uri), "SecantusDB STAND-IN (not MongoDB)"


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_mongodb")
    parser.add_argument("url", nargs="?", help="a real MongoDB (default: start SecantusDB)")
    parser.add_argument("--point-ops", type=int, default=1_000, help="keys for set/get/delete")
    parser.add_argument("--scan-total", type=int, default=100_000, help="keys the scan is among")
    # A liveness bound, not a speed claim: on a loaded machine the stand-in's 10,000-key batches
    # can take longer than the driver's default 10 s.
    parser.add_argument("--operation-timeout", type=float, default=120.0)
    return parser.parse_args()


async def main() -> None:
    """Print the comparison table."""
    arguments = _arguments()
    suffix = uuid.uuid4().hex[:10]
    real_url = arguments.url
    with _server(real_url) as (url, label):
        raw = RawPyMongo(url, f"bench_raw_{suffix}", in_chunk=10_000 if real_url else 500)
        ours_database = f"bench_ours_{suffix}"
        try:
            driver = mongodb_driver(
                url, ours_database, operation_timeout=arguments.operation_timeout
            )
            async with Storage(driver) as storage:
                report = await compare_storage(
                    Report(f"mongodb on {label}: Storage vs raw AsyncMongoClient"),
                    storage,
                    raw,
                    point_ops=arguments.point_ops,
                    scan_total=arguments.scan_total,
                )
        finally:
            await raw.drop()
            cleanup = RawPyMongo(url, ours_database)
            await cleanup.drop()
    print(report.render())


if __name__ == "__main__":
    anyio.run(main)
