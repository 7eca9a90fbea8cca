"""How the filesystem driver turns keys into relative paths, and directory listings back into keys.

The layout is a pure function of the key, the same on every operating system and filesystem, so a
data directory can be copied or synced between machines:

- A key's ``:``-separated segments become path components: every segment but the last names a
  directory, the last names a file ``<segment>.kv``. Keys ``app`` and ``app:x`` coexist as the
  file ``app.kv`` and the directory ``app/``.
- Each segment keeps ``a-z``, ``0-9``, ``_`` and ``-`` and writes every other character as the
  ``%XX`` escapes of its UTF-8 bytes (upper-case hex). Upper-case letters are escaped too, so
  that ``a`` and ``A`` stay two files on case-insensitive filesystems (macOS, Windows), and all
  non-ASCII is escaped, so no filesystem's Unicode normalisation can merge two keys. A name
  therefore never contains ``.`` (so never ``.`` or ``..``), ``/`` or ``\\``, except the ``.kv``
  suffix; names starting with ``.`` (such as the ``.tmp`` directory) can never be a key's.
- A segment equal to a Windows device name (``con``, ``nul``, ``com1`` ...) has its first
  character escaped, so the tree stays usable on Windows.
- An encoded segment longer than :data:`MAX_PIECE` bytes is cut, between characters, into
  pieces of at most :data:`MAX_PIECE` bytes; every piece but the last names a directory with a
  ``~`` suffix (``~`` is never kept literally, so it cannot be confused with a short segment).
  Every name stays below 130 bytes, well under the 255-byte limit of common filesystems, and the
  full key is still readable from the path, with no hash and no side file to keep consistent.

Listing a directory yields entries ordered by *sort key*: the segment for a value file, the
segment plus ``:`` for a subdirectory. Since ``:`` never occurs inside a segment, walking
directories depth-first in that order yields keys in code point order: for files ``b``, ``b!``
and the directory ``b/`` holding ``b:c``, the sort keys ``b`` < ``b!`` < ``b:`` give
``b``, ``b!``, ``b:c``. A chunked segment's ``~`` directories are flattened into the listing of
the directory that holds them, so their keys interleave correctly with their neighbours'.

Expiry sidecars. A key with an expiry has a second name for its value file, a hard link beside it
named ``<stem>.<instant>.ttl`` (or ``<stem>.<instant>.1.ttl``), where ``<stem>.kv`` is the value's
name and ``<instant>`` the expiry instant in milliseconds since the epoch: ``alice.kv`` and
``alice.1764471600123.ttl``. Only a link to the very file now named ``<stem>.kv`` counts (see
:mod:`kvstore.drivers._fs_local`); listings report sidecars apart from keys, so a scan learns every
expiry in a directory from its listing. The index the purge walks lives in ``<base>/.expiry``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from functools import lru_cache
from typing import NamedTuple

__all__ = [
    "EXPIRY_DIR",
    "MAX_PIECE",
    "SUFFIX",
    "TTL_SUFFIX",
    "Entry",
    "Listing",
    "Sidecar",
    "dir_path",
    "key_path",
    "list_entries",
    "parse_sidecar",
    "segment_components",
    "sidecar_name",
    "split_prefix",
]

_log = logging.getLogger("kvstore.fs")
# The driver's own working directory in the base, which is no key's.
_TEMP_DIR = ".tmp"
#: The expiry index's directory in the base (see :mod:`kvstore.drivers._fs_local`): no key's.
EXPIRY_DIR = ".expiry"
_OWN_DIRS = frozenset({_TEMP_DIR, EXPIRY_DIR})

SUFFIX = ".kv"
TTL_SUFFIX = ".ttl"
CONTINUED = "~"
MAX_PIECE = 120
"""The longest encoded segment piece stored in one path component, in bytes."""

_KEPT = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
_PLAIN = re.compile(r"[a-z0-9_-]+")
_PLAIN_FILE = re.compile(rf"([a-z0-9_-]{{1,{MAX_PIECE}}})\.kv")
# A name made of kept characters and upper-case escapes only (at least one of either).
_ENCODED = re.compile(r"(?:[a-z0-9_-]++|%[0-9A-F]{2})++")
_SIDECAR = re.compile(r"([^.]+)\.([0-9]{1,19})(?:\.(1))?\.ttl")
_PLAIN_SIDECAR = re.compile(rf"([a-z0-9_-]{{1,{MAX_PIECE}}})\.([0-9]{{1,19}})(?:\.1)?\.ttl")
_NOT_IN_SEGMENT = re.compile("[\x00-\x1f\x7f:]")
_WINDOWS_DEVICES = frozenset(
    ["con", "prn", "aux", "nul"]
    + [f"{stem}{digit}" for stem in ("com", "lpt") for digit in "0123456789"]
)

# A listing of value files only, every one named ``<segment>.kv`` with its segment kept as
# written: the common case, checked for a whole directory by one match over the names joined by
# newlines instead of one match per name. Possessive repeats (nothing here ever needs to
# backtrack: "." and newline are outside the class) make the match a third faster.
_PLAIN_FILES = re.compile(
    rf"(?:[a-z0-9_-]{{1,{MAX_PIECE}}}+\.kv\n)*+[a-z0-9_-]{{1,{MAX_PIECE}}}+\.kv"
)


class Listing(NamedTuple):
    """One directory's entries: regular files and subdirectories (links and special files are
    left out by the tree that lists them)."""

    files: list[str]
    directories: list[str]


# The callable a listing uses to read one real directory: relative path -> its Listing, empty
# when the directory does not exist.
ListDir = Callable[[str], Listing]


@lru_cache(maxsize=1024)
def _escape(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8"))


def _escape_chars(text: str) -> list[str]:
    return [char if char in _KEPT else _escape(char) for char in text]


def _encode_chars(segment: str) -> list[str]:
    pieces = _escape_chars(segment)
    if segment in _WINDOWS_DEVICES:
        pieces[0] = _escape(segment[0])
    return pieces


def _name_starts(partial: str) -> tuple[str, ...]:
    """What a name must start with to store a segment starting with ``partial`` (``partial``
    not empty): a test on the raw name, so a listing is narrowed before any name is decoded.

    The encoding works character by character and is a prefix code (a kept character is one
    character that is never ``%``, an escape is a whole character's UTF-8 bytes, which no other
    character's bytes start), so a segment starts with ``partial`` exactly when its encoding
    starts with ``partial``'s: the test neither drops a name it should keep nor can match in
    the middle of an escape. The one exception is a device name, whose first character is
    escaped: for a ``partial`` that starts one, that spelling is accepted too. Names that pass
    are still decoded and checked as before.
    """
    chars = _escape_chars(partial)
    encoded = "".join(chars)
    if any(device.startswith(partial) for device in _WINDOWS_DEVICES):
        return encoded, _escape(partial[0]) + "".join(chars[1:])
    return (encoded,)


def _leads(name: str, starts: tuple[str, ...]) -> bool:
    """Whether the ``~`` directory ``name``, the first piece of a long segment, is the start of
    one of ``starts``: the segments under it may then start with that prefix too."""
    piece = name[: -len(CONTINUED)]
    return any(start.startswith(piece) for start in starts)


@lru_cache(maxsize=8192)
def segment_components(segment: str) -> tuple[str, ...]:
    """Return the path components (without the ``.kv`` suffix) that store ``segment``."""
    if len(segment) <= MAX_PIECE and _PLAIN.fullmatch(segment) and segment not in _WINDOWS_DEVICES:
        return (segment,)
    chars = _encode_chars(segment)
    remaining = sum(len(piece) for piece in chars)
    components: list[str] = []
    start = 0
    while remaining > MAX_PIECE:
        size = 0
        stop = start
        while size + len(chars[stop]) <= MAX_PIECE:
            size += len(chars[stop])
            stop += 1
        components.append("".join(chars[start:stop]) + CONTINUED)
        remaining -= size
        start = stop
    components.append("".join(chars[start:]))
    return tuple(components)


def _segments_path(segments: list[str]) -> str:
    return "/".join(component for segment in segments for component in segment_components(segment))


@lru_cache(maxsize=16384)
def key_path(key: str) -> str:
    """Return the path, relative to the driver's base and ``/``-separated, of ``key``'s file."""
    return _segments_path(key.split(":")) + SUFFIX


def dir_path(segments: list[str]) -> str:
    """Return the relative path of the directory holding keys ``seg1:...:segN:*`` (``""``: base)."""
    return _segments_path(segments)


def sidecar_name(stem: str, expires_ms: int, alternate: int = 0) -> str:
    """The name of the sidecar giving the value file ``<stem>.kv`` the expiry ``expires_ms``.

    ``alternate`` (0 or 1) picks the second spelling, for a write whose new value expires at
    the same instant as the value it replaces, whose sidecar has the first.
    """
    return f"{stem}.{expires_ms}.1{TTL_SUFFIX}" if alternate else f"{stem}.{expires_ms}{TTL_SUFFIX}"


def parse_sidecar(name: str) -> tuple[str, int, int] | None:
    """Return ``(stem, expires_ms, alternate)`` of a sidecar's name, or ``None`` for another."""
    match = _SIDECAR.fullmatch(name)
    if match is None:
        return None
    stem, instant, alternate = match.groups()
    return stem, int(instant), 1 if alternate else 0


def split_prefix(prefix: str) -> tuple[list[str], str]:
    """Split a prefix into its complete segments and the partial last one (maybe ``""``)."""
    *complete, partial = prefix.split(":")
    return complete, partial


def _decode_piece(name: str) -> str | None:
    """Return the text a name (or piece of one) encodes, or ``None`` if no key could make it."""
    if _PLAIN.fullmatch(name):
        return name
    # The whole name checked in one match, then decoded an escape at a time: a match per
    # character (kept ones included) cost 10 times as much on a message key's name, whose one
    # escape is its "@", and was most of an entity's get_messages on this driver.
    if _ENCODED.fullmatch(name) is None:
        return None
    kept, *escaped = name.split("%")
    data = bytearray(kept, "ascii")
    for part in escaped:
        data.append(int(part[:2], 16))
        data += part[2:].encode("ascii")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if _NOT_IN_SEGMENT.search(text) else text


Directory = tuple[str, str, str]
"""A subdirectory found in a listing: ``(sort key, segment, path relative to the base)``."""
Entry = list[str] | Directory
"""One step of a directory's keys in order: a run of value files' segments (a ``list``, never
empty), or a subdirectory (a ``tuple``, see :data:`Directory`)."""


class Sidecar(NamedTuple):
    """An expiry sidecar a listing found: whose key segment, where, and the instant it names."""

    segment: str
    """The key segment of the value file it gives an expiry to."""
    directory: str
    """The directory holding the value file and the sidecar, relative to the base."""
    value: str
    """The value file's name, ``<stem>.kv``."""
    name: str
    """The sidecar's own name."""
    expires_ms: int
    """The expiry instant it names, in milliseconds."""


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def _sort_key(entry: str | Directory) -> str:
    return entry if isinstance(entry, str) else entry[0]


def list_entries(
    list_dir: ListDir,
    directory: str,
    partial: str = "",
    sidecars: list[Sidecar] | None = None,
) -> list[Entry]:
    """Return the entries of ``directory`` whose segment starts with ``partial``, in key order.

    Consecutive value files come as one run (a list of segments), so that a scan hands out a
    directory of files without a step per file; subdirectories come one by one.
    Names the driver could not have written (other programs' files, non-canonical encodings)
    are skipped, with a warning logged, so each key is listed once and no invalid key is.
    Expiry sidecars are never entries: they are appended to ``sidecars`` (dropped if ``None``),
    for the caller to tell which listed keys have expired.
    """
    found = _Collector(list_dir, partial)
    found.collect(directory, "", ())
    if sidecars is not None:
        sidecars += found.sidecars
    files = found.files
    files.sort()  # a file's sort key is its segment: no key function needed
    if not found.directories:
        return [files] if files else []
    merged: list[str | Directory] = [*files, *found.directories]
    merged.sort(key=_sort_key)
    entries: list[Entry] = []
    run: list[str] | None = None
    for entry in merged:
        if not isinstance(entry, str):
            entries.append(entry)
            run = None
        elif run is None:
            run = [entry]
            entries.append(run)
        else:
            run.append(entry)
    return entries


def _plain_segments(names: list[str]) -> list[str] | None:
    """The segments of ``names`` if every name is a value file's whose segment is kept as
    written (``<segment>.kv``, no device name), else ``None``: C-speed string work only."""
    joined = "\n".join(names)
    if _PLAIN_FILES.fullmatch(joined) is None:
        return None
    segments = joined[: -len(SUFFIX)].split(SUFFIX + "\n")
    # One segment per name: a name holding a newline would otherwise pass as two.
    if len(segments) != len(names) or not _WINDOWS_DEVICES.isdisjoint(segments):
        return None
    return segments


def _skipped(directory: str, name: str) -> None:
    _log.warning(
        "fs: skipped %r: not a name the driver writes for any key", _join(directory, name)
    )


class _Collector:
    """What one listing found: value files' segments, subdirectories and expiry sidecars."""

    def __init__(self, list_dir: ListDir, partial: str) -> None:
        self.list_dir = list_dir
        self.partial = partial
        self.files: list[str] = []
        self.directories: list[tuple[str, str, str]] = []
        self.sidecars: list[Sidecar] = []

    def collect(self, directory: str, head: str, head_components: tuple[str, ...]) -> None:
        """Add ``directory``'s entries; ``head``: the text of the enclosing ``~`` directories."""
        plain_file = _PLAIN_FILE.fullmatch
        partial = self.partial
        files = self.files
        file_names, directory_names = self.list_dir(directory)
        if partial and not head:
            # Narrow the listing by the names' raw spelling before decoding any: a prefix scan
            # in a large directory would otherwise decode every name in it (see _name_starts).
            starts = _name_starts(partial)
            file_names = [name for name in file_names if name.startswith(starts)]
            directory_names = [
                name
                for name in directory_names
                if name.startswith(starts) or (name.endswith(CONTINUED) and _leads(name, starts))
            ]
        names: list[tuple[str, bool]] = []
        if file_names:
            segments = None if head else _plain_segments(file_names)
            if segments is None:
                names += [(name, False) for name in file_names]
            elif partial:
                files += [segment for segment in segments if segment.startswith(partial)]
            else:
                files += segments
        names += [(name, True) for name in directory_names]
        for name, is_dir in names:
            if not is_dir and not head:
                # The common case, kept cheap: a value file whose name is its segment.
                match = plain_file(name)
                if match is not None:
                    segment = match.group(1)
                    if segment in _WINDOWS_DEVICES:
                        _skipped(directory, name)
                    elif segment.startswith(partial):
                        files.append(segment)
                    continue
            if is_dir and name.endswith(CONTINUED):
                self._continued(directory, name, head, head_components)
            elif not is_dir and name.endswith(TTL_SUFFIX):
                plain = None if head else _PLAIN_SIDECAR.fullmatch(name)
                if plain is None:
                    self._sidecar(directory, name, head, head_components)
                    continue
                # A key's expiry whose segment is its name (as for plain files above).
                segment = plain.group(1)
                if segment.startswith(partial) and segment not in _WINDOWS_DEVICES:
                    self.sidecars.append(
                        Sidecar(segment, directory, segment + SUFFIX, name, int(plain.group(2)))
                    )
            else:
                self._other(directory, name, is_dir, head, head_components)

    def _continued(
        self, directory: str, name: str, head: str, head_components: tuple[str, ...]
    ) -> None:
        piece = _decode_piece(name[:-1])
        if piece is None:
            _skipped(directory, name)
            return
        text = head + piece
        # Descend only if segments continuing ``text`` can still start with ``partial``.
        if text.startswith(self.partial) or self.partial.startswith(text):
            self.collect(_join(directory, name), text, (*head_components, name))

    def _segment(
        self, directory: str, name: str, stem: str, head: str, head_components: tuple[str, ...]
    ) -> str | None:
        """The segment ``stem`` spells after ``head``; ``None`` (logged if foreign) to skip."""
        piece = _decode_piece(stem)
        if piece is None:
            if directory or name not in _OWN_DIRS:
                _skipped(directory, name)
            return None
        segment = head + piece
        if not segment.startswith(self.partial):
            return None
        if segment_components(segment) != (*head_components, stem):
            _skipped(directory, name)  # a non-canonical spelling of a key's name
            return None
        return segment

    def _sidecar(
        self, directory: str, name: str, head: str, head_components: tuple[str, ...]
    ) -> None:
        parsed = parse_sidecar(name)
        if parsed is None:
            _skipped(directory, name)
            return
        stem, instant, _ = parsed
        segment = self._segment(directory, name, stem, head, head_components)
        if segment is not None:
            self.sidecars.append(Sidecar(segment, directory, stem + SUFFIX, name, instant))

    def _other(
        self,
        directory: str,
        name: str,
        is_dir: bool,
        head: str,
        head_components: tuple[str, ...],
    ) -> None:
        if is_dir:
            stem = name
        elif name.endswith(SUFFIX):
            stem = name[: -len(SUFFIX)]
        else:
            _skipped(directory, name)
            return
        segment = self._segment(directory, name, stem, head, head_components)
        if segment is None:
            return
        if is_dir:
            self.directories.append((segment + ":", segment, _join(directory, name)))
        else:
            self.files.append(segment)
