"""Faults under load on a private MongoDB server: SecantusDB, a stand-in, in a child process.

These results rest on SecantusDB (tests/support/mongodb_server.py), not on MongoDB. Writers
run on one storage while the server process is killed with SIGKILL and restarted on the same
data directory, has the storage's connections closed from the server side (the
``failCommand`` fail point with ``closeConnection``, MongoDB's own test hook), or is stopped
(SIGSTOP) and continued. Every operation returns or raises BackendUnavailable within
operation_timeout (plus scheduling slack), nothing untyped escapes, every acknowledged write is
there afterwards, and the same storage keeps working. The short runs are the default;
``pytest -m chaos`` runs the long loops.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pymongo
import pytest

from kvstore.drivers.mongodb import mongodb_driver
from kvstore.storage import Storage
from tests.support.mongodb_server import SecantusProcess, secantus_available
from tests.support.outage import FaultTally, check_fault_outcome, run_writers_through, wait_for
from tests.support.quiet import check_silent_through
from tests.support.servers import server_unreachable

OPERATION_TIMEOUT = 3.0
CONNECT_TIMEOUT = 1.0
CHAOS_CYCLES = 10


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecantusProcess]:
    missing = secantus_available()
    if missing is not None:
        server_unreachable(missing)
    directory: Path = tmp_path_factory.mktemp("secantus-faults")
    with SecantusProcess(directory, test_commands=True) as instance:
        yield instance


@pytest.fixture
async def storage(server: SecantusProcess) -> AsyncIterator[Storage]:
    driver = mongodb_driver(
        server.url,
        f"faults_{uuid.uuid4().hex[:10]}",
        pool_size=4,
        operation_timeout=OPERATION_TIMEOUT,
        connect_timeout=CONNECT_TIMEOUT,
    )
    async with Storage(driver) as opened:
        yield opened


def kill_and_restart(server: SecantusProcess) -> Callable[[FaultTally], None]:
    def fault(tally: FaultTally) -> None:
        tally.failed_event.clear()
        server.kill()
        wait_for(tally.failed_event, "an operation failing while the server is dead")
        server.start()

    return fault


def close_connections(server: SecantusProcess) -> Callable[[FaultTally], None]:
    def fault(tally: FaultTally) -> None:
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

    return fault


def pause_and_resume(server: SecantusProcess) -> Callable[[FaultTally], None]:
    def fault(tally: FaultTally) -> None:
        tally.failed_event.clear()
        server.pause()
        try:
            wait_for(tally.failed_event, "an operation timing out on the stopped server")
        finally:
            server.resume()

    return fault


FAULTS = {
    "kill -9 and restart": kill_and_restart,
    "server closes connections": close_connections,
    "SIGSTOP then SIGCONT": pause_and_resume,
}


@pytest.mark.anyio
@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_fault_mid_load_loses_no_acknowledged_write(
    fault: str, server: SecantusProcess, storage: Storage
) -> None:
    tally = await run_writers_through(
        storage, FAULTS[fault](server), operation_timeout=OPERATION_TIMEOUT
    )
    found = await check_fault_outcome(storage, tally)
    print(tally.summary("mongodb (SecantusDB stand-in)", fault, found))


@pytest.mark.chaos
@pytest.mark.anyio
async def test_many_random_faults_mid_load(server: SecantusProcess, storage: Storage) -> None:
    chooser = random.Random(7)
    for cycle in range(CHAOS_CYCLES):
        fault = chooser.choice(list(FAULTS))
        tally = await run_writers_through(
            storage, FAULTS[fault](server), operation_timeout=OPERATION_TIMEOUT, after_fault=200
        )
        found = await check_fault_outcome(storage, tally)
        print(tally.summary("mongodb (SecantusDB stand-in)", f"cycle {cycle}: {fault}", found))


def test_nothing_reaches_stderr_through_an_outage(server: SecantusProcess) -> None:
    url = f"{server.url}quiet?connect_timeout=1&operation_timeout=3"
    check_silent_through(url, server.stop, server.start)
