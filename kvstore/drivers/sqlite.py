"""The SQLite driver: one table in a local database file, on the standard library's ``sqlite3``.

Statements run inline on the event loop rather than on a worker thread. A point read takes a few
microseconds while a hop to a thread and back costs over a hundred, so hopping would make every
operation many times slower than the work it wraps. What could stall the loop is waiting for a
lock another process holds, so the connection never waits inside SQLite (``busy_timeout`` is 0):
a statement that finds the database locked fails at once, and the driver retries it after an
async sleep, with a growing, jittered backoff, until its own ``busy_timeout`` runs out. Other
tasks keep running while it waits.

Several processes may share one file: WAL lets readers run beside the single writer, and a
writer that finds the lock taken waits as above instead of reporting "database is locked".

Inline work gives other tasks a turn about every millisecond (:mod:`kvstore.pacing`). A batch,
``get_many`` or ``clear`` that needs several statements runs them in one transaction, a bounded
chunk per statement; when it yields between chunks it holds the connection, so other tasks'
statements wait instead of running inside its transaction. A cancelled one rolls back.

Conditional writes are native. Each row carries its version in a ``version`` column, written
with the value by the same statement. ``set_if`` and ``delete_if`` are one statement each (an
insert that does nothing on a duplicate key, or an update or delete filtered on the version),
checked by the number of rows it changed. ``commit`` checks every condition and writes inside one
``BEGIN IMMEDIATE`` transaction: it holds the write lock from the start, so no other connection
or process writes between its check and its writes, and it is stepped, paced and rolled back on
cancellation like a batch.

The layout is upgraded in place when a connection opens: a table from before a column existed
gets it by ``ALTER TABLE ... ADD COLUMN``, a change of the schema only (SQLite stores the default
once, not in each row); a ``WITHOUT ROWID`` table (every file before rowid tables) stays one,
since every statement works on both kinds and converting would rewrite every row. Rows from
before the upgrade read with version
:data:`~kvstore.conditional.LEGACY_VERSION` until they are next written. Several processes may
upgrade one file at once: the losers of the race see the column already there. A file this
process may only read is left as it is, and read through a temporary view that shows the columns
it lacks as their defaults (legacy version, no expiry, no write time); writes to it fail.

Expiry is native. Each row carries ``expires_at`` and ``written_at``, integer milliseconds since
the epoch (NULL: never expires; written before write times were kept). "Now" is read from the
driver's ``clock`` (default :func:`time.time`): SQLite runs in this process, so this process's
clock is the backend's, and processes sharing a file agree through the wall clock. A row is
absent to every operation from its expiry instant on: scans, batch reads and conditional writes
filter on it in the statement, with now bound as a parameter; point reads compare the expiry the
row returns with the clock, read only for a row that has one. Every plain write clears the
expiry and stamps the write time in its one statement. Expired rows are removed through a
partial index on ``expires_at`` (expiring rows only, so writes without a TTL never touch it): by
:meth:`~SQLiteDriver.purge_expired`, and by a purge of up to 100 rows that an expiring write
runs in its own transaction at most once a second.

Rows this driver did not write (another program's, or hand-made) are checked as they are read:
a row whose key breaks the key rules is skipped by scans and logged (logger
``kvstore.sqlite``); a value that is not a BLOB raises :class:`BackendError` naming the
key, from every read that reaches it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import repeat
from operator import itemgetter
from pathlib import Path
from time import monotonic
from typing import Any, Final, TypeVar

import anyio

from kvstore.conditional import ANY_VERSION, LEGACY_VERSION, Action, Change, Versioned, new_version
from kvstore.driver import LATER, BaseDriver, Later, conflict
from kvstore.drivers._translate import ErrorTable, Translator
from kvstore.errors import BackendError, BackendUnavailable, ConfigurationError, InvalidKey
from kvstore.expiry import Clock, Meta, expiry_millis, from_millis, now_millis
from kvstore.home import data_file
from kvstore.keys import all_valid_fetched_keys, prefix_successor, validate_key
from kvstore.pacing import Gate, Pacer
from kvstore.sqlite_common import (
    DEFAULT_BUSY_TIMEOUT,
    DEFAULT_SYNCHRONOUS,
    MEMORY,
    URL_OPTIONS,
    LockWait,
    parse_sqlite_url,
)
from kvstore.sqlite_common import check_busy_timeout as _check_busy_timeout
from kvstore.sqlite_common import check_synchronous as _check_synchronous
from kvstore.sqlite_common import is_busy as _is_busy
from kvstore.urls import refuse_url_as_path
from kvstore.wal_checkpoints import Checkpointer

__all__ = ["DEFAULT_TABLE", "SQLiteDriver", "default_path", "from_url", "sqlite_driver"]

_T = TypeVar("_T")
# One logger for the driver's records and the shared lock backoff's (long lock waits).
_log = logging.getLogger("kvstore.sqlite")

DEFAULT_TABLE: Final = "agentx_kv"

# A plain identifier, so that the name needs no escaping anywhere; SQLite reserves sqlite_*.
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

# Keyset pagination: rows fetched per query while streaming. Big enough that the per-query cost
# vanishes, small enough that one page holds the loop for well under a millisecond.
_KEY_PAGE = 1000
# The key of a row of a key scan.
_first_column = itemgetter(0)
# Values can be 16 MiB each, so a key-and-value scan fetches far fewer rows per query.
_ITEM_PAGE = 64
# Keys per ``IN (...)`` query; far below SQLite's bound-variable limit (32766 since 3.32).
_IN_CHUNK = 500
# Rows a batch writes or a clear deletes per statement: well under a millisecond of work, so a
# transaction of any size yields part way.
_WRITE_CHUNK = 256
# The message sqlite3 raises when a TEXT cell is not valid UTF-8 (only foreign rows have one).
_NOT_UTF8 = "Could not decode to UTF-8"

# The columns every table has had since this driver was first written (the original layout).
# A new table is a rowid table: its key is the PRIMARY KEY, so SQLite keeps a unique index of the
# keys alone (``ON CONFLICT (key)`` upserts, point lookups and key-range scans go through it),
# and the rows, values included, live in the table's own B-tree under their rowid. Tables made
# before (``WITHOUT ROWID``, whose B-tree holds the whole rows ordered by key) are used as they
# are, never rewritten: every statement works on both, and a rewrite would copy every value of a
# user's file on open. Why the change: a B-tree search compares the probe with the keys of the
# cells it visits, and in a ``WITHOUT ROWID`` table a cell whose row spills onto overflow pages
# is read whole for that, so any lookup that passes a big value reads it. Through the driver,
# 10,000 small keys and 5 of 1 MiB, CPU time, medians of 7 rounds alternating the two kinds in
# one process: a miss next to a 1 MiB value 97 -> 4.0 us, get 1 MiB 177 -> 76 us, set 1 MiB
# 1,466 -> 505 us; small get 5.4 -> 5.7 us, miss 4.7 -> 4.3 us, set 19.5 -> 19.5 us, a
# 1,000-key scan 384 -> 382 us (with _fetch_keys).
# NOT NULL is explicit: only ``WITHOUT ROWID`` implies it for a PRIMARY KEY.
_KEY_COLUMN: Final = "key TEXT NOT NULL PRIMARY KEY"
_VALUE_COLUMN: Final = "value BLOB NOT NULL"
# Columns added to the layout since, in order, each with the definition ``ALTER TABLE ... ADD
# COLUMN`` gives it on a table made before it existed (a new table has them from the start), and
# what the rows already there read as: the column's default, which must be a constant, so that
# adding the column is a change of the schema alone, instant however many rows the table holds. A
# later per-key field is one more entry. A new table puts them all before the value: SQLite
# stores a row's cells in column order, and a cell after a big value sits behind the value's
# overflow pages, which reading it (a scan's expiry check, get_meta) would have to walk. A table
# upgraded in place has them after the value, where ADD COLUMN puts them.
_ADDED_COLUMNS: Final[tuple[tuple[str, str, str], ...]] = (
    ("version", f"INTEGER NOT NULL DEFAULT {LEGACY_VERSION}", str(LEGACY_VERSION)),
    # Expiry (one step): instants in whole milliseconds since the epoch; NULL expires_at is
    # "never", NULL written_at is "written before write times were kept".
    ("expires_at", "INTEGER", "NULL"),
    ("written_at", "INTEGER", "NULL"),
)
# A new version made by SQLite in the statement, in the range of kvstore.conditional.new_version
# (1 .. 2**52, from 52 random bits), for writes that do not return it; SQLite seeds its random()
# from the OS. Making it in Python costs a call per row: 117 against 37 ns a row to build
# set_many's parameters (set_many ours/raw 0.74 -> 0.80 with the page cache below, CPU time).
_NEW_VERSION: Final = f"((random() & {(1 << 52) - 1}) + 1)"
# Keeps a row live for a statement that binds "now" (milliseconds) as the parameter shown: a key
# is expired from its expiry instant on.
_LIVE = "(expires_at IS NULL OR expires_at > {now})"
# The connection's page cache, in KiB (SQLite's negative form): 32 MiB, diskcache's default,
# where SQLite's is 2 MiB. Memory is taken only as pages are read, so a small store costs nothing
# more. A value over a few KiB lives in a chain of overflow pages, and overwriting it walks the
# old chain to free it: with 2 MiB a 1 MiB value falls out of the cache between two uses, and a
# 1 MiB get cost 1,549 against 661 us, a set 4.0 against 2.8 ms (CPU time, 5 values of 1 MiB,
# sqlite3 and orjson alone).
# Interior pages of a big table stay cached too, which keeps point reads flat as it grows.
_CACHE_KIB: Final = 32 * 1024
# Rows the automatic purge removes at most, piggy-backed on an expiring write.
_AUTO_PURGE = 100
# Seconds (monotonic) between two automatic purges of one driver.
_AUTO_PURGE_EVERY = 1.0
# What SQLite says when a column being added exists: another connection added it first.
_DUPLICATE_COLUMN = "duplicate column name"

# Primary result codes (the low byte of an extended code).
_SQLITE_READONLY = 8
_UNAVAILABLE_CODES = frozenset(
    {
        3,  # SQLITE_PERM
        10,  # SQLITE_IOERR
        14,  # SQLITE_CANTOPEN
        15,  # SQLITE_PROTOCOL
    }
)


def default_path() -> Path:
    """Return the default database file: ``$AGENTX_DIR/data/agentx.db``.

    Without ``AGENTX_DIR`` that is ``~/.agentx/data/agentx.db``.
    """
    return data_file("agentx.db")


def _check_table(table: str) -> str:
    if not isinstance(table, str) or _TABLE_NAME.fullmatch(table) is None:
        raise ConfigurationError(
            f"SQLite table name {table!r} must be 1 to 63 ASCII letters, digits or underscores, "
            "not starting with a digit"
        )
    if table.lower().startswith("sqlite_"):
        raise ConfigurationError(
            f"SQLite table name {table!r} is reserved: names starting sqlite_ are"
        )
    return table


def _primary_code(error: sqlite3.Error) -> int | None:
    code = getattr(error, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def _error_text(error: BaseException) -> str:
    if str(error).startswith(_NOT_UTF8):
        # sqlite3's message quotes the cell, which may be a secret: say only what it was.
        return (
            "a cell holds TEXT that is not valid UTF-8; this driver writes only BLOB values and "
            "UTF-8 keys"
        )
    return str(error)


# SQLite's own messages quote no secret (a path at most, which errors name anyway).
_ERRORS = ErrorTable(
    is_unavailable=lambda error: isinstance(error, sqlite3.Error)
    and _primary_code(error) in _UNAVAILABLE_CODES,
    describe=_error_text,
)


def _fetch_all(conn: sqlite3.Connection, *, sql: str, params: tuple[object, ...]) -> list[Any]:
    return conn.execute(sql, params).fetchall()


class _NotBlob:
    """Stands for a value cell of another SQLite type, read in the scan's fallback mode."""

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind


def _describe_foreign(value: object) -> str:
    """Name what a value cell held, without showing its content (it may be secret)."""
    if isinstance(value, _NotBlob):
        return f"a {value.kind.upper()} value"
    kinds = {str: "TEXT", int: "INTEGER", float: "REAL", type(None): "NULL"}
    return f"a {kinds.get(type(value), type(value).__name__)} value"


@dataclass(frozen=True, slots=True)
class _Arguments:
    """The arguments of :func:`sqlite_driver`, handed to :class:`SQLiteDriver` as one value."""

    path: str | os.PathLike[str]
    table: str
    busy_timeout: float
    synchronous: str
    clock: Clock


class SQLiteDriver(BaseDriver):
    """Stores each key as one row of a table in a SQLite database.

    A new table is a rowid table with ``key`` its PRIMARY KEY (a unique index of the keys alone);
    a table made by a release before that is a ``WITHOUT ROWID`` table, used as it is. In the
    latter a lookup that passes a row holding a big value reads the whole value to compare keys
    (a miss next to a 1 MiB value cost 97 against 4.0 us); the key index never holds values.

    Build it with :func:`sqlite_driver` (or a ``sqlite://`` URL); the class is for annotations
    and ``isinstance``.

    Keys compare with SQLite's BINARY collation, that is byte by byte in UTF-8, which is code
    point order, so range scans agree with Python's ``sorted``. Batches (``set_many``,
    ``delete_many``) and ``clear`` are atomic, and a cancelled one leaves nothing behind.
    ``path`` is ``":memory:"`` for a private in-memory database (gone on close, never shared
    between instances).
    """

    name = "sqlite"
    inline = True
    supports_trio = True
    atomic_batches = True
    conditional_writes = True
    expiry = True

    def __init__(self, arguments: _Arguments) -> None:
        path, table, clock = arguments.path, arguments.table, arguments.clock
        busy_timeout, synchronous = arguments.busy_timeout, arguments.synchronous
        raw = os.fspath(path)
        if not isinstance(raw, str) or not raw:
            raise ConfigurationError(
                f"SQLite path must be a non-empty path or ':memory:', not {path!r}"
            )
        refuse_url_as_path(raw, "the SQLite path", "pass a URL to kvstore.create_storage()")
        self.in_memory: bool = raw == MEMORY
        #: The database file (absolute), or ``":memory:"``.
        self.path: str = raw if self.in_memory else str(Path(raw).expanduser().absolute())
        self.table: str = _check_table(table)
        self.busy_timeout: float = _check_busy_timeout(busy_timeout)
        self.synchronous: str = _check_synchronous(synchronous)
        self._errors = Translator(_ERRORS, driver=self.name, where=self.path)
        # The connection, once open. ``_conn`` is the same connection while any task may use it
        # at once, and None while it is not open yet, closed, or held by a transaction that
        # yields part way: the hot path tests that one attribute.
        self._db: sqlite3.Connection | None = None
        self._conn: sqlite3.Connection | None = None
        # One cursor of the connection for single-key writes, set before ``_conn`` is: a write
        # statement runs to completion in ``execute``, so nothing is left pending on it, and
        # reusing it saves allocating a cursor per write (a few percent of a ``set``).
        self._writer: sqlite3.Cursor
        # The same for point reads (a tenth of a ``get``). They read with ``fetchall``, which
        # steps the statement to its end and so resets it: a statement left pending on a kept
        # cursor would hold a read transaction open, pinning every later read to a stale
        # snapshot and stalling checkpoints.
        self._reader: sqlite3.Cursor
        self._open_lock: anyio.Lock | None = None
        self._gate = Gate()
        self._pacer = Pacer()
        # Checkpoints of the write-ahead log, off the event loop once the file is open in WAL
        # mode (not in memory, nor where the file system refuses WAL).
        self._checkpoints = Checkpointer(self.path, logger=_log)
        # "Now" for expiry: SQLite runs in this process, so this process's clock is the
        # backend's; processes sharing a file agree through the wall clock.
        self._clock = clock
        # When (monotonic) the next expiring write may purge a batch of expired rows.
        self._next_purge = 0.0

        quoted = f'"{self.table}"'
        # Not a name _TABLE_NAME allows (it has a colon), so no table of this driver's takes it.
        index = f'"{self.table}:expires_at"'
        added = "".join(f"{column} {definition}, " for column, definition, _ in _ADDED_COLUMNS)
        self._sql_create = (
            f"CREATE TABLE IF NOT EXISTS {quoted} ({_KEY_COLUMN}, {added}{_VALUE_COLUMN})"
        )
        self._sql_columns = f"PRAGMA table_info({quoted})"
        self._sql_add_column = {
            column: f"ALTER TABLE {quoted} ADD COLUMN {column} {definition}"
            for column, definition, _ in _ADDED_COLUMNS
        }
        # Expiring rows only (partial), so a write without a TTL never touches it: it finds the
        # expired rows to purge, oldest first, without reading the table. It holds the key so
        # that the purge reads only the index in a rowid table too (an index of a ``WITHOUT
        # ROWID`` table holds the key anyway, so on an old table the two are the same).
        self._sql_index_exists = "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?"
        self._index_name = index[1:-1]
        self._sql_create_index = (
            f"CREATE INDEX IF NOT EXISTS {index} ON {quoted} (expires_at, key) "
            "WHERE expires_at IS NOT NULL"
        )
        # A read-only file in an older layout: a temporary view (searched before the file's own
        # tables) shows the columns it lacks as what its rows read as, so every read works.
        self._sql_old_layout_view = (
            f"CREATE TEMP VIEW IF NOT EXISTS {quoted} AS SELECT key, value, {{columns}} "
            f"FROM main.{quoted}"
        )
        live = _LIVE.format(now="?2")
        # Point reads return the expiry and the driver compares it with now (see _expired):
        # reading the clock costs more than the statement, and only an expiring row needs it.
        self._sql_get = f"SELECT value, expires_at FROM {quoted} WHERE key = ?"
        self._sql_get_versioned = f"SELECT value, version, expires_at FROM {quoted} WHERE key = ?"
        self._sql_get_meta = (
            # length() and typeof() of a BLOB read its size from the row header, not its bytes.
            f"SELECT typeof(value), length(value), written_at, expires_at, version FROM {quoted} "
            f"WHERE key = ?1 AND {live}"
        )
        # Every write stores a new version and the write time with the value, in the one
        # statement; a plain write clears the expiry, an expiring one sets it (the last ?).
        write = (
            f"INSERT INTO {quoted} (key, value, version, written_at{{x}}) "
            "VALUES (?1, ?2, {version}{v}) ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
            "version = excluded.version, written_at = excluded.written_at, expires_at = {e}"
        )
        # With the version bound (?3), for the writes that return it (set_if, commit).
        self._sql_set = write.format(x="", version="?3, ?4", v="", e="NULL")
        # With the version made by SQLite, for the writes that return none (set, set_many and
        # their expiring forms): the parameters are the key, the value, the write time (and the
        # expiry).
        self._sql_put = write.format(x="", version=f"{_NEW_VERSION}, ?3", v="", e="NULL")
        self._sql_put_expiring = write.format(
            x=", expires_at", version=f"{_NEW_VERSION}, ?3", v=", ?4", e="excluded.expires_at"
        )
        # Create if absent: an expired row counts as absent, and is overwritten (?4 is now).
        self._sql_create_if_absent = (
            f"{self._sql_set} WHERE expires_at IS NOT NULL AND expires_at <= ?4"
        )
        self._sql_replace_if = (
            f"UPDATE {quoted} SET value = ?1, version = ?2, written_at = ?5, expires_at = NULL "
            f"WHERE key = ?3 AND version = ?4 AND {_LIVE.format(now='?5')}"
        )
        self._sql_expire = (
            f"UPDATE {quoted} SET expires_at = ?1 WHERE key = ?2 AND {_LIVE.format(now='?3')}"
        )
        self._sql_delete = f"DELETE FROM {quoted} WHERE key = ?"
        self._sql_delete_if = (
            f"DELETE FROM {quoted} WHERE key = ?1 AND version = ?2 AND {_LIVE.format(now='?3')}"
        )
        # ``IN`` lists: the first parameter is now, the keys follow.
        self._sql_select_in = (
            f"SELECT key, value FROM {quoted} WHERE {_LIVE.format(now='?')} AND key IN "
        )
        # The text of each padded ``IN`` query, by (query, list length); see _in_query.
        self._in_sql: dict[tuple[str, int], str] = {}
        self._sql_meta_in = (
            f"SELECT key, typeof(value), length(value), written_at, expires_at, version "
            f"FROM {quoted} WHERE {_LIVE.format(now='?')} AND key IN "
        )
        self._sql_versions_in = (
            f"SELECT key, version FROM {quoted} WHERE {_LIVE.format(now='?')} AND key IN "
        )
        # Up to ?2 expired rows (by ?1, now), found through the expiry index, oldest first.
        self._sql_purge = (
            f"DELETE FROM {quoted} WHERE key IN (SELECT key FROM {quoted} "
            "WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2)"
        )
        # Clears delete a chunk of the range per statement, so that a large one yields part way.
        self._sql_clear = {
            bounded: f"DELETE FROM {quoted} WHERE key IN (SELECT key FROM {quoted} "
            f"WHERE key >= ?{' AND key < ?' if bounded else ''} ORDER BY key LIMIT ?)"
            for bounded in (True, False)
        }
        # Scans: [first page uses >=, later pages >] x [bounded above, open ended].
        self._sql_scan: dict[tuple[bool, bool, str], str] = {}
        # Key scans: the same without the per-key expiry check, reading no row at all (a limit
        # of 0) when any row has expired by ?2 (now), as one probe of the expiry index finds;
        # see _fetch_keys.
        self._sql_scan_all: dict[tuple[bool, bool], str] = {}
        no_row_expired = (
            f"CASE WHEN EXISTS (SELECT 1 FROM {quoted} WHERE expires_at <= ?2) THEN 0 ELSE ?3 END"
        )
        # The same in the fallback mode for tables holding cells that are not valid UTF-8: every
        # cell read as bytes with its type, and the start bound (?1) given as bytes with its
        # type (?2), since such a key cannot be passed back as a Python str.
        self._sql_scan_raw: dict[tuple[bool, bool, str], str] = {}
        for first in (True, False):
            for bounded in (True, False):
                for columns, raw_columns in (
                    ("key", "CAST(key AS BLOB), typeof(key)"),
                    (
                        "key, value",
                        "CAST(key AS BLOB), typeof(key), CAST(value AS BLOB), typeof(value)",
                    ),
                ):
                    # Expired rows are skipped here, reading the expiry cell of the key's row:
                    # in a new table it sits before the value, so no value page is read.
                    # Parameters: ?1 the start, ?2 now, ?3 the limit, ?4 the end.
                    where = "key >= ?1" if first else "key > ?1"
                    if bounded:
                        where += " AND key < ?4"
                    if columns == "key":
                        # Without the expiry check, when no row has expired (see
                        # _fetch_keys). SQLite reckons a LIMIT once, before the first row, and
                        # a limit of 0 skips the range; a term of the WHERE clause would be
                        # tested on every row.
                        self._sql_scan_all[first, bounded] = (
                            f"SELECT key FROM {quoted} WHERE {where} ORDER BY key "
                            f"LIMIT {no_row_expired}"
                        )
                    where += f" AND {_LIVE.format(now='?2')}"
                    self._sql_scan[first, bounded, columns] = (
                        f"SELECT {columns} FROM {quoted} WHERE {where} ORDER BY key LIMIT ?3"
                    )
                    start = "CASE WHEN ?2 = 'text' THEN CAST(?1 AS TEXT) ELSE ?1 END"
                    raw_where = f"key {'>=' if first else '>'} {start}"
                    if bounded:
                        raw_where += " AND key < ?3"
                    raw_where += f" AND {_LIVE.format(now='?5')}"
                    self._sql_scan_raw[first, bounded, columns] = (
                        f"SELECT {raw_columns} FROM {quoted} WHERE {raw_where} "
                        "ORDER BY key LIMIT ?4"
                    )

    def __repr__(self) -> str:
        return f"SQLiteDriver(path={self.path!r}, table={self.table!r})"

    # -- connection ---------------------------------------------------------------------------

    async def _connection(self) -> sqlite3.Connection:
        """Return the connection once this task may use it; no await follows the return."""
        while True:
            self.ensure_open()
            conn = self._conn
            if conn is not None:
                return conn
            if self._gate.closed:
                await self._gate.wait()
                continue
            # Created here rather than in __init__: no await separates the test from the
            # assignment, so concurrent first uses share one lock, and the constructor stays
            # free of event-loop state.
            if self._open_lock is None:
                self._open_lock = anyio.Lock()
            async with self._open_lock:
                self.ensure_open()
                if self._db is None:
                    conn = await self._open()
                    self._checkpoints.start(conn)
                    self._writer = conn.cursor()
                    self._reader = conn.cursor()
                    self._db = self._conn = conn

    async def _turn(self) -> sqlite3.Connection:
        """The slow path of every statement: yield if a slice has passed, then wait for the
        connection to be free (open, and not inside another task's transaction)."""
        self._checkpoints.nudge()
        if self._pacer.due():
            await self._pacer.pause()
        return await self._connection()

    async def _open(self) -> sqlite3.Connection:
        # Inline like every statement: it runs once per driver and takes microseconds locally.
        if not self.in_memory:
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise BackendUnavailable(
                    f"cannot create the directory for the database: {error.strerror or error}",
                    driver=self.name,
                    where=self.path,
                ) from error
        backoff = self._lock_wait()
        while True:
            try:
                return self._connect_once()
            except sqlite3.Error as error:
                if not _is_busy(error):
                    raise self._translate(error, "cannot open the database") from error
                if not await backoff.wait():
                    raise self._locked_too_long() from error
                self.ensure_open()

    def _connect_once(self) -> sqlite3.Connection:
        # check_same_thread is off because a driver built on one thread may be used from an
        # event loop on another; the driver itself only ever uses it from one loop at a time.
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, cached_statements=64
        )
        try:
            conn.execute("PRAGMA busy_timeout = 0")
            if not self.in_memory:
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
            conn.execute(self._sql_create)
            self._upgrade_layout(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _upgrade_layout(self, conn: sqlite3.Connection) -> None:
        """Add the columns and the expiry index a table made by an earlier version lacks.

        Each step is idempotent, so every connection runs them all on open: the check costs a
        ``PRAGMA`` read and a schema lookup. Processes opening an old file at once race to add a
        column; one wins, the others get "duplicate column name", which means the step is done
        (an index made meanwhile by another process is seen by ``IF NOT EXISTS``). A locked
        database raises, and :meth:`_open` retries the whole connect after a backoff. Building
        the expiry index on an old table reads the table once, the first time only.
        """
        present = {row[1] for row in conn.execute(self._sql_columns)}
        try:
            for column, _, _ in _ADDED_COLUMNS:
                if column not in present:
                    self._add_column(conn, column)
            if conn.execute(self._sql_index_exists, (self._index_name,)).fetchone() is None:
                conn.execute(self._sql_create_index)
        except sqlite3.OperationalError as error:
            if _primary_code(error) != _SQLITE_READONLY:
                raise
            # A file this process may only read keeps its layout. Reads see the columns it
            # lacks as their defaults, which is what its rows would read as once upgraded
            # (never expiring, at the legacy version); writes fail as on any read-only file.
            self._show_old_layout(conn, present)

    def _add_column(self, conn: sqlite3.Connection, column: str) -> None:
        try:
            conn.execute(self._sql_add_column[column])
        except sqlite3.OperationalError as error:
            if _DUPLICATE_COLUMN not in str(error):
                raise

    def _show_old_layout(self, conn: sqlite3.Connection, present: set[str]) -> None:
        """Give a read-only connection to an old table a view of it in the current layout."""
        if all(column in present for column, _, _ in _ADDED_COLUMNS):
            return  # only the index is missing: reads work as they are
        columns = ", ".join(
            column if column in present else f"{old} AS {column}"
            for column, _, old in _ADDED_COLUMNS
        )
        conn.execute(self._sql_old_layout_view.format(columns=columns))

    # -- running statements -------------------------------------------------------------------

    def _locked_too_long(self) -> BackendUnavailable:
        return BackendUnavailable(
            f"another connection kept the database locked for longer than busy_timeout="
            f"{self.busy_timeout:g}s",
            driver=self.name,
            where=self.path,
        )

    def _translate(self, error: sqlite3.Error, doing: str) -> BackendError:
        return self._errors.error(error, doing)

    def _foreign_value(self, key: str, value: object) -> BackendError:
        return BackendError(
            f"the row under key {_shown(key)} holds {_describe_foreign(value)}, not a BLOB; "
            "this driver did not write it (delete the key or rewrite it with set_raw)",
            driver=self.name,
            where=self.path,
        )

    def _foreign_version(self, key: str, version: object) -> BackendError:
        return BackendError(
            f"the row under key {_shown(key)} holds {_describe_foreign(version)} as its "
            "version, not an integer; this driver did not write it (rewrite it with set_raw)",
            driver=self.name,
            where=self.path,
        )

    def _lock_wait(self) -> LockWait:
        # The shared lock backoff (kvstore.sqlite_common), logging long waits on kvstore.sqlite.
        return LockWait(self.busy_timeout, where=self.path, logger=_log)

    async def _retry(
        self, operation: Callable[[sqlite3.Connection], _T], error: sqlite3.Error, doing: str
    ) -> _T:
        """Handle ``error`` from a first inline try: retry while the database is locked."""
        backoff = self._lock_wait()
        while True:
            if not _is_busy(error):
                raise self._translate(error, doing) from error
            if not await backoff.wait():
                raise self._locked_too_long() from error
            conn = await self._connection()
            try:
                return operation(conn)
            except sqlite3.Error as again:
                error = again

    async def _run(self, operation: Callable[[sqlite3.Connection], _T], doing: str) -> _T:
        conn = self._conn
        if conn is None or monotonic() >= self._pacer.deadline:
            conn = await self._turn()
        try:
            return operation(conn)
        except sqlite3.Error as error:
            return await self._retry(operation, error, doing)

    async def _transaction(
        self, doing: str, begin: str, start: Callable[[], Callable[[sqlite3.Connection], bool]]
    ) -> None:
        """Run a step until it returns False, all inside one transaction.

        ``start`` makes a fresh step for each attempt (a locked database restarts the whole
        transaction after a backoff). Each step runs one bounded statement. When a slice has
        passed the driver yields between steps, holding the connection so that no other task's
        statement runs inside this transaction; cancellation there rolls the transaction back.
        ``BEGIN IMMEDIATE`` takes the write lock up front, so a conflict shows at the start.
        """
        backoff: LockWait | None = None
        while True:
            conn = self._conn
            if conn is None or monotonic() >= self._pacer.deadline:
                conn = await self._turn()
            held = False
            try:
                conn.execute(begin)
                step = start()
                while step(conn):
                    if monotonic() < self._pacer.deadline:
                        continue
                    if not held:
                        self._conn = None
                        self._gate.close()
                        held = True
                    await self._pacer.pause()
                    self.ensure_open()
                conn.execute("COMMIT")
                return
            except BaseException as error:
                # A closed driver's connection is gone, and its transaction with it.
                if self._db is conn and conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                if not isinstance(error, sqlite3.Error):
                    raise
                if not _is_busy(error):
                    raise self._translate(error, doing) from error
                backoff = backoff or self._lock_wait()
                failure = error
            finally:
                if held:
                    if self._db is conn:
                        self._conn = conn
                    self._gate.open()
            if not await backoff.wait():
                raise self._locked_too_long() from failure

    # -- primitives ---------------------------------------------------------------------------

    # The try_* twins answer Storage's hot path without a coroutine (Storage.get awaits
    # driver.get only when try_get declines): ours/raw went from 0.87 to 0.90 on get and 0.88 to
    # 0.96 on a miss (CPU time, paired rounds in one process). They decline (LATER / False) when
    # the connection is not free, a slice has passed (the pacer's turn), or the statement
    # failed: the awaited method then runs it again and retries a locked database or raises. A
    # failed statement changed nothing (each runs in its own autocommit transaction), so running
    # it again is safe for writes too.

    def try_get(self, key: str) -> bytes | Later | None:
        # docstring inherited
        if self._conn is None or monotonic() >= self._pacer.deadline:
            return LATER
        try:
            rows = self._reader.execute(self._sql_get, (key,)).fetchall()
        except sqlite3.Error:
            return LATER
        if not rows:
            return None
        value, expires_at = rows[0]
        if expires_at is not None and self._expired(expires_at):
            return None
        return value if type(value) is bytes else LATER  # get raises for a foreign value

    def try_set(self, key: str, value: bytes) -> bool:
        # docstring inherited
        if self._conn is None or monotonic() >= self._pacer.deadline:
            return False
        try:
            # now_millis(self._clock), inlined as in set.
            self._writer.execute(self._sql_put, (key, value, round(self._clock() * 1000)))
        except sqlite3.Error:
            return False
        return True

    def try_delete(self, key: str) -> bool:
        # docstring inherited
        if self._conn is None or monotonic() >= self._pacer.deadline:
            return False
        try:
            self._writer.execute(self._sql_delete, (key,))
        except sqlite3.Error:
            return False
        return True

    async def get(self, key: str) -> bytes | None:
        """Return the value stored under ``key``, or ``None`` if there is none (or it expired).

        A row this driver did not write whose value is not a BLOB raises
        :class:`~kvstore.errors.BackendError` naming the key.
        """
        conn = self._conn
        if conn is None or monotonic() >= self._pacer.deadline:
            conn = await self._turn()
        try:
            rows = self._reader.execute(self._sql_get, (key,)).fetchall()
        except sqlite3.Error as error:
            if str(error).startswith(_NOT_UTF8):
                raise self._foreign_value(key, _NotBlob("text")) from None
            sql = self._sql_get
            rows = await self._retry(lambda c: c.execute(sql, (key,)).fetchall(), error, "get")
        if not rows:
            return None
        value, expires_at = rows[0]
        if expires_at is not None and self._expired(expires_at):
            return None
        if type(value) is bytes:
            return value
        raise self._foreign_value(key, value)

    def _expired(self, expires_at: object) -> bool:
        """Whether a row read just now with this expiry instant has expired.

        Point reads call it right after the row is fetched, with no await between, so the value
        they return was live at the instant the clock was read: exact, and a row without an
        expiry costs no clock read. A cell another program wrote that is not a number never
        expires, as it compares in SQL (text sorts after every number).
        """
        return isinstance(expires_at, int | float) and expires_at <= now_millis(self._clock)

    async def set(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``, replacing any value whole, at a new version.

        The key never expires (an earlier expiry is cleared); its write time is now.
        """
        conn = self._conn
        if conn is None or monotonic() >= self._pacer.deadline:
            conn = await self._turn()
        # now_millis(self._clock), inlined: its two Python calls cost a few percent of a set.
        params = (key, value, round(self._clock() * 1000))
        try:
            self._writer.execute(self._sql_put, params)
        except sqlite3.Error as error:
            sql = self._sql_put
            await self._retry(lambda c: c.execute(sql, params), error, "set")

    async def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""
        conn = self._conn
        if conn is None or monotonic() >= self._pacer.deadline:
            conn = await self._turn()
        try:
            self._writer.execute(self._sql_delete, (key,))
        except sqlite3.Error as error:
            sql = self._sql_delete
            await self._retry(lambda c: c.execute(sql, (key,)), error, "delete")

    # -- conditional writes -------------------------------------------------------------------

    async def get_versioned(self, key: str) -> Versioned[bytes] | None:
        """Return the value of ``key`` with its version (one ``SELECT``), or ``None``.

        Rows written before the layout had versions read at
        :data:`~kvstore.conditional.LEGACY_VERSION`. An expired key is ``None``. A value that is
        not a BLOB raises, as :meth:`get` does.
        """
        conn = self._conn
        if conn is None or monotonic() >= self._pacer.deadline:
            conn = await self._turn()
        sql = self._sql_get_versioned
        try:
            row = conn.execute(sql, (key,)).fetchone()
        except sqlite3.Error as error:
            if str(error).startswith(_NOT_UTF8):
                raise self._foreign_value(key, _NotBlob("text")) from None
            row = await self._retry(lambda c: c.execute(sql, (key,)).fetchone(), error, "get")
        if row is None:
            return None
        value, version, expires_at = row
        if expires_at is not None and self._expired(expires_at):
            return None
        if type(value) is not bytes:
            raise self._foreign_value(key, value)
        if type(version) is not int:
            raise self._foreign_version(key, version)
        return Versioned(value, version)

    async def set_if(self, key: str, value: bytes, expected: int | None) -> int:
        """Write ``value`` only if ``key`` is at version ``expected`` (``None``: absent).

        One statement, atomic on its own: an insert that does nothing when a live key exists
        (an expired one is absent, and overwritten), or an update filtered on the version and on
        the key being live. The number of rows it changed tells whether the condition held. The
        key never expires after it. Returns the new version; raises
        :class:`~kvstore.errors.Conflict`.
        """
        version = new_version()
        now = now_millis(self._clock)
        params: tuple[object, ...]
        if expected is None:
            sql, params = self._sql_create_if_absent, (key, value, version, now)
        else:
            sql, params = self._sql_replace_if, (value, version, key, expected, now)
        if await self._changed(sql, params, "set_if") == 0:
            raise conflict([key])
        return version

    async def delete_if(self, key: str, expected: int) -> None:
        """Delete ``key`` only if it is live at version ``expected``, in one statement.

        Raises :class:`~kvstore.errors.Conflict`, deleting nothing, otherwise.
        """
        params = (key, expected, now_millis(self._clock))
        if await self._changed(self._sql_delete_if, params, "delete_if") == 0:
            raise conflict([key])

    async def _changed(self, sql: str, params: tuple[object, ...], doing: str) -> int:
        """Run one write statement; return how many rows it changed."""
        conn = self._conn
        if conn is None or monotonic() >= self._pacer.deadline:
            conn = await self._turn()
        try:
            return self._writer.execute(sql, params).rowcount
        except sqlite3.Error as error:
            return await self._retry(lambda c: c.execute(sql, params).rowcount, error, doing)

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        """Apply ``changes`` if every condition holds, all in one transaction; else raise.

        The conditions are read and the changes written inside one ``BEGIN IMMEDIATE``
        transaction: the write lock is held from the start, so no other connection or process
        writes between the check and the writes. A failed condition raises
        :class:`~kvstore.errors.Conflict` naming every failing key and rolls back, writing
        nothing. An expired key is absent to the conditions, and every write clears the key's
        expiry. The work runs a bounded chunk of changes per step (a query of their versions,
        then their writes and deletes), yielding between steps like a batch; a cancelled commit
        rolls back. A commit of checks alone reads in a plain transaction (one snapshot) and
        takes no lock. A commit of one write or delete is that one statement, which is atomic
        on its own (see :meth:`_commit_one`).
        """
        self.ensure_open()
        versions: list[int | None] = [None] * len(changes)
        if not changes:
            return versions
        one = changes[0] if len(changes) == 1 else None
        if one is not None and (
            one.action is Action.WRITE or (one.action is Action.DELETE and one.expected is not None)
        ):
            return [await self._commit_one(one)]
        writes = any(change.action is not Action.CHECK for change in changes)
        select, upsert, delete = self._sql_versions_in, self._sql_set, self._sql_delete
        check_steps = -(-len(changes) // _IN_CHUNK)

        def start() -> Callable[[sqlite3.Connection], bool]:
            failed: list[str] = []
            steps_done = 0
            # One instant for the whole commit: what is expired, and every write's time.
            now = now_millis(self._clock)

            def step(conn: sqlite3.Connection) -> bool:
                nonlocal steps_done
                index = steps_done
                steps_done += 1
                if index < check_steps:
                    part = changes[index * _IN_CHUNK : (index + 1) * _IN_CHUNK]
                    conditioned = [c for c in part if c.expected is not ANY_VERSION]
                    if conditioned:
                        found = conn.execute(
                            *self._in_query(select, now, [c.key for c in conditioned])
                        )
                        current = dict(found.fetchall())
                        failed.extend(
                            c.key for c in conditioned if not c.holds_for(current.get(c.key))
                        )
                    if index + 1 < check_steps:
                        return True
                    if failed:
                        raise conflict(failed)  # _transaction rolls back
                    return writes
                first = (index - check_steps) * _WRITE_CHUNK
                rows: list[tuple[str, bytes | None, int, int]] = []
                gone: list[tuple[str]] = []
                for offset, change in enumerate(changes[first : first + _WRITE_CHUNK], first):
                    if change.action is Action.WRITE:
                        version = versions[offset] = new_version()
                        rows.append((change.key, change.value, version, now))
                    elif change.action is Action.DELETE:
                        gone.append((change.key,))
                if rows:
                    conn.executemany(upsert, rows)
                if gone:
                    conn.executemany(delete, gone)
                return first + _WRITE_CHUNK < len(changes)

            return step

        await self._transaction("commit", "BEGIN IMMEDIATE" if writes else "BEGIN", start)
        return versions

    async def _commit_one(self, change: Change[bytes]) -> int | None:
        """A commit of one write, or of one delete of any version or of a given one: one
        statement, atomic on its own.

        The conditional forms are :meth:`set_if` and :meth:`delete_if`; an unconditional write
        is the upsert of a batch. A transaction (``BEGIN IMMEDIATE``, the statement, ``COMMIT``)
        cost three statements for the work of one (one put through Storage: 55-77 us now,
        67-116 before, in alternating runs).
        """
        key, expected = change.key, change.expected
        if change.action is Action.DELETE:
            if expected is ANY_VERSION:
                await self.delete(key)
            else:
                assert expected is not None  # as is a delete conditioned on absence
                await self.delete_if(key, expected)
            return None
        assert change.action is Action.WRITE  # commit keeps checks in the transaction
        value = change.value
        assert value is not None  # a write carries its value
        if expected is not ANY_VERSION:
            return await self.set_if(key, value, expected)
        version = new_version()
        await self._changed(self._sql_set, (key, value, version, now_millis(self._clock)), "commit")
        return version

    # -- expiry and metadata ------------------------------------------------------------------

    async def set_expiring(self, key: str, value: bytes, ttl: float) -> None:
        """Store ``value`` under ``key`` at a new version, to expire ``ttl`` seconds from now.

        One statement: the write time and the expiry instant (now plus the TTL, in whole
        milliseconds on this driver's clock) are written with the value.
        """
        now = now_millis(self._clock)
        params = (key, value, now, expiry_millis(now, ttl))
        await self._expiring_write("set_expiring", self._sql_put_expiring, params, now)

    async def set_many_expiring(self, items: Sequence[tuple[str, bytes]], ttl: float) -> None:
        """Store every pair in one transaction, each to expire ``ttl`` seconds from now.

        All or nothing, paced and cancellable like :meth:`set_many`; one instant for the batch;
        a later pair for a key wins.
        """
        self.ensure_open()
        if not items:
            return
        now = now_millis(self._clock)
        expires_at = expiry_millis(now, ttl)
        await self._write_chunks(
            "set_many_expiring",
            self._sql_put_expiring,
            len(items),
            lambda start, stop: _with_write_time(
                items[start:stop], written_at=now, expires_at=expires_at
            ),
            purge_at=now if self._purge_due() else None,
        )

    async def expire(self, key: str, ttl: float | None) -> bool:
        """Make a live ``key`` expire ``ttl`` seconds from now, or never (``None``).

        One ``UPDATE`` filtered on the key being live: value, version and write time stay.
        Returns whether it changed a row (False for a missing or expired key).
        """
        now = now_millis(self._clock)
        expires_at = None if ttl is None else expiry_millis(now, ttl)
        params = (expires_at, key, now)
        return await self._expiring_write("expire", self._sql_expire, params, now) > 0

    async def get_meta(self, key: str) -> Meta | None:
        """Return the size, write time, expiry and version of a live ``key``, or ``None``.

        One ``SELECT``. The size comes from the row's header (``length`` of a BLOB), so the
        value is not read. Rows from before write times were kept have ``written_at`` None.
        """
        conn = self._conn
        if conn is None or monotonic() >= self._pacer.deadline:
            conn = await self._turn()
        sql, params = self._sql_get_meta, (key, now_millis(self._clock))
        try:
            row = conn.execute(sql, params).fetchone()
        except sqlite3.Error as error:
            row = await self._retry(lambda c: c.execute(sql, params).fetchone(), error, "get_meta")
        return None if row is None else self._meta_of(key, *row)

    def _meta_of(
        self,
        key: str,
        kind: str,
        size: int,
        written_at: int | None,
        expires_at: int | None,
        version: object,
    ) -> Meta:
        """The :class:`Meta` of a row read by a metadata query; a foreign row raises."""
        if kind != "blob":
            raise self._foreign_value(key, _NotBlob(kind))
        if type(version) is not int:
            raise self._foreign_version(key, version)
        return Meta(
            size=size,
            written_at=None if written_at is None else from_millis(written_at),
            expires_at=None if expires_at is None else from_millis(expires_at),
            version=version,
        )

    async def get_meta_many(self, keys: Sequence[str]) -> list[Meta | None]:
        """:meth:`get_meta` of each of ``keys`` in order: an ``IN`` query per 500 keys, read at
        one instant (one read transaction); sizes come from the rows' headers, as there."""
        self.ensure_open()
        if not keys:
            return []
        rows = await self._rows_in(self._sql_meta_in, keys, "get_meta_many")
        found = {row[0]: self._meta_of(*row) for row in rows}
        return [found.get(key) for key in keys]

    async def purge_expired(self, limit: int = 1000) -> int:
        """Delete up to ``limit`` expired rows, oldest expiry first; return how many.

        The rows are found through the expiry index, so the work follows the rows removed, not
        the table's size. A statement per chunk, each its own transaction: a big purge holds
        neither the write lock nor the event loop for long.
        """
        self.ensure_open()
        now = now_millis(self._clock)
        removed = 0
        while removed < limit:
            batch = min(_WRITE_CHUNK, limit - removed)
            deleted = await self._changed(self._sql_purge, (now, batch), "purge_expired")
            removed += deleted
            if deleted < batch:
                break
        return removed

    def _purge_due(self) -> bool:
        """Whether an expiring write should purge now: at most once a second per driver."""
        moment = monotonic()
        if moment < self._next_purge:
            return False
        self._next_purge = moment + _AUTO_PURGE_EVERY
        return True

    async def _expiring_write(
        self, doing: str, sql: str, params: tuple[object, ...], now: int
    ) -> int:
        """Run one expiring write; return how many rows it changed.

        When a purge is due the write and a purge of a small batch of rows expired by ``now``
        run in one transaction, under the write lock the write takes anyway; otherwise the write
        is a statement on its own.
        """
        if not self._purge_due():
            return await self._changed(sql, params, doing)
        purge = self._sql_purge
        changed = 0

        def start() -> Callable[[sqlite3.Connection], bool]:
            def step(conn: sqlite3.Connection) -> bool:
                nonlocal changed
                changed = conn.execute(sql, params).rowcount
                conn.execute(purge, (now, _AUTO_PURGE))
                return False

            return step

        await self._transaction(doing, "BEGIN IMMEDIATE", start)
        return changed

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Yield each key that starts with ``prefix`` once, in ascending code point order.

        Rows whose key breaks the key rules (written by another program) are skipped, with a
        warning logged. Closing the driver stops the scan with ``StorageClosed`` once the page in
        hand (at most 1,000 keys, already read) is handed out.
        """
        # The page loop of _pages written out here: an async generator between the query and
        # the caller cost a step per page and its setup per scan (2-5 % of a scan of 100 to
        # 1,000 keys, more of a small one).
        self.ensure_open()
        end = prefix_successor(prefix)
        first, start = True, prefix
        while True:
            rows = await self._scan_page(start, first, end, "key", _KEY_PAGE)
            if rows is None:  # TEXT that is not UTF-8: the rest as bytes
                async for raw_rows in self._raw_pages(start, first, end, "key", _KEY_PAGE):
                    for key in self._valid_only([row[0] for row in raw_rows]):
                        yield key
                    if self._closed:
                        self.ensure_open()
                return
            more = len(rows) > _KEY_PAGE
            if more:
                del rows[_KEY_PAGE:]
            keys = list(map(_first_column, rows))
            if not all_valid_fetched_keys(keys):
                keys = self._valid_only(keys)
            for key in keys:
                yield key
            # Once a page rather than once a key: the check per key was a twentieth of a scan,
            # and the page is in memory, so finishing it reads nothing from a closed driver.
            if self._closed:
                self.ensure_open()
            if not more:
                return
            first, start = False, rows[-1][0]

    async def items(self, prefix: str = "") -> AsyncIterator[tuple[str, bytes]]:
        """Yield ``(key, value)`` for each key that starts with ``prefix``, in key order.

        Rows whose key breaks the key rules are skipped (logged); a valid key whose value is
        not a BLOB raises :class:`~kvstore.errors.BackendError`, as :meth:`get` does. Closing
        the driver stops the scan with ``StorageClosed`` once the page in hand (at most 64
        items, already read) is handed out.
        """
        async for rows in self._pages(prefix, "key, value", _ITEM_PAGE):
            keys = [row[0] for row in rows]
            valid = keys if all_valid_fetched_keys(keys) else set(self._valid_only(keys))
            for key, value in rows:
                if valid is not keys and key not in valid:
                    continue
                if type(value) is not bytes:
                    raise self._foreign_value(key, value)
                yield key, value
            # Once a page, as in keys.
            if self._closed:
                self.ensure_open()

    def _valid_only(self, keys: list[Any]) -> list[str]:
        """Return the valid keys of a page, logging each row skipped."""
        valid: list[str] = []
        for key in keys:
            try:
                valid.append(validate_key(key))
            except InvalidKey as error:
                _log.warning(
                    "sqlite table %s in %s: skipped a row this driver did not write: %s",
                    self.table,
                    self.path,
                    error,
                )
        return valid

    async def _pages(self, prefix: str, columns: str, page: int) -> AsyncIterator[list[Any]]:
        """Yield pages of rows whose keys start with ``prefix``, in key order, one per query
        (see :meth:`_scan_page`); :meth:`keys` runs the same loop written out."""
        self.ensure_open()
        end = prefix_successor(prefix)
        first = True
        start: object = prefix
        while True:
            rows = await self._scan_page(start, first, end, columns, page)
            if rows is None:
                async for raw_rows in self._raw_pages(start, first, end, columns, page):
                    yield raw_rows
                return
            if len(rows) <= page:
                if rows:
                    yield rows
                return
            del rows[page:]
            yield rows
            first, start = False, rows[-1][0]

    async def _scan_page(
        self, start: object, first: bool, end: str | None, columns: str, page: int
    ) -> list[Any] | None:
        """Up to ``page + 1`` rows from ``start`` on (after it unless ``first``), below ``end``.

        Each page is fetched whole before it is handed out, so no cursor stays open while the
        caller runs (it may write, or abandon the scan); the next page starts after the last key
        seen, so keys written or deleted meanwhile neither repeat nor break the scan. Expired
        rows are left out by the query, from their expiry cell, without reading their values.
        ``None`` says the range holds a TEXT cell that is not UTF-8: the scan then goes on with
        :meth:`_raw_pages`, reading cells as bytes.

        The row past a page tells the caller to go on (from the page's last key, so that row is
        read again); without it, the scan is over. A match count that is a whole number of pages
        so ends without an extra, empty query.
        """
        bounded = end is not None
        sql = self._sql_scan[first, bounded, columns]
        # Each page reads the clock: a key that expires during a long scan is not yielded.
        now = now_millis(self._clock)
        params = (start, now, page + 1, end) if bounded else (start, now, page + 1)
        fetch = (
            partial(self._fetch_keys, unchecked=self._sql_scan_all[first, bounded])
            if columns == "key"
            else _fetch_all
        )
        try:
            rows: list[Any] = await self._run(partial(fetch, sql=sql, params=params), "scan keys")
        except BackendError as error:
            if not isinstance(error.__cause__, sqlite3.Error) or not str(
                error.__cause__
            ).startswith(_NOT_UTF8):
                raise
            return None
        return rows

    def _fetch_keys(
        self, conn: sqlite3.Connection, *, sql: str, unchecked: str, params: tuple[object, ...]
    ) -> list[Any]:
        """Fetch a page of keys, reading the key index alone when no row has expired.

        In a rowid table the key index holds no expiry, so the check in ``sql`` seeks each key's
        row. ``unchecked`` reads the same range from the key index alone, in one statement (so
        one snapshot) that first asks the expiry index whether any row has expired at now
        (``params[1]``) and then reads no row if one has. So a page it returns is right as it
        is; an empty answer means either no key in the range or an expired row somewhere, and
        ``sql`` then gives the page. A 1,000-key page: 277 against 248 us, a scan of the key
        index alone 245 us (SQL only, CPU time, 9 rounds; the check folded into one statement as
        ``NOT EXISTS (...) OR ...`` still cost 277, since SQLite tests a WHERE term holding a
        subquery on every row). The probe used to run before the page, in a read transaction
        of their own (BEGIN, probe, page, COMMIT): one statement instead of four took a scan of
        one key through Storage from 19 to 15 us (raw sqlite3: 6), and a 1,000-key scan 1.02
        times as fast (CPU time, paired rounds in one process).
        """
        rows = conn.execute(unchecked, params).fetchall()
        return rows if rows else conn.execute(sql, params).fetchall()

    async def _raw_pages(
        self, start: object, first: bool, end: str | None, columns: str, page: int
    ) -> AsyncIterator[list[Any]]:
        """The rest of a scan, reading every cell as bytes: for tables holding TEXT that is not
        UTF-8. Such keys come out as ``bytes`` (invalid, so skipped) and values that are not
        BLOBs as :class:`_NotBlob`."""
        bounded = end is not None
        start_raw: object = start.encode("utf-8") if isinstance(start, str) else start
        start_kind = "text" if isinstance(start, str) else "blob"
        while True:
            sql = self._sql_scan_raw[first, bounded, columns]
            # ?3 is unused when the scan is open ended; SQLite still counts it.
            params = (start_raw, start_kind, end, page, now_millis(self._clock))
            cells = await self._run(partial(_fetch_all, sql=sql, params=params), "scan keys")
            rows = [_decode_raw_row(cell) for cell in cells]
            if rows:
                yield rows
            if len(cells) < page:
                return
            first, start_raw, start_kind = False, cells[-1][0], cells[-1][1]

    async def close(self) -> None:
        """Close the connection; idempotent. Later use raises ``StorageClosed``.

        A transaction in progress in another task is rolled back.
        """
        self.mark_closed()
        conn, self._db, self._conn = self._db, None, None
        if conn is None:
            return
        await self._checkpoints.stop()
        try:
            conn.close()
        except sqlite3.Error as error:
            raise self._translate(error, "close") from error

    def _in_query(self, select: str, now: int, keys: list[str]) -> tuple[str, list[object]]:
        """The statement and parameters of ``select`` (an ``IN`` query) for ``keys``.

        The list is padded with repeats of its last key (a row matches ``IN`` once however often
        its key is listed) to one of a few lengths, so that batches of any size share a dozen
        statements: a distinct statement per length would fill the connection's statement
        cache and push out the hot ones (a ``get`` after ``get_many`` calls of sizes 1-100 cost
        a fresh prepare: 92 against 72 us a pair).
        """
        width = _in_width(len(keys))
        sql = self._in_sql.get((select, width))
        if sql is None:
            sql = self._in_sql[select, width] = f"{select}({','.join('?' * width)})"
        return sql, [now, *keys, *[keys[-1]] * (width - len(keys))]

    # -- batches ------------------------------------------------------------------------------

    async def _rows_in(self, select: str, keys: Sequence[str], operation: str) -> list[Any]:
        """The rows ``select`` (an ``IN`` query) finds for the distinct ``keys``, at one instant.

        A query per chunk of keys; several chunks share one read transaction, so that they see
        one state of the table even when the driver yields between them.
        """
        unique = list(dict.fromkeys(keys))
        chunks = [unique[i : i + _IN_CHUNK] for i in range(0, len(unique), _IN_CHUNK)]
        rows: list[Any] = []

        # One instant for every chunk, like the one snapshot they read.
        now = now_millis(self._clock)

        def read(conn: sqlite3.Connection, chunk: list[str]) -> None:
            rows.extend(conn.execute(*self._in_query(select, now, chunk)).fetchall())

        if len(chunks) == 1:
            await self._run(lambda conn: read(conn, chunks[0]), operation)
            return rows

        def start() -> Callable[[sqlite3.Connection], bool]:
            rows.clear()
            remaining = iter(chunks)

            def step(conn: sqlite3.Connection) -> bool:
                chunk = next(remaining, None)
                if chunk is None:
                    return False
                read(conn, chunk)
                return True

            return step

        await self._transaction(operation, "BEGIN", start)
        return rows

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return the values of ``keys`` in the order asked, ``None`` for each missing key.

        An expired key is missing.
        The values come from one state of the table (one read transaction), even when the
        driver yields part way. A value that is not a BLOB raises, as :meth:`get` does.
        """
        self.ensure_open()
        if not keys:
            return []
        # Rows are (key, value) pairs: dict() takes them as they are.
        found: dict[str, bytes] = dict(await self._rows_in(self._sql_select_in, keys, "get_many"))
        values = [found.get(key) for key in keys]
        for key, value in zip(keys, values, strict=True):
            if value is not None and type(value) is not bytes:
                raise self._foreign_value(key, value)
        return values

    async def _write_chunks(
        self,
        doing: str,
        sql: str,
        count: int,
        params: Callable[[int, int], Iterable[tuple[Any, ...]]],
        *,
        purge_at: int | None = None,
    ) -> None:
        """Run ``sql`` for ``count`` rows in one write transaction, a chunk per statement.

        ``params(start, stop)`` gives the statement's parameters for rows ``start`` to ``stop``,
        a chunk at a time, so that a big batch is prepared in paced steps too. With
        ``purge_at`` (now, in milliseconds) a last step purges a small batch of rows expired by
        then.
        """
        purge = self._sql_purge

        def start() -> Callable[[sqlite3.Connection], bool]:
            done = 0

            def step(conn: sqlite3.Connection) -> bool:
                nonlocal done
                if done >= count:
                    conn.execute(purge, (purge_at, _AUTO_PURGE))
                    return False
                conn.executemany(sql, params(done, done + _WRITE_CHUNK))
                done += _WRITE_CHUNK
                return done < count or purge_at is not None

            return step

        await self._transaction(doing, "BEGIN IMMEDIATE", start)

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Store every pair in one transaction (all or nothing); a later pair for a key wins.

        Each row gets its own new version, never expires, and has one write time, now.
        """
        self.ensure_open()
        if items:
            written_at = now_millis(self._clock)
            await self._write_chunks(
                "set_many",
                self._sql_put,
                len(items),
                lambda start, stop: _with_write_time(items[start:stop], written_at=written_at),
            )

    async def set_many_columns(
        self, keys: list[str], values: list[bytes], *, owned: bool = False
    ) -> None:
        # docstring inherited
        if type(self).set_many is not SQLiteDriver.set_many:
            # A subclass (a test double) that changes set_many still sees every batch.
            await super().set_many_columns(keys, values, owned=owned)
            return
        self.ensure_open()
        if len(keys) != len(values):
            raise ValueError(f"{len(keys)} keys for {len(values)} values")
        if not keys:
            return
        written_at = now_millis(self._clock)
        # The parameters straight from the two lists, as set_many's statement takes them: no
        # list of pairs, nor a list of rows per chunk (zip hands executemany one tuple, reused
        # while nothing else holds it).
        await self._write_chunks(
            "set_many",
            self._sql_put,
            len(keys),
            lambda start, stop: zip(keys[start:stop], values[start:stop], repeat(written_at)),
        )

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Remove every key in ``keys`` in one transaction; missing keys are skipped."""
        self.ensure_open()
        if keys:
            # zip of one list: the 1-tuples of a chunk, made as executemany takes them.
            await self._write_chunks(
                "delete_many",
                self._sql_delete,
                len(keys),
                lambda start, stop: zip(keys[start:stop]),
            )

    async def clear(self, prefix: str = "") -> None:
        """Remove every row whose key starts with ``prefix``, in one transaction (atomic).

        Rows this driver did not write are removed too when their key falls in the range.
        """
        self.ensure_open()
        end = prefix_successor(prefix)
        sql = self._sql_clear[end is not None]
        params = (prefix, end, _WRITE_CHUNK) if end is not None else (prefix, _WRITE_CHUNK)

        def start() -> Callable[[sqlite3.Connection], bool]:
            def step(conn: sqlite3.Connection) -> bool:
                return conn.execute(sql, params).rowcount >= _WRITE_CHUNK

            return step

        await self._transaction("clear", "BEGIN IMMEDIATE", start)


def _in_width(count: int) -> int:
    """The padded length of an ``IN`` list of ``count`` keys: exact up to 4, then the next power
    of two, at most :data:`_IN_CHUNK` (11 lengths in all)."""
    if count <= 4:
        return count
    return min(1 << (count - 1).bit_length(), _IN_CHUNK)


def _with_write_time(
    items: Sequence[tuple[str, bytes]], *, written_at: int, expires_at: int | None = None
) -> list[tuple[Any, ...]]:
    """The parameters of the write statement that makes its own versions for ``items``.

    With ``expires_at``, those of the expiring one.
    """
    if expires_at is None:
        return [(key, value, written_at) for key, value in items]
    return [(key, value, written_at, expires_at) for key, value in items]


def _decode_raw_row(cells: tuple[Any, ...]) -> tuple[Any, ...]:
    """Turn a fallback-mode row (bytes and type of each cell) into a normal one."""
    key_raw, key_kind = cells[0], cells[1]
    key: object = key_raw
    if key_kind == "text":
        try:
            key = key_raw.decode("utf-8")
        except UnicodeDecodeError:
            key = key_raw  # bytes: not a key, skipped by the caller's validity check
    if len(cells) == 2:
        return (key,)
    value = cells[2] if cells[3] == "blob" else _NotBlob(cells[3])
    return key, value


def _shown(key: str) -> str:
    return repr(key if len(key) <= 60 else key[:57] + "...")


def sqlite_driver(
    path: str | os.PathLike[str] | None = None,
    *,
    table: str = DEFAULT_TABLE,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    synchronous: str = DEFAULT_SYNCHRONOUS,
    clock: Clock = time.time,
) -> SQLiteDriver:
    """Return a driver on the SQLite database at ``path`` (no I/O until first use).

    ``path`` defaults to :func:`default_path`; ``":memory:"`` gives a private in-memory
    database. Missing parent directories are created on first use. ``busy_timeout`` is how many
    seconds an operation waits, without blocking the event loop, for another connection to
    release the write lock before raising :class:`~kvstore.errors.BackendUnavailable`.
    ``synchronous`` is SQLite's ``PRAGMA synchronous`` (NORMAL is durable across application
    crashes in WAL mode; FULL also across power loss). ``clock`` (POSIX seconds) is what
    expiry instants are read from: SQLite runs in this process, so this process's clock is the
    backend's; processes sharing a file agree through the wall clock. Tests pass a clock they
    move. Invalid settings raise :class:`~kvstore.errors.ConfigurationError`, and so does a URL
    given as ``path`` (URLs go to :func:`kvstore.create_storage`).
    """
    if path is None:
        path = default_path()
    return SQLiteDriver(_Arguments(path, table, busy_timeout, synchronous, clock))


_URL_OPTIONS: Final[dict[str, Callable[[str], Any]]] = {**URL_OPTIONS, "table": str}


def from_url(url: str) -> SQLiteDriver:
    """Build a driver from a SQLAlchemy-style SQLite URL.

    ``sqlite:///relative.db`` (relative to the current directory), ``sqlite:////abs/path.db``,
    ``sqlite:///:memory:``, or ``sqlite://`` with nothing after it, which is an in-memory
    database as in SQLAlchemy. ``sqlite:///`` with an empty path is refused: it is what
    ``sqlite:///$DB`` becomes when ``DB`` is unset, and a silent in-memory database would lose
    the data. The path is percent-decoded (``my%20file.db``). Optional query parameters:
    ``table``, ``busy_timeout`` (seconds) and ``synchronous``. A host, user, password, fragment
    or any other option raises :class:`~kvstore.errors.ConfigurationError`.
    """
    # One reading of sqlite:// URLs, shared with the event queue (kvstore.sqlite_common).
    read = parse_sqlite_url(url, _URL_OPTIONS, where="sqlite")
    options = read.options
    return sqlite_driver(
        read.path,
        table=options.get("table", DEFAULT_TABLE),
        busy_timeout=options.get("busy_timeout", DEFAULT_BUSY_TIMEOUT),
        synchronous=options.get("synchronous", DEFAULT_SYNCHRONOUS),
    )
