"""The filesystem driver's operations on any other fsspec filesystem (memory, S3, SFTP, ...).

Every method is synchronous and blocking; the driver runs each in a worker thread. Writes use
``pipe_file``, the whole-object write fsspec offers: object stores (S3, GCS, Azure) replace an
object atomically, and ``memory://`` installs the new bytes in one step. A filesystem with no
atomic whole-file write gives whatever its ``pipe_file`` gives; fsspec has no portable rename
that is atomic everywhere.
"""

from __future__ import annotations

from typing import Any

from fsspec import AbstractFileSystem

from kvstore.drivers._fs_layout import Listing

__all__ = ["FsspecTree"]


class FsspecTree:
    """Files under one directory of an fsspec filesystem, by ``/``-separated relative paths."""

    def __init__(self, fs: AbstractFileSystem, root: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/") or "/"
        self._prefix = self.root if self.root.endswith("/") else self.root + "/"

    def prepare(self) -> None:
        """Create the base directory where the filesystem has real directories."""
        self.fs.makedirs(self.root, exist_ok=True)

    def read(self, relative: str) -> bytes | None:
        """Return the file's bytes, or ``None`` if it does not exist."""
        try:
            data: bytes = self.fs.cat_file(self._prefix + relative)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return bytes(data)

    def write(self, relative: str, data: bytes) -> None:
        """Replace the file's content with ``data``, creating parent directories if needed."""
        path = self._prefix + relative
        try:
            self.fs.pipe_file(path, data)
        except FileNotFoundError:
            self.fs.makedirs(path.rpartition("/")[0], exist_ok=True)
            self.fs.pipe_file(path, data)

    def remove(self, relative: str) -> None:
        """Delete the file if present, then remove the directories it leaves empty."""
        try:
            self.fs.rm_file(self._prefix + relative)
        except FileNotFoundError:
            return
        directory = relative.rpartition("/")[0]
        while directory:
            # Object stores have no directories to prune; real ones refuse a non-empty rmdir.
            try:
                self.fs.rmdir(self._prefix + directory)
            except Exception:  # any refusal just ends the pruning
                return
            directory = directory.rpartition("/")[0]

    def list_dir(self, relative: str) -> Listing:
        """Return a directory's files and subdirectories; empty if it does not exist."""
        path = self._prefix + relative if relative else self.root
        # Listings may be cached by the filesystem instance; another writer may have changed them.
        self.fs.invalidate_cache(path)
        try:
            listing: list[dict[str, Any]] = self.fs.ls(path, detail=True)
        except (FileNotFoundError, NotADirectoryError):
            return Listing([], [])
        own = path.rstrip("/")
        found = Listing([], [])
        for info in listing:
            name = str(info["name"]).rstrip("/")
            if name == own:
                continue  # some filesystems list a directory's own marker object
            kind = found.directories if info.get("type") == "directory" else found.files
            kind.append(name.rpartition("/")[2])
        return found
