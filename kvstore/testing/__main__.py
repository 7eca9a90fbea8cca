"""Run the conformance suite against any URL a driver handles.

    python -m kvstore.testing URL [--driver MODULE[:FACTORY]] [--clear-existing] [--ephemeral]
                                  [--hypothesis-dir DIR] [-- PYTEST ARGS...]

``--driver`` loads a driver that is not installed as an entry point: ``package.module:factory``
registers ``factory(url)`` for the URL's scheme; ``package.module`` just imports the module (which
may call ``kvstore.register_driver`` itself). The suite writes and clears keys, so it refuses a
store that already holds keys unless ``--clear-existing`` is given; point it at a scratch
database, table or base. ``--ephemeral`` says the store forgets everything when its driver
closes (``memory://`` and ``sqlite:///:memory:`` are detected). Hypothesis keeps its example
database in a temporary directory unless ``--hypothesis-dir`` names one. At the end, the
contract clauses that broke are listed in words. Exits with pytest's status; without the
``testing`` extra (pytest, Hypothesis, pytest-timeout), prints the ``pip install`` to run and
exits with 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile

import anyio

from kvstore import create_storage
from kvstore.errors import KVStoreError
from kvstore.registry import register_driver
from kvstore.testing.extra import missing_testing_extra, testing_extra_error
from kvstore.testing.url_env import EPHEMERAL_VARIABLE, URL_VARIABLE
from kvstore.urls import redact_url


async def _existing_keys(url: str) -> list[str]:
    async with create_storage(url) as storage:
        found: list[str] = []
        async for key in storage.keys():
            found.append(key)
            if len(found) >= 3:
                break
        return found


def _is_ephemeral(url: str) -> bool:
    return url.startswith("memory:") or url.rstrip("/").endswith(":memory:") or url == "sqlite://"


def load_driver(spec: str, url: str) -> None:
    """Import ``module`` or register ``module:factory`` for the scheme of ``url``."""
    module_name, _, attribute = spec.partition(":")
    if module_name not in sys.modules and "" not in sys.path and os.getcwd() not in sys.path:
        # Run from a driver's checkout, its package should import without installing it.
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    if not attribute:
        return
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise SystemExit(f"--driver {spec}: {module_name} has no callable {attribute!r}")
    scheme = url.partition("://")[0].lower()
    register_driver(scheme, factory)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, guard existing data, and run pytest on the suite.

    Without the ``testing`` extra, prints the ``pip install`` to run and returns 2.
    """
    missing = missing_testing_extra()
    if missing:
        print(f"python -m kvstore.testing: {testing_extra_error(missing)}", file=sys.stderr)
        return 2
    import pytest  # the testing extra, checked just above

    parser = argparse.ArgumentParser(
        prog="python -m kvstore.testing",
        description="Run the kvstore conformance suite against a storage URL.",
    )
    parser.add_argument("url", help="a URL create_storage accepts, e.g. redis://localhost/0")
    parser.add_argument(
        "--driver",
        metavar="MODULE[:FACTORY]",
        help="import MODULE; with :FACTORY, register FACTORY(url) for the URL's scheme",
    )
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
    parser.add_argument(
        "--hypothesis-dir",
        metavar="DIR",
        help="keep Hypothesis' example database here (default: a temporary directory)",
    )
    parser.epilog = "Arguments after -- go to pytest, e.g. -- -x -k scan."
    arguments = list(sys.argv[1:] if argv is None else argv)
    # Split by hand: argparse cannot put "--" after a positional and its options reliably.
    pytest_args: list[str] = []
    if "--" in arguments:
        split = arguments.index("--")
        arguments, pytest_args = arguments[:split], arguments[split + 1 :]
    options = parser.parse_args(arguments)

    if options.driver:
        load_driver(options.driver, options.url)
    if not options.clear_existing:
        try:
            existing = anyio.run(_existing_keys, options.url)
        except KVStoreError as error:
            print(f"{redact_url(options.url)}: {error}", file=sys.stderr)
            return 2
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
    with tempfile.TemporaryDirectory(prefix="kvstore-hypothesis-") as scratch:
        from hypothesis.configuration import set_hypothesis_home_dir

        set_hypothesis_home_dir(options.hypothesis_dir or scratch)
        # anyio (imported above to check for existing keys) is also a pytest plugin; its asserts
        # need no rewriting, so the warning about that is noise.
        return int(
            pytest.main(
                [
                    "--pyargs",
                    "kvstore.testing.url_suite",
                    "-p",
                    "no:cacheprovider",
                    "-p",
                    "kvstore.testing.plugin",
                    "-W",
                    "ignore::pytest.PytestAssertRewriteWarning",
                    *pytest_args,
                ]
            )
        )


if __name__ == "__main__":
    sys.exit(main())
