"""The filesystem driver's local-disk operations: plain ``os`` calls, atomic writes, pruning.

Every method is synchronous and raises ``OSError``; the driver calls them inline on the event
loop (a local read or write takes 10-20 µs, far less than the ~130 µs of a hop to a worker
thread) and translates the errors.

Writes go to a temporary file in ``<base>/.tmp/`` and are renamed over the target with
``os.replace``, which is atomic: a reader, or a process that starts after a crash, sees the old
value or the new one, never a torn file. Temporary names carry the writer's host and process id so
that opening a base removes the files of dead writers without touching those of live ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import socket
import time

__all__ = ["HOST_TAG", "LocalTree", "temp_name_owner"]

TEMP_DIR = ".tmp"
# How often a write retries when a concurrent delete pruned its directory in between.
_WRITE_ATTEMPTS = 50
# Temporary files of other hosts (a shared network disk) are removed only when this old.
_FOREIGN_TEMP_AGE = 24 * 3600.0
# Identifies this machine in temporary file names (a base may live on a shared network disk).
HOST_TAG = hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]
_counter = itertools.count()
_OPEN_WRITE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(
    os, "O_CLOEXEC", 0
)


def temp_name_owner(name: str) -> tuple[str, int] | None:
    """Return ``(host, pid)`` of the writer that made the temporary file ``name``, if parseable."""
    parts = name.split(".")
    if len(parts) != 4 or parts[3] != "tmp" or not parts[0].isdigit():
        return None
    return parts[1], int(parts[0])


def _process_alive(pid: int) -> bool:
    if os.name == "nt":  # pragma: no cover - os.kill(pid, 0) would terminate it on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists but belongs to another user
    return True


class LocalTree:
    """Files under one local directory, addressed by ``/``-separated relative paths."""

    def __init__(self, root: str, *, fsync: bool = False) -> None:
        self.root = root
        self.fsync = fsync
        self._prefix = root + "/"
        self._temp_dir = self._prefix + TEMP_DIR

    def prepare(self) -> None:
        """Create the base and its temporary directory, and remove dead writers' temp files."""
        os.makedirs(self._temp_dir, exist_ok=True)
        now = time.time()
        with os.scandir(self._temp_dir) as entries:
            names = [(entry.name, entry.path) for entry in entries]
        for name, path in names:
            owner = temp_name_owner(name)
            if owner is not None and owner[0] == HOST_TAG:
                stale = not _process_alive(owner[1])
            else:
                try:
                    stale = now - os.stat(path).st_mtime > _FOREIGN_TEMP_AGE
                except FileNotFoundError:
                    continue
            if stale:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    def read(self, relative: str) -> bytes | None:
        """Return the file's bytes, or ``None`` if it does not exist."""
        try:
            file = open(self._prefix + relative, "rb", buffering=0)  # noqa: SIM115
        except (FileNotFoundError, NotADirectoryError):
            return None
        with file:
            return file.read()

    def write(self, relative: str, data: bytes) -> None:
        """Replace the file's content with ``data`` atomically, creating directories as needed."""
        temp = self._write_temp(data)
        try:
            self._install(temp, self._prefix + relative)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    def _write_temp(self, data: bytes) -> str:
        for _ in range(_WRITE_ATTEMPTS):
            temp = f"{self._temp_dir}/{os.getpid()}.{HOST_TAG}.{next(_counter)}.tmp"
            try:
                descriptor = os.open(temp, _OPEN_WRITE, 0o666)
            except FileNotFoundError:
                # Someone removed the temp directory (or the base) since we opened.
                os.makedirs(self._temp_dir, exist_ok=True)
                continue
            except FileExistsError:
                continue
            try:
                view = memoryview(data)
                while view:
                    written = os.write(descriptor, view)
                    view = view[written:]
                if self.fsync:
                    os.fsync(descriptor)
            except BaseException:
                os.close(descriptor)
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise
            os.close(descriptor)
            return temp
        raise FileNotFoundError(f"cannot create a temporary file in {self._temp_dir}")

    def _install(self, temp: str, target: str) -> None:
        parent = target.rpartition("/")[0]
        created = False
        for _ in range(_WRITE_ATTEMPTS):
            try:
                os.replace(temp, target)
            except FileNotFoundError:
                # The directory is missing, or a concurrent delete pruned it after we made it:
                # (re)create it and try again. ``makedirs`` itself can lose such a race (a
                # directory pruned between its mkdir and its check reads as FileExistsError); a
                # file truly in the way makes the next replace fail with NotADirectoryError.
                with contextlib.suppress(FileNotFoundError, FileExistsError):
                    os.makedirs(parent, exist_ok=True)
                created = True
                continue
            if self.fsync:
                self._sync_dirs(parent, all_new=created)
            return
        raise FileNotFoundError(f"directory {parent} keeps disappearing during a write")

    def _sync_dirs(self, directory: str, *, all_new: bool) -> None:
        """Flush directory entries to disk: the target's, and its ancestors' if we created some."""
        while True:
            descriptor = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            if not all_new or len(directory) <= len(self.root):
                return
            directory = directory.rpartition("/")[0]

    def remove(self, relative: str) -> None:
        """Delete the file if present, then remove the directories it leaves empty."""
        try:
            os.unlink(self._prefix + relative)
        except (FileNotFoundError, NotADirectoryError):
            return
        directory = relative.rpartition("/")[0]
        while directory:
            try:
                # rmdir only removes an empty directory, so a concurrent writer's file survives;
                # a writer whose directory vanished recreates it (see _install).
                os.rmdir(self._prefix + directory)
            except OSError:
                return
            directory = directory.rpartition("/")[0]

    def list_dir(self, relative: str) -> list[tuple[str, bool]]:
        """Return ``(name, is_dir)`` for each entry of a directory; ``[]`` if it does not exist.

        Entries are classified by name, without a ``stat``: the driver's files end in ``.kv`` and
        its directories never do. Anything else a person put here is at worst listed as an
        empty directory, or as a key whose read fails with ``BackendError``.
        """
        path = self._prefix + relative if relative else self.root
        try:
            names = os.listdir(path)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [(name, not name.endswith(".kv")) for name in names]
