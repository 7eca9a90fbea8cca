"""The rules for keys and prefixes, kept in one place.

A key is a non-empty ``str`` of at most 1024 UTF-8 bytes, without control characters
(U+0000 to U+001F, U+007F) or lone surrogates, made of ``:``-separated segments none of which is
empty. Every other character is data: drivers must never give one a meaning of its own.

Keys order by code point, which is also the byte order of their UTF-8 encoding, so SQL drivers can
compare the encoded bytes and range scans agree with Python's ``sorted``.
"""

from __future__ import annotations

import re
from itertools import islice, repeat
from operator import countOf

from kvstore.errors import InvalidKey

__all__ = [
    "MAX_KEY_BYTES",
    "SEPARATOR",
    "all_valid_fetched_keys",
    "all_valid_keys",
    "join",
    "prefix_successor",
    "validate_key",
    "validate_prefix",
]

SEPARATOR = ":"
MAX_KEY_BYTES = 1024

# Control characters and lone surrogates (which have no UTF-8 encoding).
_FORBIDDEN = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_MAX_CODE_POINT = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)


def _describe(text: str) -> str:
    shown = text if len(text) <= 60 else text[:57] + "..."
    return repr(shown)


def _check_text(text: object, what: str) -> str:
    if type(text) is not str:
        raise InvalidKey(f"{what} must be a str, not {type(text).__name__}")
    # Printable ASCII (the usual key) has no forbidden character: two C checks, cheaper than
    # the search. Among ASCII characters exactly U+0000-U+001F and U+007F are not printable.
    match = None if text.isascii() and text.isprintable() else _FORBIDDEN.search(text)
    if match is not None:
        char = match.group()
        kind = "a lone surrogate" if "\ud800" <= char <= "\udfff" else "a control character"
        raise InvalidKey(
            f"{what} {_describe(text)} contains {kind} (U+{ord(char):04X}) at index {match.start()}"
        )
    # Every code point takes at least one byte, so only long strings need the encoding.
    if len(text) * 4 > MAX_KEY_BYTES:
        size = len(text.encode("utf-8"))
        if size > MAX_KEY_BYTES:
            raise InvalidKey(
                f"{what} {_describe(text)} is {size} UTF-8 bytes; the limit is {MAX_KEY_BYTES}"
            )
    return text


# Keys seen valid recently: a dict lookup is several times cheaper than the checks, and the same
# keys come back again and again. Bounded: when full, the oldest quarter goes (a dict keeps
# insertion order), so that a working set somewhat larger than the memo still mostly hits, where
# emptying it whole left it a quarter full on average. Storage's hot path reads it directly.
RECENTLY_VALID: dict[str, None] = {}
_RECENTLY_VALID_LIMIT = 16_384


def validate_key(key: object) -> str:
    """Return ``key`` unchanged if it is a valid key, else raise :class:`InvalidKey` saying why."""
    if type(key) is str and key in RECENTLY_VALID:
        return key
    text = _check_text(key, "key")
    if not text:
        raise InvalidKey("key must not be empty")
    if text[0] == SEPARATOR or text[-1] == SEPARATOR or "::" in text:
        raise InvalidKey(
            f"key {_describe(text)} has an empty segment (a leading, trailing or doubled ':')"
        )
    if len(RECENTLY_VALID) >= _RECENTLY_VALID_LIMIT:
        for oldest in list(islice(RECENTLY_VALID, _RECENTLY_VALID_LIMIT // 4)):
            del RECENTLY_VALID[oldest]
    RECENTLY_VALID[text] = None
    return text


# For all_valid_keys on ASCII text, one translation in C sorts every byte into a class: the
# control bytes become NUL, the separator and the joining newline become "A" (so an empty key,
# or one starting or ending with ":", shows as an empty segment), every other byte "0".
# bytes.istitle then finds two separators in a row, in one pass: it is False when an upper-case
# letter follows a cased one, and "0" and NUL are not cased. It is cheaper than the search for
# "::", whose candidates are every separator.
_SEPARATOR_CLASS = ord("A")


def _ascii_class(byte: int) -> int:
    if byte in (0x0A, ord(SEPARATOR)):
        return _SEPARATOR_CLASS
    return 0 if byte < 0x20 or byte == 0x7F else ord("0")


_ASCII_CLASSES = bytes(map(_ascii_class, range(256)))


def all_valid_keys(keys: list[object]) -> bool:
    """Tell whether every item of ``keys`` is a valid key, without raising or remembering any.

    For batches through ``Storage`` and drivers reading keys back: a few passes in C over the
    joined text cost a fraction of checking each key. ``False`` says only that some key is
    invalid; :func:`validate_key` on each then says which and why.
    """
    # Exactly str, as validate_key demands: join would take a subclass of str too. countOf
    # compares by identity first, so this is one C loop without building a set.
    if countOf(map(type, keys), str) != len(keys):
        return False
    # Keys seen valid recently (a batch's keys mostly are): one pass of lookups in C.
    if all(map(RECENTLY_VALID.__contains__, keys)):
        return True
    return all_valid_fetched_keys(keys)


def all_valid_fetched_keys(keys: list[object]) -> bool:
    """:func:`all_valid_keys` for keys a database client returned, which holds no subclass of str.

    Such a client gives ``str``, ``bytes``, numbers or ``None``, so the pass proving every item
    is exactly a ``str`` is left out (any other type stops the join); nor is the memo consulted,
    since keys a scan reads back are mostly not in it.
    """
    if not keys:
        return True
    try:
        joined = "\n".join(keys)  # type: ignore[arg-type]  # a non-str item raises TypeError
    except TypeError:
        return False
    if not joined or joined.count("\n") != len(keys) - 1:
        return False  # an empty key, or a key holding a newline
    if joined.isascii():
        classes = joined.encode("ascii").translate(_ASCII_CLASSES)
        if b"\x00" in classes:
            return False  # a control character
        # Empty keys and empty segments show as a separator at an end or two in a row. Without
        # any separator istitle is False too (no cased byte), but then no two are in a row.
        if classes[0] == _SEPARATOR_CLASS or classes[-1] == _SEPARATOR_CLASS:
            return False
        if not classes.istitle() and b"A" in classes:
            return False
        chars_limit = MAX_KEY_BYTES  # one byte per character
    else:
        segments = joined.replace("\n", SEPARATOR)
        # Control characters and lone surrogates are unprintable, so a printable text (the
        # usual one) has neither; otherwise the search, slower, decides.
        if not segments.isprintable() and _FORBIDDEN.search(segments):
            return False
        if segments[0] == SEPARATOR or segments[-1] == SEPARATOR or "::" in segments:
            return False
        chars_limit = MAX_KEY_BYTES // 4  # at most four bytes per character
    # Keys of at most chars_limit characters cannot be over the limit in bytes.
    if _no_line_longer(joined, chars_limit) or max(map(len, keys)) <= chars_limit:  # type: ignore[arg-type]
        return True
    return all(len(key.encode("utf-8")) <= MAX_KEY_BYTES for key in keys)  # type: ignore[attr-defined]


def _no_line_longer(text: str, limit: int) -> bool:
    """``True`` proves that no line of ``text`` has more than ``limit`` characters.

    ``False`` proves nothing. A line of ``limit + 1`` characters or more covers a whole aligned
    block of ``(limit + 2) // 2`` characters, which then holds no newline; so when every whole
    block holds one, no line is that long. A few ``find`` calls, in C, instead of one ``len`` per
    key.
    """
    if len(text) <= limit:
        return True
    block = (limit + 2) // 2
    starts = range(0, len(text) - block + 1, block)
    return -1 not in map(text.find, repeat("\n"), starts, range(block, len(text) + 1, block))


def validate_prefix(prefix: object) -> str:
    """Return ``prefix`` unchanged if some valid key could start with it, else raise.

    A prefix is a plain string prefix, not aligned to segments: ``""`` matches every key, ``"a:"``
    the keys under ``a``, ``"ap"`` both ``app`` and ``apple``.
    """
    text = _check_text(prefix, "prefix")
    if text.startswith(SEPARATOR) or "::" in text:
        raise InvalidKey(
            f"prefix {_describe(text)} can match no key: keys have no leading or doubled ':'"
        )
    return text


def join(base: str, key: str) -> str:
    """Return the key ``key`` takes inside the namespace ``base`` (``""`` is the root)."""
    return f"{base}{SEPARATOR}{key}" if base else key


def prefix_successor(prefix: str) -> str | None:
    """Return the least string greater than every string that starts with ``prefix``.

    ``None`` means there is no such bound (the prefix is empty or made only of U+10FFFF), so a
    range scan is open ended. The result skips the surrogate block, which UTF-8 cannot encode.
    """
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last < _MAX_CODE_POINT:
            following = last + 1
            if following in _SURROGATES:
                following = _SURROGATES.stop
            chars.append(chr(following))
            return "".join(chars)
    return None
