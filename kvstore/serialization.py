"""JSON values for :class:`~kvstore.storage.Storage`, encoded with orjson.

A value is accepted only if it reads back equal to what was stored: ``None``, ``bool``, ``str``,
``int`` (64-bit), finite ``float``, and lists, tuples (read back as lists) and ``str``-keyed dicts
of those. Anything orjson would silently turn into something else (a ``datetime`` into a string, a
``UUID``, an ``Enum``, ``NaN`` into ``null``, a subclass of a JSON type) is refused with
:class:`SerializationError` before anything is written.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable
from typing import Any, TypeGuard, cast

import orjson

from kvstore.errors import SerializationError

__all__ = ["JSONValue", "decode", "decode_many", "encode", "encode_many", "encode_many_copies"]

JSONValue = Any
"""A value :func:`encode` accepts; typed ``Any`` because JSON is recursive."""

_INT_MIN = -(2**63)
# Copies bytes: joining a value with b"" makes a new object, where bytes(value) returns value.
_JOIN = b"".join
# Up to this many orjson results (about 4 KB of heap each) held at once, the allocator serves
# them from memory it already holds; between 200 and 500 of them each started to cost fresh
# pages (measured: 0.19 us a 200-byte value up to 200, 0.86 at 500, 2.8 at 10,000; copied: 0.22
# to 0.29 at every size). Smaller batches are not worth copying.
_HELD_CHEAPLY = 256
# Refuse what orjson would otherwise turn into something else (a datetime into a string, a
# subclass of str or int into the base type, a dataclass into a dict) up front.
_STRICT = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
_SCALAR_TYPES = frozenset({str, int, bool, type(None)})
_INT_MAX = 2**64 - 1
# The exact types a stored value may be made of (tuples read back as lists), and the containers.
_EXACT_TYPES = frozenset({str, int, bool, type(None), float, list, dict, tuple})
_CONTAINER_TYPES = frozenset({list, dict, tuple})
# The C check of isinstance, typed as the guard it is (no subclass reaches it: see _exact_json).
_is_float = cast("Callable[[object], TypeGuard[float]]", float.__instancecheck__)


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


# How much of a value _reads_back_exactly walks in Python before it leaves the rest to the walk
# in C (_exact_json): items count one each and containers ten more (measured: a Python walk beats
# the C one on small values, mostly flat ones, and loses as nested containers add up).
_WALK_BUDGET = 48
_CONTAINER_COST = 10


# Items per container that _two_levels_exact walks; a larger container goes to the walks below.
_FLAT_LIMIT = 32


def _two_levels_exact(value: object) -> bool:
    """Tell, as cheaply as Python can, whether ``value`` is a record of at most two levels made
    only of exact JSON types and finite floats.

    The usual record (a dict of scalars with a short list or dict or two) is walked with the
    second level as an inner loop: no stack of containers and no budget to keep, which cost
    about a quarter of :func:`_reads_back_exactly` on such a record (the benchmark's 200-byte
    value: 0.57 against 0.77 us). ``False`` means only "not proven", as there.
    """
    kind = type(value)
    if kind is dict:
        items: Any = value.values()  # type: ignore[attr-defined]
    elif kind is list or kind is tuple:
        items = value
    else:
        return kind in _SCALAR_TYPES or (kind is float and value - value == 0.0)  # type: ignore[operator]
    if len(items) > _FLAT_LIMIT:
        return False
    scalars = _SCALAR_TYPES
    for item in items:
        kind = type(item)
        if kind in scalars:
            continue
        if kind is dict:
            inner = item.values()
        elif kind is list or kind is tuple:
            inner = item
        elif kind is float:
            if item - item == 0.0:
                continue
            return False
        else:
            return False
        if len(inner) > _FLAT_LIMIT:
            return False
        for leaf in inner:
            kind = type(leaf)
            if kind in scalars:
                continue
            # A finite float passes; a third level, or anything else, is left to the callers'
            # other walks.
            if kind is not float or leaf - leaf != 0.0:
                return False
    return True


def _reads_back_exactly(value: object) -> bool:
    """Tell, cheaply, whether a small ``value`` is made only of exact JSON types and finite floats.

    Records are mostly small: a dict of scalars, with a short list or dict or two. For those a
    walk in Python is cheaper than anything else here (decoding and comparing included); a
    finite float reads back equal (orjson writes the shortest repr that round-trips), and
    ``x - x`` is ``0.0`` exactly for the finite ones. ``False`` means only "not proven": the
    value is too large for this walk, or holds a type that the caller's check will name.
    """
    kind = type(value)
    if kind is dict:
        items: Any = value.values()  # type: ignore[attr-defined]
    elif kind in _SCALAR_TYPES:
        return True
    elif kind is list or kind is tuple:
        items = value
    elif kind is float:
        return value - value == 0.0  # type: ignore[operator, no-any-return]
    else:
        return False
    scalars = _SCALAR_TYPES
    budget = _WALK_BUDGET - len(items)
    nested: list[Any] | None = None
    while budget >= 0:
        for item in items:
            kind = type(item)
            if kind in scalars:
                continue
            if kind is float:
                if item - item == 0.0:
                    continue
                return False
            if kind is dict:
                item = item.values()
            elif kind is not list and kind is not tuple:
                return False
            budget -= len(item) + _CONTAINER_COST
            if nested is None:
                nested = [item]
            else:
                nested.append(item)
        if not nested:
            return True
        items = nested.pop()
    return False


def _exact_json(values: list[object]) -> bool:
    """Tell whether every item of ``values`` is made only of exact JSON types and finite floats.

    Call it only on values orjson has just encoded: orjson already refused cycles, nesting deeper
    than 255, ints beyond 64 bits, non-``str`` dict keys and lone surrogates. What it encodes but
    would not read back as it was is an object of another type (an ``IntEnum`` or ``StrEnum``
    member, which reads back as a plain int or str and even compares equal to it; a ``UUID``)
    or a NaN or infinity (written as ``null``). Tuples are accepted: they read back as lists.

    The walk goes a level of nesting at a time, in C: the types of a whole level in one set,
    and the next level from :func:`gc.get_referents`, which returns exactly the items of lists
    and tuples and the values of dicts (and the keys too when one is not exactly ``str``, whose
    type then fails the check). Unlike decoding and comparing with ``==``, it tells an enum
    member from the int it equals; it costs about as much for large values and batches.
    """
    level = values
    while True:
        kinds = set(map(type, level))
        if kinds <= _SCALAR_TYPES:
            return True
        if not kinds <= _EXACT_TYPES:
            return False
        if float in kinds and not all(map(math.isfinite, filter(_is_float, level))):
            return False
        if kinds.isdisjoint(_CONTAINER_TYPES):
            return True
        level = gc.get_referents(*level)


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
    if _two_levels_exact(value) or _reads_back_exactly(value) or _exact_json([value]):
        return data
    # Only now walk in Python, to say which part is at fault and where.
    _locate(value, subject)
    raise SerializationError(f"{subject} would not read back equal")  # pragma: no cover


def _locate(value: object, subject: str) -> None:
    """Raise the :class:`SerializationError` that says where ``value`` is not exact JSON."""
    try:
        _check(value, "", subject)
    except RecursionError:
        raise SerializationError(f"{subject} is nested too deeply to store as JSON") from None


def encode_many(values: list[JSONValue], *, held: int | None = None) -> list[bytes]:
    """Encode each value like :func:`encode`, checking the whole batch in one walk.

    ``held`` says how many encoded values the caller will hold at once (by default this batch;
    more when it encodes a large batch in parts): above a few hundred each result is copied.
    """
    dumps, option = orjson.dumps, _STRICT
    try:
        if (len(values) if held is None else held) <= _HELD_CHEAPLY:
            encoded = [dumps(value, option=option) for value in values]
        else:
            # Each result copied at once: orjson's own result keeps about 4 KB of heap behind
            # it however short, so holding many of them touches fresh pages for every item (a
            # 200-byte value: about 0.9 us against 0.2 us with the copy, whose source buffer
            # the next dumps reuses).
            encoded = [_JOIN((dumps(value, option=option), b"")) for value in values]
    except (orjson.JSONEncodeError, TypeError) as error:
        raise SerializationError(f"value cannot be stored as JSON: {error}") from None
    if not _exact_json(values):
        # Encoding each value on its own finds the first one at fault and says where.
        for value in values:
            encode(value)
        raise SerializationError("value would not read back equal")  # pragma: no cover
    return encoded


def encode_many_copies(held: int) -> bool:
    """Tell whether :func:`encode_many` returns compact copies when ``held`` results are held.

    Such results can be kept as they are (``owned`` of ``BaseDriver.set_many_columns``).
    """
    return held > _HELD_CHEAPLY


def decode(data: bytes, key: str) -> JSONValue:
    """Return the value JSON ``data`` holds; raise :class:`SerializationError` if it is not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise SerializationError(
            f"the value under {key!r} is not JSON ({error}); read it with get_raw"
        ) from None


def decode_many(values: list[bytes | None]) -> list[JSONValue]:
    """:func:`decode` each of ``values``, keeping ``None`` as it is, in one loop.

    Raises :class:`SerializationError` without naming a key: decode the values one by one with
    :func:`decode` to find which one is not JSON.
    """
    loads = orjson.loads
    try:
        return [None if data is None else loads(data) for data in values]
    except orjson.JSONDecodeError as error:
        raise SerializationError(f"a value is not JSON ({error})") from None
