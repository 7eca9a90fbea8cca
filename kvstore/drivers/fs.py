"""The filesystem driver: one human-readable file per key, on local disk or any fsspec filesystem.

``fs_driver(base="./data")`` keeps each key in its own file under ``base``; through
:class:`~kvstore.storage.Storage` a file holds the value's JSON text. The key ``users:alice`` is
the file ``users/alice.kv``; see :mod:`kvstore.drivers._fs_layout` for how other characters,
upper-case letters and long segments are encoded. No key can name a path outside ``base``.

Local directories (a path, ``file://`` URL or fsspec ``LocalFileSystem``) are read and written
with plain ``os`` calls, inline on the event loop: a small file read takes 10-20 µs, a hop to a
worker thread about 130 µs, and fsspec's local wrapper adds overhead of its own. Each write goes
to a temporary file in ``base/.tmp/`` and is renamed over the key's file, so a crash never leaves
a torn value; by default nothing is fsynced, which survives a process crash but not a power loss
(pass ``fsync=True`` to flush file and directory before ``set`` returns). Opening a base removes
temporary files left behind by dead writers. Batches are not atomic (each key's write is).
Inline work gives other tasks a turn about every millisecond (:mod:`kvstore.pacing`), between
files of a batch and between directories of a scan.

The driver never reads or writes through a symbolic link, and nothing it does resolves outside
``base`` (see :mod:`kvstore.drivers._fs_local`): reading a key whose file, or one of whose
directories, is a link raises :class:`BackendError`; writing one replaces a link that sits where
the file goes, and refuses one where a directory goes. Scans leave out links, special files and
names that do not decode to a valid key, with a warning on the ``kvstore.fs`` logger.

Conditional writes (local directories only). A key's version is derived from its file's identity,
so the layout holds nothing but values and a store written before versions existed works as it
is; every write and delete holds an exclusive OS file lock, ``.tmp/writers.lock``, which makes a
condition's check and the write it guards one step against every other process and driver
(details in :mod:`kvstore.drivers._fs_local`). ``commit`` takes the lock once, checks every
condition, then applies every change: atomic against other writers of the store. It is not
atomic against a crash: a process killed part way through leaves the changes it had applied
(each file whole, old or new) and not the others, and the OS releases its lock; a disk error
part way (a full disk) leaves the same kind of prefix and raises :class:`BackendError`. Readers
take no lock, so a reader can see a commit half applied (``atomic_batches`` stays False).
Waiting for the lock never blocks the event loop (non-blocking attempts with a growing pause
between them); after ``lock_timeout`` seconds (default 10) the operation raises
:class:`BackendUnavailable`, having written nothing. Remote fsspec stores have no lock the
driver could trust, so there ``conditional_writes`` is False and versioned calls raise
:class:`NotSupported`.

Expiry (local directories only; see :mod:`kvstore.drivers._fs_local`). Expiry instants come from
the driver's clock (``clock``, default :func:`time.time`), read under the writers' lock in the step
that writes. A key with an expiry has a hard link beside its value file,
``<stem>.<instant ms>.ttl``, which the value carries atomically through its rename; a plain write
makes a one-link file and so clears it. Write times are the files' modification times. Scans learn
every expiry from the directory listing they make anyway and skip expired keys without reading
values (an ``lstat`` pair per expired key met, or one more listing of a directory holding many);
keys never given an expiry cost nothing extra, and a plain write makes no system call more.
An index under ``<base>/.expiry/`` (one small file per expiring write, in one directory per minute
of expiry) lets :meth:`FSDriver.purge_expired` find expired keys without walking the store; every
expiring write or ``expire`` also purges up to 100 of them, at most once a second. Remote fsspec
stores have neither hard links nor the lock, so there ``expiry`` is False and TTLs raise
:class:`NotSupported`.

Other fsspec filesystems (``memory://``, ``s3://``, ...) are called in a worker thread and written
with ``pipe_file``. fsspec caches filesystem instances, and ``memory://`` is one store global to
the process: two drivers are separated by their base paths (``memory://a`` and ``memory://b``
never see each other's keys), so give each storage its own base, not one nested in another's.
The driver never closes a filesystem it was given. Listing a ``memory://`` directory scans the
whole in-memory store (fsspec's implementation); object stores may cap path length (S3: 1024
bytes), so keys with many escaped characters can be refused there with ``BackendError``.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from time import monotonic
from typing import Any, Final, Protocol, TypeVar

import anyio
import anyio.to_thread
from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from kvstore.conditional import ANY_VERSION, Action, Change, Versioned
from kvstore.driver import CONDITIONAL_WRITES, LATER, BaseDriver, Later, conflict
from kvstore.drivers._fs_layout import (
    MAX_PIECE,
    Entry,
    Listing,
    Sidecar,
    dir_path,
    key_path,
    list_entries,
    split_prefix,
)
from kvstore.drivers._fs_local import LOCK_NAME, TEMP_DIR, LocalTree
from kvstore.drivers._fs_remote import FsspecTree
from kvstore.drivers._translate import ErrorTable, Translator
from kvstore.errors import (
    BackendError,
    BackendUnavailable,
    ConfigurationError,
    MissingDependency,
    NotSupported,
    UnknownScheme,
)
from kvstore.expiry import EXPIRY, Clock, Meta, expiry_millis, from_millis
from kvstore.keys import MAX_KEY_BYTES
from kvstore.pacing import Gate, Pacer
from kvstore.urls import boolean, parse_url, positive_float, redact_url, take_options

__all__ = ["FSDriver", "from_url", "fs_driver"]

T = TypeVar("T")
R = TypeVar("R")
X = TypeVar("X")


class Tree(Protocol):
    """What the driver needs of a directory tree; :class:`LocalTree` and :class:`FsspecTree`."""

    def read(self, relative: str) -> bytes | None:
        """Return a file's bytes, or ``None`` if it does not exist."""
        ...

    def write(self, relative: str, data: bytes) -> None:
        """Replace a file atomically, creating its directories."""
        ...

    def remove(self, relative: str) -> None:
        """Remove a file if present, and the directories it leaves empty."""
        ...

    def list_dir(self, relative: str) -> Listing:
        """Return a directory's files and subdirectories."""
        ...


_log = logging.getLogger("kvstore.fs")
#: Seconds an operation waits for the writers' lock before raising BackendUnavailable.
DEFAULT_LOCK_TIMEOUT = 10.0
# Pauses between attempts to take a busy lock: from the first to the longest, doubling (with
# jitter, so that waiting processes do not retry in step).
_FIRST_PAUSE = 0.0002
_LONGEST_PAUSE = 0.02
# Keys a scan hands out between looks at the clock (each costs well under a microsecond).
_SCAN_STEP = 256
# The purge piggy-backed on expiring writes: at most once per this many seconds, this many keys.
_AUTO_PURGE_EVERY = 1.0
_AUTO_PURGE_LIMIT = 100
# Index entries a purge may examine beyond ``limit`` (stale ones cost work but remove no key).
_STALE_ALLOWANCE = 64
# errno values of an OSError that mean the files cannot be reached now (a network filesystem,
# a disk gone): BackendUnavailable, not BackendError.
_UNAVAILABLE_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "EIO",
        "ENOTCONN",
        "ETIMEDOUT",
        "EHOSTDOWN",
        "EHOSTUNREACH",
        "ENETDOWN",
        "ENETUNREACH",
        "ECONNREFUSED",
        "ECONNRESET",
        "ESTALE",
    )
    if hasattr(errno, name)
)


def _shown(key: str) -> str:
    return repr(key if len(key) <= 60 else key[:57] + "...")


def _doing(doing: str, key: str | None) -> str:
    return doing if key is None else f"{doing} {_shown(key)}"


def _unavailable(error: BaseException) -> bool:
    return isinstance(error, ConnectionError | TimeoutError) or (
        isinstance(error, OSError) and error.errno in _UNAVAILABLE_ERRNOS
    )


def _error_text(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    # A third-party client's message may quote a URL with its credentials.
    return redact_url(str(error)) or type(error).__name__


# Local files and fsspec's stores: errno values and connection errors mean "cannot reach".
_ERRORS = ErrorTable(is_unavailable=_unavailable, describe=_error_text)


@dataclass(frozen=True, slots=True)
class _Arguments:
    """The arguments of :func:`fs_driver`, handed to :class:`FSDriver` as one value."""

    base: str
    fs: AbstractFileSystem | None
    fsync: bool
    lock_timeout: float
    clock: Clock
    fsspec_options: dict[str, Any]


class FSDriver(BaseDriver):
    """Stores each key as a file under a base directory; see the module docstring for the layout.

    Build it with :func:`fs_driver` or a URL; the class is for annotations and ``isinstance``.
    Building does no I/O: the
    base directory is created on first use (or by :meth:`open`). ``conditional_writes`` is True
    on a local directory and False on a remote fsspec store (see the module docstring).
    """

    name = "fs"
    supports_trio = True
    conditional_writes = True
    expiry = True
    where: str
    """Where the files live, as errors name it: the local path or the (redacted) URL."""

    def __init__(self, arguments: _Arguments) -> None:
        base, fs, fsync, clock = arguments.base, arguments.fs, arguments.fsync, arguments.clock
        lock_timeout, fsspec_options = arguments.lock_timeout, arguments.fsspec_options
        if isinstance(lock_timeout, bool) or not isinstance(lock_timeout, int | float) or not (
            0 < lock_timeout < float("inf")
        ):
            raise ConfigurationError(
                f"fs: lock_timeout must be a positive number of seconds, not {lock_timeout!r}"
            )
        self.lock_timeout = float(lock_timeout)
        self._local: LocalTree | None = None
        self._remote: FsspecTree | None = None
        self._ready = False
        self._lock: anyio.Lock | None = None
        self._pacer = Pacer()
        # Held by a commit that keeps the writers' lock across yields: this driver's other
        # writers wait here, since the OS lock cannot tell them from the commit (one descriptor).
        self._gate = Gate()
        self._clock = clock
        # When the piggy-backed purge last ran (monotonic seconds).
        self._purged_at = -_AUTO_PURGE_EVERY
        if fs is not None and fsspec_options:
            raise TypeError("pass either fs= or fsspec options for a URL, not both")
        if fs is None and "://" not in base:
            if fsspec_options:
                raise TypeError("fsspec options need an fsspec URL as base, not a local path")
            self._local = LocalTree(_local_root(base), fsync=fsync, clock=clock)
            self.where = self._local.root
            self.inline = True  # local files are read and written on the loop's thread
            return
        if fs is None:
            fs, root = _filesystem_for(base, fsspec_options)
            where = redact_url(base)
        else:
            root = str(fs._strip_protocol(base))
            where = f"{_protocol_of(fs)}://{root.lstrip('/')}"
        if isinstance(fs, LocalFileSystem):
            self._local = LocalTree(_local_root(root), fsync=fsync, clock=clock)
            self.where = self._local.root
            self.inline = True
        else:
            self._remote = FsspecTree(fs, root)
            self.where = where
            # No lock the driver could trust, nor hard links, on a remote store: the
            # capabilities are absent.
            self.conditional_writes = False
            self.expiry = False

    @property
    def root(self) -> str:
        """The base directory: an absolute local path, or the path inside the fsspec filesystem."""
        tree = self._local or self._remote
        assert tree is not None
        return tree.root

    # -- plumbing -----------------------------------------------------------------------------

    def _failure(self, error: BaseException, doing: str) -> BackendError:
        return Translator(_ERRORS, driver=self.name, where=self.where).error(
            error, f"{doing} failed"
        )

    async def _in_thread(self, doing: str, call: Callable[[], T]) -> T:
        try:
            return await anyio.to_thread.run_sync(call)
        except Exception as error:
            # Not chained: a third-party client's exception might quote credentials.
            raise self._failure(error, doing) from None

    async def open(self) -> None:
        """Create the base directory and remove dead writers' temporary files, now."""
        self.ensure_open()
        if not self._ready:
            await self._prepare()

    async def _prepare(self) -> None:
        if self._local is not None:
            try:
                self._local.prepare()
            except OSError as error:
                raise self._failure(error, "opening the base directory") from error
            self._ready = True
            return
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if not self._ready:
                remote = self._remote
                assert remote is not None
                await self._in_thread("opening the base directory", remote.prepare)
                self._ready = True

    # -- single keys --------------------------------------------------------------------------

    async def _start(self) -> LocalTree | None:
        """Every operation's first step: yield if a slice has passed, check the driver is open
        and prepared; return the local tree (``None`` for a remote store)."""
        if monotonic() >= self._pacer.deadline:
            await self._pacer.pause()
        self.ensure_open()
        if not self._ready:
            await self._prepare()
        return self._local

    async def _on_tree(self, doing: str, call: Callable[[Tree], T], key: str | None = None) -> T:
        """Run one tree operation: inline on local disk, in a worker thread otherwise.

        ``doing`` names the operation in errors, followed by ``key`` if given: the text is only
        put together when an error needs it (a point read costs about 2 µs; the text, 0.3).
        """
        local = await self._start()
        if local is not None:
            try:
                return call(local)
            except OSError as error:
                raise self._failure(error, _doing(doing, key)) from error
        remote = self._remote
        assert remote is not None
        return await self._in_thread(_doing(doing, key), lambda: call(remote))

    async def get(self, key: str) -> bytes | None:
        """Return the bytes of ``key``'s file, or ``None`` if there is none."""
        path = key_path(key)
        return await self._on_tree("reading", lambda tree: tree.read(path), key)

    # The single-key operations without an await (Storage tries them first): on local disk,
    # between the pacer's pauses, a point operation needs no coroutine. Awaiting get's chain
    # (get, _on_tree, _start) cost more than the system calls of a miss: a miss took 4.3 µs
    # against raw files' 3.6 (0.84), a delete 28 against 17 (0.62). Each declines, leaving the
    # awaited path to do it, whenever that path would first await or raise: a remote store,
    # a slice of the pacer used up, a driver closed or not yet prepared, or (for a write) a
    # batch running or the writers' lock taken by another process.

    def _inline_tree(self) -> LocalTree | None:
        """The local tree if an operation may run on it now without an await, else ``None``."""
        local = self._local
        if local is None or self._closed or not self._ready:
            return None
        if monotonic() >= self._pacer.deadline:
            return None
        return local

    def try_get(self, key: str) -> bytes | Later | None:
        # docstring inherited
        local = self._inline_tree()
        if local is None:
            return LATER
        try:
            return local.read(key_path(key))
        except OSError as error:
            raise self._failure(error, _doing("reading", key)) from error

    def _try_write(self, doing: str, key: str, call: Callable[[LocalTree], object]) -> bool:
        """Run a write or delete now, holding the writers' lock, if it can go without waiting."""
        local = self._inline_tree()
        if local is None or self._gate.closed or not local.try_lock():
            return False
        try:
            try:
                call(local)
            finally:
                local.unlock()
        except OSError as error:
            raise self._failure(error, _doing(doing, key)) from error
        return True

    def try_set(self, key: str, value: bytes) -> bool:
        # docstring inherited
        path = key_path(key)
        return self._try_write("writing", key, lambda tree: tree.write(path, value))

    def try_delete(self, key: str) -> bool:
        # docstring inherited
        path = key_path(key)
        return self._try_write("deleting", key, lambda tree: tree.remove(path))

    async def _write_on_tree(
        self, doing: str, call: Callable[[Tree], T], key: str | None = None
    ) -> T:
        """Run one write or delete: on local disk inline, holding the writers' lock.

        ``doing`` and ``key`` name the operation in errors, as for :meth:`_on_tree`.
        """
        local = await self._start()
        if local is None:
            remote = self._remote
            assert remote is not None
            return await self._in_thread(_doing(doing, key), lambda: call(remote))
        try:
            # The common case costs one flock call here and one below.
            if self._gate.closed or not local.try_lock():
                await self._wait_for_lock(local)
            try:
                return call(local)
            finally:
                local.unlock()
        except OSError as error:
            raise self._failure(error, _doing(doing, key)) from error

    async def _wait_for_lock(self, local: LocalTree) -> None:
        """Return holding the writers' lock, having waited without blocking the event loop.

        Raises :class:`BackendUnavailable` after ``lock_timeout`` seconds, holding nothing.
        """
        deadline = monotonic() + self.lock_timeout
        pause = _FIRST_PAUSE
        while True:
            # No await between the gate and the lock: no task of this driver slips in between.
            await self._gate.wait()
            self.ensure_open()
            if local.try_lock():
                return
            left = deadline - monotonic()
            if left <= 0:
                raise BackendUnavailable(
                    f"the writers' lock ({TEMP_DIR}/{LOCK_NAME}) stayed taken for lock_timeout="
                    f"{self.lock_timeout:g} s",
                    driver=self.name,
                    where=self.where,
                )
            await anyio.sleep(min(left, pause * random.uniform(0.5, 1.5)))
            pause = min(pause * 2, _LONGEST_PAUSE)

    async def set(self, key: str, value: bytes) -> None:
        """Replace ``key``'s file atomically: readers see the old bytes or the new, never a mix."""
        path = key_path(key)
        await self._write_on_tree("writing", lambda tree: tree.write(path, value), key)

    async def delete(self, key: str) -> None:
        """Remove ``key``'s file and the directories it leaves empty; a missing key is fine."""
        path = key_path(key)
        await self._write_on_tree("deleting", lambda tree: tree.remove(path), key)

    # -- conditional writes -------------------------------------------------------------------

    def _local_tree(self) -> LocalTree:
        local = self._local
        if local is None:
            raise NotSupported(CONDITIONAL_WRITES, driver=self.name)
        return local

    async def get_versioned(self, key: str) -> Versioned[bytes] | None:
        """Return ``key``'s bytes and version, both from one open file, or ``None``.

        Takes no lock. Raises :class:`NotSupported` on a remote store.
        """
        local = self._local_tree()
        path = key_path(key)
        await self._start()
        try:
            found = local.read_versioned(path)
        except OSError as error:
            raise self._failure(error, f"reading {_shown(key)}") from error
        return None if found is None else Versioned(*found)

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        """Under the writers' lock, check every condition, then apply every change.

        Atomic against every other writer of the store (all hold the lock); see the module
        docstring for what a crash part way leaves. Once it has started writing, a cancelled
        commit finishes first. Raises :class:`NotSupported` on a remote store.
        """
        local = self._local_tree()
        self.ensure_open()
        if not self._ready:
            await self._prepare()
        paths = [key_path(change.key) for change in changes]
        pacer = self._pacer
        if pacer.due():
            await pacer.pause()
        try:
            if self._gate.closed or not local.try_lock():
                await self._wait_for_lock(local)
        except OSError as error:
            raise self._failure(error, "taking the writers' lock") from error
        gated = False
        interruption: BaseException | None = None
        try:
            failed: list[str] = []
            for change, path in zip(changes, paths, strict=True):
                if pacer.due():
                    gated = self._hold_gate(gated)
                    await pacer.pause()  # nothing written yet: cancelling here is clean
                    self.ensure_open()
                if change.expected is not ANY_VERSION:
                    try:
                        current = local.version(path)
                    except OSError as error:
                        raise self._failure(error, f"reading {_shown(change.key)}") from error
                    if not change.holds_for(current):
                        failed.append(change.key)
            if failed:
                raise conflict(failed)
            versions: list[int | None] = []
            for change, path in zip(changes, paths, strict=True):
                if pacer.due():
                    gated = self._hold_gate(gated)
                    interruption = interruption or await pacer.pause_shielded()
                try:
                    if change.action is Action.WRITE:
                        assert change.value is not None
                        versions.append(local.write_versioned(path, change.value))
                        continue
                    if change.action is Action.DELETE:
                        local.remove(path)
                except OSError as error:
                    raise self._failure(error, f"committing {_shown(change.key)}") from error
                versions.append(None)
        finally:
            local.unlock()
            if gated:
                self._gate.open()
        if interruption is not None:
            raise interruption
        return versions

    def _hold_gate(self, held: bool) -> bool:
        """Close the gate before a commit's first yield; return True (it is held)."""
        if not held:
            self._gate.close()
        return True

    # -- expiry -------------------------------------------------------------------------------

    def _expiring_tree(self) -> LocalTree:
        local = self._local
        if local is None:
            raise NotSupported(EXPIRY, driver=self.name)
        return local

    async def set_expiring(self, key: str, value: bytes, ttl: float) -> None:
        """Replace ``key``'s file atomically with ``value``, to expire ``ttl`` seconds from now.

        Raises :class:`NotSupported` on a remote store.
        """
        await self.set_many_expiring([(key, value)], ttl)

    async def set_many_expiring(self, items: Sequence[tuple[str, bytes]], ttl: float) -> None:
        """Store every pair to expire ``ttl`` seconds from one instant, read under the lock
        before the first write; each write is atomic, the batch is not (like ``set_many``).

        Raises :class:`NotSupported` on a remote store.
        """
        local = self._expiring_tree()
        pairs = [(key_path(key), value) for key, value in items]
        instant: list[int] = []

        def write(tree: Tree, pair: tuple[str, bytes]) -> None:
            if not instant:
                instant.append(local.now_ms())
            now = instant[0]
            local.write_expiring(
                pair[0], pair[1], expires_ms=expiry_millis(now, ttl), written_ms=now
            )

        await self._each("writing a batch", pairs, write, locked=True)
        await self._purge_now_and_then()

    async def expire(self, key: str, ttl: float | None) -> bool:
        """Set (or with ``None`` remove) a live key's expiry: one rename, link or unlink of its
        sidecar under the writers' lock. Raises :class:`NotSupported` on a remote store."""
        local = self._expiring_tree()
        path = key_path(key)

        def expire(tree: Tree) -> bool:
            expires = None if ttl is None else expiry_millis(local.now_ms(), ttl)
            return local.expire(path, expires)

        live = await self._write_on_tree("setting the expiry of", expire, key)
        await self._purge_now_and_then()
        return live

    async def get_meta(self, key: str) -> Meta | None:
        """Return the size, write time (the file's modification time), expiry and version of a
        live key, from one open file; ``None`` if it is missing or expired."""
        local = self._expiring_tree()
        path = key_path(key)
        await self._start()
        try:
            found = local.meta(path)
        except OSError as error:
            raise self._failure(error, f"reading {_shown(key)}") from error
        if found is None:
            return None
        size, written, expires, version = found
        return Meta(
            size=size,
            written_at=from_millis(written),
            expires_at=None if expires is None else from_millis(expires),
            version=version,
        )

    async def purge_expired(self, limit: int = 1000) -> int:
        """Remove up to ``limit`` expired keys found through the expiry index, oldest instant
        first, each under the writers' lock; return how many. Never walks the store."""
        local = self._expiring_tree()
        await self._start()
        now = local.now_ms()
        try:
            entries, finished = local.due_entries(now, limit + _STALE_ALLOWANCE)
        except OSError as error:
            raise self._failure(error, "listing the expiry index") from error
        removed = 0
        for entry in entries:
            if removed >= limit:
                return removed
            removed += await self._write_on_tree(
                "purging expired keys", partial(_purge_entry, local, entry, now)
            )
        for bucket in finished:
            await self._write_on_tree(
                "purging expired keys", partial(_remove_directory, local, bucket)
            )
        return removed

    async def _purge_now_and_then(self) -> None:
        """The purge piggy-backed on expiring writes: a small batch, at most once a second.

        A failure is logged, not raised: the write it follows has succeeded.
        """
        if monotonic() - self._purged_at < _AUTO_PURGE_EVERY:
            return
        self._purged_at = monotonic()
        try:
            await self.purge_expired(_AUTO_PURGE_LIMIT)
        except BackendError as error:
            _log.warning("fs %s: purging expired keys failed: %s", self.where, error)

    # -- batches ------------------------------------------------------------------------------

    async def _each(
        self,
        doing: str,
        items: Sequence[X],
        call: Callable[[Tree, X], R],
        *,
        locked: bool = False,
    ) -> list[R]:
        """Apply one operation to every item: inline on local disk, in one thread hop otherwise.

        With ``locked`` (writes) each item holds the writers' lock while it is applied.
        """
        self.ensure_open()
        if not self._ready:
            await self._prepare()
        local = self._local
        if local is None:
            remote = self._remote
            assert remote is not None
            return await self._in_thread(doing, lambda: [call(remote, item) for item in items])
        results: list[R] = []
        pacer = self._pacer
        # A file operation takes tens of microseconds, a clock read a tenth of one: look at the
        # clock before each.
        gate = self._gate
        for item in items:
            if monotonic() >= pacer.deadline:
                await pacer.pause()
                self.ensure_open()
            try:
                if not locked:
                    results.append(call(local, item))
                    continue
                if gate.closed or not local.try_lock():
                    await self._wait_for_lock(local)
                try:
                    results.append(call(local, item))
                finally:
                    local.unlock()
            except OSError as error:
                raise self._failure(error, doing) from error
        return results

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return the values of ``keys`` in the order asked, ``None`` for each missing key."""
        paths = [key_path(key) for key in keys]
        return await self._each("reading a batch", paths, lambda tree, path: tree.read(path))

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Store every pair in order (a later pair for a key wins); each write is atomic.

        The batch as a whole is not: files have no transactions, so a failure part-way leaves
        the earlier pairs written.
        """
        pairs = [(key_path(key), value) for key, value in items]
        await self._each(
            "writing a batch", pairs, lambda tree, pair: tree.write(*pair), locked=True
        )

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Remove every key in ``keys``, skipping missing ones; not atomic as a whole."""
        paths = [key_path(key) for key in keys]
        await self._each(
            "deleting a batch", paths, lambda tree, path: tree.remove(path), locked=True
        )

    # -- scans --------------------------------------------------------------------------------

    async def _entries(self, directory: str, partial: str) -> tuple[list[Entry], bool]:
        """The entries of ``directory`` in key order, and whether every segment in them is at
        most :data:`MAX_PIECE` characters long (no ``~`` directory was flattened into them)."""
        # Two steps, with a turn for other tasks between: reading a large directory and
        # decoding its names each take milliseconds.
        listed = await self._on_tree("listing keys", lambda tree: tree.list_dir(directory))
        short = not listed.directories
        await self._pacer.tick()

        def list_dir_once(tree: Tree) -> Callable[[str], Listing]:
            return lambda path: listed if path == directory else tree.list_dir(path)

        sidecars: list[Sidecar] = []
        entries = await self._on_tree(
            "listing keys",
            lambda tree: list_entries(list_dir_once(tree), directory, partial, sidecars),
        )
        local = self._local
        if not sidecars or local is None:
            return entries, short  # no key here ever had an expiry: nothing more to do
        try:
            gone = local.expired_segments(sidecars, local.now_ms())
        except OSError as error:
            raise self._failure(error, "listing keys") from error
        if not gone:
            return entries, short
        kept: list[Entry] = []
        for entry in entries:
            if isinstance(entry, list):
                entry = [segment for segment in entry if segment not in gone]
                if not entry:
                    continue
            kept.append(entry)
        return kept, short

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Yield the keys starting with ``prefix`` in code point order, one directory at a time.

        Only the directory of the prefix's complete segments (``a:b`` for ``a:b:c``) is walked,
        depth first; memory holds the listings of the directories on the current path. Keys
        written or deleted during the scan may or may not be seen.
        """
        self.ensure_open()
        if not self._ready:
            await self._prepare()
        complete, partial = split_prefix(prefix)
        head = "".join(segment + ":" for segment in complete)
        entries, short = await self._entries(dir_path(complete), partial)
        # Per directory on the current path: the keys' head, its entries left, whether all its
        # segments are short.
        stack: list[tuple[str, Iterator[Entry], bool]] = [(head, iter(entries), short)]
        while stack:
            key_head, remaining, short = stack[-1]
            entry = next(remaining, None)
            if entry is None:
                stack.pop()
                continue
            if isinstance(entry, tuple):
                _, segment, path = entry
                children, short = await self._entries(path, "")
                self.ensure_open()
                stack.append((f"{key_head}{segment}:", iter(children), short))
                continue
            # A run of value files: keys built in one pass, handed out with no await between
            # them but a pacer check every _SCAN_STEP keys.
            keys = [key_head + segment for segment in entry] if key_head else entry
            # A key of at most MAX_KEY_BYTES // 4 characters is short enough in any encoding:
            # with short segments, that holds for the whole run without looking at each key.
            if (not short or len(key_head) + MAX_PIECE > MAX_KEY_BYTES // 4) and len(
                max(keys, key=len)
            ) * 4 > MAX_KEY_BYTES:
                keys = self._short_enough(keys)
            for start in range(0, len(keys), _SCAN_STEP):
                for key in keys[start : start + _SCAN_STEP]:
                    yield key
                    if self._closed:
                        self.ensure_open()
                await self._pacer.tick()

    def _short_enough(self, keys: list[str]) -> list[str]:
        """``keys`` without those longer than a key may be (logged): another program's files."""
        kept = []
        for key in keys:
            if len(key) * 4 > MAX_KEY_BYTES and len(key.encode("utf-8")) > MAX_KEY_BYTES:
                _log.warning(
                    "fs %s: skipped a file whose key would be longer than %d bytes: %r",
                    self.where,
                    MAX_KEY_BYTES,
                    key[:60] + "...",
                )
            else:
                kept.append(key)
        return kept

    async def close(self) -> None:
        """Stop the driver; idempotent. A filesystem passed in with ``fs=`` is left open.

        A commit already writing finishes first (it never stops half applied because of a
        close); later operations raise :class:`~kvstore.errors.StorageClosed`.
        """
        if self.closed:
            return
        self.mark_closed()
        with anyio.CancelScope(shield=True):
            await self._gate.wait()
        if self._local is not None:
            self._local.close()


def _purge_entry(local: LocalTree, entry: str, now_ms: int, tree: Tree) -> int:
    return local.purge_entry(entry, now_ms)


def _remove_directory(local: LocalTree, relative: str, tree: Tree) -> None:
    local.remove_empty_directory(relative)


def _protocol_of(fs: AbstractFileSystem) -> str:
    protocol = fs.protocol
    return str(protocol if isinstance(protocol, str) else protocol[0])


def _local_root(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path)).replace(os.sep, "/").rstrip("/") or "/"


def _filesystem_for(url: str, options: dict[str, Any]) -> tuple[AbstractFileSystem, str]:
    try:
        fs, path = url_to_fs(url, **options)
    except ImportError as error:
        raise MissingDependency(
            f"the fs driver cannot open {redact_url(url)!r}: {error}"
        ) from error
    except ValueError as error:
        raise UnknownScheme(
            f"fsspec knows no filesystem for {redact_url(url)!r}: {error}"
        ) from error
    if not isinstance(fs, AbstractFileSystem):  # pragma: no cover - fsspec always returns one
        raise UnknownScheme(f"fsspec returned no filesystem for {redact_url(url)!r}")
    return fs, str(path)


def fs_driver(
    base: str = "./data",
    *,
    fs: AbstractFileSystem | None = None,
    fsync: bool = False,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    clock: Clock = time.time,
    **fsspec_options: Any,
) -> FSDriver:
    """Return a driver keeping one file per key under ``base``.

    ``base`` is a local directory (created on first use), a ``file://`` URL or any fsspec URL
    (``memory://name``, ``s3://bucket/path``; ``fsspec_options`` go to that filesystem); or pass
    ``fs=`` an fsspec filesystem instance and ``base`` a path in it. ``fsync=True`` makes each
    local ``set`` durable against power loss, at a large cost in speed. ``lock_timeout`` bounds,
    in seconds, how long a local write waits for the writers' lock (see the module docstring).
    ``clock`` (POSIX seconds now) decides expiry instants and write times on local disk.
    """
    return FSDriver(_Arguments(base, fs, fsync, lock_timeout, clock, fsspec_options))


# fsspec protocols served from this process or this machine: a user, password or (for local
# files) a host in their URLs would be read as part of a path, never as credentials.
_NO_CREDENTIALS: Final = frozenset({"file", "local", "memory"})
_LOCAL_OPTIONS: Final[dict[str, Callable[[str], Any]]] = {
    "fsync": boolean,
    "lock_timeout": positive_float,
}


def from_url(url: str) -> FSDriver:
    """Build a driver from ``file:///abs/dir``, ``fs+PROTOCOL://...`` or another fsspec URL.

    ``fs+memory://name`` is fsspec's ``memory://name``; the ``fs+`` form reaches fsspec
    protocols whose scheme another kvstore driver claims. A ``file://`` URL names an absolute
    directory, percent-decoded, and takes the options ``fsync`` (true/false) and
    ``lock_timeout`` (seconds); a host, user or
    password in it, or in a ``memory://`` URL, raises
    :class:`~kvstore.errors.ConfigurationError` rather than becoming part of a folder name.
    Other fsspec URLs (``s3://``, ``sftp://user:pw@host/dir``) go to fsspec as written, which
    reads their credentials; they take no query options (pass fsspec options to
    :func:`fs_driver`).
    """
    match = re.match(r"([A-Za-z][A-Za-z0-9+.\-]*)://", url) if isinstance(url, str) else None
    if match is None:
        raise UnknownScheme(f"{redact_url(str(url))!r} is not a URL: expected scheme://...")
    scheme = match.group(1).lower()
    protocol = scheme.removeprefix("fs+")
    rest = url[match.end() :]
    if protocol in ("file", "local"):
        parsed = parse_url(f"{protocol}://{rest}", schemes=(protocol,))
        if parsed.username is not None or parsed.password is not None or parsed.hosts:
            raise ConfigurationError(
                f"{redact_url(url)!r}: a {protocol}:// URL names no host, user or password; "
                f"write {protocol}:///absolute/dir (three slashes)"
            )
        if not parsed.path:
            raise ConfigurationError(f"{redact_url(url)!r} names no directory")
        options = take_options(parsed.options, _LOCAL_OPTIONS, where=f"{protocol}://")
        return fs_driver(
            "/" + parsed.path,
            fsync=options.get("fsync", False),
            lock_timeout=options.get("lock_timeout", DEFAULT_LOCK_TIMEOUT),
        )
    # As urllib splits: an '@' after the first '/' still ends user information that held a
    # raw '/' ("memory://user:pa/ss@name").
    if protocol in _NO_CREDENTIALS and "@" in rest.partition("?")[0]:
        raise ConfigurationError(
            f"{redact_url(url)!r}: a {protocol}:// URL takes no user or password"
        )
    if "?" in rest:
        raise ConfigurationError(
            f"{redact_url(url)!r}: the fs driver takes no URL options for {protocol}:// "
            "(known options: fsync and lock_timeout, for file:// URLs only); pass fsspec "
            "options to fs_driver()"
        )
    return fs_driver(f"{protocol}://{rest}")
