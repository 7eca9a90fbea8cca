"""The ``kvstore`` command line: inspect, copy, back up and check a store from a shell.

``kvstore [--url URL] [--agentx-dir DIR] COMMAND ...``, the global options also accepted after
the command (``kvstore export --url URL``); without ``--url`` it works on the SQLite file
``$AGENTX_DIR/data/agentx.db`` (``~/.agentx`` by default). Every failure is one
``kvstore: error: ...`` line on stderr, never a traceback, with exit status 2 for a wrong command
line (a bad option, argument or URL) and 1 for anything that fails while running. No password
or other secret of a URL appears in that line or in any other output.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import re
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import NoReturn

import anyio

from kvstore.cli._common import CLIError, Target, UsageError
from kvstore.cli.admin import run_backup, run_check
from kvstore.cli.basic import run_delete, run_get, run_keys, run_set
from kvstore.cli.migrate import run_migrate
from kvstore.cli.transfer import DEFAULT_BATCH, run_export, run_import
from kvstore.errors import ConfigurationError, KVStoreError, UnknownScheme
from kvstore.urls import redact_url

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


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are raised as :class:`UsageError`, not printed."""

    def error(self, message: str) -> NoReturn:
        """Raise the message as a usage error; :func:`main` prints it as one line."""
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _global_options(parser: argparse.ArgumentParser, *, after_command: bool) -> None:
    # The same options before and after the command, under two names, so that main() can
    # tell "given twice" from "given once" (argparse would let the later one win silently).
    suffix, default = ("_after", argparse.SUPPRESS) if after_command else ("", None)
    parser.add_argument(
        "--url",
        dest=f"url{suffix}",
        default=default,
        help="storage URL (default: the SQLite file under AGENTX_DIR)",
    )
    parser.add_argument(
        "--agentx-dir",
        dest=f"agentx_dir{suffix}",
        default=default,
        metavar="DIR",
        help="home of the default database (default: ~/.agentx)",
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for every command.

    The global options ``--url`` and ``--agentx-dir`` are accepted before and after the
    command; after the command they land in ``url_after`` / ``agentx_dir_after``.
    """
    parser = _Parser(
        prog="kvstore", description="Inspect, copy, back up and check a kvstore store."
    )
    _global_options(parser, after_command=False)
    after = _Parser(add_help=False)
    _global_options(after, after_command=True)
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_Parser
    )
    add_parser = functools.partial(commands.add_parser, parents=[after])

    get = add_parser("get", help="print the JSON value stored under KEY")
    get.add_argument("key", metavar="KEY")
    get.add_argument("--raw", action="store_true", help="write the stored bytes unchanged")
    get.set_defaults(run=run_get)

    put = add_parser("set", help="store a JSON VALUE under KEY")
    put.add_argument("key", metavar="KEY")
    put.add_argument("value", metavar="VALUE", nargs="?", help="the value, as JSON")
    put.add_argument("--raw", action="store_true", help="store the bytes read from stdin")
    put.set_defaults(run=run_set)

    delete = add_parser("delete", help="remove keys (missing keys are fine)")
    delete.add_argument("keys", metavar="KEY", nargs="+")
    delete.set_defaults(run=run_delete)

    keys = add_parser("keys", help="list keys starting with PREFIX, one per line")
    keys.add_argument("prefix", metavar="PREFIX", nargs="?", default="")
    keys.set_defaults(run=run_keys)

    export = add_parser("export", help="write keys and values as JSON Lines")
    export.add_argument("--prefix", default="", help="only keys starting with this")
    export.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    export.set_defaults(run=run_export)

    load = add_parser(
        "import",
        help="store records from JSON Lines",
        description="Every line is checked before anything is written: a bad line aborts the "
        "import with its line number and the store untouched.",
    )
    load.add_argument("file", metavar="FILE", nargs="?", help="JSON Lines file, or - for stdin")
    load.add_argument("--batch", type=_batch_size, default=DEFAULT_BATCH, metavar="N")
    load.add_argument("--dry-run", action="store_true", help="only check the lines")
    load.set_defaults(run=run_import)

    migrate = add_parser(
        "migrate", help="copy every key from SRC_URL to DST_URL, then verify the copy"
    )
    migrate.add_argument("source", metavar="SRC_URL")
    migrate.add_argument("destination", metavar="DST_URL")
    migrate.add_argument("--prefix", default="", help="only keys starting with this")
    migrate.add_argument("--batch", type=_batch_size, default=DEFAULT_BATCH, metavar="N")
    migrate.set_defaults(run=None)

    backup = add_parser("backup", help="online backup of the SQLite database")
    backup.add_argument(
        "--to", metavar="DIR", help="backup directory (default: AGENTX_DIR/backups)"
    )
    backup.add_argument(
        "--keep-days", type=_days, metavar="N", help="then delete backups older than N days"
    )
    backup.set_defaults(run=run_backup)

    check = add_parser("check", help="integrity (SQLite) and connectivity check")
    check.add_argument("--read-only", action="store_true", help="do not write a probe key")
    check.set_defaults(run=run_check)
    return parser


async def _dispatch(args: argparse.Namespace, target: Target) -> int:
    if args.command == "migrate":
        return await run_migrate(args)
    run: Command = args.run
    return await run(args, target)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit status (0 ok, 1 failure, 2 wrong command line).

    Whatever goes wrong ends as one ``kvstore: error:`` line on stderr, with every URL given on
    the command line shown redacted, never as a traceback.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parse(arguments)
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else 0
    except UsageError as error:
        return _report(error, arguments)
    log_handler = _quiet_library_logs(arguments)
    try:
        return anyio.run(_dispatch, args, Target(args.url, args.agentx_dir))
    except BrokenPipeError:  # pragma: no cover - the reader went away (kvstore keys | head)
        # Point stdout at devnull so that the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # one line for anything, as the command promises
        return _report(_single(error), arguments)
    finally:
        if log_handler is not None:
            logging.getLogger().removeHandler(log_handler)


def _parse(arguments: list[str]) -> argparse.Namespace:
    """Parse the command line and merge the global options given after the command."""
    args = build_parser().parse_args(arguments)
    for name, option in (("url", "--url"), ("agentx_dir", "--agentx-dir")):
        after = getattr(args, f"{name}_after", None)
        if after is None:
            continue
        before = getattr(args, name)
        if before is not None and before != after:
            raise UsageError(
                f"{option} is given before and after the command with different values; "
                "give it once"
            )
        setattr(args, name, after)
    return args


def _single(error: Exception) -> Exception:
    """Unwrap an exception group holding one exception (from a task group) to that exception."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        inner = error.exceptions[0]
        if not isinstance(inner, Exception):
            break
        error = inner
    return error


def _report(error: Exception, arguments: Sequence[str]) -> int:
    """Print ``error`` as one redacted ``kvstore: error:`` line; return the exit status."""
    if isinstance(error, CLIError):
        code = error.code
    elif isinstance(error, ConfigurationError | UnknownScheme):
        code = 2  # a URL or setting from the command line that cannot be used
    else:
        code = 1
    message = str(error) or type(error).__name__
    if not isinstance(error, CLIError | KVStoreError | OSError):
        message = f"{type(error).__name__}: {message}"  # unexpected: say what kind it was
    # Client libraries put newlines in their messages; the error stays one line.
    message = re.sub(r"\s*\n\s*", " ", _redact_arguments(message, arguments))
    print(f"kvstore: error: {message}", file=sys.stderr)
    return code


def _redact_arguments(text: str, arguments: Iterable[str]) -> str:
    """Replace each command-line argument that holds a secret, wherever ``text`` quotes it whole.

    A guard behind the drivers' own care: an argument is replaced as a whole by its redacted
    form (never a substring of other words), as written and as ``repr`` quotes it.
    """
    for argument in sorted(_secret_arguments(arguments), key=len, reverse=True):
        shown = redact_url(argument)
        text = text.replace(argument, shown)
        quoted = repr(argument)[1:-1]
        if quoted != argument:
            text = text.replace(quoted, repr(shown)[1:-1])
    return text


def _secret_arguments(arguments: Iterable[str]) -> set[str]:
    found = set()
    for argument in arguments:
        # "--url=redis://..." quotes the value alone in some messages.
        for candidate in (argument, argument.partition("=")[2] if argument.startswith("-") else ""):
            if candidate and redact_url(candidate) != candidate:
                found.add(candidate)
    return found


class _RedactArguments(logging.Filter):
    """Redacts command-line URLs in log records, as a guard behind the libraries' own care."""

    def __init__(self, arguments: Sequence[str]) -> None:
        super().__init__()
        self._arguments = arguments

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _redact_arguments(record.getMessage(), self._arguments)
        record.args = None
        return True


def _quiet_library_logs(arguments: Sequence[str]) -> logging.Handler | None:
    """Show client libraries' log records of level ERROR and above only, secrets redacted.

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
    handler.addFilter(_RedactArguments(arguments))
    root.addHandler(handler)
    return handler
