"""Where each entity is stored: the key layout, and the encoding of ids into key segments.

Layout (``<x>`` is one encoded segment, ``<ts>`` a 16-digit zero-padded timestamp, ``<seq>`` a
12-digit zero-padded sequence number)::

    containers:<container>                          the ContainerRecord document
    images:<image>                                  the ImageRecord document
    sessions:<session>                              the SessionRecord document
    messages:<session>:<ts>@<seq>:<message>         one Message document each
    messages:<session>:<ts>:<message>               a message written before sequences existed
    seq:messages:<session>                          the session's message counter:
                                                    {"next": n, "epoch": token}
    idx:images:by_container:<container>:<image>     index entries (value 1): hints that
    idx:images:by_name:<name>:<image>               readers verify against the record
    idx:sessions:by_container:<container>:<session>
    idx:sessions:by_image:<image>:<session>

Layout change in issue 9: a message key's timestamp segment grew ``@<seq>``, the number the
session's counter gave the message, so messages with equal timestamps keep the order they were
added in (in any process). Messages stored before keep their keys and stay readable: at one
timestamp they sort before the new form (``:`` sorts before ``@``), which is the order they
were added in, so key order is message order throughout and a page is one ordered scan. Old
messages of one timestamp keep their old order among themselves, by id: the order they were
added in was never stored. The counter key is removed with the session. Every other key is
unchanged; the generic form of this layout, for any declared entity, is in
:mod:`entities._layout`.

Encoding: an id or name becomes one segment with ``%``, ``:`` and the control characters
(U+0000-U+001F, U+007F) written as ``%XX`` (upper-case hex); every other character is kept, so
keys stay readable. Because ``%`` itself is escaped the encoding is injective, and because ``:`` is
escaped an encoded id never spans two segments: ``a:b``, ``a%3Ab`` and ``a`` give three different
keys, and ``messages:a:`` never matches the messages of session ``a:b``.

A key may hold at most 1024 UTF-8 bytes including the storage namespace; an id or name that would
make a longer key raises :class:`~entities.errors.ValidationError` before anything is written.
"""

from __future__ import annotations

import re

from entities._checks import TIMESTAMP_DIGITS
from entities.errors import ValidationError
from kvstore.keys import MAX_KEY_BYTES

__all__ = ["KeyBudget", "KeyLayout", "decode_segment", "encode_segment"]

_NEEDS_ESCAPE = re.compile("[%:\x00-\x1f\x7f]")
_ESCAPE = re.compile("%([0-9A-F]{2})")
_WELL_FORMED = re.compile("(?:[^%:\x00-\x1f\x7f]|%[0-9A-F]{2})+")

CONTAINERS = "containers:"
IMAGES = "images:"
SESSIONS = "sessions:"
MESSAGES = "messages:"
MESSAGE_COUNTERS = "seq:messages:"
# Digits of a child's sequence number in its key (messages and any declared children).
SEQUENCE_DIGITS = 12
IMAGES_BY_CONTAINER = "idx:images:by_container:"
IMAGES_BY_NAME = "idx:images:by_name:"
SESSIONS_BY_CONTAINER = "idx:sessions:by_container:"
SESSIONS_BY_IMAGE = "idx:sessions:by_image:"


def encode_segment(text: str) -> str:
    """Return ``text`` as one key segment (see the module docstring); ``text`` is non-empty."""
    return _NEEDS_ESCAPE.sub(lambda match: f"%{ord(match.group()):02X}", text)


def decode_segment(segment: str) -> str:
    """Invert :func:`encode_segment`; raise ValueError for text it could not have produced."""
    if _WELL_FORMED.fullmatch(segment) is None:
        raise ValueError(f"not an encoded segment: {segment!r}")
    return _ESCAPE.sub(lambda match: chr(int(match.group(1), 16)), segment)


class KeyBudget:
    """The UTF-8 bytes a key may take under a storage namespace, and the check against it."""

    __slots__ = ("available",)

    def __init__(self, namespace: str = "") -> None:
        used = len(namespace.encode("utf-8")) + 1 if namespace else 0
        self.available = MAX_KEY_BYTES - used

    def fit(self, key: str, what: str) -> str:
        """Return ``key``, or raise ValidationError saying ``what`` is too long."""
        size = len(key.encode("utf-8"))
        if size > self.available:
            raise ValidationError(
                f"{what} too long: its key would take {size} UTF-8 bytes and "
                f"{self.available} are available"
            )
        return key


class KeyLayout:
    """Builds every entity key, checking it fits in the bytes left after the namespace.

    ``namespace`` is the storage base the keys will live under (``""`` for the root).
    """

    __slots__ = ("_fit",)

    def __init__(self, namespace: str = "") -> None:
        self._fit = KeyBudget(namespace).fit

    def container(self, container_id: str) -> str:
        """Key of a container record."""
        return self._fit(CONTAINERS + encode_segment(container_id), "container_id is")

    def image(self, image_id: str) -> str:
        """Key of an image record."""
        return self._fit(IMAGES + encode_segment(image_id), "image_id is")

    def session(self, session_id: str) -> str:
        """Key of a session record."""
        return self._fit(SESSIONS + encode_segment(session_id), "session_id is")

    def messages_prefix(self, session_id: str) -> str:
        """Prefix of every message key of a session, in timestamp-then-id order."""
        return self._fit(f"{MESSAGES}{encode_segment(session_id)}:", "session_id is")

    def message(
        self, session_id: str, timestamp: int, message_id: str, sequence: int | None = None
    ) -> str:
        """Key of one message; ``timestamp`` is already checked to fit the padding.

        ``sequence`` is the number the session's counter gave it; ``None`` gives the form
        written before sequences existed.
        """
        position = "" if sequence is None else f"@{sequence:0{SEQUENCE_DIGITS}d}"
        return self._fit(
            f"{self.messages_prefix(session_id)}{timestamp:0{TIMESTAMP_DIGITS}d}{position}:"
            f"{encode_segment(message_id)}",
            "session_id and message id are",
        )

    def message_counter(self, session_id: str) -> str:
        """Key of the session's message counter."""
        return self._fit(f"{MESSAGE_COUNTERS}{encode_segment(session_id)}", "session_id is")

    def images_by_container_prefix(self, container_id: str) -> str:
        """Prefix of the index entries of a container's images."""
        return self._fit(f"{IMAGES_BY_CONTAINER}{encode_segment(container_id)}:", "container_id is")

    def image_by_container(self, container_id: str, image_id: str) -> str:
        """Index entry: ``image_id`` is in ``container_id``."""
        return self._fit(
            self.images_by_container_prefix(container_id) + encode_segment(image_id),
            "container_id and image_id are",
        )

    def images_by_name_prefix(self, name: str) -> str:
        """Prefix of the index entries of the images called ``name``."""
        return self._fit(f"{IMAGES_BY_NAME}{encode_segment(name)}:", "image name is")

    def image_by_name(self, name: str, image_id: str) -> str:
        """Index entry: ``image_id`` is called ``name``."""
        return self._fit(
            self.images_by_name_prefix(name) + encode_segment(image_id),
            "image name and image_id are",
        )

    def sessions_by_container_prefix(self, container_id: str) -> str:
        """Prefix of the index entries of a container's sessions."""
        return self._fit(
            f"{SESSIONS_BY_CONTAINER}{encode_segment(container_id)}:", "container_id is"
        )

    def session_by_container(self, container_id: str, session_id: str) -> str:
        """Index entry: ``session_id`` is in ``container_id``."""
        return self._fit(
            self.sessions_by_container_prefix(container_id) + encode_segment(session_id),
            "container_id and session_id are",
        )

    def sessions_by_image_prefix(self, image_id: str) -> str:
        """Prefix of the index entries of the sessions made from ``image_id``."""
        return self._fit(f"{SESSIONS_BY_IMAGE}{encode_segment(image_id)}:", "image_id is")

    def session_by_image(self, image_id: str, session_id: str) -> str:
        """Index entry: ``session_id`` was made from ``image_id``."""
        return self._fit(
            self.sessions_by_image_prefix(image_id) + encode_segment(session_id),
            "image_id and session_id are",
        )
