"""``migrate SRC DST``: copy every key in batches, then re-read both sides and compare bytes."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Final

from kvstore import create_storage
from kvstore.cli._common import CLIError, Progress
from kvstore.cli.transfer import Batch, items_with_expiry
from kvstore.drivers.sqlite import SQLiteDriver
from kvstore.errors import ConfigurationError
from kvstore.storage import Storage
from kvstore.urls import parse_url, redact_url

__all__ = ["Verification", "run_migrate", "verify"]

# Differing keys named on stderr before the rest are only counted.
_SHOWN_DIFFERENCES: Final = 10


@dataclass(slots=True)
class Verification:
    """What comparing the source with the destination found."""

    checked: int = 0
    identical: int = 0
    different: int = 0
    missing: int = 0
    vanished: int = 0
    extra: int = 0

    @property
    def ok(self) -> bool:
        """True when every source key reads back identical from the destination."""
        return self.different == 0 and self.missing == 0


def _normal_url(url: str) -> tuple[object, ...]:
    """``url`` read by :mod:`kvstore.urls` (the one URL parser), for comparing two URLs."""
    scheme = url.partition("://")[0]
    try:
        parsed = parse_url(url, schemes=[scheme], multi_host=True)
    except ConfigurationError:  # the drivers accepted it, so it is their own spelling
        return (url,)
    hosts = tuple((host.lower(), port) for host, port in parsed.hosts)
    options = tuple(sorted(parsed.options.items()))
    return parsed.scheme, parsed.username, parsed.password, hosts, parsed.path.rstrip("/"), options


def _same_place(src_url: str, dst_url: str, source: Storage, destination: Storage) -> bool:
    """Tell whether two URLs name the same store (as far as can be told without I/O)."""
    src, dst = source.driver, destination.driver
    if isinstance(src, SQLiteDriver) and isinstance(dst, SQLiteDriver):
        if src.in_memory or dst.in_memory:
            return False  # each in-memory database is private to its driver
        return os.path.realpath(src.path) == os.path.realpath(dst.path) and src.table == dst.table
    return _normal_url(src_url) == _normal_url(dst_url)


async def _copy(source: Storage, destination: Storage, prefix: str, size: int) -> int:
    copied = 0
    batch = Batch(size)
    with Progress("copied") as progress:
        async for key, data, expires_at in items_with_expiry(source, prefix):
            if batch.add(key, data, expires_at):
                copied += await batch.flush(destination, progress)
        copied += await batch.flush(destination, progress)
    return copied


async def verify(source: Storage, destination: Storage, prefix: str, size: int) -> Verification:
    """Re-read every source key under ``prefix`` from both sides, in batches, and compare bytes.

    A key deleted from the source since the copy counts as ``vanished``, not as a difference.
    Destination keys under ``prefix`` that the source lacks are counted as ``extra``.
    """
    result = Verification()
    with Progress("verified") as progress:
        keys: list[str] = []
        async for key in source.keys(prefix):
            keys.append(key)
            if len(keys) >= size:
                await _compare(source, destination, keys, result)
                progress.advance(len(keys))
                keys = []
        await _compare(source, destination, keys, result)
        progress.advance(len(keys))
    present = result.identical + result.different
    total = 0
    async for _ in destination.keys(prefix):
        total += 1
    result.extra = max(0, total - present)
    return result


async def _compare(
    source: Storage, destination: Storage, keys: list[str], result: Verification
) -> None:
    if not keys:
        return
    wanted = await source.get_many_raw(keys)
    found = await destination.get_many_raw(keys)
    for key, expected, actual in zip(keys, wanted, found, strict=True):
        if expected is None:
            result.vanished += 1
            continue
        result.checked += 1
        if actual is None:
            result.missing += 1
            problem = "missing from the destination"
        elif actual != expected:
            result.different += 1
            problem = f"differs ({len(expected)} bytes in the source, {len(actual)} here)"
        else:
            result.identical += 1
            continue
        if result.missing + result.different <= _SHOWN_DIFFERENCES:
            print(f"kvstore: {key!r} {problem}", file=sys.stderr)


async def run_migrate(args: argparse.Namespace) -> int:
    """Copy SRC to DST under ``--prefix``, verify, report counts; exit 1 on any difference."""
    source = create_storage(args.source)
    destination = create_storage(args.destination)
    try:
        if _same_place(args.source, args.destination, source, destination):
            raise CLIError(
                f"the destination {redact_url(args.destination)} is the source; nothing was copied"
            )
        await source.open()
        await destination.open()
        copied = await _copy(source, destination, args.prefix, args.batch)
        result = await verify(source, destination, args.prefix, args.batch)
    finally:
        await source.close()
        await destination.close()
    print(
        f"copied {copied} keys from {redact_url(args.source)} to "
        f"{redact_url(args.destination)}; verified {result.checked}: {result.identical} "
        f"identical, {result.different} different, {result.missing} missing"
        + (f", {result.vanished} deleted from the source meanwhile" if result.vanished else "")
        + (f"; the destination also holds {result.extra} other keys" if result.extra else "")
    )
    if not result.ok:
        raise CLIError(
            f"verification failed: {result.different + result.missing} of {result.checked} "
            "keys do not match the source"
        )
    return 0
