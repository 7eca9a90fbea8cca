"""Index entries as hints: reading them, verifying them against records, and moving them.

An index entry is a key whose last segment is an encoded id and whose value is ``1``. Writers put
a new entry before the record and delete a stale one after it, so at any instant (and after a
crash between two writes) every record is reachable through its entries; some entries may be
stale. Readers therefore fetch the records an index names and keep only those that still match.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from entities.errors import ValidationError
from entities.keys import decode_segment
from kvstore.serialization import JSONValue
from kvstore.storage import Storage

__all__ = [
    "INDEX_VALUE",
    "Hint",
    "lookup",
    "now_ms",
    "parse_or_none",
    "read_documents",
    "read_hints",
    "save_indexed",
    "stored_entries",
]

INDEX_VALUE = 1
# Record keys fetched per get_many while verifying hints: bounds memory and request size.
_PAGE = 500

R = TypeVar("R")
Hint = tuple[str, str]
"""An index entry's key and the id it names."""


def now_ms() -> int:
    """The current time in milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


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


async def lookup(
    storage: Storage,
    prefix: str,
    record_key: Callable[[str], str],
    parse: Callable[[object], R],
    matches: Callable[[R, str], bool],
) -> tuple[list[R], list[Hint]]:
    """Return the records the index under ``prefix`` names that still match, and every hint.

    ``matches(record, hinted_id)`` decides whether an entry is still true of its record.
    """
    hints = await read_hints(storage, prefix)
    documents = await read_documents(storage, [record_key(hinted) for _, hinted in hints])
    found: list[R] = []
    for (_, hinted), document in zip(hints, documents, strict=True):
        if document is None:
            continue
        record = parse(document)
        if matches(record, hinted):
            found.append(record)
    return found, hints


class Document(Protocol):
    """A record that knows its stored form."""

    def to_document(self) -> JSONValue:
        """Return the JSON document stored for this record."""
        ...


D = TypeVar("D", bound=Document)


async def stored_entries(
    storage: Storage,
    record_key: str,
    parse: Callable[[object], D],
    entries_of: Callable[[D], list[str]],
) -> list[str]:
    """Return the index entries of the record stored under ``record_key`` (none if absent)."""
    previous = parse_or_none(parse, await storage.get(record_key))
    return entries_of(previous) if previous is not None else []


async def save_indexed(
    storage: Storage,
    record_key: str,
    record: D,
    parse: Callable[[object], D],
    entries_of: Callable[[D], list[str]],
) -> None:
    """Write ``record`` under ``record_key`` with its index entries, crash-safely.

    New entries go first, the record next, and the entries the stored record had but this one
    no longer has last; a crash at any point leaves only stale entries, which readers skip.
    After removing stale entries the record is read again, and any removed entry a concurrent
    save made true again is restored.
    """
    entries = entries_of(record)
    previous_entries = await stored_entries(storage, record_key, parse, entries_of)
    await storage.set_many([(entry, INDEX_VALUE) for entry in entries])
    await storage.set(record_key, record.to_document())
    stale = [entry for entry in previous_entries if entry not in entries]
    if not stale:
        return
    await storage.delete_many(stale)
    current = await storage.get(record_key)
    if current is None:
        return
    try:
        restored = [entry for entry in entries_of(parse(current)) if entry in stale]
    except ValidationError:
        return
    if restored:
        await storage.set_many([(entry, INDEX_VALUE) for entry in restored])


def parse_or_none(parse: Callable[[object], R], document: JSONValue | None) -> R | None:
    """Parse a stored document, treating a missing or unreadable one as absent.

    Used only to find the index entries of a record about to be replaced or deleted: entries a
    corrupt record had stay behind as stale hints, which readers skip.
    """
    if document is None:
        return None
    try:
        return parse(document)
    except ValidationError:
        return None
