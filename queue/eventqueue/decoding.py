"""Reading a stored row back: a :class:`QueueEntry`, or a :class:`CorruptEvent` saying why not.

Every backend builds what ``read_after`` returns with :func:`decode_entry`, so that one bad row
(written by another tool, a bug, bit rot) becomes a typed item in its place instead of an
exception that would end the whole read. Only what the queue itself writes is accepted: a
payload of JSON bytes and an integer timestamp; a value of another type (a SQLite TEXT or INTEGER
payload inserted by hand) is corrupt even if it happens to look like JSON. A consumer's stored
cursor that is unusable is reported with :func:`report_corrupt_cursor` and read as none.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from typing import TypeAlias

import orjson

from eventqueue.cursors import SEQ_WIDTH
from eventqueue.entry import QueueEntry
from eventqueue.errors import CorruptEvent

__all__ = [
    "COLUMNS_FROM",
    "StoredEvent",
    "decode_entry",
    "decode_seq_rows",
    "entries_from_columns",
    "report_corrupt_cursor",
]

logger = logging.getLogger("eventqueue")

StoredEvent: TypeAlias = QueueEntry | CorruptEvent
"""One row a backend read: the decoded entry, or the reason it cannot be decoded."""


def _field_error(name: str, value: object, expected: str) -> str:
    if value is None:
        return f"the {name} is missing"
    return f"the {name} is stored as {type(value).__name__}, not as {expected}"


def decode_entry(topic: str, cursor: str, timestamp: object, payload: object) -> StoredEvent:
    """Return the entry stored at ``cursor``, or a :class:`CorruptEvent` if it does not decode.

    ``timestamp`` must be an ``int`` and ``payload`` the ``bytes`` of one JSON value. The reason
    in a :class:`CorruptEvent` never quotes the stored bytes (they may be anyone's data).
    """
    if type(payload) is not bytes:
        return CorruptEvent(topic, cursor, _field_error("event", payload, "JSON bytes"))
    if type(timestamp) is not int:
        return CorruptEvent(topic, cursor, _field_error("timestamp", timestamp, "an integer"))
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return CorruptEvent(topic, cursor, f"the event is not valid JSON ({exc})")
    return QueueEntry(topic, cursor, event, timestamp)


# ``recover`` of 10,000 events builds 10,000 entries: the frozen dataclass ``__init__`` (one
# ``object.__setattr__`` per field) costs about twice as much as creating the instance and filling
# its slots directly, which is what these do. They write exactly the fields ``__init__`` would.
_new = object.__new__
_set_topic = QueueEntry.__dict__["topic"].__set__
_set_cursor = QueueEntry.__dict__["cursor"].__set__
_set_event = QueueEntry.__dict__["event"].__set__
_set_timestamp = QueueEntry.__dict__["timestamp"].__set__


COLUMNS_FROM = 32
"""From this many rows on, a page is decoded column by column (see :func:`_decode_columns`)."""
_BYTES_ONLY = frozenset({bytes})
_INT_ONLY = frozenset({int})
# Runs an iterator to its end in C, keeping nothing: each step of the maps below is a setter call.
_exhaust: Callable[[Iterable[object]], None] = deque[object](maxlen=0).extend


def decode_seq_rows(topic: str, rows: Sequence[tuple[int, object, object]]) -> list[StoredEvent]:
    """Return :func:`decode_entry` of each ``(seq, timestamp, payload)`` row, in order.

    The same result as calling :func:`decode_entry` with ``encode_seq(seq)`` per row, for about
    60 % of the cost: a page of rows of the expected types is decoded in one tight loop (a long
    page column by column), and a page holding any other row (or a payload that is not JSON) is
    decoded again row by row by :func:`_decode_checked_rows`, so corrupt rows are refused with
    exactly its reasons. ``seq`` must be an ``int`` (the backend's query ensures it).
    """
    if len(rows) >= COLUMNS_FROM:
        return _decode_columns(topic, rows)
    # Locals rather than globals in the loop.
    loads, width = orjson.loads, SEQ_WIDTH
    set_topic, set_cursor, set_event, set_timestamp = (
        _set_topic,
        _set_cursor,
        _set_event,
        _set_timestamp,
    )
    # The instances are made in one C-level pass, which saves a call and an append per row.
    entries = list(map(_new, repeat(QueueEntry, len(rows))))
    try:
        for entry, (seq, timestamp, payload) in zip(entries, rows, strict=True):
            if type(payload) is not bytes or type(timestamp) is not int:
                return _decode_checked_rows(topic, rows)
            set_topic(entry, topic)
            set_cursor(entry, str(seq).zfill(width))
            set_event(entry, loads(payload))
            set_timestamp(entry, timestamp)
    except orjson.JSONDecodeError:
        return _decode_checked_rows(topic, rows)
    return entries  # type: ignore[return-value]  # list is invariant; every item is an entry


def _decode_columns(topic: str, rows: Sequence[tuple[int, object, object]]) -> list[StoredEvent]:
    """:func:`decode_seq_rows` of a long page: each step a pass over one column, in C.

    The types are checked a column at a time and every payload is decoded by one ``map``; then
    :func:`entries_from_columns` fills the entries. On a page of 2,000 rows this costs 8-16 %
    less than the row loop; on a page of a few rows, the passes' setup costs more than it saves.
    """
    seqs, timestamps, payloads = zip(*rows, strict=True)
    if set(map(type, payloads)) != _BYTES_ONLY or set(map(type, timestamps)) != _INT_ONLY:
        return _decode_checked_rows(topic, rows)
    try:
        events = list(map(orjson.loads, payloads))
    except orjson.JSONDecodeError:
        return _decode_checked_rows(topic, rows)
    width = SEQ_WIDTH
    cursors = [str(seq).zfill(width) for seq in seqs]
    return entries_from_columns(topic, cursors, events, timestamps)


def entries_from_columns(
    topic: str, cursors: Sequence[str], events: Sequence[object], timestamps: Sequence[int]
) -> list[StoredEvent]:
    """The entries of ``topic`` made of the given columns, which are already checked and decoded.

    Each field is filled for every entry in one pass in C (a map over the slot's setter), which
    saves the frozen dataclass ``__init__`` and a Python loop step per entry.
    """
    entries = list(map(_new, repeat(QueueEntry, len(cursors))))
    _exhaust(map(_set_topic, entries, repeat(topic)))
    _exhaust(map(_set_cursor, entries, cursors))
    _exhaust(map(_set_event, entries, events))
    _exhaust(map(_set_timestamp, entries, timestamps))
    return entries  # type: ignore[return-value]  # list is invariant; every item is an entry


def _decode_checked_rows(
    topic: str, rows: Iterable[tuple[int, object, object]]
) -> list[StoredEvent]:
    """:func:`decode_seq_rows` of a page holding a corrupt row: each row checked on its own."""
    loads, new, entry_type, width = orjson.loads, _new, QueueEntry, SEQ_WIDTH
    set_topic, set_cursor, set_event, set_timestamp = (
        _set_topic,
        _set_cursor,
        _set_event,
        _set_timestamp,
    )
    decoded: list[StoredEvent] = []
    append = decoded.append
    for seq, timestamp, payload in rows:
        cursor = str(seq).zfill(width)
        if type(payload) is bytes and type(timestamp) is int:
            try:
                event = loads(payload)
            except orjson.JSONDecodeError:
                append(decode_entry(topic, cursor, timestamp, payload))
                continue
            entry = new(entry_type)
            set_topic(entry, topic)
            set_cursor(entry, cursor)
            set_event(entry, event)
            set_timestamp(entry, timestamp)
            append(entry)
        else:
            append(decode_entry(topic, cursor, timestamp, payload))
    return decoded


def report_corrupt_cursor(consumer_id: str, topic: str, reason: str) -> None:
    """Log that ``consumer_id``'s stored cursor in ``topic`` is unusable; it then reads as None.

    Reading it as "never acked" makes ``consume`` replay the topic from its oldest event:
    duplicates, never a loss and never a stalled consumer. The next ``ack`` replaces it.
    """
    logger.error(
        "consumer %r of topic %r: the stored acked cursor is corrupt (%s); reading it as none,"
        " so consume replays from the oldest stored event until the next ack replaces it",
        consumer_id,
        topic,
        reason,
    )
