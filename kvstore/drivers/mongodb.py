"""The MongoDB driver: one document per key, on PyMongo's native asyncio client.

Layout. Collection ``<collection_name>`` holds ``{"_id": key, "v": Binary(value)}`` for every
key. Strings compare by their UTF-8 bytes when no collation is set (the driver never sets one),
which is code point order, so a prefix scan is the ``_id`` index range
``{"_id": {"$gte": P, "$lt": succ(P)}}`` sorted by ``_id`` and read in pages of ``_id > last``.
No key is ever turned into a regular expression, a field name or an operator: keys are only
``_id`` values.

Large values. A MongoDB document is at most 16 MB, so a value bigger than ``INLINE_LIMIT`` is
written as chunk documents ``{"_id": "<generation>:<index>", "k": key, "d": Binary(part)}`` in
``<collection_name>.chunks`` first, and then the key's document ``{"_id": key, "g": generation,
"n": count}`` points at them. Chunks of a generation never change, so a reader sees the old value
or the new one, never a mix; a reader that finds a generation's chunks already removed by a newer
write reads the key again. The common path stays one document.

Batches use ``bulk_write`` / ``delete_many``: one round trip per chunk of keys, **not atomic**
(multi-document transactions need a replica set, which this driver does not assume). asyncio
only: ``pymongo.AsyncMongoClient`` does not run under trio.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from kvstore.driver import BaseDriver
from kvstore.drivers._extras import missing_extra
from kvstore.errors import BackendError, BackendUnavailable, ConfigurationError, UnknownScheme
from kvstore.keys import prefix_successor
from kvstore.urls import redact_url

try:
    from bson import Binary
    from pymongo import AsyncMongoClient, DeleteMany, ReplaceOne, ReturnDocument
    from pymongo.asynchronous.collection import AsyncCollection
    from pymongo.errors import (
        ConnectionFailure,
        ExecutionTimeout,
        PyMongoError,
        WaitQueueTimeoutError,
        WTimeoutError,
    )
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    raise missing_extra("mongodb", "pymongo", "mongodb") from error

__all__ = ["MongoDBDriver", "from_url", "mongodb_driver"]

# Values up to this size are one document; the rest of the 16 MB leaves room for a 1 KiB key.
INLINE_LIMIT = 15 * 1024 * 1024
# Size of each chunk document of a large value.
CHUNK_SIZE = 4 * 1024 * 1024
# Keys fetched per page while scanning.
SCAN_PAGE = 2000
# Operations per bulk write.
BATCH_CHUNK = 10_000
# Keys per ``$in`` list. MongoDB answers a long ``$in`` on ``_id`` with index seeks, but
# SecantusDB (the test stand-in) takes time quadratic in its length; 500 costs MongoDB little.
IN_CHUNK = 500
# How often a reader retries when a large value is replaced while it reads it.
_READ_RETRIES = 5

_UNAVAILABLE = (
    ConnectionFailure,  # AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError, ...
    ExecutionTimeout,
    WaitQueueTimeoutError,
    WTimeoutError,
    OSError,
    TimeoutError,
)
_NAME_FORBIDDEN = frozenset('/\\. "$*<>:|?\x00')


class MongoDBDriver(BaseDriver):
    """Stores keys as documents of one collection; see the module docstring for the layout.

    ``server_selection_timeout`` bounds how long an operation waits for a reachable server,
    ``connect_timeout`` each connection attempt and ``operation_timeout`` (``None``: unbounded)
    each wait for a server reply, in seconds. ``max_pool_size`` bounds the connections of the
    client's pool. Other keyword arguments go to ``AsyncMongoClient``. Unreachable servers and
    timeouts raise :class:`BackendUnavailable`; other server errors :class:`BackendError`.
    """

    name = "mongodb"
    supports_trio = False

    def __init__(
        self,
        connection_string: str = "mongodb://localhost:27017",
        database_name: str = "agentx",
        collection_name: str = "storage",
        *,
        server_selection_timeout: float = 5.0,
        max_pool_size: int = 50,
        connect_timeout: float = 5.0,
        operation_timeout: float | None = 30.0,
        **client_options: Any,
    ) -> None:
        scheme = connection_string.partition("://")[0].lower()
        if scheme not in ("mongodb", "mongodb+srv"):
            raise UnknownScheme(
                "a MongoDB connection string starts with mongodb:// or mongodb+srv://, not "
                f"{redact_url(connection_string)!r}"
            )
        _check_name("database", database_name, 63)
        _check_name("collection", collection_name, 200)
        if collection_name.startswith("system"):
            raise ConfigurationError(
                f"invalid MongoDB collection name {collection_name!r}: reserved"
            )
        if max_pool_size < 1:
            raise ConfigurationError("max_pool_size must be at least 1")
        self.database_name = database_name
        self.collection_name = collection_name
        self.where = _where(connection_string, database_name)
        password = _password(connection_string)
        self._password = password
        self._connection_string = connection_string
        self._options: dict[str, Any] = {
            "serverSelectionTimeoutMS": int(server_selection_timeout * 1000),
            "connectTimeoutMS": int(connect_timeout * 1000),
            "maxPoolSize": max_pool_size,
            # A task that finds every pooled connection busy waits this long for one.
            "waitQueueTimeoutMS": int(
                (operation_timeout if operation_timeout is not None else 60.0) * 1000
            ),
            **client_options,
        }
        if operation_timeout is not None:
            # socketTimeoutMS rather than timeoutMS: with timeoutMS set, PyMongo waits the
            # whole operation timeout for server selection, ignoring serverSelectionTimeoutMS.
            self._options.setdefault("socketTimeoutMS", int(operation_timeout * 1000))
        self._client: AsyncMongoClient[dict[str, Any]] | None = None
        self._values: AsyncCollection[dict[str, Any]] | None = None
        self._chunks: AsyncCollection[dict[str, Any]] | None = None
        self._chunk_index_ready = False
        self._lock: asyncio.Lock | None = None

    # -- connection -------------------------------------------------------------------------

    def _collections(
        self,
    ) -> tuple[AsyncCollection[dict[str, Any]], AsyncCollection[dict[str, Any]]]:
        # Building the client does no I/O and has no await, so concurrent first uses cannot
        # race: the first one to run creates it. Connections open lazily inside its pool.
        self.ensure_open()
        values, chunks = self._values, self._chunks
        if values is None or chunks is None:
            try:
                client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
                    self._connection_string, connect=False, **self._options
                )
            except PyMongoError as error:
                raise self._translate(error) from None
            database = client[self.database_name]
            values = database[self.collection_name]
            chunks = database[f"{self.collection_name}.chunks"]
            self._client, self._values, self._chunks = client, values, chunks
        return values, chunks

    async def _chunk_collection(self) -> AsyncCollection[dict[str, Any]]:
        """The chunk collection, with its index on ``k`` made once per driver (needed rarely)."""
        _, chunks = self._collections()
        if not self._chunk_index_ready:
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                if not self._chunk_index_ready:
                    await chunks.create_index("k")
                    self._chunk_index_ready = True
        return chunks

    def _translate(self, error: BaseException) -> BackendError:
        text = f"{type(error).__name__}: {error}"
        if self._password:
            text = text.replace(self._password, "***")
        kind = BackendUnavailable if isinstance(error, _UNAVAILABLE) else BackendError
        return kind(text, driver=self.name, where=self.where)

    # -- primitives -------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        """Return the value stored under ``key``, or ``None`` (one ``find_one`` by ``_id``)."""
        values, _ = self._collections()
        try:
            document = await values.find_one({"_id": key})
            if document is None:
                return None
            if "v" in document:
                return bytes(document["v"])
            return await self._read_large(key, document)
        except PyMongoError as error:
            raise self._translate(error) from None

    async def set(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``: one upserting ``replace_one`` unless it is large."""
        values, _ = self._collections()
        try:
            if len(value) > INLINE_LIMIT:
                await self._write_large(key, value)
                return
            await values.replace_one({"_id": key}, {"_id": key, "v": Binary(value)}, upsert=True)
        except PyMongoError as error:
            raise self._translate(error) from None

    async def delete(self, key: str) -> None:
        """Remove ``key`` (one ``delete_one``); a missing key is not an error."""
        values, _ = self._collections()
        try:
            await values.delete_one({"_id": key})
        except PyMongoError as error:
            raise self._translate(error) from None

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Yield the keys starting with ``prefix`` in order, ``SCAN_PAGE`` per round trip."""
        successor = prefix_successor(prefix)
        bounds: dict[str, str] = {"$gte": prefix}
        if successor is not None:
            bounds["$lt"] = successor
        while True:
            values, _ = self._collections()
            try:
                cursor = values.find({"_id": bounds}, {"_id": 1}).sort("_id", 1).limit(SCAN_PAGE)
                page = [str(document["_id"]) async for document in cursor]
            except PyMongoError as error:
                raise self._translate(error) from None
            for key in page:
                yield key
            if len(page) < SCAN_PAGE:
                return
            # Keyset pagination: writes between pages can neither repeat nor skip a key.
            bounds = {"$gt": page[-1], **({"$lt": successor} if successor is not None else {})}

    async def close(self) -> None:
        """Close the client and its pool; idempotent."""
        if self.closed:
            return
        self.mark_closed()
        client, self._client, self._values, self._chunks = self._client, None, None, None
        if client is not None:
            # The connections are gone either way.
            with contextlib.suppress(PyMongoError):
                await client.close()

    # -- large values -----------------------------------------------------------------------

    async def _write_large(self, key: str, value: bytes) -> None:
        values, _ = self._collections()
        chunks = await self._chunk_collection()
        generation = os.urandom(12).hex()
        parts = [value[start : start + CHUNK_SIZE] for start in range(0, len(value), CHUNK_SIZE)]
        await chunks.insert_many(
            [
                {"_id": f"{generation}:{index:06d}", "k": key, "d": Binary(part)}
                for index, part in enumerate(parts)
            ],
            ordered=False,
        )
        previous = await values.find_one_and_replace(
            {"_id": key},
            {"_id": key, "g": generation, "n": len(parts)},
            projection={"g": 1, "n": 1},
            upsert=True,
            return_document=ReturnDocument.BEFORE,
        )
        if previous is not None and "g" in previous:
            await chunks.delete_many({"_id": {"$in": _chunk_ids(previous)}})

    async def _read_large(self, key: str, document: dict[str, Any]) -> bytes | None:
        values, _ = self._collections()
        chunks = await self._chunk_collection()
        for _ in range(_READ_RETRIES):
            ids = _chunk_ids(document)
            found = {str(part["_id"]): bytes(part["d"]) async for part in chunks.find(
                {"_id": {"$in": ids}}
            )}
            if len(found) == len(ids):
                return b"".join(found[chunk_id] for chunk_id in ids)
            # A newer write replaced the value and removed these chunks: read the key again.
            reread = await values.find_one({"_id": key})
            if reread is None:
                return None
            if "v" in reread:
                return bytes(reread["v"])
            document = reread
        raise BackendError(
            f"the chunks of the large value under {key!r} kept changing while being read",
            driver=self.name,
            where=self.where,
        )

    # -- batches ----------------------------------------------------------------------------

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return the values of ``keys`` in order: one ``$in`` query per ``IN_CHUNK`` keys."""
        values, _ = self._collections()
        if not keys:
            return []
        found: dict[str, bytes] = {}
        try:
            unique = list(dict.fromkeys(keys))
            for start in range(0, len(unique), IN_CHUNK):
                chunk = unique[start : start + IN_CHUNK]
                async for document in values.find({"_id": {"$in": chunk}}):
                    key = str(document["_id"])
                    if "v" in document:
                        found[key] = bytes(document["v"])
                    else:
                        large = await self._read_large(key, document)
                        if large is not None:
                            found[key] = large
        except PyMongoError as error:
            raise self._translate(error) from None
        return [found.get(key) for key in keys]

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Store every pair, the last one per key winning, with unordered bulk writes.

        Not atomic: MongoDB has no multi-document atomicity outside transactions.
        """
        values, _ = self._collections()
        if not items:
            return
        latest = dict(items)
        small = [(key, value) for key, value in latest.items() if len(value) <= INLINE_LIMIT]
        try:
            for start in range(0, len(small), BATCH_CHUNK):
                await values.bulk_write(
                    [
                        ReplaceOne({"_id": key}, {"_id": key, "v": Binary(value)}, upsert=True)
                        for key, value in small[start : start + BATCH_CHUNK]
                    ],
                    ordered=False,
                )
            for key, value in latest.items():
                if len(value) > INLINE_LIMIT:
                    await self._write_large(key, value)
        except PyMongoError as error:
            raise self._translate(error) from None

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Remove every key in ``keys``: one bulk write, a ``DeleteMany`` per ``IN_CHUNK`` keys."""
        values, _ = self._collections()
        if not keys:
            return
        unique = list(dict.fromkeys(keys))
        try:
            await values.bulk_write(
                [
                    DeleteMany({"_id": {"$in": unique[start : start + IN_CHUNK]}})
                    for start in range(0, len(unique), IN_CHUNK)
                ],
                ordered=False,
            )
        except PyMongoError as error:
            raise self._translate(error) from None

    async def clear(self, prefix: str = "") -> None:
        """Remove every key starting with ``prefix``, and every chunk of a large value under it.

        This also removes chunks left behind when a large value was overwritten by a small one
        or deleted (see the module docstring).
        """
        values, _ = self._collections()
        successor = prefix_successor(prefix)
        bounds: dict[str, str] = {"$gte": prefix}
        if successor is not None:
            bounds["$lt"] = successor
        try:
            await values.delete_many({"_id": bounds})
            chunks = await self._chunk_collection()
            await chunks.delete_many({"k": bounds})
        except PyMongoError as error:
            raise self._translate(error) from None


def _chunk_ids(document: dict[str, Any]) -> list[str]:
    generation, count = str(document["g"]), int(document["n"])
    return [f"{generation}:{index:06d}" for index in range(count)]


def _check_name(kind: str, name: str, limit: int) -> None:
    if (
        not isinstance(name, str)
        or not name
        or len(name.encode("utf-8")) > limit
        or any(char in _NAME_FORBIDDEN for char in name)
    ):
        raise ConfigurationError(
            f"invalid MongoDB {kind} name {name!r}: 1 to {limit} bytes, without "
            "/ \\ . space \" $ * < > : | ? or NUL"
        )


def _password(connection_string: str) -> str:
    try:
        password = urlsplit(connection_string).password
    except ValueError:
        return ""
    return unquote(password) if password else ""


def _where(connection_string: str, database_name: str) -> str:
    try:
        hosts = urlsplit(connection_string).netloc.rpartition("@")[2]
    except ValueError:
        hosts = "<unparsable>"
    return f"{hosts or 'localhost'}/{database_name}"


def mongodb_driver(
    connection_string: str = "mongodb://localhost:27017",
    database_name: str = "agentx",
    collection_name: str = "storage",
    *,
    server_selection_timeout: float = 5.0,
    max_pool_size: int = 50,
    connect_timeout: float = 5.0,
    operation_timeout: float | None = 30.0,
    **client_options: Any,
) -> MongoDBDriver:
    """Return a MongoDB driver on ``database_name.collection_name``; no I/O until first use."""
    return MongoDBDriver(
        connection_string,
        database_name,
        collection_name,
        server_selection_timeout=server_selection_timeout,
        max_pool_size=max_pool_size,
        connect_timeout=connect_timeout,
        operation_timeout=operation_timeout,
        **client_options,
    )


def from_url(url: str) -> MongoDBDriver:
    """Return a driver for ``url``; the URL's path (``mongodb://host/dbname``) picks the database.

    Without a path the database is ``agentx``; the collection is always ``storage``.
    """
    try:
        path = unquote(urlsplit(url).path.lstrip("/"))
    except ValueError:
        path = ""
    return mongodb_driver(url, path or "agentx")
