"""Checks on everything a caller hands the queue, done before anything is written.

Topics and consumer ids are data: any non-empty string of at most 1024 UTF-8 bytes without
control characters is accepted, and no character has a meaning to any backend. An event must be
plain JSON that reads back equal: ``None``, ``bool``, ``str``, 64-bit ``int``, finite ``float``,
and lists, tuples (read back as lists) and ``str``-keyed dicts of those. Anything orjson would
silently change (``NaN`` into ``null``, a ``datetime`` or ``UUID`` into a string, an ``Enum``,
a subclass of a JSON type) is refused.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from eventqueue.errors import ValidationError

__all__ = ["MAX_NAME_BYTES", "check_name", "encode_event", "encode_events"]

MAX_NAME_BYTES = 1024
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
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


def _check_json(value: object, path: str) -> None:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return
    if kind is int:
        if not _INT_MIN <= value <= _INT_MAX:  # type: ignore[operator]
            raise ValidationError(f"event{path} is an integer outside the 64-bit range")
        return
    if kind is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise ValidationError(f"event{path} is {value!r}, which JSON cannot hold")
        return
    if kind is list or kind is tuple:
        items: list[object] | tuple[object, ...] = value  # type: ignore[assignment]
        for index, item in enumerate(items):
            _check_json(item, f"{path}[{index}]")
        return
    if kind is dict:
        for key, item in value.items():  # type: ignore[attr-defined]
            if type(key) is not str:
                raise ValidationError(f"event{path} has a non-str key {key!r}")
            _check_json(item, f"{path}[{key!r}]")
        return
    raise ValidationError(
        f"event{path} is a {kind.__name__}, which is not plain JSON "
        "(use None, bool, int, float, str, list, tuple or dict with str keys)"
    )


def encode_event(event: Any) -> bytes:
    """Return the JSON bytes of ``event``, or raise :class:`ValidationError` if it is not JSON."""
    _check_json(event, "")
    try:
        return orjson.dumps(event)
    except orjson.JSONEncodeError as exc:  # e.g. nesting deeper than orjson allows
        raise ValidationError(f"event cannot be encoded as JSON: {exc}") from None


def encode_events(events: Any) -> list[bytes]:
    """Encode every event of an iterable, refusing all of them if any one is invalid."""
    if isinstance(events, str | bytes | dict):
        raise ValidationError("events must be an iterable of events, not a single value")
    try:
        items = list(events)
    except TypeError:
        raise ValidationError(f"events must be iterable, not {type(events).__name__}") from None
    return [encode_event(item) for item in items]
