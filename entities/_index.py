"""Shared helpers: reading index entries (hints), reading documents in pages, retry pacing.

An index entry is a hint, not a fact: writers put a record's new entries before the record and
remove its stale ones after it, so at any instant (and after a crash between two writes) every
record is reachable through its entries while some entries may be stale. Readers therefore
fetch the records an index names and keep only those that still match.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing

from entities.errors import ValidationError
from entities.keys import decode_segment
from kvstore.serialization import JSONValue
from kvstore.storage import Storage

__all__ = [
    "INDEX_VALUE",
    "Hint",
    "check_limit",
    "now_ms",
    "page_keys",
    "read_documents",
    "read_hints",
]

INDEX_VALUE = 1
# Record keys fetched per get_many: bounds memory and request size.
_PAGE = 500

Hint = tuple[str, str]
"""An index entry's key and the id it names."""


def now_ms() -> int:
    """The current time in milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


def check_limit(limit: object) -> int | None:
    """``None`` or a positive ``int`` page size."""
    if limit is None:
        return None
    if type(limit) is not int or limit < 1:
        raise ValidationError(f"limit must be a positive int or None, not {limit!r}")
    return limit


async def read_hints(storage: Storage, prefix: str) -> list[Hint]:
    """Return ``(entry key, id)`` for every well-formed index entry under ``prefix``."""
    hints: list[Hint] = []
    async for key in storage.keys(prefix):
        try:
            hints.append((key, decode_segment(key[len(prefix) :])))
        except ValueError:
            continue  # Not written by us (an extra segment, a bad escape): no id to follow.
    return hints


async def read_documents(storage: Storage, keys: Sequence[str]) -> list[JSONValue | None]:
    """``storage.get_many`` in bounded pages."""
    documents: list[JSONValue | None] = []
    for start in range(0, len(keys), _PAGE):
        documents.extend(await storage.get_many(keys[start : start + _PAGE]))
    return documents


async def page_keys(
    storage: Storage, prefix: str, *, after: str | None, limit: int | None
) -> list[str]:
    """Return the keys under ``prefix`` greater than ``after``, at most ``limit`` of them.

    kvstore has no ranged scan yet, so the keys before the page are scanned (keys only) and
    skipped; the scan stops at the end of the page.
    """
    keys: list[str] = []
    stream: AsyncIterator[str] = storage.keys(prefix)
    async with aclosing(stream):  # type: ignore[type-var]
        async for key in stream:
            if after is not None and key <= after:
                continue
            keys.append(key)
            if limit is not None and len(keys) >= limit:
                break
    return keys
