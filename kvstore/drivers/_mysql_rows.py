"""Multi-row upserts for the MySQL driver, rendered in one pass instead of PyMySQL's per value.

PyMySQL's ``executemany`` renders each row through its generic escaping (a ``%`` format and an
``escape`` call per value), which was half the client's time of a 10,000-item ``set_many``.
The rows of a batch have a fixed shape, ``(key bytes, value bytes, ints...)``, so each is one
bytes ``%`` format: keys and values as hex literals (``X'...'``: data whatever the bytes, as
PyMySQL sends them too), integers in decimal. The rows then go in statements of about
:data:`STATEMENT_BYTES`: the server took longer over 4 MiB statements than over 1 MiB ones.
"""

from __future__ import annotations

from binascii import hexlify
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the driver imports PyMySQL (or reports the missing extra) first
    import pymysql.cursors

__all__ = ["STATEMENT_BYTES", "execute_rows", "render_rows"]

# Bytes per multi-row statement (PyMySQL's own default is about this); see the module doc.
STATEMENT_BYTES = 1 << 20


def render_rows(rows: Sequence[tuple[bytes, bytes, int]], *columns: int) -> list[bytes]:
    """Each row as ``(X'key',X'value',version,*columns)``: ``columns`` are the same for all."""
    # The shared integers are formatted once, then appended to every row.
    tail = b"".join(b",%d" % number for number in columns) + b")"
    return [
        b"(X'%b',X'%b',%d%b" % (hexlify(key), hexlify(value), version, tail)
        for key, value, version in rows
    ]


def execute_rows(
    cursor: pymysql.cursors.Cursor, head: str, tail: str, rows: Sequence[bytes], limit: int
) -> None:
    """Run ``head`` + the rows joined by commas + ``tail``, in statements of about ``limit``.

    A row bigger than ``limit`` alone goes in a statement of its own (the caller checked that
    it fits the server's packet).
    """
    prefix, suffix = head.encode(), tail.encode()
    start, size = 0, 0
    for index, row in enumerate(rows):
        if index > start and size + len(row) > limit:
            _execute(cursor, prefix + b",".join(rows[start:index]) + suffix)
            start, size = index, 0
        size += len(row) + 1
    _execute(cursor, prefix + b",".join(rows[start:]) + suffix)


def _execute(cursor: pymysql.cursors.Cursor, statement: bytes) -> None:
    # Without arguments PyMySQL sends the query as it is, bytes included: its own executemany
    # sends its multi-row statements that way. Its annotations say str only.
    cursor.execute(statement)  # type: ignore[call-overload]
