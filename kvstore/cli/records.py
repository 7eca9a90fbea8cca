"""The export format: JSON Lines, one ``{"key": ..., "value": ...}`` object per key.

A value whose stored bytes are exactly what orjson writes for some JSON value is exported as
that JSON (``"value"``), so that exports are readable. Any other bytes, including JSON written
with different spacing, are exported as ``"raw"`` base64, so that importing an export restores
every value byte for byte.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import orjson

from kvstore.errors import InvalidKey
from kvstore.keys import validate_key

__all__ = ["Record", "RecordError", "encode_record", "parse_record"]

_FIELDS = frozenset({"key", "value", "raw"})


class RecordError(ValueError):
    """A line of an import file is not a valid record; the message says why."""


@dataclass(frozen=True, slots=True)
class Record:
    """One key and the bytes to store under it."""

    key: str
    data: bytes


def _canonical_json(data: bytes) -> bool:
    try:
        return orjson.dumps(orjson.loads(data)) == data
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        return False


def encode_record(key: str, data: bytes) -> bytes:
    """Return the export line (ending in a newline) for ``key`` holding ``data``."""
    if _canonical_json(data):
        # ``data`` is already orjson's output for the value: splice it in rather than re-encode.
        return b'{"key":' + orjson.dumps(key) + b',"value":' + data + b"}\n"
    raw = base64.b64encode(data).decode("ascii")
    return orjson.dumps({"key": key, "raw": raw}) + b"\n"


def parse_record(line: bytes) -> Record | None:
    """Return the record a line holds, ``None`` for a blank line; raise :class:`RecordError`."""
    if not line.strip():
        return None
    try:
        item = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        raise RecordError(f"not valid JSON ({error})") from None
    if type(item) is not dict:
        raise RecordError('expected a JSON object with "key" and one of "value" or "raw"')
    unknown = set(item) - _FIELDS
    if unknown:
        raise RecordError(f"unexpected fields {sorted(unknown)}: only key, value and raw")
    if "key" not in item:
        raise RecordError('the "key" field is missing')
    if ("value" in item) == ("raw" in item):
        raise RecordError('expected exactly one of "value" (JSON) or "raw" (base64)')
    try:
        key = validate_key(item["key"])
    except InvalidKey as error:
        raise RecordError(str(error)) from None
    if "value" in item:
        return Record(key, orjson.dumps(item["value"]))
    raw = item["raw"]
    if type(raw) is not str:
        raise RecordError(f'"raw" must be a base64 string, not {type(raw).__name__}')
    try:
        return Record(key, base64.b64decode(raw, validate=True))
    except (binascii.Error, ValueError) as error:
        raise RecordError(f'"raw" is not valid base64 ({error})') from None
