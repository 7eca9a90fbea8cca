"""Faults under load on a private Redis (AOF, appendfsync always, as the README recommends).

Writers run on one storage while the server is killed with SIGKILL and restarted, has its
connections killed (CLIENT KILL), or is stopped (SIGSTOP) and continued. Every operation returns
or raises BackendUnavailable within operation_timeout (plus scheduling slack), nothing untyped
escapes, every acknowledged write is there afterwards, and the same storage keeps working. The
short runs are the default; ``pytest -m chaos`` runs the long loops.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis

from kvstore.drivers.redis import redis_driver
from kvstore.storage import Storage
from tests.support.outage import (
    FaultTally,
    check_fault_outcome,
    run_writers_through,
    wait_for,
)
from tests.support.redis_instance import RedisInstance
from tests.support.servers import server_unreachable

OPERATION_TIMEOUT = 1.5
CONNECT_TIMEOUT = 1.0
CLIENT_NAME = "kvfaults"
CHAOS_CYCLES = 12


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisInstance]:
    if not RedisInstance.available():
        server_unreachable("redis-server is not installed")
    instance = RedisInstance(tmp_path / "redis")
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
async def storage(server: RedisInstance) -> AsyncIterator[Storage]:
    driver = redis_driver(
        server.url,
        base="faults",
        operation_timeout=OPERATION_TIMEOUT,
        connect_timeout=CONNECT_TIMEOUT,
        client_name=CLIENT_NAME,
    )
    async with Storage(driver) as opened:
        yield opened


def kill_and_restart(server: RedisInstance) -> Callable[[FaultTally], None]:
    def fault(tally: FaultTally) -> None:
        tally.failed_event.clear()
        server.kill()
        wait_for(tally.failed_event, "an operation failing while the server is dead")
        server.start()

    return fault


def kill_clients(server: RedisInstance) -> Callable[[FaultTally], None]:
    def fault(tally: FaultTally) -> None:
        with redis.Redis(port=server.port, socket_timeout=5) as admin:
            killed = admin.client_kill_filter(_type="normal", skipme=True)
        assert int(killed) > 0, "no connection of the storage was there to kill"

    return fault


def pause_and_resume(server: RedisInstance) -> Callable[[FaultTally], None]:
    def fault(tally: FaultTally) -> None:
        tally.failed_event.clear()
        server.pause()
        try:
            wait_for(tally.failed_event, "an operation timing out on the stopped server")
        finally:
            server.resume()

    return fault


FAULTS = {"kill -9 and restart": kill_and_restart, "CLIENT KILL": kill_clients,
          "SIGSTOP then SIGCONT": pause_and_resume}


@pytest.mark.anyio
@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_fault_mid_load_loses_no_acknowledged_write(
    fault: str, server: RedisInstance, storage: Storage
) -> None:
    tally = await run_writers_through(
        storage, FAULTS[fault](server), operation_timeout=OPERATION_TIMEOUT
    )
    found = await check_fault_outcome(storage, tally)
    print(tally.summary("redis", fault, found))


@pytest.mark.chaos
@pytest.mark.anyio
async def test_many_random_faults_mid_load(server: RedisInstance, storage: Storage) -> None:
    chooser = random.Random(7)
    for cycle in range(CHAOS_CYCLES):
        fault = chooser.choice(list(FAULTS))
        tally = await run_writers_through(
            storage, FAULTS[fault](server), operation_timeout=OPERATION_TIMEOUT, after_fault=200
        )
        found = await check_fault_outcome(storage, tally)
        print(tally.summary("redis", f"cycle {cycle}: {fault}", found))
