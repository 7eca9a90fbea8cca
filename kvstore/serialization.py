"""JSON values for :class:`~kvstore.storage.Storage`, encoded with orjson.

A value is accepted only if it reads back equal to what was stored: ``None``, ``bool``, ``str``,
``int`` (64-bit), finite ``float``, and lists, tuples (read back as lists) and ``str``-keyed dicts
of those. Anything orjson would silently turn into something else (a ``datetime`` into a string, a
``UUID``, an ``Enum``, ``NaN`` into ``null``, a subclass of a JSON type) is refused with
:class:`SerializationError` before anything is written.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from kvstore.errors import SerializationError

__all__ = ["JSONValue", "decode", "encode", "encode_many"]

JSONValue = Any
"""A value :func:`encode` accepts; typed ``Any`` because JSON is recursive."""

_INT_MIN = -(2**63)
# Refuse what orjson would otherwise turn into something else (a datetime into a string, a
# subclass of str or int into the base type, a dataclass into a dict) up front.
_STRICT = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
_SCALAR_TYPES = frozenset({str, int, bool, type(None)})
_INT_MAX = 2**64 - 1


def _refuse(subject: str, path: str, reason: str) -> SerializationError:
    where = f" at {path}" if path else ""
    return SerializationError(f"{subject}{where} {reason}; it would not read back equal")


def _check(value: object, path: str, subject: str) -> None:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return
    if kind is int:
        if not _INT_MIN <= value <= _INT_MAX:  # type: ignore[operator]
            raise _refuse(subject, path, "is an integer outside the 64-bit range")
    elif kind is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise _refuse(subject, path, f"is {value!r}, which JSON cannot represent")
    elif kind is dict:
        for name, item in value.items():  # type: ignore[attr-defined]
            if type(name) is not str:
                raise _refuse(subject, path, f"has a non-str key {name!r}")
            _check(item, f"{path}[{name!r}]", subject)
    elif kind is list or kind is tuple:
        for index, item in enumerate(value):  # type: ignore[arg-type]
            _check(item, f"{path}[{index}]", subject)
    else:
        raise _refuse(subject, path, f"is a {kind.__name__}, not a JSON type")


def _reads_back_exactly(value: object) -> bool:
    """Tell, cheaply, whether ``value`` is a scalar or a flat dict of scalars of exact JSON types.

    Those always read back equal once orjson accepted them (it refuses ints beyond 64 bits and
    non-``str`` dict keys itself), so they need no decode; records are mostly of this shape.
    """
    kind = type(value)
    if kind in _SCALAR_TYPES:
        return True
    if kind is not dict:
        return False
    scalars = _SCALAR_TYPES
    # A plain loop: a generator passed to all() costs more than the check itself here.
    for item in value.values():  # type: ignore[attr-defined]  # noqa: SIM110
        if type(item) not in scalars:
            return False
    return True


def encode(value: JSONValue, *, subject: str = "value") -> bytes:
    """Return ``value`` as JSON bytes; raise :class:`SerializationError` if it cannot round-trip.

    ``subject`` names the value in messages (the event queue says ``"event"``), which also say
    where in it the fault is (``value at ['a'][0] is ...``).
    """
    try:
        data = orjson.dumps(value, option=_STRICT)
    except (orjson.JSONEncodeError, TypeError) as error:
        # Walk first: it says where the fault is (orjson's message does not).
        _locate(value, subject)
        raise SerializationError(f"{subject} cannot be stored as JSON: {error}") from None
    # Decoding and comparing is faster than walking the value in Python, and proves the
    # promise directly. Only when they differ (tuples, or a refusal) is the walk needed, to tell
    # which and to say where.
    if _reads_back_exactly(value) or orjson.loads(data) == value:
        return data
    _locate(value, subject)
    return data


def _locate(value: object, subject: str) -> None:
    """Raise the :class:`SerializationError` that says where ``value`` is not exact JSON."""
    try:
        _check(value, "", subject)
    except RecursionError:
        raise SerializationError(f"{subject} is nested too deeply to store as JSON") from None


def encode_many(values: list[JSONValue]) -> list[bytes]:
    """Encode each value like :func:`encode`, checking the whole batch in one decode."""
    try:
        encoded = [orjson.dumps(value, option=_STRICT) for value in values]
    except (orjson.JSONEncodeError, TypeError) as error:
        raise SerializationError(f"value cannot be stored as JSON: {error}") from None
    # One decode of the joined batch replaces one call per value; a mismatch falls back to
    # checking each value, which also says which one is at fault.
    doubtful = [index for index, value in enumerate(values) if not _reads_back_exactly(value)]
    if doubtful:
        joined = b"[" + b",".join(encoded[index] for index in doubtful) + b"]"
        if orjson.loads(joined) != [values[index] for index in doubtful]:
            for index in doubtful:
                encode(values[index])
    return encoded


def decode(data: bytes, key: str) -> JSONValue:
    """Return the value JSON ``data`` holds; raise :class:`SerializationError` if it is not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise SerializationError(
            f"the value under {key!r} is not JSON ({error}); read it with get_raw"
        ) from None
