"""The PostgreSQL driver: one table of ``(key text COLLATE "C", value bytea, version bigint,
expires_at bigint, written_at bigint)``.

The key column compares bytes (``COLLATE "C"`` on UTF-8 is code point order), so ``a``, ``A``,
``a `` and ``a\u0301`` are four keys and the primary key index serves prefix scans as plain
range scans ``key >= P AND key < succ(P)``; no key character is ever part of a pattern.
Each operation runs on one pooled connection in autocommit mode, batches in one transaction.
The driver runs on psycopg 3.

Conditional writes. Every write stores a fresh random ``version`` in the same statement as the
value (``set_many``, which returns no versions, has the server draw one per row). A single-key
conditional write is one statement whose own check decides it: ``INSERT ... ON CONFLICT DO
NOTHING`` for a create (a concurrent insert of the key waits for the other
transaction and then finds the key), ``UPDATE``/``DELETE ... WHERE key = %s AND version = %s``
for the rest (in READ COMMITTED a concurrent writer is waited for and the condition re-checked
on the row it left). A :meth:`~PostgreSQLDriver.commit` is one transaction: one statement locks
every key of the batch in key order, inserting a placeholder row (version -1, never committed)
for each absent key, so that a concurrent writer of an absent key waits too; then it reads the
versions, checks every condition, and either writes and deletes (removing the placeholders) or
rolls back. A table made before versions existed gets the column on first use (see
``_ADDED_COLUMNS``); its rows read at version 0.

Expiry. ``expires_at`` and ``written_at`` are milliseconds since the epoch on the server's clock
(``expires_at`` NULL: never; ``written_at`` NULL: written before write times were kept). Every
statement computes "now" itself (:data:`_NOW`), so clients with skewed clocks agree: it is
``now()``, the start of the statement's transaction, which for an autocommit statement is the
statement's start and for a batch one instant for every statement of the batch; the liveness
check inside a commit uses ``statement_timestamp()`` instead, so that it judges the rows as they
are once their locks are held, not when the transaction began waiting for them. A row whose
``expires_at <= now`` is absent to every statement (each one's WHERE says so) until a purge
deletes it. The primary key index carries ``expires_at`` (``PRIMARY KEY (key) INCLUDE
(expires_at)``), so a prefix scan skips expired rows on the index alone (an index-only scan where
the visibility map allows) and no second index on ``key`` costs writes anything; a partial index
on ``expires_at`` (``WHERE expires_at IS NOT NULL``) finds expired rows for
:meth:`~PostgreSQLDriver.purge_expired`, which expiring writes also run, 100 rows at most once a
second per driver. Rows that never expire stay out of that index.

Waiting is bounded. A connection is opened in the caller's task under ``connect_timeout`` (so a
refused or unreachable server is reported at once, with libpq's reason); each operation runs
under ``operation_timeout``, enforced three ways: the server cancels a statement that runs
longer (``statement_timeout``), the kernel drops a connection whose data goes unacknowledged
(``tcp_user_timeout``), and for a server that acknowledges but never answers (stopped with
SIGSTOP) a timer shuts the connection's socket down, which ends the wait at once. The timer does
not cancel the task: psycopg answers a cancelled query by asking the server to cancel it and
waiting up to ten more seconds for that, which a stopped server never grants.

asyncio only: psycopg's async connections do not run under trio.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import math
import os
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from kvstore.conditional import Action, Change, Versioned, new_version
from kvstore.driver import BaseDriver, conflict
from kvstore.drivers._extras import missing_extra
from kvstore.drivers._libpq import read_connection_string
from kvstore.drivers._pool import Pool, peer_closed
from kvstore.drivers._settings import settle, timeout_seconds, whole_number
from kvstore.drivers._translate import ErrorTable, Translator, described
from kvstore.errors import BackendError, BackendUnavailable, ConfigurationError
from kvstore.expiry import Meta, from_millis, ttl_millis
from kvstore.keys import prefix_successor
from kvstore.logs import silent_until_configured
from kvstore.urls import positive_float, positive_int

try:
    import psycopg
    from psycopg import AsyncConnection
    from psycopg.conninfo import make_conninfo
    from psycopg.pq import TransactionStatus
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    raise missing_extra("postgresql", "psycopg", "postgresql") from error

__all__ = ["PostgreSQLDriver", "from_url", "postgresql_driver"]

_T = TypeVar("_T")
Connection = AsyncConnection[Any]

# Retries, reconnects and pool resets are logged here (INFO), never with a password.
_log = logging.getLogger("kvstore.postgresql")
silent_until_configured("psycopg")

# Keys per page of a prefix scan: bounds memory and the time a connection is held.
SCAN_PAGE = 1000
# Items per statement inside one batch transaction.
BATCH_CHUNK = 20_000
# Value bytes per set_many statement, so a batch of large values does not build one huge message.
BATCH_BYTES = 64 * 1024 * 1024

DEFAULT_TABLE = "agentx_kv"
# Columns added to the original ``(key, value)`` layout, in order, with their definitions. A
# table that lacks one gets it on first use with ``ADD COLUMN IF NOT EXISTS`` (metadata only
# since PostgreSQL 11: a constant default rewrites no row). A later layout change appends here.
_ADDED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("version", "bigint NOT NULL DEFAULT 0"),
    # The expiry step (with the primary key's INCLUDE and the expiry index, see
    # _create_or_upgrade): NULL for every existing row, never expiring, written at an unknown time.
    ("expires_at", "bigint"),
    ("written_at", "bigint"),
)
# The server's clock now, in whole milliseconds since the epoch: the start of the current
# transaction, so one instant for every statement and row of a batch.
_NOW_VALUE = "round(extract(epoch FROM now()) * 1000)::int8"
# As a sub-select, so that the server computes it once per statement (an InitPlan), not once per
# row a scan filters: for statements over many rows.
_NOW = f"(SELECT {_NOW_VALUE})"
# As a plain expression, for statements on one key (``key = %s``, or one row of VALUES), which
# compute it once at most anyway: an InitPlan's setup and teardown were about 3 % of a get.
_KEY_NOW = f"({_NOW_VALUE})"
# The same at the start of the current statement, for a check made inside a transaction after
# waiting for locks (a commit's), which must judge expiry when it reads, not when it began.
_STATEMENT_NOW = "(SELECT round(extract(epoch FROM statement_timestamp()) * 1000)::int8)"
# A fresh version drawn by the server for each row, as new_version() draws one: uniform in
# 1 .. 2**52 (random() has 52 random bits from PostgreSQL 15, 48 before; either way a key's
# next version is unpredictable and never 0).
_FRESH_VERSION = f"(floor(random() * {2**52}::float8)::int8 + 1)"
# A row that has not expired: what every statement that reads or replaces a row adds.
_LIVE = f"(expires_at IS NULL OR expires_at > {_NOW})"
_KEY_LIVE = f"(expires_at IS NULL OR expires_at > {_KEY_NOW})"
# A write replaces everything but the key (a plain write's expires_at is NULL: no expiry).
_UPSERT = (
    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, version = EXCLUDED.version, "
    "written_at = EXCLUDED.written_at, expires_at = EXCLUDED.expires_at"
)
# Expiring writes purge at most this often per driver (seconds), at most this many rows.
AUTO_PURGE_INTERVAL = 1.0
AUTO_PURGE_BATCH = 100
# The version of a row a commit inserted to hold an absent key; it never outlives the commit.
_PLACEHOLDER = -1
# How often a commit is run again after the server broke a deadlock by aborting it.
_DEADLOCK_RETRIES = 5
DEFAULT_POOL_SIZE = 10
DEFAULT_CONNECT_TIMEOUT = 5.0
# Ten seconds: a 20,000-item batch or a 16 MiB value takes well under a second on a healthy
# server, so this only fires on a server that is stopped, overloaded or cut off (or on a
# `clear` of millions of rows: raise it for that), and it reports such a server while a caller
# still cares. It is also each session's statement_timeout.
DEFAULT_OPERATION_TIMEOUT = 10.0

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# PostgreSQL truncates longer identifiers, which could make two table names collide.
_MAX_IDENTIFIER = 63

# What psycopg and the socket can raise; _translate turns each into a kvstore error.
_FAILURES = (psycopg.Error, OSError, TimeoutError)
# libpq's and the server's messages name the host and the cause; the connection string was
# checked before any connection, so none of them quotes it.
_ERRORS = ErrorTable(
    unavailable=(psycopg.OperationalError, OSError, TimeoutError),
    describe=lambda error: described(error).strip(),
)

# The driver's own options, in a URL or key=value string beside libpq's. connect_timeout is
# also libpq's name: one setting, in seconds (libpq itself counts whole seconds, at least 2).
_OPTIONS: dict[str, Callable[[str], Any]] = {
    "table": str,
    "pool_size": positive_int,
    "max_size": positive_int,
    "connect_timeout": positive_float,
    "operation_timeout": positive_float,
}


def _index_name(table: str, purpose: str) -> str:
    """The name of the table's index for ``purpose``: unique, within PostgreSQL's 63 bytes."""
    name = f"{table}_{purpose}"
    if len(name) <= _MAX_IDENTIFIER:
        return name
    # Truncated names could collide with another table's (or be the table's own name): keep a
    # digest of the whole table name instead of its tail.
    digest = hashlib.sha1(table.encode()).hexdigest()[:8]
    return f"{table[: _MAX_IDENTIFIER - len(purpose) - 10]}_{digest}_{purpose}"


@dataclasses.dataclass(frozen=True, slots=True)
class _Layout:
    """What the catalog says of the table: its columns, indexes and primary key."""

    columns: frozenset[str]
    indexes: frozenset[str]
    # The primary key index's columns, INCLUDE columns too.
    primary_key: frozenset[str]
    # The primary key constraint's name (None: the table has none).
    constraint: str | None


def _abort(connection: Connection) -> None:
    """Shut the connection's socket down, so that a read waiting on it ends at once."""
    with contextlib.suppress(OSError, psycopg.Error):
        descriptor = connection.pgconn.socket
        # shutdown acts on the socket itself, which the duplicate shares; closing the
        # duplicate leaves psycopg's descriptor for psycopg to close.
        with socket.socket(fileno=os.dup(descriptor)) as duplicate:
            duplicate.shutdown(socket.SHUT_RDWR)


def _usable(connection: Connection) -> bool:
    return not connection.closed and connection.pgconn.transaction_status == TransactionStatus.IDLE


async def _discard(connection: Connection) -> None:
    with contextlib.suppress(*_FAILURES):
        await connection.close()


class _Stale(psycopg.OperationalError):
    """A pooled connection found closed by the server before anything was sent on it."""


@dataclass(frozen=True, slots=True)
class _Arguments:
    """The arguments of :func:`postgresql_driver`, handed to the class as one value."""

    connection_string: str
    table: str | None
    pool_size: int | None
    max_size: int | None
    connect_timeout: float | None
    operation_timeout: float | None


class PostgreSQLDriver(BaseDriver):
    """Stores keys in one PostgreSQL table, created on first use if it is missing.

    Build it with :func:`postgresql_driver` (or a ``postgresql://`` URL); the class is for
    annotations and ``isinstance``. An operation that cannot reach the server, or gets no answer
    within ``operation_timeout``, raises :class:`BackendUnavailable`; other server errors
    :class:`BackendError`; each names the driver and ``host:port/dbname``, never a password.
    After an outage the same driver works again: dead connections are dropped, and an
    operation that met one is retried once on a fresh connection.
    """

    name = "postgresql"
    supports_trio = False
    atomic_batches = True
    conditional_writes = True
    expiry = True

    def __init__(self, arguments: _Arguments) -> None:
        connection_string, table = arguments.connection_string, arguments.table
        pool_size, max_size = arguments.pool_size, arguments.max_size
        connect_timeout, operation_timeout = arguments.connect_timeout, arguments.operation_timeout
        settings = read_connection_string(connection_string, _OPTIONS, where=self.name)
        self.where = settings.where
        self._errors = Translator(_ERRORS, driver=self.name, where=self.where)
        where = f"postgresql at {self.where}"
        options = settings.options

        def pick(setting: str, argument: Any, default: Any, *aliases: tuple[str, Any]) -> Any:
            # One setting, from an argument or the connection string, under either name.
            given = {setting: argument, f"?{setting}": options.get(setting)}
            for alias, alias_argument in aliases:
                given[alias] = alias_argument
                given[f"?{alias}"] = options.get(alias)
            return settle(setting, given, default, where=where)

        table = pick("table", table, DEFAULT_TABLE)
        if not isinstance(table, str) or not _IDENTIFIER.fullmatch(table):
            raise ConfigurationError(
                f"table must be an identifier ([A-Za-z_][A-Za-z0-9_]*), not {table!r}"
            )
        if len(table) > _MAX_IDENTIFIER:
            raise ConfigurationError(
                f"table name {table!r} is longer than {_MAX_IDENTIFIER} characters"
            )
        self.table = table
        size = whole_number(
            "pool_size",
            pick("pool_size", pool_size, DEFAULT_POOL_SIZE, ("max_size", max_size)),
            minimum=1,
            where=where,
        )
        self._connect_timeout = timeout_seconds(
            "connect_timeout",
            pick("connect_timeout", connect_timeout, DEFAULT_CONNECT_TIMEOUT),
            where=where,
        )
        self._operation_timeout = timeout_seconds(
            "operation_timeout",
            pick("operation_timeout", operation_timeout, DEFAULT_OPERATION_TIMEOUT),
            where=where,
        )
        libpq = dict(settings.libpq)
        hosts = max(1, len(libpq.get("host", "").split(",")))
        # psycopg enforces libpq's connect_timeout per host, in whole seconds (at least 2); our
        # own deadline below holds the attempt to the exact float, for every host together.
        libpq["connect_timeout"] = str(max(2, math.ceil(self._connect_timeout)))
        self._connect_deadline = self._connect_timeout * hosts
        milliseconds = max(1, round(self._operation_timeout * 1000))
        # Unacknowledged data to a vanished host fails the connection instead of hanging.
        libpq.setdefault("tcp_user_timeout", str(milliseconds))
        # The server cancels a statement that runs longer than operation_timeout. Sent with
        # the startup packet, so it costs no round trip; a user's own setting wins.
        user_options = libpq.get("options", "")
        if "statement_timeout" not in user_options:
            libpq["options"] = f"{user_options} -c statement_timeout={milliseconds}".strip()
        self._conninfo = make_conninfo("", **libpq)
        self._pool: Pool[Connection] = Pool(size, self._connect, _usable, _discard)
        self._table_ready = False
        self._open_lock = asyncio.Lock()
        # Operations under way: each one's connection and deadline (event loop time), and the
        # one timer that shuts down a connection whose operation passed its deadline; see _watch.
        self._running: dict[Connection, float] = {}
        self._watcher: asyncio.TimerHandle | None = None
        self._watch_due = 0.0
        self._watch_loop: asyncio.AbstractEventLoop | None = None
        # When (time.monotonic) an expiring write may next purge; see _purge_if_due.
        self._purge_due = 0.0
        self._expiry_index = _index_name(table, "expires_at")
        # The name is validated as a plain identifier, so quoting it is all it needs.
        quoted = f'"{table}"'
        self._quoted = quoted
        added = "".join(f", {name} {definition}" for name, definition in _ADDED_COLUMNS)
        self._create = (
            f'CREATE TABLE IF NOT EXISTS {quoted} (key text COLLATE "C" NOT NULL, '
            f"value bytea NOT NULL{added}, PRIMARY KEY (key) INCLUDE (expires_at))"
        )
        # The table's columns, indexes and primary key, found as the statements find the table
        # (by search_path); no rows when it does not exist.
        self._layout = (
            "SELECT 'column', attname::text FROM pg_attribute "
            "WHERE attrelid = to_regclass(%(table)s) AND attnum > 0 AND NOT attisdropped "
            "UNION ALL SELECT 'index', c.relname::text FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = to_regclass(%(table)s) "
            "UNION ALL SELECT 'primary key', a.attname::text FROM pg_index i "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indrelid = to_regclass(%(table)s) AND i.indisprimary "
            "UNION ALL SELECT 'constraint', conname::text FROM pg_constraint "
            "WHERE conrelid = to_regclass(%(table)s) AND contype = 'p'"
        )
        self._get = f"SELECT value FROM {quoted} WHERE key = %s AND {_KEY_LIVE}"
        self._get_versioned = (
            f"SELECT value, version FROM {quoted} WHERE key = %s AND {_KEY_LIVE}"
        )
        columns = "(key, value, version, written_at, expires_at)"
        self._set = (
            f"INSERT INTO {quoted} {columns} VALUES (%s, %s, %s, {_KEY_NOW}, NULL) {_UPSERT}"
        )
        self._set_expiring = (
            f"INSERT INTO {quoted} {columns} VALUES (%s, %s, %s, {_KEY_NOW}, "
            f"{_KEY_NOW} + %s::int8) {_UPSERT}"
        )
        # A create finds the key absent, or expired: then it replaces the expired row.
        self._create_key = (
            f"INSERT INTO {quoted} AS t {columns} VALUES (%s, %s, %s, {_KEY_NOW}, NULL) "
            f"{_UPSERT} WHERE t.expires_at <= {_KEY_NOW}"
        )
        self._replace_key = (
            f"UPDATE {quoted} SET value = %s, version = %s, written_at = {_KEY_NOW}, "
            f"expires_at = NULL WHERE key = %s AND version = %s AND {_KEY_LIVE}"
        )
        self._delete_key = (
            f"DELETE FROM {quoted} WHERE key = %s AND version = %s AND {_KEY_LIVE}"
        )
        # Locks every key of a commit: an existing row with ON CONFLICT's row lock (WHERE
        # false: locked, not rewritten), an absent one by inserting a placeholder, which a
        # concurrent insert of that key must wait for.
        self._lock_keys = (
            f"INSERT INTO {quoted} AS t (key, value, version) "
            f"SELECT k, ''::bytea, {_PLACEHOLDER} FROM unnest(%s::text[]) AS k "
            "ON CONFLICT (key) DO UPDATE SET version = t.version WHERE false"
        )
        # The versions of a commit's live keys, read once their locks are held.
        self._versions = (
            f"SELECT key, version FROM {quoted} WHERE key = ANY(%s::text[]) "
            f"AND (expires_at IS NULL OR expires_at > {_STATEMENT_NOW})"
        )
        self._delete = f"DELETE FROM {quoted} WHERE key = %s"
        self._get_many = (
            f"SELECT key, value FROM {quoted} WHERE key = ANY(%b::text[]) AND {_LIVE}"
        )
        # Batch arrays go in binary (%b): a bytea array in text is hex that both ends must
        # convert, which was a third of a 10,000-item set_many.
        unnest = "unnest(%b::text[], %b::bytea[]) AS u(k, v)"
        # set_many returns no versions, so the server draws them (one per row): no array of
        # 10,000 ints to build, send and parse.
        self._set_many = (
            f"INSERT INTO {quoted} {columns} SELECT k, v, {_FRESH_VERSION}, {_NOW}, NULL::int8 "
            f"FROM {unnest} {_UPSERT}"
        )
        self._set_many_expiring = (
            f"INSERT INTO {quoted} {columns} SELECT k, v, {_FRESH_VERSION}, {_NOW}, "
            f"{_NOW} + %b::int8 FROM {unnest} {_UPSERT}"
        )
        # A commit's writes, at the versions it returns to the caller.
        self._write_versioned = (
            f"INSERT INTO {quoted} {columns} SELECT k, v, n, {_NOW}, NULL::int8 "
            f"FROM unnest(%b::text[], %b::bytea[], %b::int8[]) AS u(k, v, n) {_UPSERT}"
        )
        self._delete_many = f"DELETE FROM {quoted} WHERE key = ANY(%s::text[])"
        self._clear_all = f"DELETE FROM {quoted}"
        self._clear_from = f"DELETE FROM {quoted} WHERE key >= %s"
        self._clear_range = f"DELETE FROM {quoted} WHERE key >= %s AND key < %s"
        # A NULL TTL clears the expiry (NULL + ms is NULL).
        self._expire = (
            f"UPDATE {quoted} SET expires_at = {_KEY_NOW} + %s::int8 "
            f"WHERE key = %s AND {_KEY_LIVE}"
        )
        # octet_length reads a TOASTed value's size from its header, not the value.
        self._get_meta = (
            f"SELECT octet_length(value), written_at, expires_at, version FROM {quoted} "
            f"WHERE key = %s AND {_KEY_LIVE}"
        )
        self._get_meta_many = (
            f"SELECT key, octet_length(value), written_at, expires_at, version FROM {quoted} "
            f"WHERE key = ANY(%b::text[]) AND {_LIVE}"
        )
        # The oldest expired rows, through the expiry index; rows another transaction holds
        # (a commit about to rewrite one) are skipped, so a purge never waits or deadlocks.
        self._purge = (
            f"DELETE FROM {quoted} WHERE key = ANY(ARRAY("
            f"SELECT key FROM {quoted} WHERE expires_at IS NOT NULL AND expires_at <= {_NOW} "
            f"ORDER BY expires_at LIMIT %s FOR UPDATE SKIP LOCKED)) AND expires_at <= {_NOW}"
        )
        # Scan pages, indexed by (first page?, bounded above?).
        self._scan = {
            (first, bounded): (
                f"SELECT key FROM {quoted} WHERE key {'>=' if first else '>'} %s"
                f"{' AND key < %s' if bounded else ''} AND {_LIVE} "
                f"ORDER BY key LIMIT {SCAN_PAGE + 1}"
            )
            for first in (True, False)
            for bounded in (True, False)
        }
        # The same pages as one text of newline-joined keys and their count: one value to send
        # and load instead of a row per key. A 1,000-key scan of 10,000 through Storage went from
        # 0.71-0.80 to 0.86-0.87 of raw psycopg reading plain rows (A/B in one process); the
        # rest is the async generator's step per key, about 70 ns. The aggregate reads the
        # sub-select's rows in its key order (SQL does not promise it: the page is sorted again
        # in Python, one pass over sorted input). A key holding a newline, which Storage never
        # writes, shows as a count that disagrees with the text: that page is read as rows.
        self._scan_joined = {
            shape: f"SELECT string_agg(key, E'\\n'), count(*) FROM ({query}) AS page"
            for shape, query in self._scan.items()
        }

    # -- connection -------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, create the table if missing or upgrade it; optional, first use does it too."""
        self.ensure_open()
        if not self._table_ready:
            await self._prepare_table()

    async def _prepare_table(self) -> None:
        async with self._open_lock:
            # Another task may have created it while this one waited for the lock.
            if self._table_ready:
                return

            await self._attempts(self._create_or_upgrade)
            self._table_ready = True

    async def _create_or_upgrade(self, connection: Connection) -> None:
        """Create the table, or bring an older layout up to date; once per driver."""
        layout = await self._read_layout(connection)
        if not layout.columns:
            # Two processes creating the table at the same moment can collide on the
            # catalog's unique index; the table then exists, which is all this wants.
            with contextlib.suppress(psycopg.errors.UniqueViolation):
                await connection.execute(self._create)
            # Read again: a process running an older release may have made it first.
            layout = await self._read_layout(connection)
        if self._current(layout):
            return
        _log.info("postgresql at %s: upgrading the layout of table %r", self.where, self.table)
        async with connection.transaction():
            # Processes upgrading the same table at once take turns (a racing ALTER can fail
            # on the catalog); each later one finds the work done and does nothing.
            await connection.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"kvstore upgrade {self.table}",)
            )
            layout = await self._read_layout(connection)
            for name, kind in _ADDED_COLUMNS:
                if name not in layout.columns:
                    await connection.execute(
                        f"ALTER TABLE {self._quoted} ADD COLUMN IF NOT EXISTS {name} {kind}"
                    )
            if "expires_at" not in layout.primary_key:
                await self._cover_expiry(connection, layout.constraint)
            if self._expiry_index not in layout.indexes:
                await connection.execute(
                    f'CREATE INDEX IF NOT EXISTS "{self._expiry_index}" ON {self._quoted} '
                    "(expires_at) WHERE expires_at IS NOT NULL"
                )

    def _current(self, layout: _Layout) -> bool:
        """Whether the table has every column and index this release uses."""
        return (
            all(name in layout.columns for name, _ in _ADDED_COLUMNS)
            and "expires_at" in layout.primary_key
            and self._expiry_index in layout.indexes
        )

    async def _cover_expiry(self, connection: Connection, constraint: str | None) -> None:
        """Rebuild the primary key as ``(key) INCLUDE (expires_at)``, under its old name.

        Replacing the key's index, rather than adding a second index on ``key``, keeps writes
        as cheap as before: one index entry per row. The build reads the whole table (on a
        table of millions of rows, give this first open a longer ``operation_timeout``).
        """
        building = _index_name(self.table, "key_expires_at")
        name = constraint or _index_name(self.table, "pkey")
        quoted_name = '"' + name.replace('"', '""') + '"'
        await connection.execute(
            f'CREATE UNIQUE INDEX "{building}" ON {self._quoted} (key) INCLUDE (expires_at)'
        )
        drop = f"DROP CONSTRAINT {quoted_name}, " if constraint is not None else ""
        await connection.execute(
            f"ALTER TABLE {self._quoted} {drop}"
            f'ADD CONSTRAINT {quoted_name} PRIMARY KEY USING INDEX "{building}"'
        )

    async def _read_layout(self, connection: Connection) -> _Layout:
        cursor = await connection.execute(self._layout, {"table": self._quoted})
        found: dict[str, set[str]] = {
            "column": set(), "index": set(), "primary key": set(), "constraint": set()
        }
        for kind, name in await cursor.fetchall():
            found[kind].add(name)
        return _Layout(
            columns=frozenset(found["column"]),
            indexes=frozenset(found["index"]),
            primary_key=frozenset(found["primary key"]),
            constraint=min(found["constraint"], default=None),
        )

    async def _connect(self) -> Connection:
        try:
            async with asyncio.timeout(self._connect_deadline):
                connection = await AsyncConnection.connect(self._conninfo, autocommit=True)
        except TimeoutError:
            raise BackendUnavailable(
                f"no connection within connect_timeout={self._connect_timeout:g}s",
                driver=self.name,
                where=self.where,
            ) from None
        except _FAILURES as error:
            raise self._translate(error) from None
        _log.debug("postgresql at %s: opened a connection", self.where)
        return connection

    def _watch(
        self, loop: asyncio.AbstractEventLoop, connection: Connection, deadline: float
    ) -> None:
        """Have ``connection``'s socket shut down at ``deadline`` unless its operation ends first.

        One timer serves every operation under way, due at the earliest deadline among them;
        an operation that ends just leaves :attr:`_running`. A timer of its own per operation
        (scheduled, then cancelled) cost each one a heap push and left a cancelled handle in the
        loop's heap, which grew every later push.
        """
        self._running[connection] = deadline
        if self._watcher is None or deadline < self._watch_due or loop is not self._watch_loop:
            self._schedule_watch(loop, deadline)

    def _schedule_watch(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        self._watcher = loop.call_at(due, self._check_deadlines)
        self._watch_due, self._watch_loop = due, loop

    def _check_deadlines(self) -> None:
        """Shut down the connections whose operations passed their deadline; watch the rest."""
        loop, self._watcher = self._watch_loop, None
        if loop is None:  # pragma: no cover - only a scheduled watch runs this
            return
        now = loop.time()
        # At most one entry per pooled connection: a pass over them all is cheap.
        for connection, deadline in list(self._running.items()):
            if deadline <= now:
                del self._running[connection]
                _abort(connection)
        if self._running:
            self._schedule_watch(loop, min(self._running.values()))

    def _translate(self, error: BaseException) -> BackendError:
        return self._errors.error(error)

    def _run(
        self, work: Callable[[Connection], Awaitable[_T]], *, replayable: bool = True
    ) -> Awaitable[_T]:
        """Run ``work`` on a pooled connection within ``operation_timeout``; see _attempts.

        Not a coroutine function itself: once the table is ready it hands back
        :meth:`_attempts`'s coroutine, one coroutine less on every operation's path.
        """
        self.ensure_open()
        if not self._table_ready:
            return self._prepare_and_attempt(work, replayable)
        return self._attempts(work, replayable=replayable)

    async def _prepare_and_attempt(
        self, work: Callable[[Connection], Awaitable[_T]], replayable: bool
    ) -> _T:
        await self._prepare_table()
        return await self._attempts(work, replayable=replayable)

    async def _attempts(
        self, work: Callable[[Connection], Awaitable[_T]], *, replayable: bool = True
    ) -> _T:
        """Run ``work``, once more on a fresh connection if the first one had died.

        Plain operations are idempotent (upserts, deletes, reads), so running one again after a
        connection broke mid-way cannot apply it twice. A conditional write is not
        (``replayable=False``): run again after it was applied, it would report a conflict
        with itself. It is sent only on a connection that looks alive (:func:`peer_closed`),
        and never sent twice: a connection lost after sending it is reported.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._operation_timeout
        for attempt in range(2):
            try:
                connection = await self._pool.take(deadline)
            except TimeoutError:
                # _connect turns its own timeouts into BackendUnavailable: this is the deadline.
                raise BackendUnavailable(
                    f"no connection within operation_timeout={self._operation_timeout:g}s (all "
                    f"{self._pool.size} pooled connections busy, or the server not answering)",
                    driver=self.name,
                    where=self.where,
                ) from None
            if self.closed:
                await self._pool.give_back(connection, reusable=False)
                self.ensure_open()
            self._watch(loop, connection, deadline)
            reusable = False
            try:
                if not replayable and peer_closed(connection.pgconn.socket):
                    raise _Stale("the server closed this pooled connection")
                result = await work(connection)
                reusable = True
                return result
            except _FAILURES as error:
                if loop.time() >= deadline:
                    raise BackendUnavailable(
                        f"no answer within operation_timeout={self._operation_timeout:g}s",
                        driver=self.name,
                        where=self.where,
                    ) from None
                stale = isinstance(error, _Stale)
                reusable = not stale and _usable(connection)
                if (
                    attempt
                    or reusable
                    or not isinstance(error, psycopg.OperationalError)
                    or not (replayable or stale)
                ):
                    raise self._translate(error) from None
            finally:
                self._running.pop(connection, None)
                await self._pool.give_back(connection, reusable=reusable)
            # The server went away since this connection was pooled (a restart): the other
            # idle connections died with it. Drop them all, then try once on a fresh one.
            dropped = await self._pool.drop_idle()
            _log.info(
                "postgresql at %s: a pooled connection had died; dropped %d idle, retrying",
                self.where,
                dropped,
            )
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
        """Store ``value`` under ``key`` with one upsert, at a new version."""
        params = (key, value, new_version())

        async def work(connection: Connection) -> None:
            await connection.execute(self._set, params)

        await self._run(work)

    async def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""

        async def work(connection: Connection) -> None:
            await connection.execute(self._delete, (key,))

        await self._run(work)

    # -- conditional writes -----------------------------------------------------------------

    async def get_versioned(self, key: str) -> Versioned[bytes] | None:
        """Return the value of ``key`` and its version from one ``SELECT``, or ``None``."""

        async def work(connection: Connection) -> Versioned[bytes] | None:
            cursor = await connection.execute(self._get_versioned, (key,), binary=True)
            row = await cursor.fetchone()
            return None if row is None else Versioned(cast(bytes, row[0]), cast(int, row[1]))

        return await self._run(work)

    async def set_if(self, key: str, value: bytes, expected: int | None) -> int:
        """Write ``value`` if ``key`` is at ``expected`` (``None``: absent): one statement."""
        version = new_version()
        params: tuple[Any, ...]
        if expected is None:
            query, params = self._create_key, (key, value, version)
        else:
            query, params = self._replace_key, (value, version, key, expected)
        if await self._run(_row_count(query, params), replayable=False) != 1:
            raise conflict([key])
        return version

    async def delete_if(self, key: str, expected: int) -> None:
        """Delete ``key`` if it is at version ``expected``: one ``DELETE ... AND version``."""
        work = _row_count(self._delete_key, (key, expected))
        if await self._run(work, replayable=False) != 1:
            raise conflict([key])

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        """Apply ``changes`` in one transaction if every condition holds; see the module doc."""
        if not changes:
            self.ensure_open()
            return []
        # Key order: two commits lock their keys in the same order and so cannot deadlock
        # on them (a deadlock with other writers is retried: the server rolled it back).
        keys = sorted(change.key for change in changes)
        versions = [new_version() if change.action is Action.WRITE else None for change in changes]
        written = {
            change.key: (cast(bytes, change.value), version)
            for change, version in zip(changes, versions, strict=True)
            if version is not None
        }

        async def attempt(connection: Connection) -> list[str]:
            failed: list[str] = []
            async with connection.transaction():
                for start in range(0, len(keys), BATCH_CHUNK):
                    await connection.execute(self._lock_keys, (keys[start : start + BATCH_CHUNK],))
                current: dict[str, int] = {}
                for start in range(0, len(keys), BATCH_CHUNK):
                    cursor = await connection.execute(
                        self._versions, (keys[start : start + BATCH_CHUNK],)
                    )
                    current.update(await cursor.fetchall())
                failed = [
                    change.key
                    for change in changes
                    if not change.holds_for(_real(current.get(change.key)))
                ]
                if failed:
                    raise psycopg.Rollback()
                if written:
                    pairs = _chunks(list(written), [value for value, _ in written.values()])
                    for chunk_keys, chunk_values in pairs:
                        chunk_versions = [written[key][1] for key in chunk_keys]
                        await connection.execute(
                            self._write_versioned, (chunk_keys, chunk_values, chunk_versions)
                        )
                # Deletes, and the placeholders of absent keys that were only checked.
                gone = [
                    change.key
                    for change in changes
                    if change.action is Action.DELETE
                    or (
                        change.action is Action.CHECK
                        and current.get(change.key) == _PLACEHOLDER
                    )
                ]
                for start in range(0, len(gone), BATCH_CHUNK):
                    await connection.execute(
                        self._delete_many, (gone[start : start + BATCH_CHUNK],)
                    )
            return failed

        async def work(connection: Connection) -> list[str]:
            for retry in range(_DEADLOCK_RETRIES):
                try:
                    return await attempt(connection)
                except psycopg.errors.DeadlockDetected:
                    if retry + 1 == _DEADLOCK_RETRIES:
                        raise
            raise AssertionError("unreachable")  # pragma: no cover

        failed = await self._run(work, replayable=False)
        if failed:
            raise conflict(failed)
        return versions

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Yield the keys starting with ``prefix`` in order, one index range page at a time.

        No connection is held between pages, so an abandoned scan holds nothing.
        """
        upper = prefix_successor(prefix)
        bounded = upper is not None
        last = prefix
        first = True
        while True:
            params = (last, upper) if bounded else (last,)
            page = await self._run(self._key_page((first, bounded), params))
            # One key past the page tells whether another page exists, which saves the empty
            # query a scan would otherwise end with whenever the matches fill whole pages.
            more = len(page) > SCAN_PAGE
            if more:
                del page[SCAN_PAGE:]
            for key in page:
                yield key
            if not more:
                return
            last = page[-1]
            first = False

    def _key_page(
        self, shape: tuple[bool, bool], params: tuple[Any, ...]
    ) -> Callable[[Connection], Awaitable[list[str]]]:
        """The work of reading one page of keys (``SCAN_PAGE`` + 1 at most), sorted."""

        async def work(connection: Connection) -> list[str]:
            cursor = await connection.execute(self._scan_joined[shape], params, binary=True)
            joined, count = cast(tuple[str | None, int], await cursor.fetchone())
            if joined is None:
                return []
            page = joined.split("\n")
            if len(page) == count:
                page.sort()
                return page
            cursor = await connection.execute(self._scan[shape], params)
            return [key for (key,) in await cursor.fetchall()]

        return work

    # -- expiry and metadata ----------------------------------------------------------------

    async def set_expiring(self, key: str, value: bytes, ttl: float) -> None:
        """Store ``value`` under ``key`` with one upsert, to expire ``ttl`` seconds from now."""
        params = (key, value, new_version(), ttl_millis(ttl))

        async def work(connection: Connection) -> None:
            await connection.execute(self._set_expiring, params)

        await self._run(work)
        await self._purge_if_due()

    async def set_many_expiring(self, items: Sequence[tuple[str, bytes]], ttl: float) -> None:
        """Store every pair to expire at one instant, all or nothing in one transaction."""
        if not items:
            self.ensure_open()
            return
        latest = dict(items)
        milliseconds = ttl_millis(ttl)
        # Every statement of the transaction reads the same now(): one instant for the batch.
        statements = [
            (milliseconds, *params) for params in _chunks(list(latest), list(latest.values()))
        ]

        await self._run(_in_transaction(self._set_many_expiring, statements))
        await self._purge_if_due()

    async def expire(self, key: str, ttl: float | None) -> bool:
        """Set or clear the expiry of a live ``key`` with one ``UPDATE ... WHERE`` live."""
        params = (None if ttl is None else ttl_millis(ttl), key)
        changed = await self._run(_row_count(self._expire, params)) == 1
        await self._purge_if_due()
        return changed

    async def get_meta(self, key: str) -> Meta | None:
        """Return a live ``key``'s size, write time, expiry and version from one ``SELECT``."""

        async def work(connection: Connection) -> Meta | None:
            cursor = await connection.execute(self._get_meta, (key,))
            row = await cursor.fetchone()
            return None if row is None else _meta(*row)

        return await self._run(work)

    async def get_meta_many(self, keys: Sequence[str]) -> list[Meta | None]:
        """:meth:`get_meta` of each of ``keys`` in order: one ``= ANY`` query per chunk."""
        if not keys:
            self.ensure_open()
            return []
        rows = await self._rows_in(self._get_meta_many, keys)
        found = {key: _meta(*rest) for key, *rest in rows}
        return [found.get(key) for key in keys]

    async def purge_expired(self, limit: int = 1000) -> int:
        """Delete up to ``limit`` expired rows, oldest first, found through the expiry index."""
        if limit <= 0:
            self.ensure_open()
            return 0
        return await self._run(_row_count(self._purge, (limit,)))

    async def _purge_if_due(self) -> None:
        """Purge a small batch if a second has passed since this driver last did.

        Only expiring writes call this, so the no-TTL path never pays for it. The write has
        already succeeded: a failed purge is logged, not raised, and the next one retries.
        """
        now = time.monotonic()
        if now < self._purge_due:
            return
        self._purge_due = now + AUTO_PURGE_INTERVAL
        try:
            await self.purge_expired(AUTO_PURGE_BATCH)
        except BackendError as error:
            _log.warning("postgresql at %s: purging expired keys failed: %s", self.where, error)

    # -- batches ----------------------------------------------------------------------------

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return the values of ``keys`` in order: one ``= ANY`` query per chunk of keys."""
        if not keys:
            self.ensure_open()
            return []
        # Rows are (key, value) pairs: dict() takes them as they are.
        found: dict[str, bytes] = dict(await self._rows_in(self._get_many, keys, binary=True))
        return [found.get(key) for key in keys]

    async def _rows_in(self, sql: str, keys: Sequence[str], *, binary: bool = False) -> list[Any]:
        """The rows ``sql`` (an ``= ANY`` query) finds for the distinct ``keys``, on one
        connection, a query per ``BATCH_CHUNK`` keys."""
        unique = list(dict.fromkeys(keys))

        async def work(connection: Connection) -> list[Any]:
            rows: list[Any] = []
            for start in range(0, len(unique), BATCH_CHUNK):
                chunk = unique[start : start + BATCH_CHUNK]
                cursor = await connection.execute(sql, (chunk,), binary=binary)
                rows.extend(await cursor.fetchall())
            return rows

        return await self._run(work)

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Store every pair, the last one per key winning, all or nothing in one transaction."""
        if not items:
            self.ensure_open()
            return
        # One statement may not touch a row twice, and a later pair must win: dedupe first.
        latest = dict(items)
        statements = _chunks(list(latest), list(latest.values()))

        await self._run(_in_transaction(self._set_many, statements))

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

    async def close(self) -> None:
        """Close the pool's connections; idempotent."""
        if self.closed:
            return
        self.mark_closed()
        await self._pool.close()

    def __repr__(self) -> str:
        return f"PostgreSQLDriver(where={self.where!r}, table={self.table!r})"


def _real(version: int | None) -> int | None:
    """A version read inside a commit: ``None`` for an absent key (or its placeholder)."""
    return None if version == _PLACEHOLDER else version


def _meta(size: int, written_at: int | None, expires_at: int | None, version: int) -> Meta:
    """The :class:`Meta` of a metadata row: size, write time and expiry (ms), version."""
    return Meta(
        size=size,
        written_at=None if written_at is None else from_millis(written_at),
        expires_at=None if expires_at is None else from_millis(expires_at),
        version=version,
    )


def _row_count(query: str, params: tuple[Any, ...]) -> Callable[[Connection], Awaitable[int]]:
    """The work of one statement that tells how many rows it changed."""

    async def work(connection: Connection) -> int:
        cursor = await connection.execute(query, params)
        return cursor.rowcount

    return work


def _in_transaction(
    query: str, statements: Sequence[Sequence[Any]]
) -> Callable[[Connection], Awaitable[None]]:
    """The work of running ``query`` once per parameter set, all or nothing.

    One statement is atomic on its own in autocommit mode (and its ``now()`` is one instant):
    it skips the BEGIN and COMMIT round trips.
    """

    async def work(connection: Connection) -> None:
        if len(statements) == 1:
            await connection.execute(query, statements[0])
            return
        async with connection.transaction():
            for params in statements:
                await connection.execute(query, params)

    return work


def _chunks(keys: list[str], values: list[bytes]) -> list[tuple[list[str], list[bytes]]]:
    """Split a batch into statements of at most ``BATCH_CHUNK`` items and about ``BATCH_BYTES``."""
    if len(keys) <= BATCH_CHUNK and sum(map(len, values)) <= BATCH_BYTES:
        return [(keys, values)]
    chunks: list[tuple[list[str], list[bytes]]] = []
    start, size = 0, 0
    for index, value in enumerate(values):
        if index > start and (index - start >= BATCH_CHUNK or size + len(value) > BATCH_BYTES):
            chunks.append((keys[start:index], values[start:index]))
            start, size = index, 0
        size += len(value)
    chunks.append((keys[start:], values[start:]))
    return chunks


def postgresql_driver(
    connection_string: str = "postgresql://localhost/postgres",
    table: str | None = None,
    *,
    pool_size: int | None = None,
    max_size: int | None = None,
    connect_timeout: float | None = None,
    operation_timeout: float | None = None,
) -> PostgreSQLDriver:
    """Return a PostgreSQL driver on ``table`` (no I/O until first use or :meth:`open`).

    ``connection_string`` is a libpq URL (``postgresql://`` or ``postgres://``, several hosts
    allowed) or ``key=value`` string, read as libpq reads it; every libpq keyword works
    (``sslmode``, ``application_name``, ...), and so do the driver's own options ``table``,
    ``pool_size`` (or psycopg-pool's ``max_size``), ``connect_timeout`` and
    ``operation_timeout``, in the string or as arguments. An unknown option, malformed text or
    one setting given twice with different values raises :class:`ConfigurationError`, whose
    message never holds a password. ``table`` (default ``agentx_kv``) must be a plain
    identifier; it is created if missing. At most ``pool_size`` (default 10) connections are
    open. ``connect_timeout`` (default 5 s) bounds each connection attempt, so an unreachable
    server is reported within it; ``operation_timeout`` (default 10 s) bounds each operation,
    its wait for a free connection included.
    """
    return PostgreSQLDriver(
        _Arguments(
            connection_string=connection_string,
            table=table,
            pool_size=pool_size,
            max_size=max_size,
            connect_timeout=connect_timeout,
            operation_timeout=operation_timeout,
        )
    )


def from_url(url: str) -> PostgreSQLDriver:
    """Build a driver from a ``postgresql://`` or ``postgres://`` URL; see
    :func:`postgresql_driver`."""
    return postgresql_driver(url)
