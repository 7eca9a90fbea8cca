"""The MongoDB driver: one document per key, on PyMongo's native asyncio client.

Layout. Collection ``<collection_name>`` holds ``{"_id": key, "v": Binary(value), "ver": version}``
for every key (``ver``: the key's version, see :mod:`kvstore.conditional`). Strings compare by
their UTF-8 bytes when no collation is set (the driver never sets one), which is code point
order, so a prefix scan is the ``_id`` index range
``{"_id": {"$gte": P, "$lt": succ(P)}}`` sorted by ``_id`` and read in pages of ``_id > last``.
No key is ever turned into a regular expression, a field name or an operator: keys are only
``_id`` values.

Large values. A MongoDB document is at most 16 MB, so a value bigger than ``INLINE_LIMIT`` is
written as chunk documents ``{"_id": "<generation>:<index>", "k": key, "d": Binary(part)}`` in
``<collection_name>.chunks`` first, and then the key's document ``{"_id": key, "g": generation,
"n": count}`` points at them. Chunks of a generation never change, so a reader sees the old value
or the new one, never a mix; a reader that finds a generation's chunks already removed by a newer
write reads the key again. The common path stays one document.

Versions. Every write puts a fresh ``new_version()`` in ``ver`` in the same single replace (or
insert) that writes the value, so a write still costs one round trip. A document without ``ver``
was written before versions existed: it reads at ``LEGACY_VERSION`` (0), and conditions on 0 match
a missing (or null) field, so an old collection needs no rewrite, no index and no migration step
(there is nothing to run, so nothing can race). A later per-key field follows the same rule: its
absence means the old behaviour. Conditional writes are filtered operations, each atomic on its
document: create is ``insert_one`` (a duplicate ``_id`` is the conflict), replace and delete filter
on ``_id`` and ``ver`` (nothing matched is the conflict). See :class:`MongoDBDriver` for what a
multi-key ``commit`` guarantees.

Expiry. A document may carry ``"exp"``, the instant it expires as a BSON Date (absent: it never
expires), and ``"at"``, the instant it was last written (absent in documents written before
write times were kept: ``Meta.written_at`` is then None); a large value's pointer document also
keeps ``"z"``, the value's size. Old documents need no upgrade. Every read filters on
``{"exp": {"$not": {"$lte": now}}}`` (true where the field is missing or null), so an expired
document is absent at once, whether or not anything has removed it. A sparse TTL index on
``exp`` (``expireAfterSeconds=0``, created on the first expiring write or purge) lets MongoDB
remove expired documents itself (its monitor runs every 60 s) and lets ``purge_expired`` find
them in bounded batches. The clock is the client's: see :class:`MongoDBDriver`.

Batches use ``bulk_write`` / ``delete_many``: one round trip per chunk of keys, **not atomic**
(multi-document transactions need a replica set, which this driver does not assume). asyncio
only: ``pymongo.AsyncMongoClient`` does not run under trio.

Cancellation and timeouts. PyMongo's pool and server selection wait on an asyncio condition
through ``asyncio.wait_for``; on Python 3.11 a task cancelled during that wait can leave the
inner wait running and the pool's lock held for good, after which every later operation, the
client's ``close`` and the event loop's final cancel-all-tasks wait forever. So no PyMongo call
is ever cancelled from outside: each operation first takes one of ``pool_size`` slots (a plain
semaphore, safe to cancel), then runs as its own task that PyMongo's own timeouts end, and the
caller waits for it at most ``operation_timeout`` (shielded: a cancelled or timed-out caller
returns at once, the task finishes in the background and frees its slot). With at most
``pool_size`` operations running, PyMongo's pool never makes anyone wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

from kvstore.conditional import (
    ANY_VERSION,
    LEGACY_VERSION,
    Action,
    AnyVersion,
    Change,
    Versioned,
    new_version,
)
from kvstore.driver import BaseDriver, conflict
from kvstore.drivers._extras import missing_extra
from kvstore.drivers._settings import settle, timeout_seconds, whole_number
from kvstore.drivers._translate import ErrorTable, Translator
from kvstore.errors import BackendError, BackendUnavailable, ConfigurationError
from kvstore.expiry import Clock, Meta, expiry_millis, from_millis, now_millis
from kvstore.keys import prefix_successor
from kvstore.logs import silent_until_configured
from kvstore.urls import (
    ParsedURL,
    is_secret_option,
    parse_url,
    positive_float,
    positive_int,
    take_options,
)

try:
    import pymongo.common
    import pymongo.uri_parser_shared
    from bson import Binary
    from bson.datetime_ms import DatetimeMS
    from pymongo import AsyncMongoClient, DeleteMany, DeleteOne, ReplaceOne, ReturnDocument
    from pymongo.asynchronous.collection import AsyncCollection
    from pymongo.errors import (
        ConnectionFailure,
        DuplicateKeyError,
        ExecutionTimeout,
        OperationFailure,
        PyMongoError,
        WaitQueueTimeoutError,
        WTimeoutError,
    )
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    raise missing_extra("mongodb", "pymongo", "mongodb") from error

__all__ = ["MongoDBDriver", "from_url", "mongodb_driver"]

# Retries, reconnects and pool resets are logged here (INFO), never with a password.
_log = logging.getLogger("kvstore.mongodb")
silent_until_configured("pymongo")
_T = TypeVar("_T")

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
# The field holding a document's version; a document without it is at LEGACY_VERSION.
VERSION_FIELD = "ver"
# The instant a document expires, a BSON Date; a document without it never expires.
EXPIRY_FIELD = "exp"
# The instant a document was last written, a BSON Date; absent in documents from before expiry.
WRITTEN_FIELD = "at"
# A large value's size in bytes, on its pointer document (get_meta then reads one document).
SIZE_FIELD = "z"
# What a metadata read projects: the value's size (the value is not sent), the times, the
# version, and a large value's pointer fields (to size one written before sizes were kept).
_META_FIELDS = {
    "size": {"$binarySize": "$v"},
    VERSION_FIELD: 1,
    WRITTEN_FIELD: 1,
    EXPIRY_FIELD: 1,
    SIZE_FIELD: 1,
    "g": 1,
    "n": 1,
}
# The sparse TTL index on EXPIRY_FIELD: native removal, and how purge_expired finds its batch.
EXPIRY_INDEX = "kvstore_expiry"
# The piggy-backed purge: at most once a second per driver, this many documents.
AUTO_PURGE_INTERVAL = 1.0
AUTO_PURGE_LIMIT = 100
# How often a reader retries when a large value is replaced while it reads it.
_READ_RETRIES = 5
DEFAULT_POOL_SIZE = 50
# An unreachable server is reported within about this long; no operation waits longer than
# DEFAULT_OPERATION_TIMEOUT (the same defaults on every server driver).
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_OPERATION_TIMEOUT = 10.0

# PyMongo's errors that mean the server cannot be reached now; its messages may quote the
# connection string, so the translator is given the password to hide them.
_ERRORS = ErrorTable(
    unavailable=(
        ConnectionFailure,  # AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError, ...
        ExecutionTimeout,
        WaitQueueTimeoutError,
        WTimeoutError,
        OSError,
        TimeoutError,
    )
)
_NAME_FORBIDDEN = frozenset('/\\. "$*<>:|?\x00')
_SCHEMES = ("mongodb", "mongodb+srv")

# kvstore's own URL options (the same names on every server driver).
_OUR_OPTIONS: dict[str, Callable[[str], Any]] = {
    "pool_size": positive_int,
    "connect_timeout": positive_float,
    "operation_timeout": positive_float,
}
# PyMongo's names (lower-cased: PyMongo reads option names case-insensitively) for the settings
# the driver manages itself; they are passed as keyword arguments, not left in the URL.
_NATIVE_POOL = "maxpoolsize"
_NATIVE_CONNECT = "connecttimeoutms"
_NATIVE_SOCKET = "sockettimeoutms"
_NATIVE_CSOT = "timeoutms"
_NATIVE_SELECTION = "serverselectiontimeoutms"
_NATIVE_WAIT_QUEUE = "waitqueuetimeoutms"
_MANAGED = frozenset(
    {_NATIVE_POOL, _NATIVE_CONNECT, _NATIVE_SOCKET, _NATIVE_CSOT, _NATIVE_SELECTION,
     _NATIVE_WAIT_QUEUE}
)
# Every URI option PyMongo knows, lower-cased: current names, aliases and deprecated ones.
_PYMONGO_OPTIONS = frozenset(
    {name.lower() for name in pymongo.common.URI_OPTIONS_VALIDATOR_MAP}
    | {name.lower() for name in pymongo.common.URI_OPTIONS_ALIAS_MAP}
    | {name.lower() for name in pymongo.common.URI_OPTIONS_DEPRECATION_MAP}
)


@dataclass(frozen=True, slots=True)
class _Arguments:
    """The arguments of :func:`mongodb_driver`, handed to :class:`MongoDBDriver` as one value."""

    connection_string: str
    database_name: str
    collection_name: str
    pool_size: int | None
    connect_timeout: float | None
    operation_timeout: float | None
    server_selection_timeout: float | None
    max_pool_size: int | None
    client_options: dict[str, Any]


class MongoDBDriver(BaseDriver):
    """Stores keys as documents of one collection; see the module docstring for the layout.

    Build it with :func:`mongodb_driver` (or a ``mongodb://`` URL); the class is for
    annotations and ``isinstance``. Writes are acknowledged once the server has journaled them
    (``journal=true``), so an acknowledged write survives the server being killed;
    ``journal=false`` (or ``w=0``) in the URL trades that for speed. An unreachable server or
    a timeout raises :class:`BackendUnavailable`; other server errors :class:`BackendError`.
    No error or ``repr`` shows the password.

    Conditional writes (``conditional_writes``): ``get_versioned`` is one ``find_one``;
    ``set_if`` and ``delete_if`` are one filtered operation each (``insert_one`` for a create),
    atomic against every other client. A ``commit`` of one change is as atomic. MongoDB offers no
    multi-document atomicity without a replica set's transactions, which the driver does not
    assume, so a ``commit`` of several changes is **not atomic** (``atomic_batches`` is False):

    1. It reads the versions of every key with a condition (one query per ``IN_CHUNK`` keys)
       and checks every condition. If any fails it raises :class:`~kvstore.errors.Conflict`
       naming all failing keys and has written nothing.
    2. It then applies the changes with a condition one at a time, in the order given, each as
       a filtered operation that re-checks its condition atomically; then those without a
       condition (``Change.put``, ``Change.delete`` without a version), in bulk. A ``CHECK``
       is verified in step 1 only.
    3. If another client changed a key between step 1 and its operation, that operation
       matches nothing and the commit stops there with a ``Conflict`` naming that key: **the
       conditional changes before it in the given order stay applied**; it and every later
       change, including every change without a condition, are not applied. A server error
       part way leaves the changes applied before it (the unconditional ones go in unordered
       bulk writes, so after an error there any subset of them may be applied).

    Readers can see a commit half applied. A caller needing all-or-nothing across keys must
    keep them in one document (one key) on this driver. Cancelling a commit never stops it part
    way: like every operation here it runs as its own task, which the caller stops waiting for.

    Expiry (``expiry``): instants are whole milliseconds on the **client's** clock (this
    process's ``time.time``), read once per operation: the write time and expiry a write stores,
    and the "now" every read, condition and purge filters with, so the driver agrees with itself
    exactly. Not ``$$NOW``: the SecantusDB stand-in the tests run on compares ``$$NOW`` with a
    stored Date wrongly and plans any filter with a top-level ``$expr`` as a collection scan,
    losing the ``_id`` lookup; and one ``$$NOW`` cannot span a batch split over several write
    commands. MongoDB's TTL monitor removes documents by the server's clock: with the two clocks
    in step (NTP) it only ever removes what readers already see as expired. ``set_expiring`` and
    ``set_many_expiring`` write like ``set`` and ``set_many`` (one instant for the batch, not
    atomic); ``expire`` is one ``update_one`` filtered on the key being live; ``get_meta`` is
    one ``find_one`` that projects the value's ``$binarySize``; ``purge_expired`` reads up to
    ``limit`` expired ids through the TTL index and deletes them, re-checking their expiry.
    Expiring writes also purge up to ``AUTO_PURGE_LIMIT`` documents, at most once a second.
    """

    name = "mongodb"
    supports_trio = False
    conditional_writes = True
    expiry = True

    def __init__(self, arguments: _Arguments) -> None:
        connection_string, database_name = arguments.connection_string, arguments.database_name
        collection_name, pool_size = arguments.collection_name, arguments.pool_size
        connect_timeout, operation_timeout = arguments.connect_timeout, arguments.operation_timeout
        server_selection_timeout = arguments.server_selection_timeout
        max_pool_size = arguments.max_pool_size
        client_options = dict(arguments.client_options)
        parsed, ours, native = _parse_connection_string(connection_string)
        _check_name("database", database_name, 63)
        _check_name("collection", collection_name, 200)
        if collection_name.startswith("system"):
            raise ConfigurationError(
                f"invalid MongoDB collection name {collection_name!r}: reserved"
            )
        keywords = _check_client_options(client_options)
        self.database_name = database_name
        self.collection_name = collection_name
        self.where = f"{parsed.where_hosts() or 'localhost'}/{database_name}"
        self._redacted = parsed.redacted()
        self._errors = Translator(
            _ERRORS, driver=self.name, where=self.where, secret=parsed.password or ""
        )
        self._connection_string = _rebuild(parsed, native)
        where = "mongodb"
        pool = whole_number(
            "pool_size",
            settle(
                "pool_size",
                {
                    "pool_size": pool_size,
                    "max_pool_size": max_pool_size,
                    "?pool_size": ours.get("pool_size"),
                    "maxPoolSize": _native_number(native, keywords, _NATIVE_POOL, 1),
                },
                DEFAULT_POOL_SIZE,
                where=where,
            ),
            minimum=1,
            where=where,
        )
        connect = timeout_seconds(
            "connect_timeout",
            settle(
                "connect_timeout",
                {
                    "connect_timeout": connect_timeout,
                    "?connect_timeout": ours.get("connect_timeout"),
                    "connectTimeoutMS": _native_seconds(native, keywords, _NATIVE_CONNECT),
                },
                DEFAULT_CONNECT_TIMEOUT,
                where=where,
            ),
            where=where,
        )
        operation = timeout_seconds(
            "operation_timeout",
            settle(
                "operation_timeout",
                {
                    "operation_timeout": operation_timeout,
                    "?operation_timeout": ours.get("operation_timeout"),
                    "socketTimeoutMS": _native_seconds(native, keywords, _NATIVE_SOCKET),
                    "timeoutMS": _native_seconds(native, keywords, _NATIVE_CSOT),
                },
                DEFAULT_OPERATION_TIMEOUT,
                where=where,
            ),
            where=where,
        )
        selection = timeout_seconds(
            "server_selection_timeout",
            settle(
                "server_selection_timeout",
                {
                    "server_selection_timeout": server_selection_timeout,
                    "serverSelectionTimeoutMS": _native_seconds(
                        native, keywords, _NATIVE_SELECTION
                    ),
                },
                connect,
                where=where,
            ),
            where=where,
        )
        self.pool_size = pool
        self.connect_timeout = connect
        self.operation_timeout = operation
        self._options: dict[str, Any] = {
            **keywords,
            "maxPoolSize": pool,
            "connectTimeoutMS": _ms(connect),
            "serverSelectionTimeoutMS": _ms(selection),
            # Operations never queue inside PyMongo (the driver's slots bound them), so this
            # only guards against a slot freed before PyMongo returned its connection.
            "waitQueueTimeoutMS": _ms(operation),
        }
        given = set(native) | {name.lower() for name in client_options}
        if not given & {"journal", "j"} and str(_native_text(native, keywords, "w")) != "0":
            # Acknowledged means journaled: a write the server confirmed survives the server
            # being killed (kill -9 of a stand-in lost ~5 % of w:1 acknowledged writes).
            self._options["journal"] = True
        if _NATIVE_CSOT in given:
            self._options["timeoutMS"] = _ms(operation)
        else:
            # socketTimeoutMS rather than timeoutMS: with timeoutMS set, PyMongo waits the
            # whole operation timeout for server selection, ignoring serverSelectionTimeoutMS.
            self._options["socketTimeoutMS"] = _ms(operation)
        self._client: AsyncMongoClient[dict[str, Any]] | None = None
        self._values: AsyncCollection[dict[str, Any]] | None = None
        self._chunks: AsyncCollection[dict[str, Any]] | None = None
        self._chunk_index_ready = False
        self._expiry_index_ready = False
        self._clock: Clock = time.time
        # When the last piggy-backed purge ran (time.monotonic()); never, to start with.
        self._last_purge = -math.inf
        self._slots: asyncio.Semaphore | None = None
        self._running: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        return (
            f"MongoDBDriver({self._redacted!r}, database={self.database_name!r}, "
            f"collection={self.collection_name!r})"
        )

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
            except (PyMongoError, ValueError, TypeError) as error:
                raise ConfigurationError(
                    f"mongodb at {self.where}: the client refused its settings: "
                    f"{self._scrub(error)}"
                ) from None
            database = client[self.database_name]
            values = database[self.collection_name]
            chunks = database[f"{self.collection_name}.chunks"]
            self._client, self._values, self._chunks = client, values, chunks
        return values, chunks

    async def _run(self, work: Callable[[], Awaitable[_T]]) -> _T:
        """Run one operation's PyMongo calls, bounded and never cancelled from outside.

        See the module docstring: the caller waits at most ``operation_timeout`` for a slot and
        the result together; PyMongo's own timeouts end the task itself.
        """
        self._collections()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.operation_timeout
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.pool_size)
        slots = self._slots
        try:
            async with asyncio.timeout_at(deadline):
                await slots.acquire()
        except TimeoutError:
            raise self._timed_out("waiting for a free connection") from None
        try:
            task: asyncio.Task[_T] = loop.create_task(self._translated(work))
        except BaseException:
            slots.release()
            raise
        self._running.add(task)
        task.add_done_callback(self._finished)
        try:
            async with asyncio.timeout_at(deadline):
                return await asyncio.shield(task)
        except TimeoutError:
            if task.done() and not task.cancelled():
                # PyMongo's own timeout and ours ended together: report PyMongo's error.
                return task.result()
            raise self._timed_out("waiting for the server's reply") from None

    def _finished(self, task: asyncio.Task[Any]) -> None:
        assert self._slots is not None
        self._slots.release()
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Retrieved here, so that a result nobody waits for any more (its caller was
            # cancelled or timed out) is never reported by asyncio as a lost exception.
            _log.debug("mongodb at %s: %s", self.where, task.exception())

    async def _translated(self, work: Callable[[], Awaitable[_T]]) -> _T:
        try:
            return await work()
        except PyMongoError as error:
            failure = self._translate(error)
            if isinstance(failure, BackendUnavailable):
                # PyMongo has already retried a retryable operation once; after a network error
                # it clears the server's pooled connections, and a later operation reconnects.
                _log.info("%s; PyMongo reconnects on a later operation", failure)
            raise failure from None

    def _timed_out(self, doing: str) -> BackendUnavailable:
        return BackendUnavailable(
            f"no answer within operation_timeout={self.operation_timeout:g} s ({doing})",
            driver=self.name,
            where=self.where,
        )

    def _scrub(self, error: BaseException) -> str:
        return self._errors.text(error)

    def _translate(self, error: BaseException) -> BackendError:
        return self._errors.error(error)

    async def _chunk_collection(self) -> AsyncCollection[dict[str, Any]]:
        """The chunk collection, with its index on ``k`` made once per driver (needed rarely)."""
        _, chunks = self._collections()
        if not self._chunk_index_ready:
            # create_index is idempotent: two operations racing here both succeed.
            await chunks.create_index("k")
            self._chunk_index_ready = True
        return chunks

    def _now(self) -> int:
        """Now, in whole milliseconds on the driver's clock (see the class docstring)."""
        return now_millis(self._clock)

    async def _ensure_expiry_index(self, values: AsyncCollection[dict[str, Any]]) -> None:
        """Create the sparse TTL index on the expiry once per driver (idempotent on the server).

        Sparse: documents that never expire (the no-TTL path) have no entry to maintain. A
        server that refuses it (an index of the same name and other options, a server without
        TTL indexes) is logged and left alone: reads filter on the expiry either way, and a
        purge then searches without the index.
        """
        if self._expiry_index_ready:
            return
        try:
            await values.create_index(
                [(EXPIRY_FIELD, 1)], name=EXPIRY_INDEX, expireAfterSeconds=0, sparse=True
            )
        except OperationFailure as error:
            _log.warning(
                "mongodb at %s: no TTL index on %r (%s); expired documents are removed only "
                "by purges",
                self.where,
                EXPIRY_FIELD,
                self._scrub(error),
            )
        self._expiry_index_ready = True

    async def _purge(self, values: AsyncCollection[dict[str, Any]], limit: int) -> int:
        """Delete up to ``limit`` expired documents found through the TTL index; return how many.

        The ids are read first (bounded by ``limit``, oldest expiry first), then deleted with
        the expiry re-checked, so a key rewritten in between is left alone. A large value's
        chunks go with its document.
        """
        expired = _expired(self._now())
        found = [
            document
            async for document in values.find(expired, {"g": 1, "n": 1})
            .sort(EXPIRY_FIELD, 1)
            .limit(limit)
        ]
        small = [document["_id"] for document in found if "g" not in document]
        removed = 0
        for start in range(0, len(small), IN_CHUNK):
            result = await values.delete_many(
                {"_id": {"$in": small[start : start + IN_CHUNK]}, **expired}
            )
            removed += result.deleted_count
        for document in found:
            if "g" in document:
                gone = await values.find_one_and_delete(
                    {"_id": document["_id"], **expired}, projection={"g": 1, "n": 1}
                )
                if gone is not None:
                    removed += 1
                    await self._drop_chunks(gone)
        return removed

    async def _drop_chunks(self, previous: Mapping[str, Any] | None) -> None:
        """Remove the chunks of a large value's document that was just replaced or deleted."""
        if previous is not None and "g" in previous:
            chunks = await self._chunk_collection()
            await chunks.delete_many({"_id": {"$in": _chunk_ids(previous)}})

    async def _after_expiring_write(self, values: AsyncCollection[dict[str, Any]]) -> None:
        """The piggy-backed purge: a small batch, at most once per AUTO_PURGE_INTERVAL.

        Best effort: the write it follows has succeeded, so a failure is logged, not raised;
        the next expiring write tries again.
        """
        started = time.monotonic()
        if started - self._last_purge < AUTO_PURGE_INTERVAL:
            return
        self._last_purge = started
        try:
            await self._purge(values, AUTO_PURGE_LIMIT)
        except PyMongoError as error:
            _log.debug("mongodb at %s: automatic purge failed: %s", self.where, error)

    # -- primitives -------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        """Return the value stored under ``key``, or ``None`` (one ``find_one`` by ``_id``)."""
        values, _ = self._collections()

        async def work() -> bytes | None:
            document = await values.find_one({"_id": key, **_live(self._now())})
            if document is None:
                return None
            if "v" in document:
                return bytes(document["v"])
            found = await self._read_large(key, document)
            return None if found is None else found.value

        return await self._run(work)

    async def set(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``: one upserting ``replace_one`` unless it is large."""
        values, _ = self._collections()

        async def work() -> None:
            now = self._now()
            if len(value) > INLINE_LIMIT:
                await self._write_large(key, value, ANY_VERSION, now)
                return
            await values.replace_one(
                {"_id": key}, _document(key, value, new_version(), now), upsert=True
            )

        await self._run(work)

    async def delete(self, key: str) -> None:
        """Remove ``key`` (one ``delete_one``); a missing key is not an error."""
        values, _ = self._collections()

        async def work() -> None:
            await values.delete_one({"_id": key})

        await self._run(work)

    # -- conditional writes -----------------------------------------------------------------

    async def get_versioned(self, key: str) -> Versioned[bytes] | None:
        """Return the value of ``key`` and its version from one ``find_one``, or ``None``."""
        values, _ = self._collections()

        async def work() -> Versioned[bytes] | None:
            document = await values.find_one({"_id": key, **_live(self._now())})
            if document is None:
                return None
            if "v" in document:
                return Versioned(bytes(document["v"]), _version_of(document))
            return await self._read_large(key, document)

        return await self._run(work)

    async def set_if(self, key: str, value: bytes, expected: int | None) -> int:
        """Write ``value`` if ``key`` is absent (``expected`` None: one ``insert_one``) or at
        version ``expected`` (one ``replace_one`` filtered on it); else raise ``Conflict``."""
        values, _ = self._collections()
        return await self._run(lambda: self._write(values, key, value, expected))

    async def delete_if(self, key: str, expected: int) -> None:
        """Delete ``key`` with one ``delete_one`` filtered on version ``expected``; if nothing
        matched, raise ``Conflict``."""
        values, _ = self._collections()

        async def work() -> None:
            live = _live(self._now())
            deleted = await values.delete_one({**_version_filter(key, expected), **live})
            if deleted.deleted_count == 0:
                raise conflict([key])

        await self._run(work)

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        """Apply conditional changes: atomic for one change, checked-then-applied for several.

        See the class docstring for exactly what a commit of several changes leaves behind
        when another client interferes.
        """
        values, _ = self._collections()
        if not changes:
            return []
        if len(changes) == 1:
            (change,) = changes
            return [await self._run(lambda: self._apply(values, change))]

        async def work() -> list[int | None]:
            conditional = [
                index for index, change in enumerate(changes) if change.expected is not ANY_VERSION
            ]
            keys = [changes[index].key for index in conditional]
            current = await self._versions(values, keys, self._now())
            failed = [
                changes[index].key
                for index in conditional
                if not changes[index].holds_for(current.get(changes[index].key))
            ]
            if failed:
                raise conflict(failed)
            results: list[int | None] = [None] * len(changes)
            for index in conditional:
                if changes[index].action is not Action.CHECK:
                    results[index] = await self._apply(values, changes[index])
            free = [
                index for index, change in enumerate(changes) if change.expected is ANY_VERSION
            ]
            await self._apply_unconditional(values, changes, free, results)
            return results

        return await self._run(work)

    async def _write(
        self,
        values: AsyncCollection[dict[str, Any]],
        key: str,
        value: bytes,
        expected: int | AnyVersion | None,
    ) -> int:
        """One write under a condition, as one operation; returns the new version.

        An expired document is absent: a create replaces it, a version condition never holds.
        """
        now = self._now()
        if len(value) > INLINE_LIMIT:
            return await self._write_large(key, value, expected, now)
        version = new_version()
        document = _document(key, value, version, now)
        if expected is None:
            try:
                await values.insert_one(document)
            except DuplicateKeyError:
                # Taken, unless by an expired document: then the create replaces it.
                previous = await values.find_one_and_replace(
                    {"_id": key, **_expired(now)}, document, projection={"g": 1, "n": 1}
                )
                if previous is None:
                    raise conflict([key]) from None
                await self._drop_chunks(previous)
        elif expected is ANY_VERSION:
            await values.replace_one({"_id": key}, document, upsert=True)
        else:
            replaced = await values.replace_one(
                {**_version_filter(key, expected), **_live(now)}, document
            )
            if replaced.matched_count == 0:
                raise conflict([key])
        return version

    async def _apply(
        self, values: AsyncCollection[dict[str, Any]], change: Change[bytes]
    ) -> int | None:
        """Apply one change as one filtered operation (atomic on its document)."""
        key, expected = change.key, change.expected
        if change.action is Action.WRITE:
            assert change.value is not None
            return await self._write(values, key, change.value, expected)
        live = _live(self._now())
        if change.action is Action.DELETE:
            if expected is ANY_VERSION:
                await values.delete_one({"_id": key})
            elif expected is None:
                # "Delete if absent": nothing to delete, but the key must be absent.
                if await values.find_one({"_id": key, **live}, {"_id": 1}) is not None:
                    raise conflict([key])
            elif (
                await values.delete_one({**_version_filter(key, expected), **live})
            ).deleted_count == 0:
                raise conflict([key])
            return None
        document = await values.find_one({"_id": key, **live}, {VERSION_FIELD: 1})
        if not change.holds_for(None if document is None else _version_of(document)):
            raise conflict([key])
        return None

    async def _versions(
        self, values: AsyncCollection[dict[str, Any]], keys: list[str], now: int
    ) -> dict[str, int]:
        """The version of each of ``keys`` live at ``now`` (one query per ``IN_CHUNK``)."""
        found: dict[str, int] = {}
        live = _live(now)
        for start in range(0, len(keys), IN_CHUNK):
            async for document in values.find(
                {"_id": {"$in": keys[start : start + IN_CHUNK]}, **live}, {VERSION_FIELD: 1}
            ):
                found[str(document["_id"])] = _version_of(document)
        return found

    async def _apply_unconditional(
        self,
        values: AsyncCollection[dict[str, Any]],
        changes: Sequence[Change[bytes]],
        indexes: list[int],
        results: list[int | None],
    ) -> None:
        """Apply the changes without a condition in unordered bulk writes; fill in versions."""
        operations: list[ReplaceOne[dict[str, Any]] | DeleteOne] = []
        now = self._now()
        for index in indexes:
            change = changes[index]
            if change.action is Action.DELETE:
                operations.append(DeleteOne({"_id": change.key}))
            elif change.action is Action.WRITE:
                assert change.value is not None
                if len(change.value) > INLINE_LIMIT:
                    results[index] = await self._write_large(
                        change.key, change.value, ANY_VERSION, now
                    )
                    continue
                version = results[index] = new_version()
                document = _document(change.key, change.value, version, now)
                operations.append(ReplaceOne({"_id": change.key}, document, upsert=True))
        for start in range(0, len(operations), BATCH_CHUNK):
            await values.bulk_write(operations[start : start + BATCH_CHUNK], ordered=False)

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Yield the keys starting with ``prefix`` in order, ``SCAN_PAGE`` per round trip."""
        successor = prefix_successor(prefix)
        bounds: dict[str, str] = {"$gte": prefix}
        if successor is not None:
            bounds["$lt"] = successor
        while True:
            page = await self._run(self._page_reader(dict(bounds)))
            for key in page:
                yield key
            if len(page) < SCAN_PAGE:
                return
            # Keyset pagination: writes between pages can neither repeat nor skip a key.
            bounds = {"$gt": page[-1], **({"$lt": successor} if successor is not None else {})}

    def _page_reader(self, bounds: dict[str, str]) -> Callable[[], Awaitable[list[str]]]:
        values, _ = self._collections()

        async def work() -> list[str]:
            # Expired documents are skipped by the server, never sent (values are never read).
            live = _live(self._now())
            cursor = (
                values.find({"_id": bounds, **live}, {"_id": 1}).sort("_id", 1).limit(SCAN_PAGE)
            )
            return [str(document["_id"]) async for document in cursor]

        return work

    async def close(self) -> None:
        """Close the client and its pool; idempotent.

        Operations still running for callers that gave up are waited for first (each ends
        within PyMongo's timeouts), so that closing never cuts one off mid-way.
        """
        if self.closed:
            return
        self.mark_closed()
        running = list(self._running)
        if running:
            await asyncio.wait(running, timeout=self.operation_timeout + self.connect_timeout)
        client, self._client, self._values, self._chunks = self._client, None, None, None
        if client is not None:
            # The connections are gone either way.
            with contextlib.suppress(PyMongoError):
                await client.close()

    # -- large values (called inside an operation's work) ------------------------------------

    async def _write_large(
        self,
        key: str,
        value: bytes,
        expected: int | AnyVersion | None,
        now: int,
        expires: int | None = None,
    ) -> int:
        """Write a large value as chunks, then its document under the condition ``expected``.

        The document is written at ``now`` and expires at ``expires`` (None: never). Returns
        the new version; raises :class:`Conflict` (removing the new chunks) if the condition
        fails.
        """
        values, _ = self._collections()
        chunks = await self._chunk_collection()
        generation = os.urandom(12).hex()
        parts = [value[start : start + CHUNK_SIZE] for start in range(0, len(value), CHUNK_SIZE)]
        ids = [f"{generation}:{index:06d}" for index in range(len(parts))]
        await chunks.insert_many(
            [
                {"_id": chunk_id, "k": key, "d": Binary(part)}
                for chunk_id, part in zip(ids, parts, strict=True)
            ],
            ordered=False,
        )
        version = new_version()
        document = {
            "_id": key,
            "g": generation,
            "n": len(parts),
            SIZE_FIELD: len(value),
            VERSION_FIELD: version,
            **_instants(now, expires),
        }
        if expected is None:
            try:
                await values.insert_one(document)
            except DuplicateKeyError:
                # Taken, unless by an expired document: then the create replaces it.
                previous = await values.find_one_and_replace(
                    {"_id": key, **_expired(now)}, document, projection={"g": 1, "n": 1}
                )
                if previous is None:
                    await chunks.delete_many({"_id": {"$in": ids}})
                    raise conflict([key]) from None
                await self._drop_chunks(previous)
            return version
        previous = await values.find_one_and_replace(
            {"_id": key}
            if expected is ANY_VERSION
            else {**_version_filter(key, expected), **_live(now)},
            document,
            projection={"g": 1, "n": 1},
            upsert=expected is ANY_VERSION,
            return_document=ReturnDocument.BEFORE,
        )
        if previous is None and expected is not ANY_VERSION:
            await chunks.delete_many({"_id": {"$in": ids}})
            raise conflict([key])
        if previous is not None and "g" in previous:
            await chunks.delete_many({"_id": {"$in": _chunk_ids(previous)}})
        return version

    async def _read_large(self, key: str, document: dict[str, Any]) -> Versioned[bytes] | None:
        """Read the chunks ``document`` points at: the value and the version it was read at."""
        values, _ = self._collections()
        chunks = await self._chunk_collection()
        for _ in range(_READ_RETRIES):
            ids = _chunk_ids(document)
            found = {str(part["_id"]): bytes(part["d"]) async for part in chunks.find(
                {"_id": {"$in": ids}}
            )}
            if len(found) == len(ids):
                # Chunks of a generation never change: these bytes are the document's version.
                value = b"".join(found[chunk_id] for chunk_id in ids)
                return Versioned(value, _version_of(document))
            # A newer write replaced the value and removed these chunks: read the key again.
            _log.debug("mongodb at %s: a large value was replaced while read; reading again",
                       self.where)
            reread = await values.find_one({"_id": key, **_live(self._now())})
            if reread is None:
                return None
            if "v" in reread:
                return Versioned(bytes(reread["v"]), _version_of(reread))
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

        async def work() -> dict[str, bytes]:
            found: dict[str, bytes] = {}
            large: list[dict[str, Any]] = []
            for document in await self._live_documents(values, keys):
                if "v" in document:
                    found[str(document["_id"])] = bytes(document["v"])
                else:
                    large.append(document)
            # Read after the scan, so that one operation never holds two connections.
            for document in large:
                read = await self._read_large(str(document["_id"]), document)
                if read is not None:
                    found[str(document["_id"])] = read.value
            return found

        found = await self._run(work)
        return [found.get(key) for key in keys]

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Store every pair, the last one per key winning, with unordered bulk writes.

        Not atomic: MongoDB has no multi-document atomicity outside transactions.
        """
        values, _ = self._collections()
        if not items:
            return
        await self._run(lambda: self._write_many(values, items, None))

    async def _write_many(
        self,
        values: AsyncCollection[dict[str, Any]],
        items: Sequence[tuple[str, bytes]],
        ttl: float | None,
    ) -> None:
        """set_many's work: every pair written at one instant, to expire ``ttl`` after it."""
        latest = dict(items)
        small = [(key, value) for key, value in latest.items() if len(value) <= INLINE_LIMIT]
        now = self._now()
        expires = None if ttl is None else expiry_millis(now, ttl)
        for start in range(0, len(small), BATCH_CHUNK):
            await values.bulk_write(
                [
                    ReplaceOne(
                        {"_id": key},
                        _document(key, value, new_version(), now, expires),
                        upsert=True,
                    )
                    for key, value in small[start : start + BATCH_CHUNK]
                ],
                ordered=False,
            )
        for key, value in latest.items():
            if len(value) > INLINE_LIMIT:
                await self._write_large(key, value, ANY_VERSION, now, expires)

    # -- expiry -----------------------------------------------------------------------------

    async def set_expiring(self, key: str, value: bytes, ttl: float) -> None:
        """Store ``value`` under ``key`` to expire ``ttl`` seconds from now (client clock): one
        upserting ``replace_one`` unless it is large, then perhaps a small purge."""
        values, _ = self._collections()

        async def work() -> None:
            await self._ensure_expiry_index(values)
            now = self._now()
            expires = expiry_millis(now, ttl)
            if len(value) > INLINE_LIMIT:
                await self._write_large(key, value, ANY_VERSION, now, expires)
            else:
                await values.replace_one(
                    {"_id": key}, _document(key, value, new_version(), now, expires), upsert=True
                )
            await self._after_expiring_write(values)

        await self._run(work)

    async def set_many_expiring(self, items: Sequence[tuple[str, bytes]], ttl: float) -> None:
        """Store every pair to expire ``ttl`` seconds from one instant, as ``set_many`` does
        (not atomic), then perhaps a small purge."""
        values, _ = self._collections()
        if not items:
            return

        async def work() -> None:
            await self._ensure_expiry_index(values)
            await self._write_many(values, items, ttl)
            await self._after_expiring_write(values)

        await self._run(work)

    async def expire(self, key: str, ttl: float | None) -> bool:
        """Set (or, for None, remove) a live key's expiry: one ``update_one`` filtered on the key
        being live, which leaves the value, version and write time alone."""
        values, _ = self._collections()

        async def work() -> bool:
            await self._ensure_expiry_index(values)
            now = self._now()
            change: dict[str, Any] = (
                {"$unset": {EXPIRY_FIELD: ""}}
                if ttl is None
                else {"$set": {EXPIRY_FIELD: DatetimeMS(expiry_millis(now, ttl))}}
            )
            result = await values.update_one({"_id": key, **_live(now)}, change)
            await self._after_expiring_write(values)
            return result.matched_count == 1

        return await self._run(work)

    async def get_meta(self, key: str) -> Meta | None:
        """The size, write time, expiry and version of a live key: one ``find_one`` projecting
        the value's ``$binarySize`` (the value itself is not sent)."""
        values, _ = self._collections()

        async def work() -> Meta | None:
            document = await values.find_one({"_id": key, **_live(self._now())}, _META_FIELDS)
            return None if document is None else await self._meta_of(key, document)

        return await self._run(work)

    async def get_meta_many(self, keys: Sequence[str]) -> list[Meta | None]:
        """:meth:`get_meta` of each of ``keys`` in order: one ``$in`` query per ``IN_CHUNK`` keys,
        projecting sizes as :meth:`get_meta` does."""
        values, _ = self._collections()
        if not keys:
            return []

        async def work() -> dict[str, Meta]:
            documents = await self._live_documents(values, keys, _META_FIELDS)
            # Sizes of old large values are read after the scan: one connection at a time.
            found: dict[str, Meta] = {}
            for document in documents:
                meta = await self._meta_of(str(document["_id"]), document)
                if meta is not None:
                    found[str(document["_id"])] = meta
            return found

        found = await self._run(work)
        return [found.get(key) for key in keys]

    async def _live_documents(
        self,
        values: AsyncCollection[dict[str, Any]],
        keys: Sequence[str],
        projection: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """The live documents of the distinct ``keys``: one ``$in`` query per ``IN_CHUNK``."""
        unique = list(dict.fromkeys(keys))
        live = _live(self._now())
        documents: list[dict[str, Any]] = []
        for start in range(0, len(unique), IN_CHUNK):
            query = {"_id": {"$in": unique[start : start + IN_CHUNK]}, **live}
            documents.extend([document async for document in values.find(query, projection)])
        return documents

    async def _meta_of(self, key: str, document: dict[str, Any]) -> Meta | None:
        """The :class:`Meta` of a document read with :data:`_META_FIELDS`; ``None`` if it went."""
        size = document.get("size")
        if size is None:
            size = document.get(SIZE_FIELD)
        if size is None:
            # A large value written before sizes were kept: read its value.
            found = await self._read_large(key, document)
            if found is None:
                return None
            size = len(found.value)
        written, expires = _millis(document.get(WRITTEN_FIELD)), _millis(document.get(EXPIRY_FIELD))
        return Meta(
            size=int(size),
            written_at=None if written is None else from_millis(written),
            expires_at=None if expires is None else from_millis(expires),
            version=_version_of(document),
        )

    async def purge_expired(self, limit: int = 1000) -> int:
        """Delete up to ``limit`` expired documents, found through the TTL index; return how
        many (see ``_purge``)."""
        values, _ = self._collections()

        async def work() -> int:
            await self._ensure_expiry_index(values)
            return await self._purge(values, limit)

        return await self._run(work)

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Remove every key in ``keys``: one bulk write, a ``DeleteMany`` per ``IN_CHUNK`` keys."""
        values, _ = self._collections()
        if not keys:
            return
        unique = list(dict.fromkeys(keys))

        async def work() -> None:
            await values.bulk_write(
                [
                    DeleteMany({"_id": {"$in": unique[start : start + IN_CHUNK]}})
                    for start in range(0, len(unique), IN_CHUNK)
                ],
                ordered=False,
            )

        await self._run(work)

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

        async def work() -> None:
            await values.delete_many({"_id": bounds})
            chunks = await self._chunk_collection()
            await chunks.delete_many({"k": bounds})

        await self._run(work)


def _document(
    key: str, value: bytes, version: int, now: int, expires: int | None = None
) -> dict[str, Any]:
    """The document of a small value written at ``now`` to expire at ``expires`` (None: never).

    Written whole (a replace), so a write without a TTL drops any earlier expiry.
    """
    return {
        "_id": key,
        "v": Binary(value),
        VERSION_FIELD: version,
        **_instants(now, expires),
    }


def _instants(now: int, expires: int | None) -> dict[str, DatetimeMS]:
    """The write time and (if any) expiry fields, as BSON Dates of whole milliseconds."""
    if expires is None:
        return {WRITTEN_FIELD: DatetimeMS(now)}
    return {WRITTEN_FIELD: DatetimeMS(now), EXPIRY_FIELD: DatetimeMS(expires)}


def _live(now: int) -> dict[str, Any]:
    """The filter clause for documents live at ``now``: no expiry (missing or null) or a later
    one. One field clause, not a top-level ``$or``: SecantusDB plans a filter with a top-level
    operator as a collection scan, losing its ``_id`` lookup."""
    return {EXPIRY_FIELD: {"$not": {"$lte": DatetimeMS(now)}}}


def _expired(now: int) -> dict[str, Any]:
    """The filter clause for documents expired at ``now`` (the TTL index serves it)."""
    return {EXPIRY_FIELD: {"$lte": DatetimeMS(now)}}


def _millis(value: object) -> int | None:
    """A stored instant (a BSON Date, decoded as the client's codec options say) in whole
    milliseconds, or None for a missing field."""
    if value is None:
        return None
    if isinstance(value, DatetimeMS):
        return int(value)
    if isinstance(value, datetime):
        return int(DatetimeMS(value))  # a naive datetime is UTC, as PyMongo decodes it
    if isinstance(value, int):
        return value
    raise BackendError(f"a stored instant is not a date: {value!r}", driver="mongodb")


def _version_of(document: Mapping[str, Any]) -> int:
    """The version of a stored document: its ``ver``, or LEGACY_VERSION if it has none."""
    version = document.get(VERSION_FIELD)
    return LEGACY_VERSION if version is None else int(version)


def _version_filter(key: str, expected: int) -> dict[str, Any]:
    """The filter matching ``key``'s document only while it is at version ``expected``."""
    if expected == LEGACY_VERSION:
        # Documents written before versions have no field: they are at LEGACY_VERSION.
        return {"_id": key, VERSION_FIELD: {"$in": [LEGACY_VERSION, None]}}
    return {"_id": key, VERSION_FIELD: expected}


def _chunk_ids(document: Mapping[str, Any]) -> list[str]:
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


# -- connection strings ---------------------------------------------------------------------


def _parse_connection_string(url: str) -> tuple[ParsedURL, dict[str, Any], dict[str, str]]:
    """Split a MongoDB URL as PyMongo does: the parsed URL, kvstore's options, PyMongo's.

    PyMongo's options are checked by PyMongo's own validators (names case-insensitive, as
    PyMongo reads them) and returned with lower-cased names and their text values. Raises
    :class:`ConfigurationError`, never echoing a secret.
    """
    parsed = parse_url(url, schemes=_SCHEMES, multi_host=True)
    if not parsed.hosts:
        raise ConfigurationError(f"{parsed.redacted()!r} names no host (mongodb://HOST/...)")
    if parsed.scheme == "mongodb+srv" and (len(parsed.hosts) != 1 or parsed.hosts[0][1]):
        raise ConfigurationError(
            f"{parsed.redacted()!r}: a mongodb+srv:// URL names one host and no port"
        )
    if any(not host for host, _ in parsed.hosts):
        raise ConfigurationError(f"{parsed.redacted()!r}: a host name is missing before ':PORT'")
    ours_text = {name: text for name, text in parsed.options.items() if name in _OUR_OPTIONS}
    ours = take_options(ours_text, _OUR_OPTIONS, where="mongodb")
    if any(
        name not in _OUR_OPTIONS and name.lower() not in _PYMONGO_OPTIONS
        for name in parsed.options
    ):
        # Raises, naming the unknown option(s) (never a secret) and the known ones.
        known = [name for name in parsed.options if name.lower() in _PYMONGO_OPTIONS]
        take_options(
            parsed.options,
            {**_OUR_OPTIONS, **dict.fromkeys([*_known_names(), *known], str)},
            where="mongodb",
        )
    native: dict[str, str] = {}
    for name, text in parsed.options.items():
        if name in _OUR_OPTIONS:
            continue
        folded = name.lower()
        if folded in native:
            raise ConfigurationError(
                f"{parsed.redacted()!r}: option {name!r} is given twice (PyMongo reads option "
                "names without regard to case)"
            )
        native[folded] = text
    _validate_native(native)
    return parsed, ours, native


def _known_names() -> list[str]:
    # Named in the error for an unknown option: PyMongo's spellings, as its docs write them.
    return sorted(pymongo.common.URI_OPTIONS_VALIDATOR_MAP)


def _validate_native(native: Mapping[str, str]) -> None:
    """Let PyMongo's own URI option validation judge ``native`` (no DNS, no I/O)."""
    if not native:
        return
    query = "&".join(f"{quote(name, safe='')}={quote(text, safe='')}" for name, text in
                     native.items())
    try:
        pymongo.uri_parser_shared.split_options(query, validate=True, warn=False)
    except (PyMongoError, ValueError, TypeError) as error:
        detail = (
            "" if any(is_secret_option(name) for name in native) else f": {error}"
        )
        raise ConfigurationError(f"bad mongodb URL option{detail}") from None
    for name in (_NATIVE_SOCKET, _NATIVE_CSOT, _NATIVE_CONNECT, _NATIVE_SELECTION):
        if name in native and float(native[name]) == 0:
            raise ConfigurationError(
                f"mongodb URL option {name}=0 means waiting forever; kvstore bounds every wait: "
                "give a number of milliseconds"
            )


def _rebuild(parsed: ParsedURL, native: Mapping[str, str]) -> str:
    """The URL PyMongo is given: the same hosts, credentials and database, PyMongo's options
    but those the driver passes itself, each percent-encoded once."""
    userinfo = ""
    if parsed.username is not None or parsed.password is not None:
        userinfo = quote(parsed.username or "", safe="")
        if parsed.password is not None:
            userinfo += ":" + quote(parsed.password, safe="")
        userinfo += "@"
    query = "&".join(
        f"{quote(name, safe='')}={quote(text, safe='')}"
        for name, text in native.items()
        if name not in _MANAGED
    )
    path = quote(parsed.path, safe="")
    return (
        f"{parsed.scheme}://{userinfo}{parsed.where_hosts()}/{path}"
        f"{'?' if query else ''}{query}"
    )


def _check_client_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Check keyword arguments for ``AsyncMongoClient`` with PyMongo's validators now, so that
    a bad one is a ConfigurationError here rather than an error on first use."""
    for name, value in options.items():
        try:
            pymongo.common.validate(name, value)
        except (PyMongoError, ValueError, TypeError) as error:
            detail = "" if is_secret_option(name) else f": {error}"
            raise ConfigurationError(f"mongodb: bad client option {name!r}{detail}") from None
    return dict(options)


def _native_text(
    native: Mapping[str, str], keywords: Mapping[str, Any], name: str
) -> object | None:
    for given, value in keywords.items():
        if given.lower() == name:
            found: object = value
            return found
    return native.get(name)


def _native_number(
    native: Mapping[str, str], keywords: Mapping[str, Any], name: str, minimum: int
) -> int | None:
    value = _native_text(native, keywords, name)
    if value is None:
        return None
    try:
        number = int(str(value))
    except ValueError:
        raise ConfigurationError(f"mongodb: {name} must be a whole number") from None
    return whole_number(name, number, minimum=minimum, where="mongodb")


def _native_seconds(
    native: Mapping[str, str], keywords: Mapping[str, Any], name: str
) -> float | None:
    value = _native_text(native, keywords, name)
    if value is None:
        return None
    milliseconds = float(str(value))
    if not 0 < milliseconds < 1e12:
        raise ConfigurationError(
            f"mongodb: {name} must be a positive number of milliseconds (0 would wait forever)"
        )
    return milliseconds / 1000


def _ms(value: float) -> int:
    return max(1, round(value * 1000))


def mongodb_driver(
    connection_string: str = "mongodb://localhost:27017",
    database_name: str = "agentx",
    collection_name: str = "storage",
    *,
    pool_size: int | None = None,
    connect_timeout: float | None = None,
    operation_timeout: float | None = None,
    server_selection_timeout: float | None = None,
    max_pool_size: int | None = None,
    **client_options: Any,
) -> MongoDBDriver:
    """Return a MongoDB driver on ``database_name.collection_name``; no I/O until first use.

    ``connection_string`` is a ``mongodb://`` or ``mongodb+srv://`` URL with any of PyMongo's
    URI options (``replicaSet``, ``authSource``, ``maxPoolSize``, ``tls``, ...) and kvstore's
    ``pool_size``, ``connect_timeout`` and ``operation_timeout``; an unknown or malformed option
    is a :class:`ConfigurationError`. ``pool_size`` (PyMongo: ``maxPoolSize``, default 50)
    bounds the connections and the operations running at once. ``connect_timeout`` (seconds,
    default 5; PyMongo: ``connectTimeoutMS``) bounds each connection attempt and, unless
    ``serverSelectionTimeoutMS`` says otherwise, the wait for a reachable server, so an
    unreachable server raises :class:`BackendUnavailable` within about that long.
    ``operation_timeout`` (seconds, default 10; PyMongo: ``socketTimeoutMS`` or ``timeoutMS``)
    bounds every operation, waiting for a free slot included; past it the operation raises
    :class:`BackendUnavailable`. A setting given in several places with different values is a
    :class:`ConfigurationError`. Other keyword arguments go to ``AsyncMongoClient``.
    ``server_selection_timeout`` and ``max_pool_size`` are older names kept working.
    """
    return MongoDBDriver(
        _Arguments(
            connection_string=connection_string,
            database_name=database_name,
            collection_name=collection_name,
            pool_size=pool_size,
            connect_timeout=connect_timeout,
            operation_timeout=operation_timeout,
            server_selection_timeout=server_selection_timeout,
            max_pool_size=max_pool_size,
            client_options=client_options,
        )
    )


def from_url(url: str) -> MongoDBDriver:
    """Return a driver for ``url``; its path (``mongodb://host/DATABASE``) names the database.

    Without a path the database is ``agentx``, as with :func:`mongodb_driver`; the collection
    is ``storage``. A path that is not a valid database name (``/db/extra``,
    ``/db.collection``) is a :class:`ConfigurationError`: PyMongo would read ``db.collection``
    as a database and a collection, and the driver does not guess.
    """
    parsed = parse_url(url, schemes=_SCHEMES, multi_host=True)
    if not parsed.path:
        return mongodb_driver(url)
    if any(char in _NAME_FORBIDDEN for char in parsed.path):
        raise ConfigurationError(
            f"{parsed.redacted()!r}: the path must be one database name, without "
            "/ \\ . space \" $ * < > : | ? or NUL"
        )
    return mongodb_driver(url, parsed.path)
