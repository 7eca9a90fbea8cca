"""The MongoDB server the tests use: a real one if named, else SecantusDB as a stand-in.

``KVSTORE_TEST_MONGODB_URL`` names a real MongoDB server. Without it, the session starts
SecantusDB (PyPI ``SecantusDB``, a test-only dependency) in-process: it speaks MongoDB's wire
protocol over TCP on WiredTiger, so the real PyMongo async client talks to a real socket, but it
is not MongoDB. The test run says so in its output (a terminal line and a warning), and
:func:`report_header` gives the line for a ``pytest_report_header`` hook.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.servers import MONGODB_URL, server_unreachable

__all__ = ["MongoDBTarget", "mongodb_target", "report_header"]

STAND_IN_NOTE = (
    "MongoDB tests run against SecantusDB, a stand-in speaking MongoDB's wire protocol, "
    "NOT a real MongoDB server; set KVSTORE_TEST_MONGODB_URL to test a real one"
)


class SecantusStandInWarning(UserWarning):
    """The MongoDB results of this run rest on SecantusDB, not on MongoDB."""


@dataclass(frozen=True)
class MongoDBTarget:
    """Where the MongoDB tests connect, and whether it is a real MongoDB."""

    url: str
    real: bool

    @property
    def label(self) -> str:
        return "real MongoDB" if self.real else "SecantusDB stand-in"


def report_header() -> str:
    """One line for ``pytest_report_header``: which server the MongoDB tests talk to."""
    if MONGODB_URL:
        return "mongodb: real server from KVSTORE_TEST_MONGODB_URL"
    return f"mongodb: {STAND_IN_NOTE}"


@pytest.fixture(scope="session")
def mongodb_target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MongoDBTarget]:
    """The session's MongoDB: ``KVSTORE_TEST_MONGODB_URL`` or an in-process SecantusDB."""
    if MONGODB_URL:
        yield MongoDBTarget(MONGODB_URL, real=True)
        return
    try:
        from secantus import SecantusDBServer
    except ImportError as error:
        server_unreachable(f"no KVSTORE_TEST_MONGODB_URL and SecantusDB is missing: {error}")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None:
        # Output capture would swallow the line; lift it for this one message.
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.write_line(f"\n[{STAND_IN_NOTE}]", yellow=True)
    warnings.warn(STAND_IN_NOTE, SecantusStandInWarning, stacklevel=1)
    with SecantusDBServer(storage_path=str(tmp_path_factory.mktemp("secantus"))) as server:
        yield MongoDBTarget(str(server.uri), real=False)
