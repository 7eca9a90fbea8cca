"""The value check of ``kvstore.serialization`` is exact: what it accepts reads back as it was.

The fast checks (a flat loop, a walk in C over ``gc.get_referents``) replace decoding and
comparing; these tests hold them to a reference written plainly, on arbitrary values that mix
JSON with what orjson would encode into something else.
"""

from __future__ import annotations

import datetime
import enum
import math
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvstore.errors import SerializationError
from kvstore.serialization import decode, decode_many, encode, encode_many


class _Colour(enum.IntEnum):
    RED = 1


class _Name(enum.StrEnum):
    ADA = "ada"


class _Ratio(float, enum.Enum):
    HALF = 0.5


class _Text(str):
    pass


class _Int(int):
    pass


class _Float(float):
    pass


class _List(list):  # type: ignore[type-arg]
    pass


class _Dict(dict):  # type: ignore[type-arg]
    pass


_NASTY_SCALARS = st.one_of(
    st.sampled_from(
        [
            _Colour.RED,
            _Name.ADA,
            _Ratio.HALF,
            _Text("t"),
            _Int(3),
            _Float(1.5),
            uuid.UUID(int=5),
            datetime.datetime(2024, 1, 1),
            datetime.date(2024, 1, 1),
            math.nan,
            math.inf,
            -math.inf,
            2**64,
            -(2**63) - 1,
            b"bytes",
        ]
    ),
    st.text(max_size=3),  # lone surrogates included, now and then
)

_GOOD_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.just(-0.0),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=8),
)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    keys = st.one_of(st.text(max_size=4), st.just(_Text("k")), st.integers(0, 3))
    good_keys = st.text(max_size=4)
    return st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(good_keys, children, max_size=4),
        st.dictionaries(good_keys, children, max_size=4),
        st.dictionaries(keys, children, max_size=3),
        st.lists(children, max_size=2).map(_List),
        st.dictionaries(st.text(max_size=2), children, max_size=2).map(_Dict),
    )


# Pure functions at microseconds an example: many examples cost well under a second, and the
# nasty values hide deep in mostly good ones.
_MANY = settings(max_examples=400)

# Mostly good values with a nasty one somewhere, so that both outcomes are common.
_VALUES = st.recursive(
    st.one_of(*[_GOOD_SCALARS] * 6, _NASTY_SCALARS),
    _containers,
    max_leaves=10,
)


def _storable(value: object) -> bool:
    """The promise, written plainly: exact JSON types, 64-bit ints, finite floats, UTF-8 text."""
    kind = type(value)
    if value is None or kind is bool:
        return True
    if kind is int:
        return -(2**63) <= value <= 2**64 - 1  # type: ignore[operator]
    if kind is float:
        return math.isfinite(value)  # type: ignore[arg-type]
    if kind is str:
        return _utf8(value)  # type: ignore[arg-type]
    if kind is list or kind is tuple:
        return all(_storable(item) for item in value)  # type: ignore[attr-defined]
    if kind is dict:
        return all(
            type(key) is str and _utf8(key) and _storable(item)
            for key, item in value.items()  # type: ignore[attr-defined]
        )
    return False


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _as_read_back(value: object) -> object:
    """What ``value`` reads back as: tuples become lists."""
    if type(value) is tuple or type(value) is list:
        return [_as_read_back(item) for item in value]
    if type(value) is dict:
        return {key: _as_read_back(item) for key, item in value.items()}
    return value


def _same(read: Any, expected: Any) -> bool:
    """Equal and of the same types all the way down (``==`` says ``1 == True == 1.0``)."""
    if type(read) is not type(expected):
        return False
    if type(read) is list:
        return len(read) == len(expected) and all(
            _same(a, b) for a, b in zip(read, expected, strict=True)
        )
    if type(read) is dict:
        return read.keys() == expected.keys() and all(
            _same(item, expected[key]) for key, item in read.items()
        )
    return bool(read == expected)


@_MANY
@given(_VALUES)
def test_a_value_is_accepted_exactly_when_it_reads_back_as_it_was(value: object) -> None:
    if _storable(value):
        data = encode(value)
        assert _same(decode(data, "k"), _as_read_back(value))
        assert encode_many([value, value]) == [data, data]
    else:
        with pytest.raises(SerializationError):
            encode(value)
        with pytest.raises(SerializationError):
            encode_many([1, value])


@_MANY
@given(_VALUES)
def test_the_checks_agree_with_decoding_and_comparing(value: object) -> None:
    """Where orjson encodes a value and it reads back equal under ``==``, the checks accept it
    unless a type changed on the way (an enum member compares equal to its value)."""
    try:
        data = orjson.dumps(value)
    except TypeError:
        return
    read_back = orjson.loads(data)
    exact = _same(read_back, _as_read_back(value))
    try:
        encode(value)
    except SerializationError:
        accepted = False
    else:
        accepted = True
    assert accepted == exact


@pytest.mark.parametrize(
    "value",
    [
        _Colour.RED,
        {"colour": _Colour.RED},
        [1, _Name.ADA],
        {"ratio": _Ratio.HALF},
        {"nested": [{"deep": (1, _Colour.RED)}]},
    ],
    ids=repr,
)
def test_enum_members_are_refused_though_they_equal_what_reads_back(value: object) -> None:
    assert orjson.loads(orjson.dumps(value)) == _as_read_back(value)  # == cannot tell them apart
    with pytest.raises(SerializationError, match="not a JSON type"):
        encode(value)
    with pytest.raises(SerializationError, match="not a JSON type"):
        encode_many([{"fine": 1}, value])


def test_a_batch_names_the_value_at_fault() -> None:
    with pytest.raises(SerializationError, match=r"value at \['b'\]\[1\] is nan"):
        encode_many([{"a": [1.5]}, {"b": [1, math.nan]}])


@pytest.mark.parametrize("size", [1, 4, 40, 400])
def test_small_and_large_values_are_checked_alike(size: int) -> None:
    """Small values are walked in Python, large ones in C: both refuse what is not exact."""
    good = [{"id": index, "tags": ["a", (1, 2.5)], "ok": None} for index in range(size)]
    assert decode(encode(good), "k") == _as_read_back(good)
    for bad in (_Colour.RED, math.inf, uuid.UUID(int=1), _Text("t")):
        value = [*good[:-1], {"id": 0, "tags": ["a", (1, bad)]}]
        with pytest.raises(SerializationError, match=r"at \[\d+\]\['tags'\]\[1\]\[1\]"):
            encode(value)
        with pytest.raises(SerializationError):
            encode_many([good, value])


@pytest.mark.parametrize("size", [1, 256, 257, 2000])
def test_batches_small_and_large_encode_as_single_values_do(size: int) -> None:
    """Large batches copy each result (orjson's buffers cost fresh pages when many are held);
    either way the bytes are those of encode, and a fault anywhere is still refused."""
    values = [{"n": n, "tags": ["a", n * 0.5], "s": "x" * (n % 7)} for n in range(size)]
    assert encode_many(values) == [encode(value) for value in values]
    # A part of a larger batch the caller holds whole: copied whatever its own size.
    assert encode_many(values[:3], held=size * 300) == [encode(value) for value in values[:3]]
    with pytest.raises(SerializationError):
        encode_many([*values, {"bad": math.inf}])


def test_decode_many_keeps_misses_and_refuses_non_json() -> None:
    assert decode_many([b"1", None, b'{"a":[true]}']) == [1, None, {"a": [True]}]
    with pytest.raises(SerializationError, match="not JSON"):
        decode_many([b"1", b"\xff"])


@pytest.mark.parametrize("width", [1, 32, 33])
@pytest.mark.parametrize(
    "bad", [_Colour.RED, _Name.ADA, math.nan, -math.inf, uuid.UUID(int=1)], ids=repr
)
def test_records_of_one_two_and_three_levels_refuse_a_bad_leaf_at_any_level(
    width: int, bad: object
) -> None:
    """Records of up to two levels take the cheapest walk (with an item limit per container),
    deeper or wider ones the others: a bad leaf is refused wherever it is."""
    filler: list[object] = ["s", 1, True, None, 2.5] * 7
    row = filler[: width - 1]
    for value in (
        {"a": 1, "b": bad},  # first level
        [*row, bad],
        {"a": [*row, bad]},  # second level, in a list and in a dict
        {"a": 1, "b": {"k": 2, "z": bad}},
        [[*row, bad]],
        {"a": [1, [bad]]},  # third level
        {"a": {"b": {"c": bad}}},
    ):
        with pytest.raises(SerializationError):
            encode(value)
    for good in ({"a": [*row, 1.5]}, [[*row]], {"a": [1, {"b": [2.5, "x"]}]}, [*row, 0.0]):
        assert decode(encode(good), "k") == _as_read_back(good)
