"""Decoding stored rows: the batch decoder gives what ``decode_entry`` gives, row by row.

``recover`` and consumers read pages through :func:`decode_seq_rows`, which builds entries
inline for speed; these tests pin that it accepts and refuses exactly what :func:`decode_entry`
does, and that what it builds is an ordinary, immutable :class:`QueueEntry`.
"""

from __future__ import annotations

import dataclasses

import orjson
import pytest
from eventqueue import CorruptEvent, QueueEntry
from eventqueue.cursors import encode_seq
from eventqueue.decoding import COLUMNS_FROM, StoredEvent, decode_entry, decode_seq_rows

ROWS: list[tuple[int, object, object]] = [
    (1, 1_700_000_000_000, orjson.dumps({"text": "hello", "n": [1, 2.5, None]})),
    (2, 0, b"null"),
    (3, 5, "{}"),  # a TEXT payload: corrupt even though it looks like JSON
    (4, 5, 42),  # an INTEGER payload
    (5, 5, None),  # a missing payload
    (6, 5, b"{not json"),
    (7, 5, b""),
    (8, 5, b"1,2"),  # two values are not one event
    (9, 5.0, b"{}"),  # a REAL timestamp
    (10, "5", b"{}"),  # a TEXT timestamp
    (11, None, b"{}"),  # a missing timestamp
    (12, True, b"{}"),  # a bool is not a stored integer
    (2**63 - 1, 7, b'"last"'),
]


# Good rows put in front of a page so that it is long enough for the column-by-column decoder
# (decode_seq_rows picks it from COLUMNS_FROM rows on); each test runs on both decoders.
LEAD: list[tuple[int, object, object]] = [
    (10_000 + index, index, orjson.dumps({"lead": index})) for index in range(COLUMNS_FROM)
]


@pytest.fixture(params=["short page", "long page"])
def lead(request: pytest.FixtureRequest) -> list[tuple[int, object, object]]:
    return [] if request.param == "short page" else LEAD


def _comparable(item: StoredEvent) -> object:
    if isinstance(item, CorruptEvent):
        return ("corrupt", item.topic, item.cursor, item.reason, str(item))
    return ("entry", item)


def test_batch_decoding_matches_decode_entry_on_good_and_corrupt_rows(
    lead: list[tuple[int, object, object]],
) -> None:
    rows = lead + ROWS
    expected = [decode_entry("t", encode_seq(seq), ts, payload) for seq, ts, payload in rows]
    got = decode_seq_rows("t", rows)
    assert [_comparable(item) for item in got] == [_comparable(item) for item in expected]
    kinds = [type(item) for item in got[len(lead) :]]
    assert kinds.count(QueueEntry) == 3
    assert kinds.count(CorruptEvent) == len(ROWS) - 3


@pytest.mark.parametrize(
    "bad",
    [(2, 5, b"{not json"), (2, 5, "{}"), (2, 5.0, b"{}")],
    ids=["invalid JSON", "TEXT payload", "REAL timestamp"],
)
def test_one_corrupt_row_between_good_ones_is_refused_alone(
    bad: tuple[int, object, object], lead: list[tuple[int, object, object]]
) -> None:
    # The fast pass over a clean page gives up at the corrupt row; the row-by-row pass that
    # takes over must still return the good rows before and after it.
    rows = [*lead, (1, 5, b"1"), bad, (3, 5, b"3")]
    expected = [decode_entry("t", encode_seq(seq), ts, payload) for seq, ts, payload in rows]
    got = decode_seq_rows("t", rows)
    assert [_comparable(item) for item in got] == [_comparable(item) for item in expected]
    assert [type(item) for item in got] == [QueueEntry] * (len(lead) + 1) + [
        CorruptEvent,
        QueueEntry,
    ]


def test_batch_built_entries_are_ordinary_frozen_entries(
    lead: list[tuple[int, object, object]],
) -> None:
    *_, entry = decode_seq_rows("topic", [*lead, (42, 9, b'{"a": 1}')])
    assert entry == QueueEntry("topic", "00000000000000000042", {"a": 1}, 9)
    assert type(entry) is QueueEntry
    assert repr(entry) == repr(QueueEntry("topic", "00000000000000000042", {"a": 1}, 9))
    assert dataclasses.replace(entry, timestamp=10).timestamp == 10
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.timestamp = 1  # type: ignore[misc]


def test_an_empty_page_decodes_to_nothing() -> None:
    assert decode_seq_rows("t", []) == []


def test_a_clean_page_matches_decode_entry_row_by_row(
    lead: list[tuple[int, object, object]],
) -> None:
    rows = [*lead, *(row for row in ROWS if type(row[1]) is int and row[2] in (b"null", b'"last"'))]
    expected = [decode_entry("t", encode_seq(seq), ts, payload) for seq, ts, payload in rows]
    assert decode_seq_rows("t", rows) == expected
