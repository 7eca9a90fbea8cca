"""What every command shares: errors, where the default database lives, output, progress."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final, Self

from kvstore import Storage, create_storage
from kvstore.drivers.sqlite import SQLiteDriver, sqlite_driver
from kvstore.home import agentx_home
from kvstore.registry import driver_from_url
from kvstore.urls import redact_url

__all__ = [
    "CLIError",
    "Progress",
    "Target",
    "UsageError",
    "stdout_bytes",
]

# Progress redraws at most this often: a terminal cannot show more, and each write costs.
_REDRAW_SECONDS: Final = 0.2


class CLIError(Exception):
    """A failure the command reports as one ``kvstore: error:`` line, exiting with ``code``."""

    code = 1


class UsageError(CLIError):
    """The command line itself is wrong (exit status 2, like argparse's own errors)."""

    code = 2


class Target:
    """The storage a command works on: ``--url``, or else the default SQLite file.

    Building it does no I/O; :meth:`storage` hands out a new, unopened :class:`Storage`.
    """

    def __init__(self, url: str | None, agentx_dir: str | None) -> None:
        self.url = url
        #: ``--agentx-dir``, else the AgentX home (``$AGENTX_DIR``, else ``~/.agentx``).
        home = Path(agentx_dir).expanduser() if agentx_dir else agentx_home()
        self.agentx_dir = home.absolute()
        #: The SQLite file used when no URL is given: the storage's default file in that home.
        self.default_path = self.agentx_dir / "data" / "agentx.db"

    @property
    def display(self) -> str:
        """The target as a URL safe to print (no password)."""
        if self.url is not None:
            return redact_url(self.url)
        return f"sqlite:///{self.default_path}"

    def storage(self) -> Storage:
        """Return a new storage on the target; no connection is made yet."""
        if self.url is None:
            return Storage(sqlite_driver(self.default_path))
        return create_storage(self.url)

    def sqlite(self, command: str) -> SQLiteDriver:
        """Return the target's SQLite driver (unopened), or refuse a target that is not SQLite."""
        if self.url is None:
            return sqlite_driver(self.default_path)
        driver = driver_from_url(self.url)
        if not isinstance(driver, SQLiteDriver):
            raise CLIError(f"{command} works on SQLite databases only, not {redact_url(self.url)}")
        if driver.in_memory:
            raise CLIError(f"{command} needs a SQLite file, not an in-memory database")
        return driver


def stdout_bytes() -> BinaryIO:
    """Return the binary stream under ``sys.stdout``, with any pending text flushed first."""
    sys.stdout.flush()
    return sys.stdout.buffer


class Progress:
    """A ``label: N keys`` line on stderr, redrawn in place, shown only on a terminal.

    Piped or redirected stderr gets nothing, so logs and scripts stay clean.
    """

    def __init__(self, label: str, unit: str = "keys") -> None:
        self._label = label
        self._unit = unit
        self._count = 0
        self._enabled = sys.stderr.isatty()
        self._drawn = False
        self._last = 0.0

    def advance(self, count: int) -> None:
        """Add ``count`` finished items; redraw if the last redraw is old enough."""
        self._count += count
        if self._enabled:
            now = time.monotonic()
            if now - self._last >= _REDRAW_SECONDS:
                self._last = now
                self._draw()

    def _draw(self) -> None:
        sys.stderr.write(f"\r{self._label}: {self._count} {self._unit}")
        sys.stderr.flush()
        self._drawn = True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._enabled and (self._drawn or exc_type is None):
            self._draw()
            sys.stderr.write("\n")
            sys.stderr.flush()
