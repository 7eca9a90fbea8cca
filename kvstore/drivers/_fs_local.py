"""The filesystem driver's local-disk operations: plain ``os`` calls, atomic writes, pruning.

Every method is synchronous and raises ``OSError``; the driver calls them inline on the event
loop (a local read or write takes 10-20 µs, far less than the ~130 µs of a hop to a worker
thread) and translates the errors.

Writes go to a temporary file in ``<base>/.tmp/`` and are renamed over the target with
``os.replace``, which is atomic: a reader, or a process that starts after a crash, sees the old
value or the new one, never a torn file. Temporary names carry the writer's host and process id so
that opening a base removes the files of dead writers without touching those of live ones.

Nothing is ever read, written, renamed or removed through a symbolic link: the base is resolved
to its real path once, when the driver opens it, and every path below it is opened with Linux's
``openat2`` and ``RESOLVE_NO_SYMLINKS`` (one system call, and no window between a check and the
open), or where that is missing by walking directory descriptors opened with ``O_NOFOLLOW``.
Renames and unlinks name a single entry inside a directory descriptor so opened. A link in the
way raises :class:`LinkInTheWay`; listings leave links (and other special files) out, logged.

Versions (conditional writes) are not stored: a key's version is derived from the identity of its
file, ``(st_ino, generation, st_mtime_ns, st_size)`` mixed by BLAKE2b into ``1 .. 2**52 - 1``
(:func:`file_version`), where ``generation`` is the inode's generation number
(``FS_IOC_GETVERSION``; 0 where the filesystem or the system has none). So the layout stays one
plain file per key, holding only the value, files written before versions existed have a version
like any other (nothing to migrate; the driver never reports ``LEGACY_VERSION``), and versions
survive restarts. Every write makes a new file:

- A replace renames a new temporary file over the old one. The temporary file is created while
  the old file still exists, so the two have different inode numbers: the version changes.
- A file's inode number can be reused once it is freed (ext4 hands the lowest free inode of a
  group to the next file: rewriting one key cycles through two or three numbers), so a key
  rewritten twice, or deleted and created again, may get back an inode number a reader saw
  before, often with the same size, and the kernel's timestamps are coarse (a clock tick, up to
  10 ms, before Linux 6.13), so inode, mtime and size alone could repeat and a stale version
  match again. The generation tells reused inodes apart: ext4 and XFS give every newly
  allocated inode a fresh random 32-bit one, Btrfs the transaction's (and Btrfs, tmpfs and APFS
  do not reuse inode numbers soon). It costs one ``ioctl`` on versioned reads and conditional
  writes only: plain ``get``/``set``/``delete`` never ask for it. On a filesystem that reuses
  inode numbers at once and has no generation, a key rewritten within one timestamp tick to a
  value of the same size can repeat an earlier version.
- A file copied or restored (new inode) gets new versions: a version read before then no longer
  matches, so a conditional write on it conflicts rather than overwrite blindly. A program that
  edits a file in place changes its mtime (and usually its size), so its version too.

The writers' lock. Conditional writes check a condition and then rename; an unconditional write
landing between the two would be overwritten unseen. So every write and delete, conditional or
not, holds an exclusive ``flock`` on ``<base>/.tmp/writers.lock`` (a name no key has, never
listed, never removed), while reads take no lock. The lock file is opened once per driver and
kept open: taking and releasing it is two system calls on that descriptor, about a microsecond,
never blocking (``LOCK_NB``; the driver waits asynchronously). ``flock`` locks belong to an
open file description, so a forked child reopens the file rather than share its parent's.
Removing ``.tmp`` while processes have the store open would split them between two lock files:
do not.

Expiry. A key with an expiry has a second name for its value's inode: a hard link beside the value
file, ``<stem>.<instant>.ttl`` (see :mod:`kvstore.drivers._fs_layout`), naming the expiry instant
in milliseconds. A link shares the inode, so the sidecar cannot outlive or belong to another value
unnoticed: it counts only while it and ``<stem>.kv`` are the same inode, and since it keeps that
inode allocated, no later file can reuse its number and match by accident. A file without an
expiry has one link (``st_nlink == 1``), which the ``fstat`` a read makes anyway reports: reads,
writes and scans of keys that never had an expiry do no more work than before. Every change of
expiry is one atomic directory operation ordered before or after the value's rename:

- an expiring write links its temporary file to the new sidecar name *before* renaming it over
  the value (a crash in between leaves the old value, with its old expiry or none, and a sidecar
  of a file that never became the value: ignored); it then unlinks the old value's sidecar.
- a plain write renames a one-link file over the value: from that instant the key has no expiry.
  It makes no system call more than before: the old value's sidecar, now stale, is ignored, and
  the purge removes it (with the old bytes it holds) once its instant has passed.
- ``expire`` renames the sidecar (one instant to another), links one, or unlinks it.
- a delete unlinks the value, then its sidecar (in a store this tree has seen expiring keys
  in: one ``lstat`` more per delete there; elsewhere the purge removes a sidecar left).

The file's access time holds a hint, ``instant * 10**6 + alternate`` ns, so that a read of an
expiring key finds its sidecar with one ``stat``; the sidecar decides, and if the hint is off
(something else set the access time) the read looks through the directory instead. The write
time is the file's modification time (set from the driver's clock where one was injected).

The purge finds expired keys through an index, ``<base>/.expiry/<minute>/<instant>-<random>``:
one small file per expiring write or ``expire``, holding the sidecar's path, written before the
sidecar exists. Entries are hints: the purge takes the due minutes in order, checks each entry's
sidecar against its value, removes an expired value, its sidecar and the entry, and drops
entries whose sidecar is gone or stale (removing a stale sidecar too). Nothing walks the store.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import itertools
import logging
import os
import secrets
import socket
import stat
import struct
import sys
import time
import weakref
from collections.abc import Callable
from typing import Any

from kvstore.drivers._fs_layout import (
    EXPIRY_DIR,
    SUFFIX,
    Listing,
    Sidecar,
    parse_sidecar,
    sidecar_name,
)
from kvstore.expiry import Clock, now_millis

__all__ = ["HOST_TAG", "LOCK_NAME", "LinkInTheWay", "LocalTree", "file_version", "temp_name_owner"]

_log = logging.getLogger("kvstore.fs")

TEMP_DIR = ".tmp"
# The writers' lock file, in TEMP_DIR: not a temporary file's name, so never cleaned up.
LOCK_NAME = "writers.lock"
_OPEN_LOCK = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
_LOCK_TRY = fcntl.LOCK_EX | fcntl.LOCK_NB
_VERSION_MASK = (1 << 52) - 1
_IDENTITY = struct.Struct("<QQqQ")
# Linux's FS_IOC_GETVERSION, _IOR('v', 1, long): the inode's generation number.
_GET_GENERATION = (
    (2 << 30) | (struct.calcsize("l") << 16) | (ord("v") << 8) | 1
    if sys.platform == "linux"
    else None
)
# How often a write retries when a concurrent delete pruned its directory in between.
_WRITE_ATTEMPTS = 50
# Temporary files of other hosts (a shared network disk) are removed only when this old.
_FOREIGN_TEMP_AGE = 24 * 3600.0
# Identifies this machine in temporary file names (a base may live on a shared network disk).
HOST_TAG = hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]
_counter = itertools.count()
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
# A directory opened only to name entries in it (Linux O_PATH: no read permission needed).
_DIR_HANDLE = getattr(os, "O_PATH", os.O_RDONLY) | _DIRECTORY | _CLOEXEC
_OPEN_READ = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) | _CLOEXEC
_OPEN_WRITE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | _CLOEXEC
_OPEN_LIST = os.O_RDONLY | _DIRECTORY | _CLOEXEC
_NS_PER_MS = 1_000_000
# The expiry index keeps one directory per minute of expiry instants: a purge lists only the
# minutes that are due, and in each only the entries it reaches.
_BUCKET_MS = 60_000


class _Relinked(Exception):
    """A file's links changed while a reader looked for its sidecar: read it again."""


class LinkInTheWay(OSError):
    """A symbolic link (or something else that is not the driver's) sits on a key's path."""


def _link_in_the_way(path: str) -> LinkInTheWay:
    return LinkInTheWay(
        errno.ELOOP,
        "a symbolic link is in the way; the driver never follows links out of its base",
        path,
    )


# -- opening without following links -----------------------------------------------------------


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_SYS_OPENAT2 = 437  # the same number on every Linux architecture that has it (5.6 and later)
_AT_FDCWD = -100
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04

Opener = Callable[[str, int], int]


def _openat2_opener() -> Opener | None:
    """Return ``open(path, flags)`` refusing every symlink on the path, if the kernel has
    ``openat2``; ``None`` elsewhere (other systems, old kernels, sandboxes that forbid it).

    It returns the descriptor, or ``-errno`` on failure: a missing file is the common case of a
    read, and raising costs more than the call itself.
    """
    if sys.platform != "linux":
        return None
    try:
        syscall = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):  # pragma: no cover - every glibc and musl has syscall
        return None
    syscall.restype = ctypes.c_long
    get_errno = ctypes.get_errno
    resolve = _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS
    # One open_how per flag set, built once: building it per call would double the call's cost.
    hows: dict[int, tuple[_OpenHow, Any]] = {}

    def open_no_links(path: str, flags: int) -> int:
        found = hows.get(flags)
        if found is None:
            how = _OpenHow(flags, 0, resolve)
            found = hows[flags] = (how, ctypes.byref(how))
        encoded = path.encode("utf-8", "surrogateescape")
        while True:
            fd = int(syscall(_SYS_OPENAT2, _AT_FDCWD, encoded, found[1], 24))
            if fd >= 0:
                return fd
            code = get_errno()
            if code != errno.EINTR:
                return -code

    probe = open_no_links("/", _DIR_HANDLE)
    if probe < 0:
        return None  # ENOSYS (kernel before 5.6) or EPERM (a seccomp filter)
    os.close(probe)
    return open_no_links


_OPENAT2 = _openat2_opener()
_MISSING = frozenset({-errno.ENOENT, -errno.ENOTDIR})


def _open_walking(root: str, relative: str, flags: int) -> int:
    """Open ``root/relative`` one component at a time, refusing links: the portable way."""
    fd = os.open(root, _DIR_HANDLE)
    try:
        *directories, last = relative.split("/")
        for name in directories:
            try:
                following = os.open(name, _DIR_HANDLE | _NOFOLLOW, dir_fd=fd)
            except OSError as error:
                if error.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link(fd, name):
                    raise _link_in_the_way(f"{root}/{relative}") from None
                raise
            os.close(fd)
            fd = following
        try:
            return os.open(last, flags | _NOFOLLOW, dir_fd=fd)
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.EMLINK, errno.ENOTDIR) and _is_link(fd, last):
                raise _link_in_the_way(f"{root}/{relative}") from None
            raise
    finally:
        os.close(fd)


def _is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def _reject_non_regular(fd: int, path: str) -> os.stat_result:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise LinkInTheWay(errno.EINVAL, "not a regular file; the driver did not write it", path)
    return info


def file_version(info: os.stat_result, generation: int = 0) -> int:
    """The version of a file: its identity (inode, generation, mtime in ns, size) mixed into
    ``1 .. 2**52-1``."""
    identity = _IDENTITY.pack(info.st_ino, generation, info.st_mtime_ns, info.st_size)
    digest = hashlib.blake2b(identity, digest_size=8).digest()
    return (int.from_bytes(digest, "little") & _VERSION_MASK) or 1


def _generation(fd: int) -> int:
    """The generation number of the inode open as ``fd``; 0 where there is none."""
    if _GET_GENERATION is None:
        return 0
    answer = bytearray(8)
    try:
        fcntl.ioctl(fd, _GET_GENERATION, answer, True)
    except OSError:  # ENOTTY and the like: the filesystem keeps none
        return 0
    return int.from_bytes(answer[:4], sys.byteorder)


def _version_of_open(fd: int, info: os.stat_result) -> int:
    return file_version(info, _generation(fd))


# Every tree, so that a forked child stops sharing its parent's lock (see LocalTree.lock).
_TREES: weakref.WeakSet[LocalTree] = weakref.WeakSet()


def _reopen_locks_in_child() -> None:
    for tree in list(_TREES):
        tree.forget_lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reopen_locks_in_child)


def _read_open(fd: int, relative: str) -> tuple[bytes, os.stat_result]:
    """Read an open regular file whole; return its bytes and the ``fstat`` taken first."""
    info = _reject_non_regular(fd, relative)
    size = info.st_size
    data = os.read(fd, size + 1)
    if len(data) <= size:
        return data, info
    # The file grew since fstat (another program writes it in place): read on to its end. Its
    # version moved on too, so a condition on the version returned with it fails: safe.
    chunks = [data]
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks), info


def _rmdir_quiet_opener() -> Callable[[int, str], int] | None:
    """Return ``rmdir(dir_fd, name) -> errno`` (0: removed) calling libc's ``unlinkat``
    directly, if it can: a failed rmdir (the usual case: the directory still holds other keys)
    then costs no Python exception, which takes as long as the system call itself."""
    if sys.platform != "linux":
        return None
    try:
        unlinkat = ctypes.CDLL(None, use_errno=True).unlinkat
    except (OSError, AttributeError):  # pragma: no cover - every glibc and musl has it
        return None
    unlinkat.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int)
    unlinkat.restype = ctypes.c_int
    get_errno = ctypes.get_errno

    def rmdir_quiet(dir_fd: int, name: str) -> int:
        if unlinkat(dir_fd, name.encode("utf-8", "surrogateescape"), _AT_REMOVEDIR) == 0:
            return 0
        return get_errno() or errno.EIO

    return rmdir_quiet


_AT_REMOVEDIR = 0x200  # Linux
_RMDIR_QUIET = _rmdir_quiet_opener()


def _rmdir_errno(dir_fd: int, name: str) -> int:
    """Remove the directory ``name`` inside ``dir_fd`` if it is empty; 0 if it was, else the
    ``errno`` saying why not (``ENOTEMPTY``, ``ENOENT``, ...)."""
    if _RMDIR_QUIET is not None:
        return _RMDIR_QUIET(dir_fd, name)
    try:
        os.rmdir(name, dir_fd=dir_fd)
    except OSError as error:
        return error.errno or errno.EIO
    return 0


def _remove_empty_directory(dir_fd: int, name: str) -> bool:
    """Remove the directory ``name`` inside ``dir_fd`` if it is empty; tell whether it was."""
    return _rmdir_errno(dir_fd, name) == 0


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


def _lstat_in(dir_fd: int, name: str) -> os.stat_result | None:
    """``lstat`` of ``name`` inside a directory handle, or ``None`` if there is nothing."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _unlink_quiet(dir_fd: int, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)


def _same_inode(first: os.stat_result, second: os.stat_result) -> bool:
    return first.st_ino == second.st_ino and first.st_dev == second.st_dev


def _expiry_in(dir_fd: int, stem: str, info: os.stat_result) -> tuple[int, str] | None:
    """The expiry instant and sidecar name of the file ``info`` (named ``<stem>.kv`` in the
    directory ``dir_fd``), or ``None`` if it has no sidecar."""
    instant, alternate = divmod(info.st_atime_ns, _NS_PER_MS)
    if alternate <= 1:
        hinted = sidecar_name(stem, instant, alternate)
        found = _lstat_in(dir_fd, hinted)
        if found is not None and _same_inode(found, info):
            return instant, hinted
    return _search_sidecars(dir_fd, stem, info)


def _search_sidecars(dir_fd: int, stem: str, info: os.stat_result) -> tuple[int, str] | None:
    """Look through the directory for a sidecar of ``info``: the hint was off. The earliest
    instant wins, should there ever be two."""
    best: tuple[int, str] | None = None
    listing = os.open(".", _OPEN_LIST, dir_fd=dir_fd)
    try:
        with os.scandir(listing) as entries:
            names = [entry.name for entry in entries if entry.name.startswith(stem + ".")]
    finally:
        os.close(listing)
    for name in names:
        parsed = parse_sidecar(name)
        if parsed is None or parsed[0] != stem or (best is not None and parsed[1] >= best[0]):
            continue
        found = _lstat_in(dir_fd, name)
        if found is not None and _same_inode(found, info):
            best = parsed[1], name
    return best


# Deletes keep handles on this many directories (see LocalTree.remove): keys sharing a prefix
# share a directory, so a few cover a run of deletes; each costs one descriptor.
_HELD_DIRS = 8

# Up to this many due sidecars in one directory are checked by lstat; more, by one listing.
_FEW_SIDECARS = 16


def _linked_by_lstat(dir_fd: int, sidecars: list[Sidecar]) -> list[Sidecar]:
    """The sidecars (all in the directory ``dir_fd``) that are links to their value file."""
    linked = []
    for sidecar in sidecars:
        link = _lstat_in(dir_fd, sidecar.name)
        value = _lstat_in(dir_fd, sidecar.value)
        if link is not None and value is not None and _same_inode(link, value):
            linked.append(sidecar)
    return linked


def _linked_by_listing(dir_fd: int, sidecars: list[Sidecar]) -> list[Sidecar]:
    """:func:`_linked_by_lstat` from the inode numbers of one directory listing."""
    wanted = {sidecar.name for sidecar in sidecars} | {sidecar.value for sidecar in sidecars}
    listing = os.open(".", _OPEN_LIST, dir_fd=dir_fd)
    try:
        with os.scandir(listing) as entries:
            # d_ino, from the listing itself: no stat per name.
            inodes = {entry.name: entry.inode() for entry in entries if entry.name in wanted}
    finally:
        os.close(listing)
    return [
        sidecar
        for sidecar in sidecars
        if sidecar.name in inodes and inodes[sidecar.name] == inodes.get(sidecar.value)
    ]


class LocalTree:
    """Files under one local directory, addressed by ``/``-separated relative paths."""

    def __init__(
        self, root: str, *, fsync: bool = False, clock: Clock = time.time
    ) -> None:
        self.root = root
        self.fsync = fsync
        self._clock = clock
        # The kernel stamps a written file with the wall clock; another clock must stamp it
        # itself (one more system call, only then).
        self._stamp_writes = clock is not time.time
        # Whether this store has had expiring keys, as far as this tree knows: only then do
        # deletes look for the value's sidecar to unlink it at once. Leaving it is never
        # wrong (a sidecar counts only while linked to the value), it just holds the value's
        # space until the purge reaches its instant.
        self.has_expiring = False
        # The base's real path (no link in it), fixed by prepare(); every path is built on it.
        self._real = root
        # The writers' lock file, open for the tree's lifetime; -1 until first needed.
        self._lock_fd = -1
        # A handle on TEMP_DIR, kept open: a write then saves opening and closing it (two of
        # its ten system calls, which pay for the lock's two). Temporary files are only ever
        # created in it and renamed out, so a stale handle is harmless: creating a file in a
        # removed directory fails, and the write opens the directory again.
        self._tmp_fd = -1
        # A handle on the base, kept open for pruning top-level directories. The base's path
        # is fixed when the tree opens (``_real``), so the handle names the same directory
        # every path is built on; should the base be replaced meanwhile, a prune misses.
        self._base_fd = -1
        # Handles on the directories deletes worked in lately, kept open (see remove()).
        self._held_dirs: dict[str, int] = {}
        _TREES.add(self)

    def prepare(self) -> None:
        """Create the base and its temporary directory, and remove dead writers' temp files."""
        os.makedirs(self.root, exist_ok=True)
        self._real = os.path.realpath(self.root)
        self.has_expiring = self.has_expiring or os.path.isdir(f"{self._real}/{EXPIRY_DIR}")
        os.close(self._dir_handle(TEMP_DIR, create=True)[0])
        self._open_lock()
        listing = self._open(TEMP_DIR, _OPEN_LIST)
        try:
            with os.scandir(listing) as entries:
                names = [entry.name for entry in entries]
            now = time.time()
            for name in names:
                if name == LOCK_NAME:
                    continue  # other processes lock this very file: never replace it
                owner = temp_name_owner(name)
                if owner is not None and owner[0] == HOST_TAG:
                    stale = not _process_alive(owner[1])
                else:
                    try:
                        info = os.stat(name, dir_fd=listing, follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    stale = now - info.st_mtime > _FOREIGN_TEMP_AGE
                if stale:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(name, dir_fd=listing)
        finally:
            os.close(listing)

    # -- the writers' lock ----------------------------------------------------------------------

    def _open_lock(self) -> int:
        if self._lock_fd < 0:
            tmp, _ = self._dir_handle(TEMP_DIR, create=True)
            try:
                self._lock_fd = os.open(LOCK_NAME, _OPEN_LOCK, 0o666, dir_fd=tmp)
            finally:
                os.close(tmp)
        return self._lock_fd

    def try_lock(self) -> bool:
        """Take the writers' lock if no other holder has it; never blocks.

        Within one process the lock is this tree's: the driver keeps its own tasks from taking
        it twice (two holders on one descriptor would both succeed).
        """
        fd = self._lock_fd
        if fd < 0:
            fd = self._open_lock()
        try:
            fcntl.flock(fd, _LOCK_TRY)
        except BlockingIOError:
            return False
        return True

    def unlock(self) -> None:
        """Release the writers' lock (a no-op if not held)."""
        if self._lock_fd >= 0:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def forget_lock(self) -> None:
        """Drop the lock descriptor without unlocking (in a forked child: it is the parent's)."""
        fd, self._lock_fd = self._lock_fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)

    def close(self) -> None:
        """Close the lock file (releasing the lock if held) and the temporary directory."""
        self.forget_lock()
        self._forget_handles()
        self._release_dirs()

    # -- paths ----------------------------------------------------------------------------------

    def _open(self, relative: str, flags: int) -> int:
        """Open a path below the base (``""``: the base itself), following no link."""
        if _OPENAT2 is not None:
            path = f"{self._real}/{relative}" if relative else self._real
            fd = _OPENAT2(path, flags)
            if fd >= 0:
                return fd
            if fd == -errno.ELOOP:
                raise _link_in_the_way(path)
            raise OSError(-fd, os.strerror(-fd), path)
        if not relative:
            return os.open(self._real, flags)
        return _open_walking(self._real, relative, flags)

    def _dir_handle(self, relative: str, *, create: bool) -> tuple[int, bool]:
        """Return a handle on a directory below the base, and whether it had to be created.

        Missing directories are made one level at a time inside the last one's handle, so a
        link swapped in meanwhile is refused rather than followed.
        """
        try:
            return self._open(relative, _DIR_HANDLE), False
        except FileNotFoundError:
            if not create or not relative:
                raise
        fd = self._open("", _DIR_HANDLE)
        try:
            for name in relative.split("/"):
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, dir_fd=fd)
                try:
                    following = os.open(name, _DIR_HANDLE | _NOFOLLOW, dir_fd=fd)
                except OSError as error:
                    if error.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link(fd, name):
                        raise _link_in_the_way(f"{self._real}/{relative}") from None
                    raise
                os.close(fd)
                fd = following
        except BaseException:
            os.close(fd)
            raise
        return fd, True

    # -- operations -----------------------------------------------------------------------------

    def read(self, relative: str) -> bytes | None:
        """Return the file's bytes, or ``None`` if it does not exist."""
        if _OPENAT2 is not None:
            # The hot path, inlined: a miss returns without building an exception.
            fd = _OPENAT2(f"{self._real}/{relative}", _OPEN_READ)
            if fd < 0:
                if fd in _MISSING:
                    return None
                fd = self._open(relative, _OPEN_READ)  # raises the right error
        else:
            try:
                fd = self._open(relative, _OPEN_READ)
            except (FileNotFoundError, NotADirectoryError):
                return None
        try:
            info = _reject_non_regular(fd, relative)
            # One link: no expiry (the common case costs this comparison and nothing else).
            if info.st_nlink > 1 and self._expired(fd, relative, info):
                return None
            size = info.st_size
            data = os.read(fd, size + 1)
            if len(data) <= size:
                return data
            chunks = [data]  # the file grew since fstat: read on to its end
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        except _Relinked:
            pass  # a writer changed the key's expiry while it was read: read it again
        finally:
            os.close(fd)
        return self.read(relative)

    def read_versioned(self, relative: str) -> tuple[bytes, int] | None:
        """Return the file's bytes and version, from one open file, or ``None`` if it is absent.

        The bytes and the version come from the same inode, which the driver never changes
        after its rename: they always belong together.
        """
        fd = self._open_existing(relative)
        if fd is None:
            return None
        try:
            data, info = _read_open(fd, relative)
            if info.st_nlink > 1 and self._expired(fd, relative, info):
                return None
            return data, _version_of_open(fd, info)
        except _Relinked:
            pass
        finally:
            os.close(fd)
        return self.read_versioned(relative)

    def version(self, relative: str) -> int | None:
        """Return the file's version, or ``None`` if it does not exist."""
        fd = self._open_existing(relative)
        if fd is None:
            return None
        try:
            info = _reject_non_regular(fd, relative)
            if info.st_nlink > 1 and self._expired(fd, relative, info):
                return None
            return _version_of_open(fd, info)
        except _Relinked:
            pass
        finally:
            os.close(fd)
        return self.version(relative)

    def meta(self, relative: str) -> tuple[int, int, int | None, int] | None:
        """Return ``(size, written_ms, expires_ms, version)`` of a live file, or ``None``."""
        fd = self._open_existing(relative)
        if fd is None:
            return None
        try:
            info = _reject_non_regular(fd, relative)
            expires: int | None = None
            if info.st_nlink > 1:
                found = self._expiry_of_open(fd, relative, info)
                if found is not None:
                    if found <= self.now_ms():
                        return None
                    expires = found
            written = (info.st_mtime_ns + _NS_PER_MS // 2) // _NS_PER_MS
            return info.st_size, written, expires, _version_of_open(fd, info)
        except _Relinked:
            pass
        finally:
            os.close(fd)
        return self.meta(relative)

    # -- expiry ---------------------------------------------------------------------------------

    def now_ms(self) -> int:
        """The driver's clock, in milliseconds."""
        return now_millis(self._clock)

    def _expiry(self, relative: str, info: os.stat_result) -> tuple[int, str] | None:
        """The expiry instant and sidecar name of the file ``info`` at ``relative``, if any."""
        parent, _, name = relative.rpartition("/")
        try:
            directory, _ = self._dir_handle(parent, create=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            return _expiry_in(directory, name[: -len(SUFFIX)], info)
        finally:
            os.close(directory)

    def _expiry_of_open(self, fd: int, relative: str, info: os.stat_result) -> int | None:
        """The expiry instant of the open file ``fd`` (``info``: its ``fstat``), or ``None``.

        Readers take no lock: if its links changed meanwhile (a writer replaced the value or
        moved its expiry), the instant it had when opened is lost, and :class:`_Relinked`
        tells the caller to read again.
        """
        found = self._expiry(relative, info)
        if found is not None:
            self.has_expiring = True
            return found[0]
        if os.fstat(fd).st_nlink != info.st_nlink:
            raise _Relinked
        return None  # another program's hard link, not a sidecar

    def _expired(self, fd: int, relative: str, info: os.stat_result) -> bool:
        found = self._expiry_of_open(fd, relative, info)
        return found is not None and found <= self.now_ms()

    def expired_segments(self, sidecars: list[Sidecar], now_ms: int) -> set[str]:
        """The segments among ``sidecars`` whose value has expired at ``now_ms``.

        A sidecar counts only while it is a link to its value file. Only sidecars whose instant
        has passed are checked: by an ``lstat`` pair each where a directory holds a few, else
        by reading the directory's inode numbers once. Values are never read.
        """
        self.has_expiring = True
        due: dict[str, list[Sidecar]] = {}
        for sidecar in sidecars:
            if sidecar.expires_ms <= now_ms:
                due.setdefault(sidecar.directory, []).append(sidecar)
        gone: set[str] = set()
        for directory, found in due.items():
            try:
                handle, _ = self._dir_handle(directory, create=False)
            except (FileNotFoundError, NotADirectoryError):
                continue
            try:
                if len(found) <= _FEW_SIDECARS:
                    linked = _linked_by_lstat(handle, found)
                else:
                    linked = _linked_by_listing(handle, found)
            finally:
                os.close(handle)
            gone.update(sidecar.segment for sidecar in linked)
        return gone

    def expire(self, relative: str, expires_ms: int | None) -> bool:
        """Give a live file the expiry ``expires_ms``, or none; return whether it was live.

        The value, its modification time and its version stay. The caller holds the lock.
        """
        parent, _, name = relative.rpartition("/")
        try:
            directory, _ = self._dir_handle(parent, create=False)
        except (FileNotFoundError, NotADirectoryError):
            return False
        try:
            info = _lstat_in(directory, name)
            if info is None:
                return False
            if not stat.S_ISREG(info.st_mode):
                raise LinkInTheWay(errno.EINVAL, "not a regular file", f"{self.root}/{relative}")
            stem = name[: -len(SUFFIX)]
            current = _expiry_in(directory, stem, info) if info.st_nlink > 1 else None
            if current is not None and current[0] <= self.now_ms():
                return False
            if expires_ms is None:
                if current is not None:
                    os.unlink(current[1], dir_fd=directory)
            else:
                self._set_expiry(directory, parent, name, info, current, expires_ms)
            if self.fsync:
                self._sync_dirs(parent, all_new=False)
            return True
        finally:
            os.close(directory)

    def _set_expiry(
        self,
        directory: int,
        parent: str,
        name: str,
        info: os.stat_result,
        current: tuple[int, str] | None,
        expires_ms: int,
    ) -> None:
        """Move a live file's expiry to ``expires_ms``: index entry, hint, then the sidecar."""
        new = sidecar_name(name[: -len(SUFFIX)], expires_ms)
        if current is not None and current[1] == new:
            return
        self._index_add(expires_ms, f"{parent}/{new}" if parent else new)
        # The hint first: it is only a hint, and the modification time (the version) stays.
        os.utime(
            name,
            ns=(expires_ms * _NS_PER_MS, info.st_mtime_ns),
            dir_fd=directory,
            follow_symlinks=False,
        )
        if current is not None:
            # One atomic rename moves the expiry (over a stale sidecar of that name, if any).
            os.rename(current[1], new, src_dir_fd=directory, dst_dir_fd=directory)
            return
        _unlink_quiet(directory, new)  # a stale sidecar by that name: nobody's any more
        os.link(name, new, src_dir_fd=directory, dst_dir_fd=directory, follow_symlinks=False)

    def _index_add(self, expires_ms: int, sidecar: str) -> None:
        """Write the purge's index entry for ``sidecar`` (a path below the base)."""
        self.has_expiring = True
        instant = max(expires_ms, 0)
        bucket = f"{EXPIRY_DIR}/{instant // _BUCKET_MS:011d}"
        directory, created = self._dir_handle(bucket, create=True)
        try:
            while True:
                entry = f"{instant:013d}-{secrets.token_hex(6)}"
                try:
                    fd = os.open(entry, _OPEN_WRITE | _NOFOLLOW, 0o666, dir_fd=directory)
                except FileExistsError:
                    continue
                break
            try:
                os.write(fd, sidecar.encode("utf-8", "surrogateescape"))
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        finally:
            os.close(directory)
        if self.fsync:
            self._sync_dirs(bucket, all_new=created)

    def due_entries(self, now_ms: int, most: int) -> tuple[list[str], list[str]]:
        """Up to ``most`` index entries due at ``now_ms``, in instant order, as paths below the
        base; and the minute directories all of whose entries are among them.

        Lists only the index's minutes and the due ones' entries: never the store.
        """
        entries: list[str] = []
        finished: list[str] = []
        minutes = sorted(
            name for name in self.list_dir(EXPIRY_DIR).directories if name.isdigit()
        )
        for minute in minutes:
            if int(minute) > now_ms // _BUCKET_MS:
                break
            bucket = f"{EXPIRY_DIR}/{minute}"
            names = sorted(self.list_dir(bucket).files)
            for name in names:
                instant = name.partition("-")[0]
                if (instant.isdigit() and int(instant) > now_ms) or len(entries) >= most:
                    return entries, finished
                entries.append(f"{bucket}/{name}")
            finished.append(bucket)
        return entries, finished

    def purge_entry(self, entry: str, now_ms: int) -> int:
        """Act on one due index entry, then drop it; return 1 if it removed an expired value
        (its sidecar and the directories it left empty go too). The caller holds the lock."""
        purged = 0
        sidecar = self._index_target(entry)
        if sidecar is not None:
            parent, _, name = sidecar.rpartition("/")
            parsed = parse_sidecar(name)
            assert parsed is not None  # checked by _index_target
            purged = self._purge_sidecar(parent, name, parsed[0] + SUFFIX, parsed[1] <= now_ms)
        bucket, _, name = entry.rpartition("/")
        try:
            handle, _ = self._dir_handle(bucket, create=False)
        except (FileNotFoundError, NotADirectoryError):
            return purged
        try:
            _unlink_quiet(handle, name)
        finally:
            os.close(handle)
        return purged

    def remove_empty_directory(self, relative: str) -> None:
        """Remove a directory below the base if it is empty (an index minute, after a purge)."""
        parent, _, name = relative.rpartition("/")
        try:
            handle, _ = self._dir_handle(parent, create=False)
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            _remove_empty_directory(handle, name)
        finally:
            os.close(handle)

    def _index_target(self, relative: str) -> str | None:
        """The sidecar path an index entry holds, if it is one the driver could have written."""
        data = self.read(relative)
        if data is None or len(data) > 16384:
            return None
        path = data.decode("utf-8", "surrogateescape")
        parts = path.split("/")
        if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
            return None
        return path if parse_sidecar(parts[-1]) is not None else None

    def _purge_sidecar(self, parent: str, name: str, value: str, due: bool) -> int:
        """Remove an expired value and its sidecar, or a stale sidecar; 1 if a value went."""
        try:
            directory, _ = self._dir_handle(parent, create=False)
        except (FileNotFoundError, NotADirectoryError):
            return 0
        try:
            link = _lstat_in(directory, name)
            found = _lstat_in(directory, value)
            # No sidecar: moved by expire() or already removed, and the entry was stale.
            live = link is not None and found is not None and _same_inode(found, link)
            if link is None or (live and not due):
                os.close(directory)
                return 0
            if live:
                _unlink_quiet(directory, value)  # the value first: a crash leaves a stale sidecar
            _unlink_quiet(directory, name)
        except BaseException:
            os.close(directory)
            raise
        self._prune(directory, parent)
        return 1 if live else 0

    def _open_existing(self, relative: str) -> int | None:
        """Open a file below the base for reading; ``None`` if it does not exist."""
        if _OPENAT2 is not None:
            fd = _OPENAT2(f"{self._real}/{relative}", _OPEN_READ)
            if fd >= 0:
                return fd
            if fd in _MISSING:
                return None
        try:
            return self._open(relative, _OPEN_READ)  # raises the right error
        except (FileNotFoundError, NotADirectoryError):
            return None

    def write(self, relative: str, data: bytes) -> None:
        """Replace the file's content with ``data`` atomically, creating directories as needed.

        A link where the file should be is replaced by the file; a link where a directory
        should be raises :class:`LinkInTheWay`. The caller holds the writers' lock. The new
        value has no expiry.
        """
        self.write_versioned(relative, data, versioned=False)

    def write_expiring(
        self, relative: str, data: bytes, *, expires_ms: int, written_ms: int
    ) -> None:
        """:meth:`write` a value that expires at ``expires_ms``, written at ``written_ms``."""
        self.write_versioned(
            relative, data, versioned=False, expiry=(expires_ms, written_ms)
        )

    def write_versioned(
        self,
        relative: str,
        data: bytes,
        *,
        versioned: bool = True,
        expiry: tuple[int, int] | None = None,
    ) -> int:
        """:meth:`write`, returning the new file's version (0 unless ``versioned``).

        ``expiry`` is ``(expires_ms, written_ms)`` for an expiring value, else ``None``.
        """
        if expiry is not None:
            stamp: int | None = expiry[1] * _NS_PER_MS
        elif self._stamp_writes:
            stamp = self.now_ms() * _NS_PER_MS
        else:
            stamp = None
        for _ in range(_WRITE_ATTEMPTS):
            tmp = self._tmp_fd
            if tmp < 0:
                tmp = self._tmp_fd = self._dir_handle(TEMP_DIR, create=True)[0]
            try:
                temp, version = self._write_temp(tmp, data, versioned, stamp)
            except FileNotFoundError:
                # Someone removed the temporary directory: open it again (by path, refusing a
                # link put in its place).
                self._forget_handles()
                continue
            try:
                self._install(tmp, temp, relative, expiry)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp, dir_fd=tmp)
                raise
            return version
        raise FileNotFoundError(errno.ENOENT, "the temporary directory keeps disappearing")

    def _forget_handles(self) -> None:
        for fd in (self._tmp_fd, self._base_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._tmp_fd = self._base_fd = -1

    def _write_temp(
        self, tmp: int, data: bytes, versioned: bool, stamp: int | None
    ) -> tuple[str, int]:
        while True:
            temp = f"{os.getpid()}.{HOST_TAG}.{next(_counter)}.tmp"
            try:
                descriptor = os.open(temp, _OPEN_WRITE | _NOFOLLOW, 0o666, dir_fd=tmp)
            except FileExistsError:
                continue
            try:
                view = memoryview(data)
                while view:
                    written = os.write(descriptor, view)
                    view = view[written:]
                if stamp is not None:
                    os.utime(descriptor, ns=(stamp, stamp))
                # The rename keeps the inode, its generation, mtime and size: the version.
                version = _version_of_open(descriptor, os.fstat(descriptor)) if versioned else 0
                if self.fsync:
                    os.fsync(descriptor)
            except BaseException:
                os.close(descriptor)
                with contextlib.suppress(OSError):
                    os.unlink(temp, dir_fd=tmp)
                raise
            os.close(descriptor)
            return temp, version

    def _install(
        self, tmp: int, temp: str, relative: str, expiry: tuple[int, int] | None
    ) -> None:
        parent, _, name = relative.rpartition("/")
        for _ in range(_WRITE_ATTEMPTS):
            try:
                # The directory may be missing, or a concurrent delete may prune it after we
                # made it: (re)create it and try again. A file truly in the way makes the
                # open fail with NotADirectoryError.
                directory, created = self._dir_handle(parent, create=True)
            except FileNotFoundError:
                continue
            try:
                # An expiring write looks at the value it replaces, to unlink its sidecar once
                # stale. A plain write does not (not one system call more than before): the
                # old sidecar is ignored from the rename on, and the purge removes it.
                old = _lstat_in(directory, name) if expiry is not None else None
                sidecar = None
                if expiry is not None:
                    sidecar = self._link_sidecar(tmp, temp, directory, relative, old, expiry)
                try:
                    os.replace(temp, name, src_dir_fd=tmp, dst_dir_fd=directory)
                except FileNotFoundError:
                    if sidecar is not None:
                        _unlink_quiet(directory, sidecar)
                    continue
                if old is not None and old.st_nlink > 1:
                    stale = _expiry_in(directory, name[: -len(SUFFIX)], old)
                    if stale is not None:
                        _unlink_quiet(directory, stale[1])
            finally:
                os.close(directory)
            if self.fsync:
                self._sync_dirs(parent, all_new=created)
            return
        raise FileNotFoundError(errno.ENOENT, "directory keeps disappearing during a write", parent)

    def _link_sidecar(
        self,
        tmp: int,
        temp: str,
        directory: int,
        relative: str,
        old: os.stat_result | None,
        expiry: tuple[int, int],
    ) -> str:
        """Give the temporary file its sidecar beside the value it is about to replace (and
        its index entry, and the access-time hint); return the sidecar's name."""
        expires_ms, written_ms = expiry
        parent, _, name = relative.rpartition("/")
        stem = name[: -len(SUFFIX)]
        alternate = 0
        if old is not None and old.st_nlink > 1:
            # The value being replaced may expire at the same instant: its sidecar keeps its
            # name until the rename, so the new one takes the other spelling.
            current = _expiry_in(directory, stem, old)
            if current is not None and current[1] == sidecar_name(stem, expires_ms):
                alternate = 1
        sidecar = sidecar_name(stem, expires_ms, alternate)
        self._index_add(expires_ms, f"{parent}/{sidecar}" if parent else sidecar)
        os.utime(
            temp,
            ns=(expires_ms * _NS_PER_MS + alternate, written_ms * _NS_PER_MS),
            dir_fd=tmp,
            follow_symlinks=False,
        )
        _unlink_quiet(directory, sidecar)  # a stale sidecar by that name: nobody's any more
        os.link(temp, sidecar, src_dir_fd=tmp, dst_dir_fd=directory, follow_symlinks=False)
        return sidecar

    def _sync_dirs(self, directory: str, *, all_new: bool) -> None:
        """Flush directory entries to disk: the target's, and its ancestors' if we created some."""
        while True:
            descriptor = self._open(directory, _OPEN_LIST)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            if not all_new or not directory:
                return
            directory = directory.rpartition("/")[0]

    def remove(self, relative: str) -> None:
        """Delete the file if present, then remove the directories it leaves empty.

        A link where the file should be is removed itself; nothing it points to is touched.
        """
        directory, _, name = relative.rpartition("/")
        # A handle kept from an earlier delete in this directory saves opening and closing
        # one (two of a delete's six system calls: 28 -> 24 µs against raw files' 17, the
        # 0.62 of issue 12's delete). It may be stale: another process may have pruned the
        # directory (and a writer made it again). Nothing can be created in a removed
        # directory, so an unlink that succeeds through the handle proves it current; one
        # that finds nothing is tried again through a fresh handle. (The driver never renames
        # a directory; a program that renamed one away meanwhile would have the key's file
        # removed there, never a link followed.)
        fd = self._held_dirs.get(directory, -1)
        if fd >= 0:
            if self._unlink_in(fd, name):
                self._prune(fd, directory, keep=True)
                return
            del self._held_dirs[directory]
            os.close(fd)
        try:
            fd, _ = self._dir_handle(directory, create=False)
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            removed = self._unlink_in(fd, name)
        except BaseException:
            os.close(fd)
            raise
        if not removed:
            os.close(fd)
            return
        self._hold(directory, fd)
        self._prune(fd, directory, keep=True)

    def _unlink_in(self, fd: int, name: str) -> bool:
        """Unlink ``name`` (and its expiry sidecar) in the directory ``fd``; False if absent."""
        old = _lstat_in(fd, name) if self.has_expiring else None
        try:
            os.unlink(name, dir_fd=fd)
        except (FileNotFoundError, NotADirectoryError):
            return False
        if old is not None and old.st_nlink > 1:
            # The value first, then its sidecar: a crash between leaves a stale sidecar.
            sidecar = _expiry_in(fd, name[: -len(SUFFIX)], old)
            if sidecar is not None:
                _unlink_quiet(fd, sidecar[1])
        return True

    def _release_dirs(self) -> None:
        held, self._held_dirs = self._held_dirs, {}
        for fd in held.values():
            with contextlib.suppress(OSError):
                os.close(fd)

    def _prune(self, fd: int, directory: str, *, keep: bool = False) -> None:
        """Remove ``directory`` (open as ``fd``, which this closes unless ``keep``) and its
        ancestors while they are empty, stopping below the base."""
        current = fd
        try:
            while directory:
                # Each directory's parent through its own handle's "..": half the cost of
                # resolving the parent's path again, and never outside the base (the loop
                # stops at it). rmdir only removes an empty directory, so a concurrent
                # writer's file survives; a writer whose directory vanished recreates it (see
                # _install).
                directory, _, name = directory.rpartition("/")
                if not directory:
                    # The parent is the base, whose handle stays open: a delete in a
                    # top-level directory saves opening and closing "..".
                    _remove_empty_directory(self._base_handle(), name)
                    return
                if self._prune_in_held(directory, name):
                    return
                parent = os.open("..", _DIR_HANDLE, dir_fd=current)
                if current != fd:
                    os.close(current)
                current = parent
                if not _remove_empty_directory(current, name):
                    # Not empty (or not ours, or gone): pruning stops here. The parent's
                    # handle is kept for the next delete in this directory (_prune_in_held).
                    self._hold(directory, current)
                    current = fd
                    return
        finally:
            if current != fd or not keep:
                os.close(current)
            if current != fd and not keep:
                os.close(fd)

    def _prune_in_held(self, parent: str, name: str) -> bool:
        """Prune ``parent/name`` through a held handle on ``parent``; False if none is held or
        it is stale, so the caller goes the way of "..".

        Deletes in one directory each try to remove it; keeping its parent's handle saves
        opening and closing ".." on every one (two of a delete's four system calls). A held
        handle may be stale (another process pruned ``parent``; a writer may have made it
        again): a removed directory holds nothing, so an rmdir that finds ``name`` full, or
        removes it, proves the handle current, and one that finds nothing is tried again the
        other way.
        """
        held = self._held_dirs.get(parent, -1)
        if held < 0:
            return False
        outcome = _rmdir_errno(held, name)
        if outcome == errno.ENOENT:
            del self._held_dirs[parent]
            os.close(held)
            return False
        if outcome == 0:
            self._prune(held, parent, keep=True)
        return True

    def _hold(self, directory: str, fd: int) -> None:
        """Keep ``fd``, a handle on ``directory``, among the held handles (see remove())."""
        held = self._held_dirs
        previous = held.pop(directory, -1)
        if previous >= 0:
            os.close(previous)
        elif len(held) >= _HELD_DIRS:
            os.close(held.pop(next(iter(held))))  # the oldest
        held[directory] = fd

    def _base_handle(self) -> int:
        """A handle on the base, kept open like the temporary directory's (see ``__init__``)."""
        if self._base_fd < 0:
            self._base_fd = self._open("", _DIR_HANDLE)
        return self._base_fd

    def list_dir(self, relative: str) -> Listing:
        """Return a directory's regular files and subdirectories; empty if it does not exist.

        Links and special files are left out and logged: the driver writes neither.
        """
        try:
            fd = self._open(relative, _OPEN_LIST)
        except (FileNotFoundError, NotADirectoryError):
            return Listing([], [])
        except LinkInTheWay:
            _log.warning("fs %s: skipped %r: a symbolic link, never followed", self.root, relative)
            return Listing([], [])
        try:
            with os.scandir(fd) as scanned:
                entries = list(scanned)
        finally:
            os.close(fd)
        # The file type comes with each entry (d_type): no system call per name. One pass per
        # kind is cheaper than one pass sorting each entry into its kind.
        files = [entry.name for entry in entries if entry.is_file(follow_symlinks=False)]
        if len(files) == len(entries):
            return Listing(files, [])
        directories = [entry.name for entry in entries if entry.is_dir(follow_symlinks=False)]
        if len(files) + len(directories) < len(entries):
            for entry in entries:
                if not entry.is_file(follow_symlinks=False) and not entry.is_dir(
                    follow_symlinks=False
                ):
                    kind = "a symbolic link" if entry.is_symlink() else "a special file"
                    _log.warning(
                        "fs %s: skipped %r: %s, never followed or read",
                        self.root,
                        f"{relative}/{entry.name}" if relative else entry.name,
                        kind,
                    )
        return Listing(files, directories)
