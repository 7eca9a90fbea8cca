"""Checks on everything a caller hands the queue, done before anything is written.

Topics and consumer ids are data: any non-empty string of at most 1024 UTF-8 bytes without
control characters is accepted, and no character has a meaning to any backend. An event must be
plain JSON that reads back equal, checked by the same function that checks the storage's values
(:func:`kvstore.serialization.encode`): ``None``, ``bool``, ``str``, 64-bit ``int``, finite
``float``, and lists, tuples (read back as lists) and ``str``-keyed dicts of those. Anything that
would silently change (``NaN`` into ``null``, a ``datetime`` or ``UUID`` into a string, an
``Enum`` whose value does not equal it, a subclass of a JSON type) is refused with
:class:`ValidationError`.
"""

from __future__ import annotations

from typing import Any

from eventqueue.errors import ValidationError

# One distribution: kvstore is always installed beside eventqueue. kvstore.serialization needs
# only kvstore.errors, not the storage layer.
from kvstore.errors import SerializationError
from kvstore.serialization import encode

__all__ = ["MAX_NAME_BYTES", "check_name", "encode_event", "encode_events"]

MAX_NAME_BYTES = 1024
_CONTROL = frozenset(chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)])


def check_name(kind: str, name: object) -> str:
    """Return ``name`` if it is a valid topic or consumer id, else raise :class:`ValidationError`.

    ``kind`` ("topic", "consumer id") only words the message.
    """
    if type(name) is not str:
        raise ValidationError(f"{kind} must be a str, not {type(name).__name__}")
    if not name:
        raise ValidationError(f"{kind} must not be empty")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValidationError(f"{kind} {name!r} is not valid Unicode (lone surrogate)") from None
    if size > MAX_NAME_BYTES:
        raise ValidationError(f"{kind} is {size} UTF-8 bytes; the limit is {MAX_NAME_BYTES}")
    if not _CONTROL.isdisjoint(name):
        raise ValidationError(f"{kind} {name!r} contains a control character")
    return name


def encode_event(event: Any) -> bytes:
    """Return the JSON bytes of ``event``, or raise :class:`ValidationError` if it is not JSON."""
    try:
        return encode(event, subject="event")
    except SerializationError as exc:
        # The queue's own type for bad data; the message (where in the event) is kvstore's.
        raise ValidationError(str(exc)) from None


def encode_events(events: Any) -> list[bytes]:
    """Encode every event of an iterable, refusing all of them if any one is invalid."""
    if isinstance(events, str | bytes | dict):
        raise ValidationError("events must be an iterable of events, not a single value")
    try:
        items = list(events)
    except TypeError:
        raise ValidationError(f"events must be iterable, not {type(events).__name__}") from None
    return [encode_event(item) for item in items]
