"""Faults under load on a private MariaDB server.

Writers run on one storage while the server is killed with SIGKILL and restarted, has the
storage's connections killed from the server side (``KILL <id>``), or is stopped (SIGSTOP) and
continued. Every operation returns or raises BackendUnavailable within operation_timeout (plus
scheduling slack), nothing untyped escapes, every acknowledged write is there afterwards, and
the same storage keeps working. The short runs are the default; ``pytest -m chaos`` runs the
long loops. A last test checks that an application that set up no logging sees nothing on its
stderr through an outage.
"""

from __future__ import annotations

import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pymysql
import pytest

from kvstore.drivers.mysql import mysql_driver
from kvstore.storage import Storage
from tests.support.mariadb_instance import MariaDBInstance, mariadb_available
from tests.support.outage import FaultTally, check_fault_outcome, run_writers_through, wait_for
from tests.support.quiet import check_silent_through
from tests.support.servers import server_unreachable

OPERATION_TIMEOUT = 2.0
CONNECT_TIMEOUT = 1.0
CHAOS_CYCLES = 10


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBInstance]:
    reason = mariadb_available()
    if reason is not None:
        server_unreachable(reason)
    with MariaDBInstance(tmp_path_factory.mktemp("mariadb-faults")) as instance:
        yield instance


@pytest.fixture
async def storage(server: MariaDBInstance) -> AsyncIterator[Storage]:
    driver = mysql_driver(
        server.url,
        f"faults_{uuid.uuid4().hex[:10]}",
        pool_size=4,
        operation_timeout=OPERATION_TIMEOUT,
        connect_timeout=CONNECT_TIMEOUT,
    )
    async with Storage(driver) as opened:
        yield opened


def kill_and_restart(server: MariaDBInstance) -> Callable[[FaultTally], None]:
    def fault(tally: FaultTally) -> None:
        tally.failed_event.clear()
        server.kill()
        wait_for(tally.failed_event, "an operation failing while the server is dead")
        server.start()

    return fault


def kill_connections(server: MariaDBInstance) -> Callable[[FaultTally], None]:
    def fault(tally: FaultTally) -> None:
        admin = pymysql.connect(
            host="127.0.0.1", port=server.port, user="root", connect_timeout=5, read_timeout=30
        )
        try:
            with admin.cursor() as cursor:
                cursor.execute(
                    "SELECT ID FROM information_schema.PROCESSLIST "
                    "WHERE DB = 'test' AND ID <> CONNECTION_ID()"
                )
                ids = [int(row[0]) for row in cursor.fetchall()]
                for connection_id in ids:
                    # A connection may have ended on its own in between.
                    with contextlib.suppress(pymysql.MySQLError):
                        cursor.execute(f"KILL {connection_id}")
        finally:
            admin.close()
        assert ids, "no connection of the storage was there to kill"

    return fault


def pause_and_resume(server: MariaDBInstance) -> Callable[[FaultTally], None]:
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
    "KILL <id>": kill_connections,
    "SIGSTOP then SIGCONT": pause_and_resume,
}


@pytest.mark.anyio
@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_fault_mid_load_loses_no_acknowledged_write(
    fault: str, server: MariaDBInstance, storage: Storage
) -> None:
    tally = await run_writers_through(
        storage, FAULTS[fault](server), operation_timeout=OPERATION_TIMEOUT
    )
    found = await check_fault_outcome(storage, tally)
    print(tally.summary("mysql", fault, found))


@pytest.mark.chaos
@pytest.mark.anyio
async def test_many_random_faults_mid_load(server: MariaDBInstance, storage: Storage) -> None:
    chooser = random.Random(7)
    for cycle in range(CHAOS_CYCLES):
        fault = chooser.choice(list(FAULTS))
        tally = await run_writers_through(
            storage, FAULTS[fault](server), operation_timeout=OPERATION_TIMEOUT, after_fault=200
        )
        found = await check_fault_outcome(storage, tally)
        print(tally.summary("mysql", f"cycle {cycle}: {fault}", found))


def test_nothing_reaches_stderr_through_an_outage(server: MariaDBInstance) -> None:
    url = f"{server.url}?connect_timeout=1&operation_timeout=2"
    check_silent_through(url, server.stop, server.start)
