"""The export format: JSON Lines, one ``{"key": ..., "value": ...}`` object per key.

A value whose stored bytes are exactly what orjson writes for some JSON value is exported as
that JSON (``"value"``), so that exports are readable. Any other bytes, including JSON written
with different spacing, are exported as ``"raw"`` base64, so that importing an export restores
every value byte for byte. A key that expires carries ``"expires_at"``: its absolute expiry
instant in POSIX seconds, so that an import restores the time it has left, not a fresh TTL.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass

import orjson

from kvstore.errors import InvalidKey
from kvstore.keys import validate_key

__all__ = ["Record", "RecordError", "encode_record", "parse_record"]

_FIELDS = frozenset({"key", "value", "raw", "expires_at"})


class RecordError(ValueError):
    """A line of an import file is not a valid record; the message says why."""


@dataclass(frozen=True, slots=True)
class Record:
    """One key, the bytes to store under it, and when it expires (POSIX seconds), if it does."""

    key: str
    data: bytes
    expires_at: float | None = None


def _canonical_json(data: bytes) -> bool:
    try:
        return orjson.dumps(orjson.loads(data)) == data
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        return False


def encode_record(key: str, data: bytes, expires_at: float | None = None) -> bytes:
    """Return the export line (ending in a newline) for ``key`` holding ``data``."""
    expiry = b"" if expires_at is None else b',"expires_at":' + orjson.dumps(expires_at)
    if _canonical_json(data):
        # ``data`` is already orjson's output for the value: splice it in rather than re-encode.
        return b'{"key":' + orjson.dumps(key) + expiry + b',"value":' + data + b"}\n"
    raw = base64.b64encode(data).decode("ascii")
    return b'{"key":' + orjson.dumps(key) + expiry + b',"raw":' + orjson.dumps(raw) + b"}\n"


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
    expires_at = item.get("expires_at")
    if expires_at is not None and (
        type(expires_at) not in (int, float) or not math.isfinite(expires_at)
    ):
        raise RecordError(f'"expires_at" must be POSIX seconds (a number), not {expires_at!r}')
    instant = None if expires_at is None else float(expires_at)
    if "value" in item:
        return Record(key, orjson.dumps(item["value"]), instant)
    raw = item["raw"]
    if type(raw) is not str:
        raise RecordError(f'"raw" must be a base64 string, not {type(raw).__name__}')
    try:
        return Record(key, base64.b64decode(raw, validate=True), instant)
    except (binascii.Error, ValueError) as error:
        raise RecordError(f'"raw" is not valid base64 ({error})') from None
