"""The ``kvstore`` command line: inspect, copy, back up and check a store from a shell.

``kvstore [--url URL] [--agentx-dir DIR] COMMAND ...``; without ``--url`` it works on the SQLite
file ``$AGENTX_DIR/data/agentx.db`` (``~/.agentx`` by default). Errors are one
``kvstore: error: ...`` line on stderr with exit status 1, or 2 for a wrong command line.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Awaitable, Callable, Sequence

import anyio

from kvstore.cli._common import CLIError, Target, UsageError, scrub, url_secrets
from kvstore.cli.admin import run_backup, run_check
from kvstore.cli.basic import run_delete, run_get, run_keys, run_set
from kvstore.cli.migrate import run_migrate
from kvstore.cli.transfer import DEFAULT_BATCH, run_export, run_import
from kvstore.errors import KVStoreError

__all__ = ["build_parser", "main"]

Command = Callable[[argparse.Namespace, Target], Awaitable[int]]


def _batch_size(text: str) -> int:
    try:
        size = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if size < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {size}")
    return size


def _days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {text!r}") from None
    if not days >= 0 or days == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text}")
    return days


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for every command."""
    parser = argparse.ArgumentParser(
        prog="kvstore", description="Inspect, copy, back up and check a kvstore store."
    )
    parser.add_argument("--url", help="storage URL (default: the SQLite file under AGENTX_DIR)")
    parser.add_argument(
        "--agentx-dir", metavar="DIR", help="home of the default database (default: ~/.agentx)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    get = commands.add_parser("get", help="print the JSON value stored under KEY")
    get.add_argument("key", metavar="KEY")
    get.add_argument("--raw", action="store_true", help="write the stored bytes unchanged")
    get.set_defaults(run=run_get)

    put = commands.add_parser("set", help="store a JSON VALUE under KEY")
    put.add_argument("key", metavar="KEY")
    put.add_argument("value", metavar="VALUE", nargs="?", help="the value, as JSON")
    put.add_argument("--raw", action="store_true", help="store the bytes read from stdin")
    put.set_defaults(run=run_set)

    delete = commands.add_parser("delete", help="remove keys (missing keys are fine)")
    delete.add_argument("keys", metavar="KEY", nargs="+")
    delete.set_defaults(run=run_delete)

    keys = commands.add_parser("keys", help="list keys starting with PREFIX, one per line")
    keys.add_argument("prefix", metavar="PREFIX", nargs="?", default="")
    keys.set_defaults(run=run_keys)

    export = commands.add_parser("export", help="write keys and values as JSON Lines")
    export.add_argument("--prefix", default="", help="only keys starting with this")
    export.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    export.set_defaults(run=run_export)

    load = commands.add_parser(
        "import",
        help="store records from JSON Lines",
        description="Every line is checked before anything is written: a bad line aborts the "
        "import with its line number and the store untouched.",
    )
    load.add_argument("file", metavar="FILE", nargs="?", help="JSON Lines file, or - for stdin")
    load.add_argument("--batch", type=_batch_size, default=DEFAULT_BATCH, metavar="N")
    load.add_argument("--dry-run", action="store_true", help="only check the lines")
    load.set_defaults(run=run_import)

    migrate = commands.add_parser(
        "migrate", help="copy every key from SRC_URL to DST_URL, then verify the copy"
    )
    migrate.add_argument("source", metavar="SRC_URL")
    migrate.add_argument("destination", metavar="DST_URL")
    migrate.add_argument("--prefix", default="", help="only keys starting with this")
    migrate.add_argument("--batch", type=_batch_size, default=DEFAULT_BATCH, metavar="N")
    migrate.set_defaults(run=None)

    backup = commands.add_parser("backup", help="online backup of the SQLite database")
    backup.add_argument(
        "--to", metavar="DIR", help="backup directory (default: AGENTX_DIR/backups)"
    )
    backup.add_argument(
        "--keep-days", type=_days, metavar="N", help="then delete backups older than N days"
    )
    backup.set_defaults(run=run_backup)

    check = commands.add_parser("check", help="integrity (SQLite) and connectivity check")
    check.add_argument("--read-only", action="store_true", help="do not write a probe key")
    check.set_defaults(run=run_check)
    return parser


async def _dispatch(args: argparse.Namespace, target: Target) -> int:
    if args.command == "migrate":
        return await run_migrate(args)
    run: Command = args.run
    return await run(args, target)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit status (0 ok, 1 failure, 2 wrong command line)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    secrets = url_secrets(
        [args.url, getattr(args, "source", None), getattr(args, "destination", None)]
    )
    log_handler = _quiet_library_logs(secrets)
    try:
        return anyio.run(_dispatch, args, Target(args.url, args.agentx_dir))
    except BrokenPipeError:  # pragma: no cover - the reader went away (kvstore keys | head)
        # Point stdout at devnull so that the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except (CLIError, KVStoreError, OSError) as error:
        code = error.code if isinstance(error, CLIError) else 1
        message = str(error) or type(error).__name__
        if isinstance(error, UsageError):
            parser.print_usage(sys.stderr)
        # Client libraries put newlines in their messages; the error stays one line.
        message = re.sub(r"\s*\n\s*", " ", scrub(message, secrets))
        print(f"kvstore: error: {message}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        return 130
    finally:
        if log_handler is not None:
            logging.getLogger().removeHandler(log_handler)


class _ScrubSecrets(logging.Filter):
    """Masks URL passwords in log records, as a guard behind the libraries' own care."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage(), self._secrets)
        record.args = None
        return True


def _quiet_library_logs(secrets: list[str]) -> logging.Handler | None:
    """Show client libraries' log records of level ERROR and above only, passwords masked.

    Without a handler Python prints every warning, and a pool retrying an unreachable server
    warns on each attempt; the final error already says what went wrong. A program that set up
    logging itself (calling :func:`main` in-process) keeps its own configuration.
    """
    root = logging.getLogger()
    if root.handlers:
        return None
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.ERROR)
    handler.setFormatter(logging.Formatter("kvstore: %(name)s: %(message)s"))
    handler.addFilter(_ScrubSecrets(secrets))
    root.addHandler(handler)
    return handler
