"""The single-key commands: ``get``, ``set``, ``delete`` and ``keys``."""

from __future__ import annotations

import argparse
import sys

import orjson

from kvstore.cli._common import CLIError, Target, UsageError, stdout_bytes

__all__ = ["run_delete", "run_get", "run_keys", "run_set"]


async def run_get(args: argparse.Namespace, target: Target) -> int:
    """Print the JSON value under KEY on one line, or with ``--raw`` its bytes unchanged."""
    async with target.storage() as storage:
        data = await storage.get_raw(args.key)
    if data is None:
        raise CLIError(f"no value is stored under {args.key!r}")
    out = stdout_bytes()
    if args.raw:
        out.write(data)
    else:
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise CLIError(
                f"the value under {args.key!r} is not JSON; read it with get --raw"
            ) from None
        # Re-encoded so that the output is always one line, whatever spacing was stored.
        out.write(orjson.dumps(value) + b"\n")
    out.flush()
    return 0


async def run_set(args: argparse.Namespace, target: Target) -> int:
    """Store VALUE (JSON) under KEY, or with ``--raw`` the bytes read from stdin."""
    if args.raw:
        if args.value is not None:
            raise UsageError("set --raw reads the value from stdin; give no VALUE argument")
        data = sys.stdin.buffer.read()
        async with target.storage() as storage:
            await storage.set_raw(args.key, data)
        return 0
    if args.value is None:
        raise UsageError("set needs a VALUE (JSON), or --raw to read bytes from stdin")
    try:
        value = orjson.loads(args.value)
    except orjson.JSONDecodeError as error:
        raise UsageError(f"VALUE must be JSON ({error}); quote strings, e.g. '\"text\"'") from None
    async with target.storage() as storage:
        await storage.set(args.key, value)
    return 0


async def run_delete(args: argparse.Namespace, target: Target) -> int:
    """Remove each KEY; missing keys are not an error."""
    async with target.storage() as storage:
        await storage.delete_many(args.keys)
    return 0


async def run_keys(args: argparse.Namespace, target: Target) -> int:
    """Print every key starting with PREFIX, one per line, in order, as the scan streams."""
    out = stdout_bytes()
    async with target.storage() as storage:
        # Keys hold no control characters, so one line per key is unambiguous.
        async for key in storage.keys(args.prefix):
            out.write(key.encode("utf-8") + b"\n")
    out.flush()
    return 0
