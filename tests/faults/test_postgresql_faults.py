"""Faults under load on a private PostgreSQL server.

The server is killed with SIGKILL (postmaster and every backend at once, as a crash would) and
restarted, restarted cleanly (fast shutdown), has the storage's connections terminated
(``pg_terminate_backend``), or is stopped (SIGSTOP on every server process) and continued. The
tests and what they check are in tests/faults/server_faults.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from kvstore.driver import Driver
from kvstore.drivers.postgresql import postgresql_driver
from tests.faults.server_faults import ServerFaultTests, connection_fault, fresh_name
from tests.support.postgresql_instance import PostgreSQLInstance
from tests.support.servers import server_unreachable

APPLICATION = "kvfaults"


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


@connection_fault
def terminate_backends(server: PostgreSQLInstance) -> None:
    with psycopg.connect(server.url, autocommit=True, connect_timeout=5) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s",
            (APPLICATION,),
        ).fetchall()
    assert rows, "no connection of the storage was there to terminate"


class TestPostgreSQLFaults(ServerFaultTests[PostgreSQLInstance]):
    label = "postgresql"
    operation_timeout = 2.0
    chaos_cycles = 30
    server_side_fault = ("pg_terminate_backend", terminate_backends)
    clean_restart = True

    def open_driver(self, server: PostgreSQLInstance) -> Driver:
        return postgresql_driver(
            f"{server.url}?application_name={APPLICATION}",
            table=fresh_name(),
            pool_size=4,
            operation_timeout=self.operation_timeout,
            connect_timeout=self.connect_timeout,
        )
