"""The MySQL / MariaDB driver: one InnoDB table, on PyMySQL run in worker threads.

Schema. ``CREATE TABLE IF NOT EXISTS <table> (`key` VARBINARY(1024) PRIMARY KEY, `value`
LONGBLOB NOT NULL, `version` BIGINT NOT NULL DEFAULT 0, `expires_at` BIGINT NULL, `written_at`
BIGINT NULL) ENGINE=InnoDB`` and its expiry hints table ``<table>_expiry`` (`key`
VARBINARY(1024) PRIMARY KEY, `expires_at` BIGINT NOT NULL, INDEX (`expires_at`);
:func:`expiry_table_name`), made once per driver on first use; a table of an older layout gets
what it lacks then, one ``ALTER TABLE`` per layout step (see ``_ADDED_COLUMNS``: ``version``,
then the expiry columns).
Keys are stored as their UTF-8 bytes in a binary column, so comparison is byte comparison:
``a``, ``A``, ``a `` and ``a\\u0301`` are four keys (no collation, no PAD SPACE), and byte order
is code point order. A prefix scan is the index range ``key >= P AND key < succ(P)`` read in
pages with ``key > last``.

Upserts use ``INSERT ... ON DUPLICATE KEY UPDATE `value` = VALUES(`value`), ...``: MariaDB has no
row-alias form, and MySQL 8.0.20+ still accepts ``VALUES()`` (with a deprecation note), so this
one form runs on both. Batches run in one transaction on one connection.

Conditional writes. Every write stores a fresh random ``version`` with the value, in the same
statement. A single-key conditional write is one statement that decides it: an ``INSERT`` for
a create, whose ``ON DUPLICATE KEY UPDATE`` replaces an expired row and leaves a live one as it
is (0 rows affected: the conflict; InnoDB makes a concurrent insert of the key wait for the
other transaction first), ``UPDATE`` / ``DELETE ... WHERE key = %s AND version = %s`` and the
row is live otherwise (InnoDB's writes read the latest committed row under a lock, whatever the
isolation level, and the new version always changes the row, so the affected-rows count PyMySQL
reports without ``CLIENT_FOUND_ROWS`` is 0 exactly when the condition failed). A
:meth:`~MySQLDriver.commit` is one REPEATABLE READ transaction (set for it, whatever the
server's default): one locking read (``SELECT ... FOR UPDATE``) takes the versions of the
batch's keys and locks them, a present key by its row and an absent one by the gap where it
would go (InnoDB's gap lock, which keeps any other transaction from inserting it meanwhile while
letting other readers lock the same gap); then the batch either writes and deletes or rolls
back. A deadlock the server breaks by rolling a commit back (two creators of one key, each
waiting for the other's gap lock) is retried from the start, where the loser finds the key.
Placeholder rows, as the PostgreSQL driver uses, are no good here: every transaction waiting
for one takes a gap lock when it is removed, and they then deadlock with each other in turn.

PyMySQL is synchronous, so every operation is one hop to a worker thread
(``anyio.to_thread.run_sync``) bounded by a ``CapacityLimiter`` of ``pool_size``; the worker
takes a connection from a small pool of idle connections, so at most ``pool_size`` connections
are ever open. The driver runs under asyncio and trio alike.

Large values. PyMySQL sends a bytes value as hexadecimal text, so an ``INSERT`` of an ``N`` byte
value is a packet of about ``2 N`` bytes; the server's ``max_allowed_packet`` must be at least
``2 * (value + key) + 512`` bytes (:func:`required_max_allowed_packet`): just over 32 MiB for a
16 MiB value, so the common 16M default is too small and ``max_allowed_packet=64M`` is right.
The driver reads ``@@max_allowed_packet`` on connect and refuses a value that cannot fit, before
sending anything, with a :class:`BackendError` naming the setting.

Expiry. ``expires_at`` and ``written_at`` are milliseconds since the epoch, NULL for "never" and
for rows written before write times were kept. The server's clock decides: every statement that
needs "now" computes it in SQL as ``CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)`` (each
connection's session runs at ``time_zone = '+00:00'``, so no daylight-saving hour is ambiguous),
and a TTL is bound as whole milliseconds. ``NOW()``, not ``SYSDATE()``: ``NOW()`` is the instant
the statement began, the same for every row it touches (and what statement-based replication
replays), whereas ``SYSDATE()`` moves while the statement runs. ``NOW()`` is not fixed for a
transaction, though, so a batch (``set_many``, ``set_expiring``, ``set_many_expiring``,
``commit``) reads it once (``SELECT``) at the start of its transaction and binds that one
instant to every row. A row is
live while ``expires_at IS NULL OR expires_at > now``; every read, scan and conditional write
carries that condition, so an expired row is absent whether or not it is still there. A create
over an expired row replaces it in the one ``INSERT ... ON DUPLICATE KEY UPDATE`` that decides
the create. ``expire`` is a short transaction (a locking read of the live row, then its
``UPDATE``): without ``CLIENT_FOUND_ROWS`` an ``UPDATE`` that leaves a row as it was reports 0
rows, like one that found nothing.

The main table has no index on ``expires_at``: InnoDB has no partial index, so any index there
would cost every write without a TTL an entry. Scans are ranges of the primary key that skip
expired rows by their ``expires_at``. Purges find expiring keys in the hints table instead: each
expiring write (``set_expiring``, ``set_many_expiring``, ``expire`` with a TTL) upserts its keys'
hints (key, expiry) in its own transaction; plain writes and deletes never touch the hints, so a
hint may be stale, and the row always decides. ``purge_expired(limit)`` reads up to ``limit`` due
hints (``expires_at <= now ORDER BY expires_at LIMIT n``, a range of the hints' index), at most
``PURGE_CHUNK`` per transaction: it locks their rows (``FOR UPDATE``; a missing one by its gap),
deletes those whose own ``expires_at <= now``, drops the hints of rows deleted, gone or no longer
expiring, moves the hint of a row that expires later to that expiry, and returns the number of
rows deleted. ``clear(prefix)`` deletes the prefix's hints with its rows. The expiring writes run
a purge of ``AUTO_PURGE_BATCH`` hints at most once per ``AUTO_PURGE_EVERY`` seconds per driver;
writes without a TTL never purge.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import math
import re
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import anyio
import anyio.to_thread

from kvstore.conditional import Action, Change, Versioned, new_version
from kvstore.driver import BaseDriver, conflict
from kvstore.drivers._extras import missing_extra
from kvstore.drivers._mysql_rows import STATEMENT_BYTES, execute_rows, render_rows
from kvstore.drivers._pool import peer_closed
from kvstore.drivers._settings import settle, timeout_seconds, whole_number
from kvstore.drivers._translate import ErrorTable, Translator
from kvstore.errors import BackendError, BackendUnavailable, ConfigurationError
from kvstore.expiry import Meta, from_millis, ttl_millis
from kvstore.keys import prefix_successor
from kvstore.logs import silent_until_configured
from kvstore.urls import ParsedURL, boolean, parse_url, positive_float, positive_int, take_options

try:
    import pymysql
    import pymysql.cursors
    from pymysql.connections import Connection
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    raise missing_extra("mysql", "PyMySQL", "mysql") from error

__all__ = [
    "MySQLDriver",
    "expiry_table_name",
    "from_url",
    "mysql_driver",
    "parse_mysql_url",
    "required_max_allowed_packet",
]

_T = TypeVar("_T")
# Retries, reconnects and pool resets are logged here (INFO), never with a password.
_log = logging.getLogger("kvstore.mysql")
silent_until_configured("pymysql")
DEFAULT_POOL_SIZE = 10
# An unreachable server is reported within about this long; no operation waits longer than
# DEFAULT_OPERATION_TIMEOUT (the same defaults on every server driver).
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_OPERATION_TIMEOUT = 10.0


# The hints table's index on expiry, which purges walk (see expiry_table_name).
_HINTS_INDEX = "kv_hint_expires_at"
_HINTS_SUFFIX = "_expiry"


@dataclasses.dataclass(frozen=True)
class _Step:
    """One change to the layout: columns (name, definition) and indexes (name, columns)."""

    columns: tuple[tuple[str, str], ...]
    indexes: tuple[tuple[str, str], ...] = ()


# The steps from the original ``(key, value)`` layout to today's, in order; a table lacking a
# step's columns gets the whole step in one ALTER TABLE on first use. A later layout change
# appends here.
_ADDED_COLUMNS: tuple[_Step, ...] = (
    _Step((("version", "BIGINT NOT NULL DEFAULT 0"),)),
    _Step(
        # No index: every secondary index would cost each write without a TTL an entry
        # (InnoDB has no partial index). Purges find expiring keys in the hints table instead.
        (("expires_at", "BIGINT NULL"), ("written_at", "BIGINT NULL")),
    ),
)
# The server's clock as whole milliseconds since the epoch, fixed for the statement.
_NOW_MS = "CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)"
# A row that has not expired (NULL: never expires).
_LIVE = f"(`expires_at` IS NULL OR `expires_at` > {_NOW_MS})"
# Sessions run in UTC: UNIX_TIMESTAMP(NOW(3)) then converts no local time (in the hour a
# daylight-saving change repeats, a local time names two instants).
# A scan page comes back as one GROUP_CONCAT of its keys (see _page_reader): room for a whole
# page of keys of the longest length, so that only a server whose max_allowed_packet is smaller
# truncates it (which the page reader detects).
_SESSION_INIT = "SET time_zone = '+00:00', group_concat_max_len = 4194304"
# The purge piggy-backed on expiring writes: at most one per this many seconds per driver, of at
# most this many rows, so that it costs those writes little and the others nothing.
AUTO_PURGE_EVERY = 1.0
AUTO_PURGE_BATCH = 100
# Hints read per purge transaction: bounds its locks and its IN lists.
PURGE_CHUNK = 1000
# How often a statement or commit is run again after the server broke a deadlock by rolling it
# back (each time one of the waiters goes through, so this bounds a burst of creators).
_DEADLOCK_RETRIES = 20
_DUPLICATE_COLUMN = 1060
_DUPLICATE_INDEX = 1061
_DUPLICATE_KEY = 1062
_DEADLOCK = 1213

_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# Keys fetched per page while scanning: bounds memory (at most ~2 MiB of keys) per round trip.
SCAN_PAGE = 2000
# Rows removed per DELETE while clearing a prefix, so that no single statement locks a huge range.
CLEAR_CHUNK = 10_000
# Keys per ``IN (...)`` statement, and a bound on that statement's length in bytes (kept
# below the server's max_allowed_packet as well).
IN_CHUNK = 10_000
IN_CHUNK_BYTES = 4 << 20
# A connection idle longer than this is pinged before use (the server may have closed it).
IDLE_PING_SECONDS = 30.0
# The shortest socket wait set near a deadline (a timeout of 0 would mean "non-blocking").
_MIN_WAIT = 0.01
# Room in a packet beyond the hex-encoded key and value: the statement text and the header.
_PACKET_SLACK = 512

# PyMySQL error codes meaning the connection or server is gone, not that the statement is wrong.
_UNAVAILABLE_CODES = frozenset(
    {
        1040,  # too many connections
        1053,  # server shutdown in progress
        1205,  # lock wait timeout
        1927,  # connection killed (MariaDB)
        2002,  # can't connect (socket)
        2003,  # can't connect (TCP)
        2006,  # server has gone away
        2013,  # lost connection during query (also read timeouts)
        2014,  # commands out of sync after a broken exchange
        2055,  # lost connection at handshake
        4031,  # disconnected for inactivity (MySQL 8)
    }
)
_LOST_CODES = frozenset({1053, 1927, 2006, 2013, 2014, 2055, 4031})


def expiry_table_name(table: str) -> str:
    """The name of ``table``'s expiry hints table: ``<table>_expiry``, within 64 characters.

    A name too long for the suffix keeps its first 47 characters and a hash of the whole, so
    that two long names that share a beginning still get two tables.
    """
    name = table + _HINTS_SUFFIX
    if len(name) <= 64:
        return name
    digest = hashlib.sha1(table.encode("ascii"), usedforsecurity=False).hexdigest()[:8]
    return f"{table[:47]}_{digest}{_HINTS_SUFFIX}"


def required_max_allowed_packet(value_size: int, key_size: int = 1024) -> int:
    """Return the least ``max_allowed_packet`` (bytes) that lets a value of ``value_size`` in.

    PyMySQL sends bytes as hexadecimal, so key and value each take twice their size.
    """
    return 2 * (value_size + key_size) + _PACKET_SLACK


class _Pool:
    """Idle PyMySQL connections, used from worker threads.

    It never bounds how many connections are in use: the driver's ``CapacityLimiter`` does, and
    a connection is only made when no idle one is left, so at most ``pool_size`` ever exist.
    """

    def __init__(self, connect: Callable[[float], Connection]) -> None:
        self._connect = connect
        self._idle: deque[tuple[Connection, float]] = deque()
        self._lock = threading.Lock()
        self.open_connections = 0
        self.closed = False

    def acquire(self, deadline: float) -> tuple[Connection, bool]:
        """Return a connection and whether it was reused from the idle set.

        No wait on the server lasts past ``deadline`` (a ``time.monotonic()`` value).
        """
        with self._lock:
            entry = self._idle.pop() if self._idle else None
        if entry is not None:
            connection, idle_since = entry
            if time.monotonic() - idle_since <= IDLE_PING_SECONDS:
                return connection, True
            try:
                _bound_waits(connection, deadline)
                connection.ping(reconnect=False)
                return connection, True
            except (pymysql.MySQLError, OSError):
                self.discard(connection)
        connection = self._connect(deadline)
        with self._lock:
            self.open_connections += 1
        return connection, False

    def release(self, connection: Connection) -> None:
        """Give back a healthy connection (closed instead if the pool is closed)."""
        with self._lock:
            if not self.closed:
                self._idle.append((connection, time.monotonic()))
                return
        self.discard(connection)

    def discard(self, connection: Connection) -> None:
        """Close a connection that must not be reused."""
        with self._lock:
            self.open_connections -= 1
        # A broken connection may refuse a polite close; its socket is gone anyway.
        with contextlib.suppress(pymysql.MySQLError, OSError):
            connection.close()

    def drop_idle(self) -> None:
        """Close every idle connection: after one turned out dead, the others likely are too."""
        with self._lock:
            idle = [connection for connection, _ in self._idle]
            self._idle.clear()
        for connection in idle:
            self.discard(connection)

    def close(self) -> None:
        """Close idle connections now and busy ones when they come back."""
        with self._lock:
            self.closed = True
        self.drop_idle()


@dataclass(frozen=True, slots=True)
class _Arguments:
    """The arguments of :func:`mysql_driver`, handed to :class:`MySQLDriver` as one value."""

    uri: str
    table: str
    pool_size: int | None
    connect_timeout: float | None
    operation_timeout: float | None
    read_timeout: float | None
    write_timeout: float | None


class MySQLDriver(BaseDriver):
    """Stores keys in one table of a MySQL or MariaDB database; see the module docstring.

    Build it with :func:`mysql_driver` (or a ``mysql://`` URL); the class is for annotations and
    ``isinstance``. A refused statement raises :class:`BackendError`, an unreachable server
    :class:`BackendUnavailable`. A pooled connection found dead is replaced once (logged under
    ``kvstore.mysql``), so the same driver works again after a restart. No error or ``repr``
    shows the password.
    """

    name = "mysql"
    supports_trio = True
    atomic_batches = True
    conditional_writes = True
    expiry = True

    def __init__(self, arguments: _Arguments) -> None:
        uri, table, pool_size = arguments.uri, arguments.table, arguments.pool_size
        connect_timeout, operation_timeout = arguments.connect_timeout, arguments.operation_timeout
        read_timeout, write_timeout = arguments.read_timeout, arguments.write_timeout
        if _TABLE_NAME.fullmatch(table) is None:
            raise ConfigurationError(
                f"invalid MySQL table name {table!r}: use 1 to 64 ASCII letters, digits and "
                "underscores, not starting with a digit"
            )
        parsed, params, options = parse_mysql_url(uri)
        where = "mysql"
        self.table = table
        self.pool_size = whole_number(
            "pool_size",
            settle(
                "pool_size",
                {"pool_size": pool_size, "?pool_size": options.get("pool_size")},
                DEFAULT_POOL_SIZE,
                where=where,
            ),
            minimum=1,
            where=where,
        )
        self.connect_timeout = timeout_seconds(
            "connect_timeout",
            settle(
                "connect_timeout",
                {
                    "connect_timeout": connect_timeout,
                    "?connect_timeout": options.get("connect_timeout"),
                },
                DEFAULT_CONNECT_TIMEOUT,
                where=where,
            ),
            where=where,
        )
        # PyMySQL's read_timeout and write_timeout are this setting's native names.
        self.operation_timeout = timeout_seconds(
            "operation_timeout",
            settle(
                "operation_timeout",
                {
                    "operation_timeout": operation_timeout,
                    "?operation_timeout": options.get("operation_timeout"),
                    "read_timeout": read_timeout,
                    "?read_timeout": options.get("read_timeout"),
                    "write_timeout": write_timeout,
                    "?write_timeout": options.get("write_timeout"),
                },
                DEFAULT_OPERATION_TIMEOUT,
                where=where,
            ),
            where=where,
        )
        self._params = params
        self.where = _where(parsed, params)
        self._errors = Translator(
            _ERRORS, driver=self.name, where=self.where, secret=params.get("password", "")
        )
        self._redacted = parsed.redacted()
        self._params.update(charset="utf8mb4", autocommit=True, init_command=_SESSION_INIT)
        self._pool = _Pool(self._new_connection)
        self._max_packet = 0
        self._ready = False
        self._lock: anyio.Lock | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._threads: anyio.CapacityLimiter | None = None
        # When the next piggy-backed purge is due (time.monotonic()).
        self._next_purge = 0.0
        quoted = f"`{table}`"
        now, live = _NOW_MS, _LIVE
        self._sql_get = f"SELECT `value` FROM {quoted} WHERE `key` = %s AND {live}"
        self._sql_get_versioned = (
            f"SELECT `value`, `version` FROM {quoted} WHERE `key` = %s AND {live}"
        )
        self._sql_get_meta = (
            "SELECT LENGTH(`value`), `written_at`, `expires_at`, `version` "
            f"FROM {quoted} WHERE `key` = %s AND {live}"
        )
        # A plain write: a new version, written now, and no expiry (whatever the row had).
        upsert = (
            f"INSERT INTO {quoted} (`key`, `value`, `version`, `written_at`) VALUES (%s, %s, %s, "
            "{written}) ON DUPLICATE KEY UPDATE `value` = VALUES(`value`), "
            "`version` = VALUES(`version`), `written_at` = VALUES(`written_at`), "
            "`expires_at` = NULL"
        )
        self._sql_set = upsert.format(written=now)
        # The batch forms, around rows that render_rows writes (see _mysql_rows): the batch
        # binds the instant it read once.
        self._sql_set_rows = (
            f"INSERT INTO {quoted} (`key`, `value`, `version`, `written_at`) VALUES ",
            " ON DUPLICATE KEY UPDATE `value` = VALUES(`value`), "
            "`version` = VALUES(`version`), `written_at` = VALUES(`written_at`), "
            "`expires_at` = NULL",
        )
        self._sql_set_expiring_rows = (
            f"INSERT INTO {quoted} (`key`, `value`, `version`, `written_at`, `expires_at`) "
            "VALUES ",
            " ON DUPLICATE KEY UPDATE `value` = VALUES(`value`), `version` = VALUES(`version`), "
            "`written_at` = VALUES(`written_at`), `expires_at` = VALUES(`expires_at`)",
        )
        # A create succeeds on a missing key (1 row: inserted) and on an expired one (2 rows:
        # replaced); a live one is left as it is (0 rows). `expires_at` is assigned last: the
        # server assigns left to right, and the conditions before must see the old expiry.
        expired = f"`expires_at` <= {now}"
        self._sql_create = (
            f"INSERT INTO {quoted} (`key`, `value`, `version`, `written_at`) "
            f"VALUES (%s, %s, %s, {now}) ON DUPLICATE KEY UPDATE "
            f"`value` = IF({expired}, VALUES(`value`), `value`), "
            f"`version` = IF({expired}, VALUES(`version`), `version`), "
            f"`written_at` = IF({expired}, VALUES(`written_at`), `written_at`), "
            f"`expires_at` = IF({expired}, NULL, `expires_at`)"
        )
        self._sql_replace = (
            f"UPDATE {quoted} SET `value` = %s, `version` = %s, `written_at` = {now}, "
            f"`expires_at` = NULL WHERE `key` = %s AND `version` = %s AND {live}"
        )
        self._sql_delete_if = (
            f"DELETE FROM {quoted} WHERE `key` = %s AND `version` = %s AND {live}"
        )
        self._sql_delete = f"DELETE FROM {quoted} WHERE `key` = %s"
        self._sql_lock_live = f"SELECT {now} FROM {quoted} WHERE `key` = %s AND {live} FOR UPDATE"
        self._sql_set_expiry = f"UPDATE {quoted} SET `expires_at` = %s WHERE `key` = %s"
        self._sql_table = f"{quoted}"
        self.hints_table = expiry_table_name(table)
        hints = f"`{self.hints_table}`"
        self._sql_hints = hints
        # A hint per key given an expiry: only expiring writes write one, in their transaction.
        self._sql_hint = (
            f"INSERT INTO {hints} (`key`, `expires_at`) VALUES (%s, %s) "
            "ON DUPLICATE KEY UPDATE `expires_at` = VALUES(`expires_at`)"
        )
        # Through the hints' index on expires_at, oldest first: a range, never a table scan.
        self._sql_purge = (
            f"SELECT `key` FROM {hints} WHERE `expires_at` <= %s ORDER BY `expires_at` LIMIT %s"
        )

    def __repr__(self) -> str:
        return f"MySQLDriver({self._redacted!r}, table={self.table!r})"

    # -- pool statistics --------------------------------------------------------------------

    @property
    def open_connections(self) -> int:
        """How many connections this driver holds open right now (idle or busy)."""
        return self._pool.open_connections

    # -- connection -------------------------------------------------------------------------

    def _new_connection(self, deadline: float) -> Connection:
        left = _time_left(deadline)
        connection = pymysql.connect(
            **self._params,
            connect_timeout=min(self.connect_timeout, left),
            # The handshake after the TCP connect is a read: bound it too.
            read_timeout=left,
            write_timeout=left,
        )
        try:
            _bound_waits(connection, deadline)
            with connection.cursor() as cursor:
                cursor.execute("SELECT @@max_allowed_packet")
                row = cursor.fetchone()
        except BaseException:
            connection.close()
            raise
        # Each new connection refreshes it: the server may have restarted with a new setting.
        self._max_packet = int(row[0]) if row else 0
        return connection

    def _translate(self, error: BaseException) -> BackendError:
        return self._errors.error(error)

    def _call(
        self, work: Callable[[Connection], _T], deadline: float, replayable: bool = True
    ) -> _T:
        """Run ``work`` on a pooled connection in this worker thread; translate failures.

        Every wait on the server (connecting, each read and write) ends by ``deadline``. A
        conditional write is not ``replayable``: run again after it was applied, it would
        report a conflict with itself. It goes only onto a connection that looks alive
        (:func:`peer_closed`) and is never sent twice.
        """
        for attempt in (1, 2):
            try:
                connection, reused = self._pool.acquire(deadline)
                while reused and not replayable and _peer_closed(connection):
                    self._pool.discard(connection)
                    self._pool.drop_idle()
                    connection, reused = self._pool.acquire(deadline)
            except (pymysql.MySQLError, OSError) as error:
                raise self._translate(error) from None
            try:
                _bound_waits(connection, deadline)
                result = work(connection)
            except (pymysql.MySQLError, OSError) as error:
                if _connection_broken(error, connection):
                    self._pool.discard(connection)
                else:
                    self._pool.release(connection)
                # A pooled connection the server dropped (restart, idle kill) says nothing
                # about the server now: retry once on a fresh one. Every operation here is
                # idempotent (upserts, deletes, reads), so a repeat is safe.
                if (
                    attempt == 1
                    and reused
                    and replayable
                    and _lost_not_timed_out(error)
                    and deadline > time.monotonic()
                ):
                    _log.info(
                        "mysql at %s: a pooled connection was lost (%s); retrying once on a "
                        "new connection",
                        self.where,
                        _error_code(error) or type(error).__name__,
                    )
                    self._pool.drop_idle()
                    continue
                raise self._translate(error) from None
            except BaseException:
                self._pool.discard(connection)
                raise
            self._pool.release(connection)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    async def _ensure_ready(self, deadline: float | None = None) -> float:
        """Make the table once; return the operation's deadline (``time.monotonic()``)."""
        self.ensure_open()
        if deadline is None:
            deadline = time.monotonic() + self.operation_timeout
        if not self._ready:
            await self._prepare(deadline)
        return deadline

    async def _run(
        self,
        work: Callable[[Connection], _T],
        deadline: float | None = None,
        *,
        replayable: bool = True,
    ) -> _T:
        deadline = await self._ensure_ready(deadline)
        assert self._limiter is not None
        return await self._in_worker(work, deadline, replayable=replayable)

    async def _in_worker(
        self, work: Callable[[Connection], _T], deadline: float, *, replayable: bool = True
    ) -> _T:
        assert self._limiter is not None
        # The worker thread cannot be cancelled: take the limiter's token here, where waiting
        # for it can time out, and keep it until the thread is done. A free token is taken
        # without a cancel scope (the common case, and a scope costs more than the rest).
        try:
            self._limiter.acquire_nowait()
        except anyio.WouldBlock:
            await self._wait_for_token(deadline)
        try:
            # Never waits: at most pool_size tasks hold a token of self._limiter. Its own
            # limiter keeps the driver off the default one that other libraries share.
            return await anyio.to_thread.run_sync(
                self._call, work, deadline, replayable, limiter=self._threads
            )
        finally:
            self._limiter.release()

    async def _wait_for_token(self, deadline: float) -> None:
        assert self._limiter is not None
        try:
            with anyio.fail_after(max(0.0, deadline - time.monotonic())):
                await self._limiter.acquire()
        except TimeoutError:
            raise BackendUnavailable(
                f"no free connection within operation_timeout={self.operation_timeout:g} s "
                f"(pool_size={self.pool_size})",
                driver=self.name,
                where=self.where,
            ) from None

    async def _prepare(self, deadline: float) -> None:
        # No await between the checks and the assignments: concurrent first uses share one.
        if self._lock is None:
            self._lock = anyio.Lock()
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.pool_size)
            self._threads = anyio.CapacityLimiter(self.pool_size)
        try:
            with anyio.fail_after(max(0.0, deadline - time.monotonic())):
                await self._lock.acquire()
        except TimeoutError:
            raise BackendUnavailable(
                f"the table was not ready within operation_timeout={self.operation_timeout:g} s",
                driver=self.name,
                where=self.where,
            ) from None
        try:
            if self._ready:
                return
            await self._in_worker(self._create_table, deadline)
            self._ready = True
        finally:
            self._lock.release()

    def _create_table(self, connection: Connection) -> None:
        steps = _ADDED_COLUMNS
        added = "".join(f", `{name}` {kind}" for step in steps for name, kind in step.columns)
        indexes = "".join(f", INDEX `{name}` {on}" for step in steps for name, on in step.indexes)
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {self._sql_table} ("
                "`key` VARBINARY(1024) NOT NULL PRIMARY KEY, "
                f"`value` LONGBLOB NOT NULL{added}{indexes}"
                ") ENGINE=InnoDB ROW_FORMAT=DYNAMIC"
            )
            cursor.execute(
                "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
                (self.table,),
            )
            columns = {_text(name): _text(kind) for name, kind in cursor.fetchall()}
            cursor.execute(
                "SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
                (self.table,),
            )
            present = {_text(name) for (name,) in cursor.fetchall()}
        # A table made by something else with a text key column would compare keys by a
        # collation (case-insensitive, PAD SPACE): refuse it rather than merge keys silently.
        if columns.get("key") != "varbinary" or columns.get("value") not in ("longblob", "blob",
                                                                            "mediumblob"):
            raise _SchemaMismatch(
                f"table {self.table!r} exists with columns {columns}; kvstore needs `key` "
                "VARBINARY(1024) and `value` LONGBLOB"
            )
        for step in _ADDED_COLUMNS:
            self._upgrade(connection, step, columns, present)
        # Part of the expiry step, made after it: a table of any layout gets it the same way.
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {self._sql_hints} ("
                "`key` VARBINARY(1024) NOT NULL PRIMARY KEY, "
                "`expires_at` BIGINT NOT NULL, "
                f"INDEX `{_HINTS_INDEX}` (`expires_at`)"
                ") ENGINE=InnoDB ROW_FORMAT=DYNAMIC"
            )

    def _upgrade(
        self, connection: Connection, step: _Step, columns: dict[str, str], present: set[str]
    ) -> None:
        """Apply ``step`` if the table lacks it (all in one ALTER), or check what is there."""
        missing = [(name, definition) for name, definition in step.columns if name not in columns]
        if missing and len(missing) < len(step.columns):
            raise _SchemaMismatch(
                f"table {self.table!r} has only some of the columns "
                f"{[name for name, _ in step.columns]} (it lacks {[n for n, _ in missing]}); "
                "kvstore adds them together"
            )
        for name, definition in step.columns:
            if name in columns and columns[name] != "bigint":
                raise _SchemaMismatch(
                    f"table {self.table!r} has a `{name}` column of type {columns[name]}; "
                    f"kvstore needs {definition}"
                )
        changes = [f"ADD COLUMN `{name}` {definition}" for name, definition in missing]
        # An index lost on its own (dropped by hand) comes back too.
        changes += [
            f"ADD INDEX `{name}` {indexed}"
            for name, indexed in step.indexes
            if name.lower() not in present
        ]
        if changes:
            self._alter(connection, changes)

    def _alter(self, connection: Connection, changes: list[str]) -> None:
        """Make an older layout's table current; a process that raced this one may have."""
        _log.info("mysql at %s: table %r: %s", self.where, self.table, ", ".join(changes))
        # Not MariaDB's ADD COLUMN IF NOT EXISTS, which MySQL lacks: the server serialises
        # concurrent ALTERs on the table's metadata lock, and each later one fails whole (one
        # ALTER is all or nothing) with a duplicate column or index error, meaning the step
        # is there.
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"ALTER TABLE {self._sql_table} {', '.join(changes)}")
        except pymysql.MySQLError as error:
            if _error_code(error) not in (_DUPLICATE_COLUMN, _DUPLICATE_INDEX):
                raise

    def _check_size(self, key: bytes, value: bytes) -> None:
        needed = required_max_allowed_packet(len(value), len(key))
        if self._max_packet and needed > self._max_packet:
            raise BackendError(
                f"a value of {len(value)} bytes needs max_allowed_packet >= {needed} bytes, and "
                f"the server's is {self._max_packet}: raise max_allowed_packet on the server "
                "(for 16 MiB values, max_allowed_packet=64M); nothing was written",
                driver=self.name,
                where=self.where,
            )

    # -- primitives -------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        """Return the value stored under ``key``, or ``None`` (one primary key lookup)."""
        encoded = key.encode("utf-8")
        sql = self._sql_get

        def work(connection: Connection) -> bytes | None:
            with connection.cursor() as cursor:
                cursor.execute(sql, (encoded,))
                row = cursor.fetchone()
            return bytes(row[0]) if row is not None else None

        return await self._run(work)

    async def set(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key`` at a new version with one autocommitted upsert."""
        encoded = key.encode("utf-8")
        deadline = await self._ensure_ready()
        self._check_size(encoded, value)
        sql = self._sql_set
        params = (encoded, value, new_version())

        def work(connection: Connection) -> None:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)

        await self._run(work, deadline)

    async def delete(self, key: str) -> None:
        """Remove ``key`` with one autocommitted DELETE; a missing key is not an error."""
        encoded = key.encode("utf-8")
        sql = self._sql_delete

        def work(connection: Connection) -> None:
            with connection.cursor() as cursor:
                cursor.execute(sql, (encoded,))

        await self._run(work)

    # -- conditional writes -----------------------------------------------------------------

    async def get_versioned(self, key: str) -> Versioned[bytes] | None:
        """Return the value of ``key`` and its version from one ``SELECT``, or ``None``."""
        encoded = key.encode("utf-8")
        sql = self._sql_get_versioned

        def work(connection: Connection) -> Versioned[bytes] | None:
            with connection.cursor() as cursor:
                cursor.execute(sql, (encoded,))
                row = cursor.fetchone()
            return None if row is None else Versioned(bytes(row[0]), int(row[1]))

        return await self._run(work)

    async def set_if(self, key: str, value: bytes, expected: int | None) -> int:
        """Write ``value`` if ``key`` is at ``expected`` (``None``: absent): one statement."""
        encoded = key.encode("utf-8")
        deadline = await self._ensure_ready()
        self._check_size(encoded, value)
        version = new_version()
        params: tuple[Any, ...]
        if expected is None:
            sql, params = self._sql_create, (encoded, value, version)
        else:
            sql, params = self._sql_replace, (value, version, encoded, expected)
        # 1 row: inserted or updated; 2: a create replaced an expired row; 0: the conflict.
        if await self._run(_affected(sql, params), deadline, replayable=False) == 0:
            raise conflict([key])
        return version

    async def delete_if(self, key: str, expected: int) -> None:
        """Delete ``key`` if it is at version ``expected``: one ``DELETE ... AND version``."""
        work = _affected(self._sql_delete_if, (key.encode("utf-8"), expected))
        if await self._run(work, replayable=False) != 1:
            raise conflict([key])

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        """Apply ``changes`` in one transaction if every condition holds; see the module doc."""
        if not changes:
            self.ensure_open()
            return []
        deadline = await self._ensure_ready()
        versions = [new_version() if change.action is Action.WRITE else None for change in changes]
        encoded = [change.key.encode("utf-8") for change in changes]
        # Key order: commits lock their keys in one order (deadlocks with other writers are
        # retried: the server rolled the commit back).
        writes = sorted(
            (key, cast(bytes, change.value), version)
            for key, change, version in zip(encoded, changes, versions, strict=True)
            if version is not None
        )
        for key, value, _ in writes:
            self._check_size(key, value)
        keys = sorted(encoded)
        table = self._sql_table

        def attempt(connection: Connection) -> list[str]:
            _bound_waits(connection, deadline)
            with connection.cursor() as cursor:
                # The gap locks that hold absent keys are REPEATABLE READ's; this applies to
                # the next transaction only.
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                connection.begin()
                try:
                    # The commit's one instant: expired rows are absent as of it, and the
                    # writes are written at it.
                    now = _read_now(cursor)
                    current: dict[bytes, int] = {}
                    for chunk in _in_chunks(keys, self._max_packet):
                        marks = ", ".join(["%s"] * len(chunk))
                        cursor.execute(
                            f"SELECT `key`, `version`, `expires_at` FROM {table} "
                            f"WHERE `key` IN ({marks}) ORDER BY `key` FOR UPDATE",
                            chunk,
                        )
                        # An expired row is locked like a live one, and counts as absent.
                        current.update(
                            (bytes(key), int(version))
                            for key, version, expires in cursor
                            if expires is None or expires > now
                        )
                    failed = [
                        change.key
                        for change, key in zip(changes, encoded, strict=True)
                        if not change.holds_for(current.get(key))
                    ]
                    if failed:
                        connection.rollback()
                        return failed
                    if writes:
                        self._write_rows(cursor, self._sql_set_rows, render_rows(writes, now))
                    gone = sorted(
                        key
                        for change, key in zip(changes, encoded, strict=True)
                        if change.action is Action.DELETE
                    )
                    for chunk in _in_chunks(gone, self._max_packet):
                        marks = ", ".join(["%s"] * len(chunk))
                        cursor.execute(f"DELETE FROM {table} WHERE `key` IN ({marks})", chunk)
                    connection.commit()
                    return []
                except BaseException:
                    # The server rolls back a transaction whose connection died.
                    with contextlib.suppress(pymysql.MySQLError, OSError):
                        connection.rollback()
                    raise

        def work(connection: Connection) -> list[str]:
            return _retried_on_deadlock(lambda: attempt(connection))

        failed = await self._run(work, deadline, replayable=False)
        if failed:
            raise conflict(failed)
        return versions

    # -- expiry and metadata ----------------------------------------------------------------

    async def set_expiring(self, key: str, value: bytes, ttl: float) -> None:
        """Store ``value`` to expire ``ttl`` from the server's now, with its purge hint."""
        # One transaction: the server's instant, the row, and its hint.
        await self._write_many([(key, value)], ttl_millis(ttl))
        await self._purge_if_due()

    async def expire(self, key: str, ttl: float | None) -> bool:
        """Set or clear the expiry of a live ``key``: a locking read, then the ``UPDATE``."""
        encoded = key.encode("utf-8")
        ttl_ms = None if ttl is None else ttl_millis(ttl)
        lock, update, hint = self._sql_lock_live, self._sql_set_expiry, self._sql_hint

        def attempt(connection: Connection) -> bool:
            with connection.cursor() as cursor:

                def body() -> bool:
                    # Locks the live row, so that nothing changes it before the UPDATE; an
                    # UPDATE alone could not tell "left as it was" from "not there".
                    cursor.execute(lock, (encoded,))
                    row = cursor.fetchone()
                    if row is None:
                        return False
                    expires = None if ttl_ms is None else int(row[0]) + ttl_ms
                    cursor.execute(update, (expires, encoded))
                    if expires is not None:
                        cursor.execute(hint, (encoded, expires))
                    # A cleared expiry leaves its hint: the purge drops it when it comes due.
                    return True

                return _in_transaction(connection, body)

        def work(connection: Connection) -> bool:
            return _retried_on_deadlock(lambda: attempt(connection))

        # Not replayed after a lost connection: run again, it could report a key it just
        # changed as missing.
        found = await self._run(work, replayable=False)
        await self._purge_if_due()
        return found

    async def get_meta(self, key: str) -> Meta | None:
        """Return the size (``LENGTH``, the value stays on the server), times and version."""
        encoded = key.encode("utf-8")
        sql = self._sql_get_meta

        def work(connection: Connection) -> Meta | None:
            with connection.cursor() as cursor:
                cursor.execute(sql, (encoded,))
                row = cursor.fetchone()
            return None if row is None else _meta(*row)

        return await self._run(work)

    async def purge_expired(self, limit: int = 1000) -> int:
        """Delete up to ``limit`` expired rows found through the hints, oldest expiry first.

        Reads at most ``limit`` due hints in transactions of at most ``PURGE_CHUNK``; returns
        how many rows were deleted (a hint whose key was rewritten, deleted or re-expired
        deletes nothing).
        """
        deleted = 0
        left = limit
        while left > 0:
            size = min(left, PURGE_CHUNK)
            # Each transaction gets the operation timeout: a large limit is many of them.
            examined, gone = await self._run(self._purge_batch(size))
            deleted += gone
            left -= examined
            if examined < size:
                break
        return deleted

    def _purge_batch(self, size: int) -> Callable[[Connection], tuple[int, int]]:
        """One purge transaction over at most ``size`` due hints: (hints examined, rows gone)."""
        table, hints = self._sql_table, self._sql_hints

        def attempt(connection: Connection) -> tuple[int, int]:
            with connection.cursor() as cursor:
                # The gap lock on a missing row is REPEATABLE READ's: without it, a write could
                # create the row and its hint between the locking read and the hint's deletion.
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")

                def body() -> tuple[int, int]:
                    now = _read_now(cursor)
                    cursor.execute(self._sql_purge, (now, size))
                    due = sorted(bytes(row[0]) for row in cursor.fetchall())
                    if not due:
                        return 0, 0
                    # The rows decide, locked (a missing one by its gap) so that no write
                    # changes them before this commits: a hint is only a pointer.
                    expiry: dict[bytes, int | None] = {}
                    for chunk in _in_chunks(due, self._max_packet):
                        marks = ", ".join(["%s"] * len(chunk))
                        cursor.execute(
                            f"SELECT `key`, `expires_at` FROM {table} "
                            f"WHERE `key` IN ({marks}) ORDER BY `key` FOR UPDATE",
                            chunk,
                        )
                        expiry.update(
                            (bytes(key), None if expires is None else int(expires))
                            for key, expires in cursor
                        )
                    expired: list[bytes] = []
                    later: list[tuple[bytes, int]] = []
                    # Hints of deleted rows, of gone rows and of rows that no longer expire.
                    dropped: list[bytes] = []
                    for key in due:
                        expires = expiry.get(key)
                        if expires is not None and expires > now:
                            later.append((key, expires))
                            continue
                        if expires is not None:
                            expired.append(key)
                        dropped.append(key)
                    gone = 0
                    for chunk in _in_chunks(expired, self._max_packet):
                        marks = ", ".join(["%s"] * len(chunk))
                        gone += int(
                            cursor.execute(f"DELETE FROM {table} WHERE `key` IN ({marks})", chunk)
                        )
                    for chunk in _in_chunks(dropped, self._max_packet):
                        marks = ", ".join(["%s"] * len(chunk))
                        cursor.execute(f"DELETE FROM {hints} WHERE `key` IN ({marks})", chunk)
                    if later:
                        # Found again when the row's own expiry comes.
                        cursor.executemany(self._sql_hint, later)
                    return len(due), gone

                return _in_transaction(connection, body)

        def work(connection: Connection) -> tuple[int, int]:
            return _retried_on_deadlock(lambda: attempt(connection))

        return work

    async def _purge_if_due(self) -> None:
        """The purge piggy-backed on expiring writes: a small batch, once a second at most."""
        now = time.monotonic()
        if now < self._next_purge:
            return
        self._next_purge = now + AUTO_PURGE_EVERY
        try:
            await self.purge_expired(AUTO_PURGE_BATCH)
        except BackendError as error:
            # The write went through; the next due purge takes these rows (expired rows are
            # absent to every operation meanwhile).
            _log.info("mysql at %s: a piggy-backed purge failed: %s", self.where, error)

    # -- scans ------------------------------------------------------------------------------

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Yield the keys starting with ``prefix`` in order, ``SCAN_PAGE`` per round trip."""
        low = prefix.encode("utf-8")
        successor = prefix_successor(prefix)
        high = successor.encode("utf-8") if successor is not None else None
        first = True
        while True:
            page = await self._run(self._page_reader(low, high, inclusive=first))
            # One key past the page tells whether another page exists, which saves the empty
            # query a scan would otherwise end with whenever the matches fill whole pages.
            more = len(page) > SCAN_PAGE
            if more:
                del page[SCAN_PAGE:]
            for key in page:
                yield key.decode("utf-8")
            if not more:
                return
            # Keyset pagination: writes between pages can neither repeat nor skip a key.
            low, first = page[-1], False

    def _page_sql(self, *, inclusive: bool, bounded: bool) -> str:
        """One page of keys (``SCAN_PAGE`` + 1 at most) as rows, in key order."""
        conditions = ["`key` >= %s" if inclusive else "`key` > %s"]
        if bounded:
            conditions.append("`key` < %s")
        # A range of the primary key: the clustered rows, expired ones skipped by their
        # `expires_at` (no secondary index exists to mislead the optimizer).
        conditions.append(_LIVE)
        return (
            f"SELECT `key` FROM {self._sql_table} "
            f"WHERE {' AND '.join(conditions)} ORDER BY `key` LIMIT {SCAN_PAGE + 1}"
        )

    def _page_reader(
        self, low: bytes, high: bytes | None, *, inclusive: bool
    ) -> Callable[[Connection], list[bytes]]:
        """The work of reading one page of keys, sorted.

        The page comes back as one value, its keys joined by newlines, with their count and
        total length: PyMySQL parses each row in Python, so one row instead of 1,000 took a
        1,000-key scan of 10,000 from 5.8 ms to 2.9 ms (raw PyMySQL's rows: 5.8 ms). The
        aggregate's input order is not promised: the page is sorted again (bytes order, the
        column's), one pass over sorted input. A key holding a newline (never written through
        Storage) or a result cut at a limit shows as a disagreeing count or length: that page
        is read as rows.
        """
        args = [low] if high is None else [low, high]
        rows_sql = self._page_sql(inclusive=inclusive, bounded=high is not None)
        joined_sql = (
            # The separator is a newline character itself, not the backslash escape, which the
            # NO_BACKSLASH_ESCAPES mode would read as two characters.
            "SELECT GROUP_CONCAT(`key` SEPARATOR '\n'), COUNT(*), "
            f"CAST(SUM(LENGTH(`key`)) AS SIGNED) FROM ({rows_sql}) AS page"
        )

        def work(connection: Connection) -> list[bytes]:
            with connection.cursor() as cursor:
                cursor.execute(joined_sql, args)
                # An aggregate without GROUP BY returns exactly one row.
                joined, count, size = cast(tuple[Any, int, int], cursor.fetchone())
                if not count:
                    return []
                if joined is not None and len(joined) == size + count - 1:
                    page: list[bytes] = bytes(joined).split(b"\n")
                    if len(page) == count:
                        page.sort()
                        return page
                cursor.execute(rows_sql, args)
                return [bytes(row[0]) for row in cursor.fetchall()]

        return work

    async def close(self) -> None:
        """Close the pool's connections (busy ones as they come back); idempotent."""
        if self.closed:
            return
        self.mark_closed()
        await anyio.to_thread.run_sync(self._pool.close)

    # -- batches ----------------------------------------------------------------------------

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return the values of ``keys`` in order: ``IN (...)`` chunks in one worker hop."""
        if not keys:
            self.ensure_open()
            return []
        encoded = [key.encode("utf-8") for key in keys]
        select = f"SELECT `key`, `value` FROM {self._sql_table}"

        def work(connection: Connection) -> list[bytes | None]:
            found: dict[bytes, bytes] = {}
            for key, value in self._rows_in(connection, select, encoded):
                found[bytes(key)] = bytes(value)
            return [found.get(key) for key in encoded]

        return await self._run(work)

    def _rows_in(self, connection: Connection, select: str, keys: list[bytes]) -> list[Any]:
        """The rows of ``select`` (up to its ``FROM``) for the distinct, live ``keys``.

        An ``IN (...)`` statement per chunk of keys that fits in the server's packet limit.
        """
        rows: list[Any] = []
        with connection.cursor() as cursor:
            for chunk in _in_chunks(list(dict.fromkeys(keys)), self._max_packet):
                marks = ", ".join(["%s"] * len(chunk))
                cursor.execute(f"{select} WHERE `key` IN ({marks}) AND {_LIVE}", chunk)
                rows.extend(cursor.fetchall())
        return rows

    async def get_meta_many(self, keys: Sequence[str]) -> list[Meta | None]:
        """:meth:`get_meta` of each of ``keys`` in order: ``IN (...)`` chunks in one worker hop."""
        if not keys:
            self.ensure_open()
            return []
        encoded = [key.encode("utf-8") for key in keys]
        select = (
            "SELECT `key`, LENGTH(`value`), `written_at`, `expires_at`, `version` "
            f"FROM {self._sql_table}"
        )

        def work(connection: Connection) -> list[Meta | None]:
            rows = self._rows_in(connection, select, encoded)
            found = {bytes(key): _meta(*row) for key, *row in rows}
            return [found.get(key) for key in encoded]

        return await self._run(work)

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Store every pair, the last one per key winning, all or nothing in one transaction."""
        if not items:
            self.ensure_open()
            return
        await self._write_many(items, None)

    async def set_many_expiring(self, items: Sequence[tuple[str, bytes]], ttl: float) -> None:
        """Store every pair to expire ``ttl`` from one server instant, all or nothing."""
        if not items:
            self.ensure_open()
            return
        await self._write_many(items, ttl_millis(ttl))
        await self._purge_if_due()

    async def _write_many(self, items: Sequence[tuple[str, bytes]], ttl_ms: int | None) -> None:
        """Upsert every pair in one transaction, written at one instant the server reads."""
        # Sorted, so that concurrent batches lock rows in one order and cannot deadlock.
        rows = sorted(
            (key.encode("utf-8"), value, new_version()) for key, value in dict(items).items()
        )
        deadline = await self._ensure_ready()
        for key, value, _ in rows:
            self._check_size(key, value)

        def write(cursor: pymysql.cursors.Cursor) -> None:
            now = _read_now(cursor)
            if ttl_ms is None:
                self._write_rows(cursor, self._sql_set_rows, render_rows(rows, now))
                return
            expires = now + ttl_ms
            self._write_rows(cursor, self._sql_set_expiring_rows, render_rows(rows, now, expires))
            # The purge's hints, in the same transaction: plain writes never get here.
            cursor.executemany(self._sql_hint, [(key, expires) for key, _, _ in rows])

        def work(connection: Connection) -> None:
            with connection.cursor() as cursor:
                # PyMySQL turns the hints' executemany into multi-row INSERTs of at most
                # max_stmt_length bytes; keep each below the server's packet limit.
                cursor.max_stmt_length = self._statement_bytes()  # type: ignore[misc]
                _in_transaction(connection, lambda: write(cursor))

        await self._run(work, deadline)

    def _statement_bytes(self) -> int:
        """How big a multi-row statement may grow: well below the server's packet limit."""
        return max(1024, min(STATEMENT_BYTES, self._max_packet // 2))

    def _write_rows(
        self, cursor: pymysql.cursors.Cursor, sql: tuple[str, str], rows: list[bytes]
    ) -> None:
        """Upsert rendered rows with ``sql`` (head, tail) in statements the server accepts."""
        head, tail = sql
        execute_rows(cursor, head, tail, rows, self._statement_bytes())

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Remove every key in ``keys``, all or nothing in one transaction."""
        if not keys:
            self.ensure_open()
            return
        # Sorted, so that concurrent batches lock rows in one order and cannot deadlock.
        encoded = sorted({key.encode("utf-8") for key in keys})
        table = self._sql_table

        def work(connection: Connection) -> None:
            with connection.cursor() as cursor:

                def delete_all() -> None:
                    for chunk in _in_chunks(encoded, self._max_packet):
                        marks = ", ".join(["%s"] * len(chunk))
                        cursor.execute(f"DELETE FROM {table} WHERE `key` IN ({marks})", chunk)

                _in_transaction(connection, delete_all)

        await self._run(work)

    async def clear(self, prefix: str = "") -> None:
        """Remove every key starting with ``prefix``: range DELETEs of ``CLEAR_CHUNK`` rows."""
        low = prefix.encode("utf-8")
        successor = prefix_successor(prefix)
        high = successor.encode("utf-8") if successor is not None else None
        condition = "`key` >= %s" + (" AND `key` < %s" if high is not None else "")
        args = [low] if high is None else [low, high]
        tail = f"WHERE {condition} ORDER BY `key` LIMIT {CLEAR_CHUNK}"
        # The hints of the range go too: a cleared key's hint would wait for its expiry.
        statements = [f"DELETE FROM {t} {tail}" for t in (self._sql_table, self._sql_hints)]

        def work(connection: Connection) -> None:
            with connection.cursor() as cursor:
                for sql in statements:
                    while cursor.execute(sql, args) >= CLEAR_CHUNK:
                        pass

        await self._run(work)


class _SchemaMismatch(pymysql.MySQLError):
    """The table exists with columns that would not keep the key contract."""


def _text(value: object) -> str:
    # MySQL 8 may hand information_schema text back as bytes.
    text = value.decode("utf-8") if isinstance(value, bytes) else str(value)
    return text.lower()


def _in_transaction(connection: Connection, body: Callable[[], _T]) -> _T:
    connection.begin()
    try:
        result = body()
        connection.commit()
        return result
    except BaseException:
        # The server rolls back a transaction whose connection died.
        with contextlib.suppress(pymysql.MySQLError, OSError):
            connection.rollback()
        raise


def _read_now(cursor: pymysql.cursors.Cursor) -> int:
    """The server's clock now, in whole milliseconds (see the module docstring)."""
    cursor.execute(f"SELECT {_NOW_MS}")
    row = cursor.fetchone()
    assert row is not None  # a SELECT of one expression returns one row
    return int(row[0])


def _affected(sql: str, params: tuple[Any, ...]) -> Callable[[Connection], int]:
    """The work of one statement that tells how many rows it changed (0 on a duplicate key)."""

    def run(connection: Connection) -> int:
        with connection.cursor() as cursor:
            try:
                return int(cursor.execute(sql, params))
            except pymysql.err.IntegrityError as error:
                # A create's key is there already: the conflict, as InnoDB decided it.
                if _error_code(error) == _DUPLICATE_KEY:
                    return 0
                raise

    def work(connection: Connection) -> int:
        return _retried_on_deadlock(lambda: run(connection))

    return work


def _retried_on_deadlock(attempt: Callable[[], _T]) -> _T:
    """Run ``attempt`` again when the server chose it as a deadlock's victim.

    The server rolled the victim's transaction back whole, so running it again is safe; a
    deadlock's other party goes through, so a burst of them ends.
    """
    for retry in range(_DEADLOCK_RETRIES):
        try:
            return attempt()
        except pymysql.MySQLError as error:
            if _error_code(error) != _DEADLOCK or retry + 1 == _DEADLOCK_RETRIES:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _peer_closed(connection: Connection) -> bool:
    sock = connection._sock  # type: ignore[attr-defined]
    return sock is None or peer_closed(sock.fileno())


def _meta(size: Any, written: Any, expires: Any, version: Any) -> Meta:
    """The :class:`Meta` of a metadata row (integers, or NULL times) as PyMySQL returns it."""
    return Meta(
        size=int(size),
        written_at=None if written is None else from_millis(int(written)),
        expires_at=None if expires is None else from_millis(int(expires)),
        version=int(version),
    )


def _in_chunks(keys: list[bytes], max_packet: int) -> list[list[bytes]]:
    """Split keys into lists of at most ``IN_CHUNK`` keys that fit in a statement."""
    limit = min(IN_CHUNK_BYTES, max_packet // 2) if max_packet else IN_CHUNK_BYTES
    chunks: list[list[bytes]] = []
    current: list[bytes] = []
    size = 0
    for key in keys:
        # Each key travels as ``_binary X'<hex>'`` plus a separator.
        cost = 2 * len(key) + 14
        if current and (len(current) >= IN_CHUNK or size + cost > limit):
            chunks.append(current)
            current, size = [], 0
        current.append(key)
        size += cost
    if current:
        chunks.append(current)
    return chunks


def _error_code(error: BaseException) -> int | None:
    if isinstance(error, pymysql.MySQLError) and error.args and isinstance(error.args[0], int):
        return error.args[0]
    return None


def _kind_of(error: BaseException) -> type[BackendError]:
    if isinstance(error, (OSError, socket.timeout)) or _error_code(error) in _UNAVAILABLE_CODES:
        return BackendUnavailable
    if isinstance(error, pymysql.err.InterfaceError):  # the connection is already closed
        return BackendUnavailable
    return BackendError


# PyMySQL's messages may quote the password (an access-denied reply names the user only, but
# nothing promises it): the translator hides any message that holds it.
_ERRORS = ErrorTable(is_unavailable=lambda error: _kind_of(error) is BackendUnavailable)


def _connection_broken(error: BaseException, connection: Connection) -> bool:
    return _kind_of(error) is BackendUnavailable or not connection.open


def _lost_not_timed_out(error: BaseException) -> bool:
    if isinstance(error, pymysql.err.InterfaceError):
        return True
    if _error_code(error) not in _LOST_CODES:
        return False
    # A read timeout also reports 2013: retrying it would only double the wait.
    return "timed out" not in str(error)


# kvstore's own options (the same on every server driver), then PyMySQL's connect arguments.
_URL_OPTIONS: dict[str, Callable[[str], Any]] = {
    "pool_size": positive_int,
    "connect_timeout": positive_float,
    "operation_timeout": positive_float,
    "read_timeout": positive_float,
    "write_timeout": positive_float,
    "unix_socket": str,
    "ssl_ca": str,
    "ssl_cert": str,
    "ssl_key": str,
    "ssl_verify_cert": boolean,
    "ssl_verify_identity": boolean,
    "ssl_disabled": boolean,
}
# Options that are settings of the driver, not PyMySQL connect arguments.
_DRIVER_OPTIONS = frozenset(
    {"pool_size", "connect_timeout", "operation_timeout", "read_timeout", "write_timeout"}
)


def parse_mysql_url(uri: str) -> tuple[ParsedURL, dict[str, Any], dict[str, Any]]:
    """Split ``mysql://user:password@host:port/database?option=...`` as PyMySQL reads it.

    Returns the parsed URL, PyMySQL's connect arguments (``host``, ``port`` (3306 by default),
    ``user`` (PyMySQL's default, the login name, when absent), ``password``, ``database`` and
    the ``unix_socket`` / ``ssl_*`` options) and the driver's settings from the URL
    (``pool_size``, ``connect_timeout``, ``operation_timeout`` and PyMySQL's ``read_timeout``
    and ``write_timeout``). Raises :class:`ConfigurationError` (never holding the password) for
    a URL :func:`kvstore.urls.parse_url` refuses (a port outside 1..65535, a bad IPv6 address,
    an unencoded ``@`` or ``/`` in the password, several hosts), a missing database or a path
    that is not one database name (``/db/extra``), an unknown option or a bad option value.
    """
    parsed = parse_url(uri, schemes=("mysql", "mariadb"), default_port=3306)
    if not parsed.path:
        raise ConfigurationError(
            f"the MySQL URL {parsed.redacted()!r} names no database: add it as the path "
            "(mysql://HOST/DATABASE)"
        )
    if "/" in parsed.path or len(parsed.path) > 64:
        raise ConfigurationError(
            f"the MySQL URL {parsed.redacted()!r}: the path must be one database name of at "
            "most 64 characters, without '/'"
        )
    options = take_options(parsed.options, _URL_OPTIONS, where="mysql")
    params: dict[str, Any] = {"database": parsed.path, "port": 3306}
    if parsed.hosts:
        host, port = parsed.hosts[0]
        if host:
            params["host"] = host
        params["port"] = port or 3306
    if parsed.username is not None:
        params["user"] = parsed.username
    if parsed.password is not None:
        params["password"] = parsed.password
    params.update({name: value for name, value in options.items() if name not in _DRIVER_OPTIONS})
    if "host" not in params and "unix_socket" not in params:
        params["host"] = "localhost"
    return parsed, params, {name: value for name, value in options.items()
                            if name in _DRIVER_OPTIONS}


def _where(parsed: ParsedURL, params: dict[str, Any]) -> str:
    if "unix_socket" in params:
        return f"{params['unix_socket']}/{params['database']}"
    return f"{parsed.where_hosts() or 'localhost:3306'}/{params['database']}"


def _time_left(deadline: float) -> float:
    """Seconds until ``deadline``; a 2013 timeout error (as PyMySQL raises) once it passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise pymysql.err.OperationalError(2013, "Lost connection to server (timed out)")
    return left


def _bound_waits(connection: Connection, deadline: float) -> None:
    """Make each of the connection's socket reads and writes end by ``deadline``.

    PyMySQL applies ``_read_timeout`` / ``_write_timeout`` to its socket before each read and
    write (it compares them with the timeout last set), so changing them is enough.
    """
    # Rounded down to a tenth of a second: the wait still ends by the deadline, and successive
    # operations mostly set the same value, which PyMySQL then does not re-apply to the socket
    # (a settimeout per operation would cost a few percent of a point read).
    left = max(_MIN_WAIT, math.floor(_time_left(deadline) * 10) / 10)
    connection._read_timeout = left  # type: ignore[attr-defined]
    connection._write_timeout = left  # type: ignore[attr-defined]


def mysql_driver(
    uri: str = "mysql://root@localhost:3306/agentx",
    table: str = "agentx_kv",
    *,
    pool_size: int | None = None,
    connect_timeout: float | None = None,
    operation_timeout: float | None = None,
    read_timeout: float | None = None,
    write_timeout: float | None = None,
) -> MySQLDriver:
    """Return a MySQL/MariaDB driver on ``table`` of the database in ``uri``; no I/O yet.

    ``uri`` is ``mysql://user:password@host:port/database`` (``mariadb://`` too), with optional
    ``pool_size``, ``connect_timeout``, ``operation_timeout``, ``read_timeout``,
    ``write_timeout``, ``unix_socket``, ``ssl_ca``, ``ssl_cert``, ``ssl_key``,
    ``ssl_verify_cert``, ``ssl_verify_identity`` and ``ssl_disabled`` query options. At most
    ``pool_size`` connections are open and at most ``pool_size`` operations run at once (others
    wait their turn). ``connect_timeout`` (seconds, default 5) bounds connecting, so an
    unreachable server raises :class:`BackendUnavailable` within about that long;
    ``operation_timeout`` (default 10) bounds each operation, the wait for a free connection
    included, however the server behaves (one that accepts connections and never answers
    too). PyMySQL's ``read_timeout`` and ``write_timeout`` keep working: given alone they set
    the operation timeout, given with a different ``operation_timeout`` they are a
    :class:`ConfigurationError`. Each setting may be an argument or a URL option; both with
    different values is a :class:`ConfigurationError`.
    """
    return MySQLDriver(
        _Arguments(
            uri=uri,
            table=table,
            pool_size=pool_size,
            connect_timeout=connect_timeout,
            operation_timeout=operation_timeout,
            read_timeout=read_timeout,
            write_timeout=write_timeout,
        )
    )


def from_url(url: str) -> MySQLDriver:
    """Return a driver for ``url``, settings from its options (used by ``create_storage``)."""
    return mysql_driver(url)
