"""Checkpoints of a SQLite write-ahead log, in a thread of their own.

In WAL mode each commit appends its pages to the ``-wal`` file, and by default SQLite copies
them back into the database (a checkpoint, with two ``fsync`` calls) inside whichever commit
finds the log past 1,000 pages. For a driver running inline on the event loop, that one write
then held the loop for 20-30 ms every few hundred writes: 113 stalls of the loop over 5 ms in
50,000 ``set`` calls of 200 bytes, and about a third of their time.

A :class:`Checkpointer` takes that work off the writing connection. It turns the connection's
automatic checkpoints off and checkpoints from a connection of its own, in a daemon thread;
SQLite releases the GIL while it copies and syncs, so the loop goes on meanwhile. Each time it
runs a passive checkpoint, which copies most of the log without holding anyone up, then a
``RESTART`` one, which copies what writers added meanwhile while holding them off (they wait
for it like for any lock, without blocking the loop) and makes the next commit start the log
over; under steady writes a passive checkpoint alone never catches up.

The thread looks at the log when the writer nudges it (drivers do where they give the loop a
turn, at most every :data:`LOOK_EVERY` seconds), so an idle database costs nothing and a busy
one a clock read per time slice. It checkpoints once the log holds 1,000 frames, SQLite's own
default. It counts them in the log file itself (:func:`_frames_in`: the frames of the current
log are the run from the start that carries the header's salts), without a lock of SQLite's.
(The wal-index in the ``-shm`` file has the exact count, but closing a descriptor of a file
drops every POSIX lock this process holds on it, SQLite's included: other processes then took
the index for unused and reset it under this one.) If the thread cannot be started, the writer
keeps SQLite's own checkpoints.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from time import monotonic

import anyio

__all__ = ["LOOK_EVERY", "Checkpointer"]

LOOK_EVERY = 0.05
"""Seconds between two looks at the log that a writer's nudges may ask for."""
# Pages in the log that start a checkpoint: SQLite's own default (PRAGMA wal_autocheckpoint).
_CHECKPOINT_AT = 1000
# The log's layout (https://sqlite.org/fileformat.html, "The Write-Ahead Log"): a 32-byte header
# holding the page size (big-endian, at 8) and the log's two salts (at 16), then frames of a
# 24-byte header (the salts at 8) and a page each.
_LOG_HEADER = 32
_FRAME_HEADER = 24
_SALTS = slice(16, 24)
_FRAME_SALTS = 8
# Seconds the thread's restarting checkpoint waits for the write lock and for readers to move on.
_WAIT = 0.02
# The most looks in a row that skip it while readers hold on (about 3 s at LOOK_EVERY).
_MOST_LOOKS_SKIPPED = 64
# SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY: see _look.
_EXPECTED = frozenset({5, 6, 8})


class Checkpointer:
    """Keeps one database's write-ahead log short from a thread of its own.

    :meth:`start` hands the checkpoints of a writing connection over to the thread; the writer
    then calls :meth:`nudge` now and then (cheap), and awaits :meth:`stop` before it closes.
    """

    def __init__(self, path: str, *, logger: logging.Logger) -> None:
        self._path = path
        self._log = f"{path}-wal"
        self._logger = logger
        self._next_look = 0.0
        self._wake = threading.Event()
        # Looks asked for and looks done, for settle(): a look serves every request made
        # before it began.
        self._looked = threading.Condition()
        self._requested = 0
        self._served = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._warned = False
        # Looks that skip the restarting checkpoint, after one that found a reader holding on.
        self._restart_in = 0
        self._restart_gap = 0

    @property
    def running(self) -> bool:
        """Whether the thread has taken the checkpoints over."""
        return self._thread is not None

    def start(self, writer: sqlite3.Connection) -> bool:
        """Take the checkpoints of ``writer`` over if its database is in WAL mode; return
        whether the thread runs (if not, ``writer`` keeps checkpointing as SQLite does by
        default). Another journal mode (an in-memory database, or a file SQLite could not
        switch to WAL) has no log to keep short, so no thread starts."""
        mode = writer.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            return False
        if self._thread is not None:
            self._hand_over(writer)  # a new connection of the same writer
            return True
        try:
            # Made here, used only by the thread.
            own = sqlite3.connect(
                self._path, isolation_level=None, check_same_thread=False, timeout=_WAIT
            )
        except sqlite3.Error as error:
            self._logger.debug("no checkpoint thread for %s: %s", self._path, error)
            return False
        self._stopping = False
        thread = threading.Thread(
            target=self._run, args=(own,), name=f"WAL checkpoints of {self._path}", daemon=True
        )
        try:
            thread.start()
        except RuntimeError as error:  # no thread to be had
            own.close()
            self._logger.debug("no checkpoint thread for %s: %s", self._path, error)
            return False
        self._thread = thread
        self._hand_over(writer)
        return True

    def _hand_over(self, writer: sqlite3.Connection) -> None:
        """Turn ``writer``'s own checkpoints off: the thread makes them."""
        writer.execute("PRAGMA wal_autocheckpoint = 0")

    def nudge(self) -> None:
        """Have the thread look at the log soon, unless it was asked to within ``LOOK_EVERY``.

        For the writer's slow path: a clock read, and now and then a wake-up of the thread.
        """
        now = monotonic()
        if now >= self._next_look:
            self._next_look = now + LOOK_EVERY
            self._requested += 1
            self._wake.set()

    def settle(self, timeout: float = 30.0) -> bool:
        """Wake the thread and wait until it has looked at the log (and checkpointed it if it
        was due) since this call; return False if ``timeout`` passed first or it does not run.

        Blocking: for tests, and for tools that want the log short now.
        """
        if self._thread is None:
            return False
        with self._looked:
            self._requested += 1
            wanted = self._requested
            self._wake.set()
            return self._looked.wait_for(lambda: self._served >= wanted, timeout)

    async def stop(self) -> None:
        """Stop the thread, once a checkpoint in progress has ended, and close its connection.

        Call it before closing the writer, so that the writer is the file's last connection
        here and leaves the database whole (its log checkpointed and removed) as it closes.
        The wait runs in a worker thread, shielded: a close in a cancelled scope still stops
        the thread, and the cancellation arrives at the caller's next checkpoint.
        """
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping = True
        self._wake.set()
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(thread.join)

    def _run(self, own: sqlite3.Connection) -> None:
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    return
                with self._looked:
                    serving = self._requested
                try:
                    self._look(own)
                except Exception:  # a defect here must not end checkpoints for good
                    if not self._warned:
                        self._warned = True
                        self._logger.exception("checkpoint of %s failed", self._path)
                with self._looked:
                    self._served = serving
                    self._looked.notify_all()
        finally:
            own.close()

    def _look(self, own: sqlite3.Connection) -> None:
        if _frames_in(self._log) < _CHECKPOINT_AT:
            return
        try:
            # Most of the log, while writers go on; then what they added meanwhile, holding
            # writers off for that short copy, so that the next commit starts the log over
            # (under steady writes a passive checkpoint never catches up on its own).
            own.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            if self._restart_in:
                self._restart_in -= 1
                return
            blocked = own.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()[0]
            if blocked:
                # A reader held on, and writers waited for it as long as _WAIT: while that
                # lasts, restart less and less often (passive checkpoints go on each look).
                self._restart_gap = min(2 * self._restart_gap or 1, _MOST_LOOKS_SKIPPED)
                self._restart_in = self._restart_gap
            else:
                self._restart_gap = 0
        except sqlite3.Error as error:
            # Busy or locked: another connection is checkpointing, or a reader held on (the
            # next look tries again); read-only: so is every writer of the file here. Anything
            # else is worth one warning: the log then grows until a checkpoint succeeds (here,
            # or when the last connection closes).
            if error.sqlite_errorcode & 0xFF in _EXPECTED:
                return
            if not self._warned:
                self._warned = True
                self._logger.warning("checkpoint of %s failed: %s", self._path, error)


def _frames_in(log: str) -> int:
    """How many frames the log at path ``log`` holds since it last started over; 0 if none.

    The writer starts the log over at its beginning with new salts in the header and writes its
    frames one after the other, each with the header's salts, over what the file held: the
    frames of the current log are the run from the start whose salts are the header's, found by
    bisection in a few reads. A read racing the writer may be off by a frame or a start-over;
    the figure only decides when to checkpoint.
    """
    try:
        descriptor = os.open(log, os.O_RDONLY)
    except OSError:
        return 0  # no log (yet, or any more)
    try:
        header = os.pread(descriptor, _LOG_HEADER, 0)
        if len(header) < _LOG_HEADER:
            return 0
        page_size = int.from_bytes(header[8:12], "big")
        frame = _FRAME_HEADER + (65536 if page_size == 1 else page_size)
        salts = header[_SALTS]
        # Frames before ``current`` are the log's; frames from ``beyond`` on are not.
        current, beyond = 0, (os.fstat(descriptor).st_size - _LOG_HEADER) // frame
        while current < beyond:
            middle = (current + beyond) // 2
            offset = _LOG_HEADER + middle * frame + _FRAME_SALTS
            if os.pread(descriptor, len(salts), offset) == salts:
                current = middle + 1
            else:
                beyond = middle
        return current
    except OSError:
        return 0
    finally:
        # The log carries no lock of SQLite's, so closing it drops none (unlike the -shm file).
        os.close(descriptor)
