"""Moving many keys: ``export`` to JSON Lines, ``import`` from it, ``migrate`` between URLs.

Each streams in batches whose size is bounded both in keys and in bytes, so memory stays flat
however large the store is.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Final

from kvstore.cli._common import CLIError, Progress, Target, stdout_bytes
from kvstore.cli.records import Record, RecordError, encode_record, parse_record
from kvstore.storage import Storage

__all__ = ["run_export", "run_import"]

DEFAULT_BATCH: Final = 500
# A batch is written once it holds this many bytes of values, whatever its key count.
BATCH_BYTES: Final = 32 * 1024 * 1024


class Batch:
    """Pairs gathered for one ``set_many_raw``: full at ``size`` keys or :data:`BATCH_BYTES`."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pairs: list[tuple[str, bytes]] = []
        self._bytes = 0

    def add(self, key: str, data: bytes) -> bool:
        """Add a pair; return whether the batch is now full."""
        self.pairs.append((key, data))
        self._bytes += len(data)
        return len(self.pairs) >= self.size or self._bytes >= BATCH_BYTES

    async def flush(self, storage: Storage, progress: Progress) -> int:
        """Write the pairs gathered so far, return how many, and start afresh."""
        count = len(self.pairs)
        if count:
            await storage.set_many_raw(self.pairs)
            progress.advance(count)
        self.pairs = []
        self._bytes = 0
        return count


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
            async for key, data in storage.items_raw(args.prefix):
                out.write(encode_record(key, data))
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
            written = await _write(storage, records, args.batch)
    finally:
        await storage.close()
    print(f"imported {written} keys into {target.display}")
    return 0


async def _write(storage: Storage, records: Iterator[Record], size: int) -> int:
    written = 0
    batch = Batch(size)
    with Progress("imported") as progress:
        await storage.open()
        for record in records:
            if batch.add(record.key, record.data):
                written += await batch.flush(storage, progress)
        written += await batch.flush(storage, progress)
    return written
