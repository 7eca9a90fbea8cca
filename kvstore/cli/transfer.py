"""Moving many keys: ``export`` to JSON Lines, ``import`` from it, ``migrate`` between URLs.

Each streams in batches whose size is bounded both in keys and in bytes, so memory stays flat
however large the store is. Expiring keys keep their absolute expiry instant: an export records
it, and an import or a migration writes the key with the time it has left then (on this
machine's clock), skipping keys whose instant has passed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Final

from kvstore.cli._common import CLIError, Progress, Target, stdout_bytes
from kvstore.cli.records import Record, RecordError, encode_record, parse_record
from kvstore.storage import Storage

__all__ = ["Batch", "items_with_expiry", "run_export", "run_import"]

DEFAULT_BATCH: Final = 500
# A batch is written once it holds this many bytes of values, whatever its key count.
BATCH_BYTES: Final = 32 * 1024 * 1024


class Batch:
    """Keys gathered for writing: full at ``size`` keys or :data:`BATCH_BYTES` of values.

    Keys that never expire go out in one ``set_many_raw``; expiring ones in one per expiry
    instant (a batch written with a TTL shares one), each with the time left at the flush.
    ``expired`` counts the keys skipped because their instant had passed by then.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.expired = 0
        self._by_instant: dict[float | None, list[tuple[str, bytes]]] = {}
        self._count = 0
        self._bytes = 0

    def add(self, key: str, data: bytes, expires_at: float | None = None) -> bool:
        """Add a key; return whether the batch is now full."""
        self._by_instant.setdefault(expires_at, []).append((key, data))
        self._count += 1
        self._bytes += len(data)
        return self._count >= self.size or self._bytes >= BATCH_BYTES

    async def flush(self, storage: Storage, progress: Progress) -> int:
        """Write the keys gathered so far, return how many were written, and start afresh."""
        written = 0
        for instant, pairs in self._by_instant.items():
            if instant is None:
                await storage.set_many_raw(pairs, ttl=None)
            elif (left := instant - time.time()) <= 0:
                self.expired += len(pairs)
                continue
            else:
                await storage.set_many_raw(pairs, ttl=left)
            written += len(pairs)
        progress.advance(self._count)
        self._by_instant = {}
        self._count = 0
        self._bytes = 0
        return written


async def items_with_expiry(
    storage: Storage, prefix: str
) -> AsyncIterator[tuple[str, bytes, float | None]]:
    """Yield ``(key, bytes, expires_at)`` for every live key under ``prefix``, in key order.

    On a driver with expiry the instants come from ``get_meta_many``, once per page of up to
    :data:`DEFAULT_BATCH` keys or :data:`BATCH_BYTES` of values (a round trip per key made an
    export from a server store ten to thirty times slower than its scan); a key that expires or
    goes between the two reads is left out.
    """
    if not storage.driver.expiry:
        async for key, data in storage.items_raw(prefix):
            yield key, data, None
        return
    page: list[tuple[str, bytes]] = []
    size = 0
    async for key, data in storage.items_raw(prefix):
        page.append((key, data))
        size += len(data)
        if len(page) >= DEFAULT_BATCH or size >= BATCH_BYTES:
            for record in await _with_expiry(storage, page):
                yield record
            page, size = [], 0
    for record in await _with_expiry(storage, page):
        yield record


async def _with_expiry(
    storage: Storage, page: list[tuple[str, bytes]]
) -> list[tuple[str, bytes, float | None]]:
    """The pairs of ``page`` still live, each with its expiry instant, read in one call."""
    if not page:
        return []
    metas = await storage.get_meta_many([key for key, _ in page])
    return [
        (key, data, meta.expires_at)
        for (key, data), meta in zip(page, metas, strict=True)
        if meta is not None
    ]


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[IO[bytes]]:
    """Yield where the export goes; a file appears under its name only once it is complete."""
    if path is None or path == "-":
        yield stdout_bytes()
        return
    final = Path(path)
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - renamed or removed below
        dir=final.parent, prefix=f".{final.name}.", suffix=".partial", delete=False
    )
    try:
        with handle:
            yield handle
        os.replace(handle.name, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(handle.name)
        raise


async def run_export(args: argparse.Namespace, target: Target) -> int:
    """Write every key under ``--prefix`` with its value as JSON Lines, streaming."""
    count = 0
    with _output(args.output) as out, Progress("exported") as progress:
        async with target.storage() as storage:
            async for key, data, expires_at in items_with_expiry(storage, args.prefix):
                out.write(encode_record(key, data, expires_at))
                count += 1
                progress.advance(1)
        out.flush()
    if args.output not in (None, "-"):
        print(f"exported {count} keys to {args.output}")
    return 0


def _records(
    lines: IO[bytes], name: str, copy: IO[bytes] | None, consequence: str
) -> Iterator[Record]:
    """Yield the records of every line; raise one :class:`CLIError` naming the bad lines."""
    first: str | None = None
    bad = 0
    for number, line in enumerate(lines, start=1):
        if copy is not None:
            copy.write(line)
        try:
            record = parse_record(line)
        except RecordError as error:
            bad += 1
            first = first or f"{name} line {number}: {error}"
            continue
        if record is not None and not bad:
            yield record
    if first is not None:
        more = f" (and {bad - 1} more bad lines)" if bad > 1 else ""
        raise CLIError(f"{first}{more}; {consequence}")


async def run_import(args: argparse.Namespace, target: Target) -> int:
    """Read JSON Lines records and store them in batches, after checking every line first.

    Two passes: the first parses and checks every line and writes nothing, so that a bad line
    (reported with its line number) leaves the store untouched; the second writes. Standard
    input is spooled to a temporary file during the first pass so it can be read twice.
    """
    from_stdin = args.file in (None, "-")
    name = "<stdin>" if from_stdin else str(args.file)
    storage = target.storage()  # parses the URL now, so a bad one fails before any reading
    try:
        with contextlib.ExitStack() as stack:
            if from_stdin:
                source: IO[bytes] = sys.stdin.buffer
                spool: IO[bytes] | None = (
                    None if args.dry_run else stack.enter_context(tempfile.TemporaryFile())
                )
            else:
                # Blocking reads are fine here: the command is the event loop's only task.
                source = stack.enter_context(open(args.file, "rb"))  # noqa: ASYNC230
                spool = None
            count = sum(1 for _ in _records(source, name, spool, "nothing was imported"))
            if args.dry_run:
                print(f"{count} records are valid; nothing was written (--dry-run)")
                return 0
            readable = spool if spool is not None else source
            readable.seek(0)
            # Only a file changed between the passes can fail here, after some batches.
            changed = "the file changed during the import; earlier batches were written"
            records = _records(readable, name, None, changed)
            written, expired = await _write(storage, records, args.batch)
    finally:
        await storage.close()
    skipped = f" ({expired} had expired and were skipped)" if expired else ""
    print(f"imported {written} keys into {target.display}{skipped}")
    return 0


async def _write(storage: Storage, records: Iterator[Record], size: int) -> tuple[int, int]:
    written = 0
    batch = Batch(size)
    with Progress("imported") as progress:
        await storage.open()
        for record in records:
            if batch.add(record.key, record.data, record.expires_at):
                written += await batch.flush(storage, progress)
        written += await batch.flush(storage, progress)
    return written, batch.expired
