"""The key and prefix rules, and the error messages that explain them."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvstore.errors import InvalidKey
from kvstore.keys import (
    _RECENTLY_VALID_LIMIT,
    MAX_KEY_BYTES,
    RECENTLY_VALID,
    all_valid_fetched_keys,
    all_valid_keys,
    prefix_successor,
    validate_key,
    validate_prefix,
)
from kvstore.testing import strategies as kst


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "must not be empty"),
        ("a::b", "'a::b' has an empty segment"),
        (":a", "empty segment"),
        ("a:", "empty segment"),
        ("a\x00b", "control character (U+0000) at index 1"),
        ("a\x7f", "control character (U+007F)"),
        ("a\ud800", "lone surrogate (U+D800)"),
        ("x" * 1025, "1025 UTF-8 bytes; the limit is 1024"),
        ("\u00e9" * 513, "1026 UTF-8 bytes"),
        (b"a", "must be a str, not bytes"),
        (None, "must be a str, not NoneType"),
    ],
)
def test_invalid_key_message_says_what_is_wrong(key: object, message: str) -> None:
    with pytest.raises(InvalidKey, match=re.escape(message)):
        validate_key(key)


def test_invalid_key_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        validate_key("")


@pytest.mark.parametrize("key", ["a", "A", "a b", "%", "..", "a:b:c", "x" * 1024, "\U0010ffff"])
def test_valid_keys_pass_unchanged(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize("prefix", ["", "a", "a:", "a:b:", "%"])
def test_valid_prefixes(prefix: str) -> None:
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", [":", ":a", "a::", "a\n"])
def test_prefixes_that_match_no_key_are_refused(prefix: str) -> None:
    with pytest.raises(InvalidKey):
        validate_prefix(prefix)


@pytest.mark.parametrize(
    ("prefix", "successor"),
    [
        ("", None),
        ("a", "b"),
        ("a:", "a;"),
        ("a\U0010ffff", "b"),
        ("\U0010ffff\U0010ffff", None),
        ("a\ud7ff", "a\ue000"),
    ],
)
def test_prefix_successor_bounds_the_range(prefix: str, successor: str | None) -> None:
    assert prefix_successor(prefix) == successor


@given(key=kst.keys(), prefix=kst.prefixes())
def test_range_scan_bound_agrees_with_startswith(key: str, prefix: str) -> None:
    successor = prefix_successor(prefix)
    in_range = key >= prefix and (successor is None or key < successor)
    assert in_range == key.startswith(prefix)
    encoded_in_range = key.encode() >= prefix.encode() and (
        successor is None or key.encode() < successor.encode()
    )
    assert encoded_in_range == in_range


class _Key(str):
    """A subclass of ``str``: validate_key refuses it, so the batch check must too."""


def test_all_valid_keys_refuses_what_validate_key_refuses() -> None:
    assert all_valid_keys(["a", "b:c"])
    assert not all_valid_keys(["a", _Key("b")])
    assert not all_valid_keys(["a", 1])
    with pytest.raises(InvalidKey, match="must be a str"):
        validate_key(_Key("b"))


def _plainly_valid(key: str) -> bool:
    """The key rules, written plainly, character by character."""
    if not key or any(ord(char) < 0x20 or ord(char) == 0x7F for char in key):
        return False
    if any(0xD800 <= ord(char) <= 0xDFFF for char in key):
        return False
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        return False
    return all(key.split(":"))


# Characters for the page check's property test: ASCII letters, the separator, the joining
# newline and other control characters, a space, characters of 2, 3 and 4 UTF-8 bytes, surrogates.
_PAGE_CHARS = st.sampled_from(
    ["a", "b", ":", "\n", "\x00", "\x1f", "\x7f", " ", "é", "€", "😀", "\ud800", "\udfff"]
)
# Keys near the byte limit, in characters of each width: "a" * 1024, "é" * 512 and "😀" * 256
# are the longest valid ones; the tail can make them invalid (":" or "\n") or longer.
_LONG_KEYS = st.builds(
    lambda fill, count, tail: fill * count + tail,
    st.sampled_from(["a", "é", "€", "😀", "ab:"]),
    st.integers(200, 1030),
    st.sampled_from(["", "b", ":", "\n", "é", ":c"]),
)
_PAGE_KEYS = st.one_of(
    st.text(_PAGE_CHARS, max_size=8),
    st.text(st.sampled_from("ab:"), min_size=1, max_size=30),  # mostly valid, like a real page
    _LONG_KEYS,
)


_PAGE_EXAMPLES = [
    ["a::b"],
    ["a", ":b"],
    ["a:", "b"],
    ["a", ""],
    ["", "a"],
    [""],
    [":"],
    ["a\nb"],
    ["a", "b\n"],
    ["a\x00"],
    ["a", "b\x7f"],
    ["\x1f"],
    ["é", "a\x00"],
    ["é:", "b"],
    ["é", ":b"],
    ["é", "a::b"],
    ["é", "\ud800"],
    ["\udfff"],
    ["a b", "é"],
    ["😀" * 256, "a"],
    ["😀" * 257],
    ["a", "é" * 512],
    ["a", "é" * 513],
    ["x" * 1024] * 3,
    ["x" * 1024, "x" * 1025, "x" * 1024],
    ["ab:" * 341 + "a"],
    ["ab:" * 341 + "ab"],
    ["a"] * 1000,
]


@pytest.mark.parametrize("keys", _PAGE_EXAMPLES, ids=range(len(_PAGE_EXAMPLES)))
def test_the_page_checks_agree_with_the_key_rules_on_each_kind_of_fault(keys: list[str]) -> None:
    _assert_the_page_checks_agree(keys)


# More examples than the profile's default: each takes about a millisecond, and the faults hide
# in particular places (a block boundary, a key's end).
@settings(max_examples=500)
@given(st.lists(_PAGE_KEYS, max_size=40))
def test_the_page_checks_agree_with_the_key_rules(keys: list[str]) -> None:
    _assert_the_page_checks_agree(keys)


def _assert_the_page_checks_agree(keys: list[str]) -> None:
    expected = all(_plainly_valid(key) for key in keys)
    assert all_valid_fetched_keys(keys) == expected  # type: ignore[arg-type]
    for key in keys:
        RECENTLY_VALID.pop(key, None)  # decided afresh, not by the memo
    assert all_valid_keys(keys) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("long", "valid"),
    [("x" * 1024, True), ("x" * 1025, False), ("😀" * 256, True), ("😀" * 257, False)],
    ids=["1024-ascii", "1025-ascii", "1024-bytes-of-4", "1028-bytes-of-4"],
)
def test_the_page_check_finds_a_long_key_wherever_it_starts(long: str, valid: bool) -> None:
    """The length bound is proved per aligned block of text: a long key must show whatever its
    offset from a block's start, so every offset up to two blocks is tried."""
    for offset in range(10, 2100 if long.isascii() else 600):
        # Short keys before it (so that every block before it holds a newline), their text and
        # newlines taking `offset` characters; then the long key, last or not.
        tens, rest = divmod(offset, 10)
        before = ["k" * (9 + rest)] + ["k" * 9] * (tens - 1)
        for keys in ([*before, long], [*before, long, "tail"]):
            assert all_valid_fetched_keys(keys) is valid, offset  # type: ignore[arg-type]


def test_the_fetched_page_check_refuses_what_a_database_can_return() -> None:
    for other in (b"a", 1, 1.5, None):
        assert not all_valid_fetched_keys(["a", other])
    assert all_valid_fetched_keys([])
    assert not all_valid_fetched_keys([""])


@given(
    st.text(
        st.one_of(st.characters(max_codepoint=0x7F), st.characters(), st.sampled_from(":\ud800")),
        max_size=12,
    )
    | st.text(st.sampled_from("ab:é"), min_size=250, max_size=1030)
)
def test_validate_key_agrees_with_the_rules_written_plainly(key: str) -> None:
    RECENTLY_VALID.pop(key, None)  # checked afresh, not remembered from an earlier example
    try:
        validate_key(key)
    except InvalidKey:
        accepted = False
    else:
        accepted = True
    assert accepted == _plainly_valid(key)


def test_the_valid_key_memo_stays_bounded_and_keeps_the_newest() -> None:
    RECENTLY_VALID.clear()
    keys = [f"memo:{number}" for number in range(_RECENTLY_VALID_LIMIT + 10)]
    for key in keys:
        validate_key(key)
    assert len(RECENTLY_VALID) <= _RECENTLY_VALID_LIMIT
    # Full, it dropped its oldest quarter, not everything: the newest three quarters remain.
    assert all(key in RECENTLY_VALID for key in keys[-(3 * _RECENTLY_VALID_LIMIT // 4) :])
    assert keys[0] not in RECENTLY_VALID
