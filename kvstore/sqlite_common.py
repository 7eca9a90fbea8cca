"""What kvstore's SQLite driver and the event queue's SQLite backend share, written once.

- **Defaults and their checks.** ``synchronous=NORMAL`` in WAL mode (durable across any process
  crash; ``FULL`` adds power-loss durability at several times the cost of a write) and a
  ``busy_timeout`` of 30 seconds, for both.
- **URLs.** :func:`parse_sqlite_url` gives a ``sqlite://`` URL one meaning for both:
  ``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``sqlite:///:memory:``, and
  ``sqlite://`` with nothing after it for an in-memory database (as in SQLAlchemy);
  ``sqlite:///`` with an empty path is refused (it is what ``sqlite:///$DB`` becomes when ``DB``
  is unset, and a silent in-memory database would lose the data).
- **Waiting out a lock.** Connections never wait inside SQLite (its busy timeout is 0), which
  would block the event loop: a statement that finds the database locked fails at once and the
  caller retries it after :meth:`LockWait.wait`, an async, jittered, growing backoff, until its
  own busy timeout runs out. Each retry is logged at DEBUG and a wait that passes
  :data:`LONG_WAIT` once at WARNING, on the caller's logger (``kvstore.sqlite``, ``eventqueue``).
"""

from __future__ import annotations

import logging
import math
import random
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import anyio

from kvstore.errors import ConfigurationError
from kvstore.urls import parse_url, redact_url, take_options

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "DEFAULT_SYNCHRONOUS",
    "LONG_WAIT",
    "MEMORY",
    "SYNCHRONOUS_MODES",
    "URL_OPTIONS",
    "LockWait",
    "SQLiteURL",
    "check_busy_timeout",
    "check_synchronous",
    "is_busy",
    "parse_sqlite_url",
]

MEMORY: Final = ":memory:"
DEFAULT_SYNCHRONOUS: Final = "NORMAL"
"""The ``synchronous`` pragma both the storage and the queue use unless told otherwise."""
SYNCHRONOUS_MODES: Final = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})
DEFAULT_BUSY_TIMEOUT: Final = 30.0
"""Seconds a statement keeps retrying a locked database before the caller gives up."""
LONG_WAIT: Final = 1.0
"""Seconds of waiting for one lock after which a WARNING record is logged (once per wait)."""

URL_OPTIONS: Final[Mapping[str, Callable[[str], Any]]] = {
    "busy_timeout": float,  # check_busy_timeout checks the range
    "synchronous": str,  # check_synchronous checks the mode
}
"""The query options every ``sqlite://`` URL takes; a user adds its own (``table``, ...)."""

# Backoff while another connection holds the lock: 0.5 ms doubling to 25 ms, jittered so that
# processes waiting for the same lock do not wake in step.
_FIRST_DELAY: Final = 0.0005
_MAX_DELAY: Final = 0.025

# Primary result codes (the low byte of an extended code).
_SQLITE_BUSY: Final = 5
_SQLITE_LOCKED: Final = 6

_log = logging.getLogger("kvstore.sqlite")


def check_synchronous(synchronous: object) -> str:
    """Return the ``synchronous`` mode upper-cased, or raise ``ConfigurationError``."""
    mode = synchronous.upper() if isinstance(synchronous, str) else ""
    if mode not in SYNCHRONOUS_MODES:
        raise ConfigurationError(
            f"synchronous must be one of {', '.join(sorted(SYNCHRONOUS_MODES))}, "
            f"not {synchronous!r}"
        )
    return mode


def check_busy_timeout(busy_timeout: object) -> float:
    """Return ``busy_timeout`` as float seconds (finite, >= 0), or raise ``ConfigurationError``."""
    if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, int | float):
        raise ConfigurationError(f"busy_timeout must be a number of seconds, not {busy_timeout!r}")
    if not math.isfinite(busy_timeout) or busy_timeout < 0:
        raise ConfigurationError(f"busy_timeout must be finite seconds >= 0, not {busy_timeout}")
    return float(busy_timeout)


@dataclass(frozen=True, slots=True)
class SQLiteURL:
    """A ``sqlite://`` URL read: the database file as written (or ``":memory:"``), and options.

    ``path`` is percent-decoded and relative to the current directory unless absolute;
    ``options`` holds the options the URL gave, converted by their parsers (absent ones are
    absent: the caller applies its defaults).
    """

    path: str
    options: dict[str, Any]


def parse_sqlite_url(
    url: str, options: Mapping[str, Callable[[str], Any]] = URL_OPTIONS, *, where: str = "sqlite"
) -> SQLiteURL:
    """Read a SQLAlchemy-style SQLite URL; see the module docstring for its forms.

    ``options`` maps each query option the caller takes to its parser. A host, user, password,
    fragment, empty path after ``sqlite:///`` or any other option raises
    :class:`~kvstore.errors.ConfigurationError`; ``where`` names the caller in messages.
    """
    parsed = parse_url(url, schemes=("sqlite",))
    if parsed.username is not None or parsed.password is not None or parsed.hosts:
        raise ConfigurationError(
            f"{redact_url(url)!r}: a sqlite:// URL names no host or user; write "
            "sqlite:///relative.db or sqlite:////absolute.db"
        )
    taken = take_options(parsed.options, options, where=where)
    database = parsed.path
    if not database:
        if url.partition("://")[2].partition("?")[0]:
            raise ConfigurationError(
                f"{redact_url(url)!r} names no database file; write sqlite:///relative.db, "
                "sqlite:////absolute.db, or sqlite:///:memory: for an in-memory database"
            )
        database = MEMORY
    return SQLiteURL(database, taken)


def is_busy(error: sqlite3.Error) -> bool:
    """Tell whether ``error`` means another connection holds a lock (worth retrying)."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return int(code) & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    text = str(error)
    return "database is locked" in text or "database table is locked" in text


class LockWait:
    """Sleeps between retries of a statement that found the database locked.

    Make one per statement (or transaction) when its first try found the lock taken, and call
    :meth:`wait` before each retry; it returns False once ``timeout`` seconds have passed, and
    the caller then raises its own "locked too long" error. ``where`` (the database file) and
    ``logger`` word and route the log records.
    """

    __slots__ = ("_deadline", "_delay", "_logger", "_retries", "_start", "_warned", "_where")

    def __init__(self, timeout: float, *, where: str, logger: logging.Logger = _log) -> None:
        self._start = anyio.current_time()
        self._deadline = self._start + timeout
        self._delay = _FIRST_DELAY
        self._where = where
        self._logger = logger
        self._retries = 0
        self._warned = False

    async def wait(self) -> bool:
        """Sleep before the next try; return False, without sleeping, once time is up."""
        now = anyio.current_time()
        remaining = self._deadline - now
        waited = now - self._start
        if remaining <= 0:
            self._logger.debug(
                "SQLite database %s still locked after %.3f s and %d retries; giving up",
                self._where,
                waited,
                self._retries,
            )
            return False
        if waited >= LONG_WAIT and not self._warned:
            self._warned = True
            self._logger.warning(
                "SQLite database %s has been locked by another connection for %.1f s; "
                "waiting up to %.1f s more",
                self._where,
                waited,
                remaining,
            )
        pause = min(remaining, self._delay * random.uniform(0.5, 1.5))
        self._retries += 1
        self._logger.debug(
            "SQLite database %s is locked; retry %d in %.1f ms",
            self._where,
            self._retries,
            pause * 1000,
        )
        await anyio.sleep(pause)
        self._delay = min(self._delay * 2, _MAX_DELAY)
        return True
