"""Faults under load on a private MongoDB server: SecantusDB, a stand-in, in a child process.

These results rest on SecantusDB (tests/support/mongodb_server.py), not on MongoDB. The server
process is killed with SIGKILL and restarted on the same data directory, has the storage's
connections closed from the server side (the ``failCommand`` fail point with
``closeConnection``, MongoDB's own test hook), or is stopped (SIGSTOP) and continued; and an
application that set up no logging sees nothing on its stderr through an outage. The tests and
what they check are in tests/faults/server_faults.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pymongo
import pytest

from kvstore.driver import Driver
from kvstore.drivers.mongodb import mongodb_driver
from tests.faults.server_faults import (
    ServerFaultTests,
    SilentOutageTests,
    connection_fault,
    fresh_name,
)
from tests.support.mongodb_server import SecantusProcess, secantus_available
from tests.support.servers import server_unreachable


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecantusProcess]:
    missing = secantus_available()
    if missing is not None:
        server_unreachable(missing)
    directory: Path = tmp_path_factory.mktemp("secantus-faults")
    with SecantusProcess(directory, test_commands=True) as instance:
        yield instance


@connection_fault
def close_connections(server: SecantusProcess) -> None:
    admin: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        server.url, serverSelectionTimeoutMS=10_000
    )
    try:
        admin.admin.command(
            "configureFailPoint",
            "failCommand",
            mode={"times": 6},
            data={
                "failCommands": ["insert", "update", "find", "delete"],
                "closeConnection": True,
            },
        )
    finally:
        admin.close()


class TestMongoDBFaults(SilentOutageTests[SecantusProcess], ServerFaultTests[SecantusProcess]):
    label = "mongodb (SecantusDB stand-in)"
    operation_timeout = 3.0
    chaos_cycles = 10
    server_side_fault = ("server closes connections", close_connections)
    quiet_database = "quiet"

    def open_driver(self, server: SecantusProcess) -> Driver:
        return mongodb_driver(
            server.url,
            fresh_name(),
            pool_size=4,
            operation_timeout=self.operation_timeout,
            connect_timeout=self.connect_timeout,
        )
