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
"""

from __future__ import annotations

import math
import os
import random
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar

import anyio

from kvstore.driver import BaseDriver
from kvstore.errors import BackendError, BackendUnavailable, ConfigurationError
from kvstore.keys import prefix_successor
from kvstore.urls import parse_url, redact_url, take_options

__all__ = ["DEFAULT_TABLE", "SQLiteDriver", "default_path", "from_url", "sqlite_driver"]

_T = TypeVar("_T")

MEMORY: Final = ":memory:"
DEFAULT_TABLE: Final = "agentx_kv"
SYNCHRONOUS_MODES: Final = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})

# A plain identifier, so that the name needs no escaping anywhere; SQLite reserves sqlite_*.
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

# Keyset pagination: rows fetched per query while streaming. Big enough that the per-query cost
# vanishes, small enough that one page holds the loop for well under a millisecond.
_KEY_PAGE = 1000
# Values can be 16 MiB each, so a key-and-value scan fetches far fewer rows per query.
_ITEM_PAGE = 64
# Keys per ``IN (...)`` query; far below SQLite's bound-variable limit (32766 since 3.32).
_IN_CHUNK = 500

# Backoff while another connection holds the lock: 0.5 ms doubling to 25 ms, jittered so that
# processes waiting for the same lock do not wake in step.
_FIRST_DELAY = 0.0005
_MAX_DELAY = 0.025

# Primary result codes (the low byte of an extended code).
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
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
    root = os.environ.get("AGENTX_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".agentx"
    return base / "data" / "agentx.db"


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


def _check_busy_timeout(busy_timeout: float) -> float:
    if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, int | float):
        raise ConfigurationError(f"busy_timeout must be a number of seconds, not {busy_timeout!r}")
    if not math.isfinite(busy_timeout) or busy_timeout < 0:
        raise ConfigurationError(f"busy_timeout must be finite seconds >= 0, not {busy_timeout}")
    return float(busy_timeout)


def _check_synchronous(synchronous: str) -> str:
    mode = synchronous.upper() if isinstance(synchronous, str) else ""
    if mode not in SYNCHRONOUS_MODES:
        raise ConfigurationError(
            f"synchronous must be one of {', '.join(sorted(SYNCHRONOUS_MODES))}, "
            f"not {synchronous!r}"
        )
    return mode


def _primary_code(error: sqlite3.Error) -> int | None:
    code = getattr(error, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def _is_busy(error: sqlite3.Error) -> bool:
    code = _primary_code(error)
    if code is not None:
        return code in (_SQLITE_BUSY, _SQLITE_LOCKED)
    text = str(error)
    return "database is locked" in text or "database table is locked" in text


def _fetch_all(conn: sqlite3.Connection, *, sql: str, params: tuple[object, ...]) -> list[Any]:
    return conn.execute(sql, params).fetchall()


class _Backoff:
    """Sleeps between retries of a statement that found the database locked."""

    __slots__ = ("_deadline", "_delay")

    def __init__(self, timeout: float) -> None:
        self._deadline = anyio.current_time() + timeout
        self._delay = _FIRST_DELAY

    async def wait(self) -> bool:
        """Sleep before the next try; return False, without sleeping, once time is up."""
        remaining = self._deadline - anyio.current_time()
        if remaining <= 0:
            return False
        await anyio.sleep(min(remaining, self._delay * random.uniform(0.5, 1.5)))
        self._delay = min(self._delay * 2, _MAX_DELAY)
        return True


class SQLiteDriver(BaseDriver):
    """Stores each key as one row of a ``WITHOUT ROWID`` table in a SQLite database.

    Keys compare with SQLite's BINARY collation, that is byte by byte in UTF-8, which is code
    point order, so range scans agree with Python's ``sorted``. Batches (``set_many``,
    ``delete_many``) are atomic; ``clear`` is a single range ``DELETE``. ``path`` is ``":memory:"``
    for a private in-memory database (gone on close, never shared between instances).
    """

    name = "sqlite"
    supports_trio = True
    atomic_batches = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        table: str = DEFAULT_TABLE,
        busy_timeout: float = 30.0,
        synchronous: str = "NORMAL",
    ) -> None:
        raw = os.fspath(path)
        if not isinstance(raw, str) or not raw:
            raise ConfigurationError(
                f"SQLite path must be a non-empty path or ':memory:', not {path!r}"
            )
        self.in_memory: bool = raw == MEMORY
        #: The database file (absolute), or ``":memory:"``.
        self.path: str = raw if self.in_memory else str(Path(raw).expanduser().absolute())
        self.table: str = _check_table(table)
        self.busy_timeout: float = _check_busy_timeout(busy_timeout)
        self.synchronous: str = _check_synchronous(synchronous)
        self._conn: sqlite3.Connection | None = None
        self._open_lock: anyio.Lock | None = None

        quoted = f'"{self.table}"'
        self._sql_create = (
            f"CREATE TABLE IF NOT EXISTS {quoted} "
            "(key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID"
        )
        self._sql_get = f"SELECT value FROM {quoted} WHERE key = ?"
        self._sql_set = (
            f"INSERT INTO {quoted} (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        )
        self._sql_delete = f"DELETE FROM {quoted} WHERE key = ?"
        self._sql_select_in = f"SELECT key, value FROM {quoted} WHERE key IN "
        self._sql_delete_all = f"DELETE FROM {quoted}"
        self._sql_delete_from = f"DELETE FROM {quoted} WHERE key >= ?"
        self._sql_delete_range = f"DELETE FROM {quoted} WHERE key >= ? AND key < ?"
        # Scans: [first page uses >=, later pages >] x [bounded above, open ended].
        self._sql_scan: dict[tuple[bool, bool, str], str] = {}
        for first in (True, False):
            for bounded in (True, False):
                for columns in ("key", "key, value"):
                    where = "key >= ?" if first else "key > ?"
                    if bounded:
                        where += " AND key < ?"
                    self._sql_scan[first, bounded, columns] = (
                        f"SELECT {columns} FROM {quoted} WHERE {where} ORDER BY key LIMIT ?"
                    )

    def __repr__(self) -> str:
        return f"SQLiteDriver(path={self.path!r}, table={self.table!r})"

    # -- connection ---------------------------------------------------------------------------

    async def _connection(self) -> sqlite3.Connection:
        self.ensure_open()
        conn = self._conn
        if conn is not None:
            return conn
        # Created here rather than in __init__: no await separates the test from the
        # assignment, so concurrent first uses share one lock, and the constructor stays free of
        # event-loop state.
        if self._open_lock is None:
            self._open_lock = anyio.Lock()
        async with self._open_lock:
            self.ensure_open()
            if self._conn is None:
                self._conn = await self._open()
            return self._conn

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
        backoff = _Backoff(self.busy_timeout)
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
            conn.execute(self._sql_create)
        except BaseException:
            conn.close()
            raise
        return conn

    # -- running statements -------------------------------------------------------------------

    def _locked_too_long(self) -> BackendUnavailable:
        return BackendUnavailable(
            f"another connection kept the database locked for longer than busy_timeout="
            f"{self.busy_timeout:g}s",
            driver=self.name,
            where=self.path,
        )

    def _translate(self, error: sqlite3.Error, doing: str) -> BackendError:
        kind = BackendUnavailable if _primary_code(error) in _UNAVAILABLE_CODES else BackendError
        return kind(f"{doing}: {error}", driver=self.name, where=self.path)

    async def _retry(
        self, operation: Callable[[sqlite3.Connection], _T], error: sqlite3.Error, doing: str
    ) -> _T:
        """Handle ``error`` from a first inline try: retry while the database is locked."""
        backoff = _Backoff(self.busy_timeout)
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
        conn = await self._connection()
        try:
            return operation(conn)
        except sqlite3.Error as error:
            return await self._retry(operation, error, doing)

    @staticmethod
    def _transaction(conn: sqlite3.Connection, body: Callable[[sqlite3.Connection], None]) -> None:
        # IMMEDIATE takes the write lock up front, so a conflict shows at BEGIN (and is retried)
        # rather than halfway through. Nothing awaits between BEGIN and COMMIT, so no other task
        # can run statements on this connection inside the transaction.
        conn.execute("BEGIN IMMEDIATE")
        try:
            body(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    # -- primitives ---------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        """Return the value stored under ``key``, or ``None`` if there is none."""
        self.ensure_open()
        conn = self._conn or await self._connection()
        try:
            row = conn.execute(self._sql_get, (key,)).fetchone()
        except sqlite3.Error as error:
            sql = self._sql_get
            row = await self._retry(lambda c: c.execute(sql, (key,)).fetchone(), error, "get")
        return None if row is None else row[0]

    async def set(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``, replacing any value whole."""
        self.ensure_open()
        conn = self._conn or await self._connection()
        try:
            conn.execute(self._sql_set, (key, value))
        except sqlite3.Error as error:
            sql = self._sql_set
            await self._retry(lambda c: c.execute(sql, (key, value)), error, "set")

    async def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""
        self.ensure_open()
        conn = self._conn or await self._connection()
        try:
            conn.execute(self._sql_delete, (key,))
        except sqlite3.Error as error:
            sql = self._sql_delete
            await self._retry(lambda c: c.execute(sql, (key,)), error, "delete")

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Yield each key that starts with ``prefix`` once, in ascending code point order."""
        async for rows in self._pages(prefix, "key", _KEY_PAGE):
            for (key,) in rows:
                yield key
                if self.closed:
                    self.ensure_open()

    async def items(self, prefix: str = "") -> AsyncIterator[tuple[str, bytes]]:
        """Yield ``(key, value)`` for each key that starts with ``prefix``, in key order."""
        async for rows in self._pages(prefix, "key, value", _ITEM_PAGE):
            for key, value in rows:
                yield key, value
                if self.closed:
                    self.ensure_open()

    async def _pages(self, prefix: str, columns: str, page: int) -> AsyncIterator[list[Any]]:
        """Yield pages of rows whose keys start with ``prefix``, in key order, one per query.

        Each page is fetched whole before it is yielded, so no cursor stays open while the
        caller runs (it may write, or abandon the scan); the next page starts after the last key
        seen, so keys written or deleted meanwhile neither repeat nor break the scan.
        """
        self.ensure_open()
        end = prefix_successor(prefix)
        bounded = end is not None
        sql = self._sql_scan[True, bounded, columns]
        start = prefix
        while True:
            params: tuple[object, ...] = (start, end, page) if bounded else (start, page)
            rows = await self._run(partial(_fetch_all, sql=sql, params=params), "scan keys")
            if rows:
                yield rows
            if len(rows) < page:
                return
            sql, start = self._sql_scan[False, bounded, columns], rows[-1][0]

    async def close(self) -> None:
        """Close the connection; idempotent. Later use raises ``StorageClosed``."""
        self.mark_closed()
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.close()
        except sqlite3.Error as error:
            raise self._translate(error, "close") from error

    # -- batches ------------------------------------------------------------------------------

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return the values of ``keys`` in the order asked, ``None`` for each missing key."""
        self.ensure_open()
        if not keys:
            return []
        unique = list(dict.fromkeys(keys))
        chunks = [unique[i : i + _IN_CHUNK] for i in range(0, len(unique), _IN_CHUNK)]
        select = self._sql_select_in

        def read(conn: sqlite3.Connection) -> dict[str, bytes]:
            found: dict[str, bytes] = {}
            for chunk in chunks:
                marks = ",".join("?" * len(chunk))
                found.update(conn.execute(f"{select}({marks})", chunk).fetchall())
            return found

        def read_snapshot(conn: sqlite3.Connection) -> dict[str, bytes]:
            # Several queries share one read transaction, so they see one state of the table.
            conn.execute("BEGIN")
            try:
                return read(conn)
            finally:
                conn.execute("COMMIT")

        found = await self._run(read if len(chunks) == 1 else read_snapshot, "get_many")
        return [found.get(key) for key in keys]

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Store every pair in one transaction (all or nothing); a later pair for a key wins."""
        self.ensure_open()
        if not items:
            return
        sql = self._sql_set

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(sql, items)

        await self._run(lambda c: self._transaction(c, write), "set_many")

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Remove every key in ``keys`` in one transaction; missing keys are skipped."""
        self.ensure_open()
        if not keys:
            return
        sql = self._sql_delete
        rows = [(key,) for key in keys]

        def remove(conn: sqlite3.Connection) -> None:
            conn.executemany(sql, rows)

        await self._run(lambda c: self._transaction(c, remove), "delete_many")

    async def clear(self, prefix: str = "") -> None:
        """Remove every key starting with ``prefix`` with one range ``DELETE`` (atomic)."""
        self.ensure_open()
        end = prefix_successor(prefix)
        params: tuple[str, ...]
        if not prefix:
            sql, params = self._sql_delete_all, ()
        elif end is None:
            sql, params = self._sql_delete_from, (prefix,)
        else:
            sql, params = self._sql_delete_range, (prefix, end)
        await self._run(lambda c: c.execute(sql, params), "clear")


def sqlite_driver(
    path: str | os.PathLike[str] | None = None,
    *,
    table: str = DEFAULT_TABLE,
    busy_timeout: float = 30.0,
    synchronous: str = "NORMAL",
) -> SQLiteDriver:
    """Return a driver on the SQLite database at ``path`` (no I/O until first use).

    ``path`` defaults to :func:`default_path`; ``":memory:"`` gives a private in-memory
    database. Missing parent directories are created on first use. ``busy_timeout`` is how many
    seconds an operation waits, without blocking the event loop, for another connection to
    release the write lock before raising :class:`~kvstore.errors.BackendUnavailable`.
    ``synchronous`` is SQLite's ``PRAGMA synchronous`` (NORMAL is durable across application
    crashes in WAL mode; FULL also across power loss). Invalid settings raise
    :class:`~kvstore.errors.ConfigurationError`.
    """
    return SQLiteDriver(
        default_path() if path is None else path,
        table=table,
        busy_timeout=busy_timeout,
        synchronous=synchronous,
    )


_URL_OPTIONS: Final[dict[str, Callable[[str], Any]]] = {
    "table": str,
    "busy_timeout": float,  # the constructor checks the range
    "synchronous": str,
}


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
    parsed = parse_url(url, schemes=("sqlite",))
    if parsed.username is not None or parsed.password is not None or parsed.hosts:
        raise ConfigurationError(
            f"{redact_url(url)!r}: a sqlite:// URL names no host or user; write "
            "sqlite:///relative.db or sqlite:////absolute.db"
        )
    options = take_options(parsed.options, _URL_OPTIONS, where="sqlite")
    database = parsed.path
    if not database:
        if url.partition("://")[2].partition("?")[0]:
            raise ConfigurationError(
                f"{redact_url(url)!r} names no database file; write sqlite:///relative.db, "
                "sqlite:////absolute.db, or sqlite:///:memory: for an in-memory database"
            )
        database = MEMORY
    return SQLiteDriver(
        database,
        table=options.get("table", DEFAULT_TABLE),
        busy_timeout=options.get("busy_timeout", 30.0),
        synchronous=options.get("synchronous", "NORMAL"),
    )
