"""Faults under load on a private PostgreSQL server.

Writers run on one storage while the server is killed with SIGKILL (postmaster and every
backend at once, as a crash would) and restarted, has the storage's connections terminated
(``pg_terminate_backend``), or is stopped (SIGSTOP on every server process) and continued.
Every operation returns or raises BackendUnavailable within operation_timeout (plus scheduling
slack), nothing untyped escapes, every acknowledged write is there afterwards, and the same
storage keeps working. The short runs are the default; ``pytest -m chaos`` runs the long loops.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import psycopg
import pytest

from kvstore.drivers.postgresql import postgresql_driver
from kvstore.storage import Storage
from tests.support.outage import (
    FaultTally,
    check_fault_outcome,
    run_writers_through,
    wait_for,
)
from tests.support.postgresql_instance import PostgreSQLInstance
from tests.support.servers import server_unreachable

OPERATION_TIMEOUT = 2.0
CONNECT_TIMEOUT = 1.0
APPLICATION = "kvfaults"
CHAOS_CYCLES = 10


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def server() -> Iterator[PostgreSQLInstance]:
    if not PostgreSQLInstance.available():
        server_unreachable("PostgreSQL server binaries are not installed")
    instance = PostgreSQLInstance()
    try:
        instance.start()
        yield instance
    finally:
        instance.remove()


@pytest.fixture
async def storage(server: PostgreSQLInstance) -> AsyncIterator[Storage]:
    driver = postgresql_driver(
        f"{server.url}?application_name={APPLICATION}",
        table=f"faults_{uuid.uuid4().hex[:10]}",
        pool_size=4,
        operation_timeout=OPERATION_TIMEOUT,
        connect_timeout=CONNECT_TIMEOUT,
    )
    async with Storage(driver) as opened:
        yield opened


def kill_and_restart(server: PostgreSQLInstance) -> Callable[[FaultTally], None]:
    def fault(tally: FaultTally) -> None:
        tally.failed_event.clear()
        server.kill()
        wait_for(tally.failed_event, "an operation failing while the server is dead")
        server.start()

    return fault


def terminate_backends(server: PostgreSQLInstance) -> Callable[[FaultTally], None]:
    def fault(tally: FaultTally) -> None:
        with psycopg.connect(server.url, autocommit=True, connect_timeout=5) as admin:
            rows = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (APPLICATION,),
            ).fetchall()
        assert rows, "no connection of the storage was there to terminate"

    return fault


def pause_and_resume(server: PostgreSQLInstance) -> Callable[[FaultTally], None]:
    def fault(tally: FaultTally) -> None:
        tally.failed_event.clear()
        server.pause()
        try:
            wait_for(tally.failed_event, "an operation timing out on the stopped server")
        finally:
            server.resume()

    return fault


FAULTS = {"kill -9 and restart": kill_and_restart,
          "pg_terminate_backend": terminate_backends,
          "SIGSTOP then SIGCONT": pause_and_resume}


@pytest.mark.anyio
@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_fault_mid_load_loses_no_acknowledged_write(
    fault: str, server: PostgreSQLInstance, storage: Storage
) -> None:
    tally = await run_writers_through(
        storage, FAULTS[fault](server), operation_timeout=OPERATION_TIMEOUT
    )
    found = await check_fault_outcome(storage, tally)
    print(tally.summary("postgresql", fault, found))


@pytest.mark.chaos
@pytest.mark.anyio
async def test_many_random_faults_mid_load(server: PostgreSQLInstance, storage: Storage) -> None:
    chooser = random.Random(7)
    for cycle in range(CHAOS_CYCLES):
        fault = chooser.choice(list(FAULTS))
        tally = await run_writers_through(
            storage, FAULTS[fault](server), operation_timeout=OPERATION_TIMEOUT, after_fault=200
        )
        found = await check_fault_outcome(storage, tally)
        print(tally.summary("postgresql", f"cycle {cycle}: {fault}", found))
