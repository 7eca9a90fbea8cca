"""Run the conformance suite against any registered URL.

    python -m kvstore.testing URL [--clear-existing] [--ephemeral] [-- PYTEST ARGS...]

The suite writes and clears keys, so it refuses a store that already holds keys unless
``--clear-existing`` is given; point it at a scratch database, table or base. ``--ephemeral``
skips the check that a new driver sees what an earlier one wrote (``memory://`` and
``sqlite:///:memory:`` are detected as ephemeral). Exits with pytest's status.
"""

from __future__ import annotations

import argparse
import os
import sys

import anyio
import pytest

from kvstore.registry import driver_from_url
from kvstore.storage import Storage
from kvstore.testing.url_env import EPHEMERAL_VARIABLE, URL_VARIABLE
from kvstore.urls import redact_url


async def _existing_keys(url: str) -> list[str]:
    async with Storage(driver_from_url(url)) as storage:
        found: list[str] = []
        async for key in storage.keys():
            found.append(key)
            if len(found) >= 3:
                break
        return found


def _is_ephemeral(url: str) -> bool:
    return url.startswith("memory:") or url.rstrip("/").endswith(":memory:") or url == "sqlite://"


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, guard existing data, and run pytest on the suite."""
    parser = argparse.ArgumentParser(
        prog="python -m kvstore.testing",
        description="Run the kvstore conformance suite against a storage URL.",
    )
    parser.add_argument("url", help="a URL create_storage accepts, e.g. redis://localhost/0")
    parser.add_argument(
        "--clear-existing",
        action="store_true",
        help="run even if the store holds keys (they are deleted)",
    )
    parser.add_argument(
        "--ephemeral",
        action="store_true",
        help="the store forgets everything when its driver closes",
    )
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (put them after --)")
    options = parser.parse_args(argv)

    if not options.clear_existing:
        existing = anyio.run(_existing_keys, options.url)
        if existing:
            print(
                f"{redact_url(options.url)} already holds keys"
                f" ({', '.join(map(repr, existing))}, ...);"
                " the suite would delete them. Use a scratch store, or pass --clear-existing.",
                file=sys.stderr,
            )
            return 2
    os.environ[URL_VARIABLE] = options.url
    if options.ephemeral or _is_ephemeral(options.url):
        os.environ[EPHEMERAL_VARIABLE] = "1"
    # anyio (imported above to check for existing keys) is also a pytest plugin; its asserts
    # need no rewriting, so the warning about that is noise.
    return int(
        pytest.main(
            [
                "--pyargs",
                "kvstore.testing.url_suite",
                "-p",
                "no:cacheprovider",
                "-W",
                "ignore::pytest.PytestAssertRewriteWarning",
                *options.pytest_args,
            ]
        )
    )


if __name__ == "__main__":
    sys.exit(main())
