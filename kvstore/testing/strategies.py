"""Hypothesis strategies for keys, prefixes and values across the whole valid space.

Keys are drawn with extra weight on characters that mean something to some backend (SQL LIKE
wildcards, glob and regex syntax, path separators, dots), on case and combining marks, and on
characters outside the Basic Multilingual Plane, so that a driver that treats any of them as syntax
is caught.
"""

from __future__ import annotations

from typing import Literal

from hypothesis import strategies as st

from kvstore.keys import MAX_KEY_BYTES, SEPARATOR

__all__ = ["HOSTILE_CHARACTERS", "json_values", "keys", "prefixes", "raw_values", "segments"]

HOSTILE_CHARACTERS = (
    "%_*?[]^!\\/.$'\"`;-~#{}()|+ \u0301\u00e9\u00c9\U0001d11e\U0010ffff\u00a0\ufeff"
)

_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)

_ANY_CHARACTER = st.characters(
    min_codepoint=0x20,
    exclude_characters=SEPARATOR + "\x7f",
    exclude_categories=_SURROGATES,
)

_SEGMENT_CHARACTER = st.one_of(
    st.sampled_from("abcABC012"),
    st.sampled_from(HOSTILE_CHARACTERS),
    _ANY_CHARACTER,
)


def segments(max_size: int = 8) -> st.SearchStrategy[str]:
    """Non-empty key segments: any characters but ``:`` and control characters."""
    return st.text(_SEGMENT_CHARACTER, min_size=1, max_size=max_size)


def _fits(key: str) -> bool:
    return len(key.encode("utf-8")) <= MAX_KEY_BYTES


def keys(max_segments: int = 4) -> st.SearchStrategy[str]:
    """Valid keys: one to ``max_segments`` segments joined by ``:``, at most 1024 UTF-8 bytes."""
    return st.lists(segments(), min_size=1, max_size=max_segments).map(SEPARATOR.join).filter(_fits)


def prefixes(from_keys: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[str]:
    """Prefixes: ``""``, leading slices of keys (so scans match something), or arbitrary keys."""
    source = from_keys if from_keys is not None else keys()

    def leading(key_and_cut: tuple[str, int]) -> str:
        key, cut = key_and_cut
        return key[: cut % (len(key) + 1)]

    return st.one_of(
        st.just(""),
        st.tuples(source, st.integers(min_value=0)).map(leading),
        source,
    )


_JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(exclude_categories=_SURROGATES), max_size=20),
)


def json_values() -> st.SearchStrategy[object]:
    """Values that must read back equal through ``Storage`` (tuples excluded: they become lists)."""
    return st.recursive(
        _JSON_SCALARS,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.text(max_size=8), children, max_size=4),
        ),
        max_leaves=12,
    )


def raw_values(max_size: int = 256) -> st.SearchStrategy[bytes]:
    """Arbitrary byte strings, empty included."""
    return st.binary(max_size=max_size)
