"""The PostgreSQL driver: one table of ``(key text COLLATE "C", value bytea)`` over psycopg 3.

The key column compares bytes (``COLLATE "C"`` on UTF-8 is code point order), so ``a``, ``A``,
``a `` and ``a\u0301`` are four keys and the primary key index serves prefix scans as plain
range scans ``key >= P AND key < succ(P)``; no key character is ever part of a pattern.
Connections come from a bounded psycopg-pool ``AsyncConnectionPool`` opened on first use; each
operation runs on one connection in autocommit mode, batches in one transaction.

asyncio only: psycopg's async connections and the pool do not run under trio.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from kvstore.driver import BaseDriver
from kvstore.drivers._extras import missing_extra
from kvstore.errors import BackendError, BackendUnavailable, ConfigurationError
from kvstore.keys import prefix_successor
from kvstore.urls import redact_url

try:
    import psycopg
    from psycopg import AsyncConnection
    from psycopg.conninfo import conninfo_to_dict
    from psycopg_pool import AsyncConnectionPool, PoolTimeout
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    raise missing_extra("postgresql", "psycopg and psycopg-pool", "postgresql") from error

__all__ = ["PostgreSQLDriver", "from_url", "postgresql_driver"]

_T = TypeVar("_T")
Connection = AsyncConnection[Any]

# Keys per page of a prefix scan: bounds memory and the time a connection is held.
SCAN_PAGE = 1000
# Items per statement inside one batch transaction.
BATCH_CHUNK = 20_000
# Value bytes per set_many statement, so a batch of large values does not build one huge message.
BATCH_BYTES = 64 * 1024 * 1024

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# PostgreSQL truncates longer identifiers, which could make two table names collide.
_MAX_IDENTIFIER = 63

# What psycopg, the pool and the timeout can raise; _translate turns each into a kvstore error.
_FAILURES = (psycopg.Error, OSError, TimeoutError)


class PostgreSQLDriver(BaseDriver):
    """Stores keys in one PostgreSQL table, created on first use if it is missing.

    ``operation_timeout`` bounds the wait for a pooled connection and, as the sessions'
    ``statement_timeout`` and libpq's ``tcp_user_timeout``, each statement and each unanswered
    send; ``connect_timeout`` bounds each connection attempt. An operation that cannot reach
    the server raises :class:`BackendUnavailable`; other server errors :class:`BackendError`.
    After an outage the same driver works again: broken connections are dropped from the pool
    and an operation that met one is retried once on a fresh connection.
    """

    name = "postgresql"
    supports_trio = False
    atomic_batches = True

    def __init__(
        self,
        connection_string: str = "postgresql://localhost/postgres",
        table: str = "agentx_kv",
        *,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 5.0,
        operation_timeout: float = 30.0,
    ) -> None:
        if not isinstance(table, str) or not _IDENTIFIER.fullmatch(table):
            raise ConfigurationError(
                f"table must be an identifier ([A-Za-z_][A-Za-z0-9_]*), not {table!r}"
            )
        if len(table) > _MAX_IDENTIFIER:
            raise ConfigurationError(
                f"table name {table!r} is longer than {_MAX_IDENTIFIER} characters"
            )
        if not 0 <= min_size <= max_size or max_size < 1:
            raise ConfigurationError("pool sizes need 0 <= min_size <= max_size and max_size >= 1")
        self.table = table
        self.where = _where(connection_string)
        self._conninfo = connection_string
        self._password = _password(connection_string)
        self._min_size = min_size
        self._max_size = max_size
        self._connect_timeout = connect_timeout
        self._operation_timeout = operation_timeout
        self._pool: AsyncConnectionPool[Connection] | None = None
        self._open_lock: asyncio.Lock | None = None
        self._last_connect_error: str | None = None
        # The name is validated as a plain identifier, so quoting it is all it needs.
        quoted = f'"{table}"'
        self._create = (
            f'CREATE TABLE IF NOT EXISTS {quoted} '
            f'(key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL)'
        )
        self._get = f"SELECT value FROM {quoted} WHERE key = %s"
        self._set = (
            f"INSERT INTO {quoted} (key, value) VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
        )
        self._delete = f"DELETE FROM {quoted} WHERE key = %s"
        self._get_many = f"SELECT key, value FROM {quoted} WHERE key = ANY(%s::text[])"
        self._set_many = (
            f"INSERT INTO {quoted} (key, value) "
            "SELECT * FROM unnest(%s::text[], %s::bytea[]) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
        )
        self._delete_many = f"DELETE FROM {quoted} WHERE key = ANY(%s::text[])"
        self._clear_all = f"DELETE FROM {quoted}"
        self._clear_from = f"DELETE FROM {quoted} WHERE key >= %s"
        self._clear_range = f"DELETE FROM {quoted} WHERE key >= %s AND key < %s"
        # Scan pages, indexed by (first page?, bounded above?).
        self._scan = {
            (first, bounded): (
                f"SELECT key FROM {quoted} WHERE key {'>=' if first else '>'} %s"
                f"{' AND key < %s' if bounded else ''} ORDER BY key LIMIT {SCAN_PAGE + 1}"
            )
            for first in (True, False)
            for bounded in (True, False)
        }

    # -- connection -------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the pool and create the table if missing; optional, first use does it too."""
        await self._ready()

    async def _ready(self) -> AsyncConnectionPool[Connection]:
        self.ensure_open()
        pool = self._pool
        if pool is not None:
            return pool
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            # Another task may have opened it while this one waited for the lock.
            if self._pool is not None:
                return self._pool
            self.ensure_open()
            pool = AsyncConnectionPool(
                self._conninfo,
                connection_class=self._connection_class(),
                kwargs=self._connection_options(),
                configure=self._configure,
                min_size=self._min_size,
                max_size=self._max_size,
                open=False,
                # How long an operation may wait for a pooled connection.
                timeout=self._operation_timeout,
                # Reconnect quickly after an outage rather than backing off for minutes.
                reconnect_timeout=max(self._operation_timeout, 60.0),
                name=f"kvstore-{self.table}",
            )
            try:
                async with asyncio.timeout(self._operation_timeout + self._connect_timeout):
                    await pool.open(wait=False)
                    async with pool.connection() as connection:
                        await self._create_table(connection)
            except _FAILURES as error:
                await pool.close()
                raise self._translate(error) from None
            self._pool = pool
            return pool

    def _connection_options(self) -> dict[str, Any]:
        # Options the connection string already sets win: it goes to libpq as the user wrote it.
        given = conninfo_to_dict(self._conninfo)
        ours: dict[str, Any] = {
            "connect_timeout": max(1, round(self._connect_timeout)),
            # Unacknowledged data to a vanished server fails the connection instead of hanging.
            "tcp_user_timeout": round(self._operation_timeout * 1000),
        }
        options = {name: value for name, value in ours.items() if name not in given}
        options["autocommit"] = True
        return options

    async def _configure(self, connection: Connection) -> None:
        # A statement that runs longer than operation_timeout is cancelled by the server.
        # Run per pooled session rather than per operation, so it costs nothing per call.
        milliseconds = max(1, round(self._operation_timeout * 1000))
        await connection.execute(f"SET statement_timeout = {milliseconds}")

    def _connection_class(self) -> type[Connection]:
        # The pool connects in the background and reports only "couldn't get a connection";
        # remembering why the last attempt failed lets errors say so (refused, SSL, auth...).
        driver = self

        class RecordingConnection(AsyncConnection[Any]):
            @classmethod
            async def connect(cls, *args: Any, **kwargs: Any) -> Any:
                try:
                    connection = await super().connect(*args, **kwargs)
                except psycopg.Error as error:
                    driver._last_connect_error = str(error).strip()
                    raise
                driver._last_connect_error = None
                return connection

        return RecordingConnection

    async def _create_table(self, connection: Connection) -> None:
        # Two processes creating the table at the same moment can collide on the catalog's
        # unique index; the table then exists, which is all this wants.
        with contextlib.suppress(psycopg.errors.UniqueViolation):
            await connection.execute(self._create)

    def _translate(self, error: BaseException) -> BackendError:
        text = f"{type(error).__name__}: {error}".strip()
        if isinstance(error, PoolTimeout) and self._last_connect_error:
            text += f" (last connection attempt: {self._last_connect_error})"
        if self._password:
            text = text.replace(self._password, "***")
        unreachable = isinstance(error, psycopg.OperationalError | OSError | TimeoutError)
        kind = BackendUnavailable if unreachable else BackendError
        return kind(text, driver=self.name, where=self.where)

    async def _discard_pool(self, pool: AsyncConnectionPool[Connection]) -> None:
        """Drop a pool that could not hand out a connection in time.

        psycopg-pool retries failed connections with a growing backoff, so after a long outage
        it may wait many seconds past the server's return before trying again. A fresh pool,
        made on the next operation, connects at once instead.
        """
        if self._pool is pool:
            self._pool = None
        with contextlib.suppress(*_FAILURES):
            await pool.close(timeout=0)

    async def _run(self, work: Callable[[Connection], Awaitable[_T]]) -> _T:
        """Run ``work`` on a pooled connection, retrying once if that connection had died.

        ``getconn``/``putconn`` rather than ``pool.connection()``: the context manager costs
        about 15 µs per call, a quarter of a point read on loopback.
        """
        pool = self._pool or await self._ready()
        for attempt in range(2):
            try:
                connection = await pool.getconn()
            except _FAILURES as error:
                if isinstance(error, PoolTimeout):
                    await self._discard_pool(pool)
                raise self._translate(error) from None
            try:
                return await work(connection)
            except psycopg.OperationalError as error:
                if attempt or not connection.broken:
                    raise self._translate(error) from None
                stale = error
            except _FAILURES as error:
                raise self._translate(error) from None
            finally:
                # A broken connection is discarded here; one left in a transaction is reset.
                await pool.putconn(connection)
            # The server went away since this connection was pooled (a restart): drop every
            # dead idle connection, then try once more on a fresh one.
            try:
                await pool.check()
            except _FAILURES:
                raise self._translate(stale) from None
        raise AssertionError("unreachable")  # pragma: no cover

    # -- primitives -------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        """Return the value stored under ``key``, or ``None``."""

        async def work(connection: Connection) -> bytes | None:
            cursor = await connection.execute(self._get, (key,), binary=True)
            row = await cursor.fetchone()
            # Binary results: bytea arrives as bytes, no hex decoding or copy.
            return None if row is None else cast(bytes, row[0])

        return await self._run(work)

    async def set(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key`` with one upsert."""

        async def work(connection: Connection) -> None:
            await connection.execute(self._set, (key, value))

        await self._run(work)

    async def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""

        async def work(connection: Connection) -> None:
            await connection.execute(self._delete, (key,))

        await self._run(work)

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Yield the keys starting with ``prefix`` in order, one index range page at a time.

        No connection is held between pages, so an abandoned scan holds nothing.
        """
        upper = prefix_successor(prefix)
        bounded = upper is not None
        last = prefix
        first = True
        while True:
            query = self._scan[(first, bounded)]
            params = (last, upper) if bounded else (last,)

            async def work(connection: Connection, query: str = query, params: Any = params) -> Any:
                cursor = await connection.execute(query, params)
                return await cursor.fetchall()

            rows: list[tuple[str]] = await self._run(work)
            # One row past the page tells whether another page exists, which saves the empty
            # query a scan would otherwise end with whenever the matches fill whole pages.
            for (key,) in rows[:SCAN_PAGE]:
                yield key
            if len(rows) <= SCAN_PAGE:
                return
            last = rows[SCAN_PAGE - 1][0]
            first = False

    async def close(self) -> None:
        """Close the pool and its connections; idempotent."""
        if self.closed:
            return
        self.mark_closed()
        pool, self._pool = self._pool, None
        if pool is not None:
            # Best effort: the connections are dropped either way.
            with contextlib.suppress(*_FAILURES):
                await pool.close()

    # -- batches ----------------------------------------------------------------------------

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return the values of ``keys`` in order: one ``= ANY`` query per chunk of keys."""
        if not keys:
            self.ensure_open()
            return []
        unique = list(dict.fromkeys(keys))

        async def work(connection: Connection) -> dict[str, bytes]:
            found: dict[str, bytes] = {}
            for start in range(0, len(unique), BATCH_CHUNK):
                chunk = unique[start : start + BATCH_CHUNK]
                cursor = await connection.execute(self._get_many, (chunk,), binary=True)
                for key, value in await cursor.fetchall():
                    found[key] = value
            return found

        found = await self._run(work)
        return [found.get(key) for key in keys]

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Store every pair, the last one per key winning, all or nothing in one transaction."""
        if not items:
            self.ensure_open()
            return
        # One statement may not touch a row twice, and a later pair must win: dedupe first.
        latest = dict(items)
        keys, values = list(latest), list(latest.values())
        if len(keys) <= BATCH_CHUNK and sum(map(len, values)) <= BATCH_BYTES:
            statements = [(keys, values)]
        else:
            statements = _chunks(keys, values)

        async def work(connection: Connection) -> None:
            async with connection.transaction():
                for params in statements:
                    await connection.execute(self._set_many, params)

        await self._run(work)

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Remove every key in ``keys``, all or nothing in one transaction."""
        if not keys:
            self.ensure_open()
            return
        unique = list(dict.fromkeys(keys))

        async def work(connection: Connection) -> None:
            async with connection.transaction():
                for start in range(0, len(unique), BATCH_CHUNK):
                    chunk = unique[start : start + BATCH_CHUNK]
                    await connection.execute(self._delete_many, (chunk,))

        await self._run(work)

    async def clear(self, prefix: str = "") -> None:
        """Remove every key starting with ``prefix`` with one range ``DELETE``."""
        upper = prefix_successor(prefix)
        params: tuple[str, ...]
        if not prefix:
            query, params = self._clear_all, ()
        elif upper is None:
            query, params = self._clear_from, (prefix,)
        else:
            query, params = self._clear_range, (prefix, upper)

        async def work(connection: Connection) -> None:
            await connection.execute(query, params)

        await self._run(work)

    def __repr__(self) -> str:
        return f"PostgreSQLDriver(where={self.where!r}, table={self.table!r})"


def _chunks(keys: list[str], values: list[bytes]) -> list[tuple[list[str], list[bytes]]]:
    """Split a batch into statements of at most ``BATCH_CHUNK`` items and about ``BATCH_BYTES``."""
    chunks: list[tuple[list[str], list[bytes]]] = []
    start, size = 0, 0
    for index, value in enumerate(values):
        if index > start and (index - start >= BATCH_CHUNK or size + len(value) > BATCH_BYTES):
            chunks.append((keys[start:index], values[start:index]))
            start, size = index, 0
        size += len(value)
    chunks.append((keys[start:], values[start:]))
    return chunks


def _where(conninfo: str) -> str:
    """Return ``host:port/dbname`` for errors, never credentials."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.Error:
        return redact_url(conninfo) if "://" in conninfo else "<unparsable connection string>"
    host = str(params.get("host") or "localhost")
    port = str(params.get("port") or "5432")
    database = str(params.get("dbname") or params.get("user") or "")
    return f"{host}:{port}/{database}"


def _password(conninfo: str) -> str | None:
    try:
        password = conninfo_to_dict(conninfo).get("password")
    except psycopg.Error:
        return None
    return str(password) if password else None


def postgresql_driver(
    connection_string: str = "postgresql://localhost/postgres",
    table: str = "agentx_kv",
    *,
    min_size: int = 1,
    max_size: int = 10,
    connect_timeout: float = 5.0,
    operation_timeout: float = 30.0,
) -> PostgreSQLDriver:
    """Return a PostgreSQL driver on ``table`` (no I/O until first use or :meth:`open`).

    ``connection_string`` is a libpq URL or ``key=value`` string passed to libpq as it is, so
    ``sslmode``, ``application_name`` and every other libpq option work. ``table`` must be a
    plain identifier; it is created if missing. The pool keeps ``min_size`` to ``max_size``
    connections. ``connect_timeout`` (rounded to whole seconds, at least 1, as libpq wants)
    bounds each connection attempt; ``operation_timeout`` each operation.
    """
    return PostgreSQLDriver(
        connection_string,
        table,
        min_size=min_size,
        max_size=max_size,
        connect_timeout=connect_timeout,
        operation_timeout=operation_timeout,
    )


def from_url(url: str) -> PostgreSQLDriver:
    """Build a driver from a ``postgresql://`` or ``postgres://`` URL.

    ``?table=NAME`` picks the table; every other query parameter is libpq's and stays.
    """
    parts = urlsplit(url)
    table = "agentx_kv"
    kept: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "table":
            table = value
        else:
            kept.append((name, value))
    cleaned = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(kept), parts.fragment))
    return PostgreSQLDriver(cleaned, table)
