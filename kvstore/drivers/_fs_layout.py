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
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from functools import lru_cache

__all__ = [
    "MAX_PIECE",
    "SUFFIX",
    "Entry",
    "dir_path",
    "key_path",
    "list_entries",
    "segment_components",
    "split_prefix",
]

_log = logging.getLogger("kvstore.drivers.fs")
# The driver's own working directory in the base, which is no key's.
_TEMP_DIR = ".tmp"

SUFFIX = ".kv"
CONTINUED = "~"
MAX_PIECE = 120
"""The longest encoded segment piece stored in one path component, in bytes."""

_KEPT = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
_PLAIN = re.compile(r"[a-z0-9_-]+")
_PLAIN_FILE = re.compile(rf"([a-z0-9_-]{{1,{MAX_PIECE}}})\.kv")
_ESCAPE_TOKEN = re.compile(r"%([0-9A-F]{2})|([a-z0-9_-])")
_NOT_IN_SEGMENT = re.compile("[\x00-\x1f\x7f:]")
_WINDOWS_DEVICES = frozenset(
    ["con", "prn", "aux", "nul"]
    + [f"{stem}{digit}" for stem in ("com", "lpt") for digit in "0123456789"]
)

# The callable a listing uses to read one real directory: relative path -> (name, is_dir) pairs,
# empty when the directory does not exist.
ListDir = Callable[[str], list[tuple[str, bool]]]


@lru_cache(maxsize=1024)
def _escape(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8"))


def _encode_chars(segment: str) -> list[str]:
    pieces = [char if char in _KEPT else _escape(char) for char in segment]
    if segment in _WINDOWS_DEVICES:
        pieces[0] = _escape(segment[0])
    return pieces


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


def split_prefix(prefix: str) -> tuple[list[str], str]:
    """Split a prefix into its complete segments and the partial last one (maybe ``""``)."""
    *complete, partial = prefix.split(":")
    return complete, partial


def _decode_piece(name: str) -> str | None:
    """Return the text a name (or piece of one) encodes, or ``None`` if no key could make it."""
    if _PLAIN.fullmatch(name):
        return name
    data = bytearray()
    position = 0
    for match in _ESCAPE_TOKEN.finditer(name):
        if match.start() != position:
            return None
        position = match.end()
        hex_digits, literal = match.groups()
        if literal is not None:
            data += literal.encode("ascii")
        else:
            data.append(int(hex_digits, 16))
    if position != len(name) or not data:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if _NOT_IN_SEGMENT.search(text) else text


Entry = str | tuple[str, str, str]
"""One key segment found in a directory: a value file's segment as a plain ``str``, or a
subdirectory as ``(sort key, segment, path relative to the base)``."""


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def _sort_key(entry: Entry) -> str:
    return entry if isinstance(entry, str) else entry[0]


def list_entries(list_dir: ListDir, directory: str, partial: str = "") -> list[Entry]:
    """Return the entries of ``directory`` whose segment starts with ``partial``, in key order.

    Names the driver could not have written (other programs' files, non-canonical encodings)
    are skipped, with a warning logged, so each key is listed once and no invalid key is.
    """
    files: list[str] = []
    directories: list[tuple[str, str, str]] = []
    _collect(list_dir, directory, "", (), partial, files, directories)
    entries: list[Entry] = list(files)
    if not directories:
        entries.sort()  # a file's sort key is its segment: no key function needed
        return entries
    entries += directories
    entries.sort(key=_sort_key)
    return entries


def _skipped(directory: str, name: str) -> None:
    _log.warning(
        "fs: skipped %r: not a name the driver writes for any key", _join(directory, name)
    )


def _collect(
    list_dir: ListDir,
    directory: str,
    head: str,
    head_components: tuple[str, ...],
    partial: str,
    files: list[str],
    directories: list[tuple[str, str, str]],
) -> None:
    """Add ``directory``'s entries to the lists; ``head``: the text of the enclosing ``~`` dirs."""
    plain_file = _PLAIN_FILE.fullmatch
    for name, is_dir in list_dir(directory):
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
            piece = _decode_piece(name[:-1])
            if piece is None:
                _skipped(directory, name)
                continue
            text = head + piece
            # Descend only if segments continuing ``text`` can still start with ``partial``.
            if text.startswith(partial) or partial.startswith(text):
                _collect(
                    list_dir,
                    _join(directory, name),
                    text,
                    (*head_components, name),
                    partial,
                    files,
                    directories,
                )
            continue
        if is_dir:
            stem = name
        elif name.endswith(SUFFIX):
            stem = name[: -len(SUFFIX)]
        else:
            _skipped(directory, name)
            continue
        piece = _decode_piece(stem)
        if piece is None:
            if directory or name != _TEMP_DIR:
                _skipped(directory, name)
            continue
        segment = head + piece
        if not segment.startswith(partial):
            continue
        if segment_components(segment) != (*head_components, stem):
            _skipped(directory, name)  # a non-canonical spelling of a key's name
            continue
        if is_dir:
            directories.append((segment + ":", segment, _join(directory, name)))
        else:
            files.append(segment)
