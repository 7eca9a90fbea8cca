"""Field checks shared by the record types; each returns the value or raises ValidationError."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from entities.errors import ValidationError
from kvstore.errors import SerializationError
from kvstore.serialization import encode

# Timestamps are zero-padded to this many digits in message keys, so they sort as text.
TIMESTAMP_DIGITS = 16
MAX_TIMESTAMP = 10**TIMESTAMP_DIGITS - 1

# Lone surrogates have no UTF-8 form: no key or JSON document can hold them.
_SURROGATE = re.compile("[\ud800-\udfff]")


def check_id(value: object, field: str) -> str:
    """An id or name: a non-empty ``str`` that UTF-8 can encode."""
    text = check_text(value, field)
    if not text:
        raise ValidationError(f"{field} must not be empty")
    return text


def check_text(value: object, field: str) -> str:
    """Any ``str`` (empty allowed) that UTF-8 can encode."""
    if type(value) is not str:
        raise ValidationError(f"{field} must be a str, not {type(value).__name__}")
    # ASCII text (most ids) has no surrogate: a flag test instead of the search.
    if not value.isascii() and _SURROGATE.search(value) is not None:
        raise ValidationError(f"{field} contains a lone surrogate, which cannot be stored")
    return value


def check_optional_text(value: object, field: str) -> str | None:
    """``None`` or a ``str`` as :func:`check_text` accepts."""
    return None if value is None else check_text(value, field)


def check_timestamp(value: object, field: str) -> int:
    """Milliseconds since the epoch: an ``int`` (not ``bool``) from 0 to ``MAX_TIMESTAMP``."""
    if type(value) is not int:
        raise ValidationError(
            f"{field} must be an int (ms since the epoch), not {type(value).__name__}"
        )
    if not 0 <= value <= MAX_TIMESTAMP:
        raise ValidationError(f"{field} must be between 0 and {MAX_TIMESTAMP}, got {value}")
    return value


def check_object(value: object, field: str) -> dict[str, Any]:
    """A JSON object that reads back equal; returns a private deep copy."""
    if type(value) is not dict:
        raise ValidationError(f"{field} must be a dict, not {type(value).__name__}")
    try:
        data = encode(value)
    except SerializationError as error:
        raise ValidationError(f"{field} is not storable as JSON: {error}") from None
    # A copy, so that later changes to the caller's dict cannot alter a frozen record.
    copied: dict[str, Any] = orjson.loads(data)
    return copied


def check_optional_object(value: object, field: str) -> dict[str, Any] | None:
    """``None`` or a JSON object as :func:`check_object` accepts."""
    return None if value is None else check_object(value, field)


def document_fields(
    document: object, kind: str, required: frozenset[str], optional: frozenset[str]
) -> dict[str, Any]:
    """Check that ``document`` is a dict with every required field and no unknown one."""
    if type(document) is not dict:
        raise ValidationError(f"a {kind} document must be a dict, not {type(document).__name__}")
    # Set comparisons of the keys view, in C: a stored record (every required field, no unknown
    # one) passes without the differences and sorts that name what is wrong.
    fields = document.keys()
    if fields == required or (fields >= required and fields - required <= optional):
        return document
    missing = sorted(required - fields)
    if missing:
        raise ValidationError(f"the {kind} document lacks {', '.join(missing)}")
    unknown = sorted(str(name) for name in fields - required - optional)
    if unknown:
        raise ValidationError(f"the {kind} document has unknown fields {', '.join(unknown)}")
    return document


def record_or_mapping(value: object, kind: type, method: str) -> Any:
    """``value`` if it is a ``kind`` record or a mapping (its document, parsed later); else
    raise ValidationError naming ``method``."""
    if isinstance(value, kind | Mapping):
        return value
    raise ValidationError(
        f"{method} takes a {kind.__name__} or its document, not {type(value).__name__}"
    )
