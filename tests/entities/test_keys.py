"""Key encoding: one segment per id, injective, readable; over-long keys are refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from entities import ValidationError
from entities.keys import KeyLayout, decode_segment, encode_segment
from kvstore.keys import validate_key

_ids = st.text(st.characters(codec="utf-8"), min_size=1, max_size=30)


@settings(max_examples=200)
@given(_ids, _ids)
def test_encoding_is_one_valid_segment_and_injective(first: str, second: str) -> None:
    encoded = encode_segment(first)
    assert ":" not in encoded
    validate_key(encoded)
    assert decode_segment(encoded) == first
    assert (encode_segment(second) == encoded) == (first == second)


def test_encoding_keeps_ordinary_text_readable() -> None:
    assert encode_segment("My Assistant é/..") == "My Assistant é/.."
    assert encode_segment("a:b%c\n") == "a%3Ab%25c%0A"


@pytest.mark.parametrize("segment", ["a:b", "%3a", "%", "%4", "", "a%ZZ"])
def test_decoding_refuses_what_encoding_never_produces(segment: str) -> None:
    with pytest.raises(ValueError, match="not an encoded segment"):
        decode_segment(segment)


def test_key_that_would_exceed_the_limit_is_refused_with_the_namespace_counted() -> None:
    layout = KeyLayout("agentx")
    fits = "x" * (1024 - len("agentx:") - len("images:"))
    assert layout.image(fits).endswith(fits)
    with pytest.raises(ValidationError, match="image_id is too long"):
        layout.image(fits + "x")
    # Escaping counts: one ':' takes three bytes.
    with pytest.raises(ValidationError, match="too long"):
        layout.image(fits[:-1] + ":")
