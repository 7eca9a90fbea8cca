"""Faults under load on a private Redis (AOF, appendfsync always, as the README recommends).

The server is killed with SIGKILL and restarted, restarted cleanly (SIGTERM, AOF flushed), has
its connections killed (CLIENT KILL), or is stopped (SIGSTOP) and continued. The tests and
what they check are in tests/faults/server_faults.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from kvstore.driver import Driver
from kvstore.drivers.redis import redis_driver
from tests.faults.server_faults import ServerFaultTests, connection_fault
from tests.support.redis_instance import RedisInstance
from tests.support.servers import server_unreachable

CLIENT_NAME = "kvfaults"


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


@connection_fault
def kill_clients(server: RedisInstance) -> None:
    with redis.Redis(port=server.port, socket_timeout=5) as admin:
        killed = admin.client_kill_filter(_type="normal", skipme=True)
    assert int(killed) > 0, "no connection of the storage was there to kill"


class TestRedisFaults(ServerFaultTests[RedisInstance]):
    label = "redis"
    operation_timeout = 1.5
    chaos_cycles = 40
    server_side_fault = ("CLIENT KILL", kill_clients)
    clean_restart = True

    def open_driver(self, server: RedisInstance) -> Driver:
        return redis_driver(
            server.url,
            base="faults",
            operation_timeout=self.operation_timeout,
            connect_timeout=self.connect_timeout,
            client_name=CLIENT_NAME,
        )
