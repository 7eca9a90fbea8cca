"""Faults under load on a private MariaDB server.

The server is killed with SIGKILL and restarted, has the storage's connections killed from the
server side (``KILL <id>``), or is stopped (SIGSTOP) and continued; and an application that set
up no logging sees nothing on its stderr through an outage. The tests and what they check are
in tests/faults/server_faults.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pymysql
import pytest

from kvstore.driver import Driver
from kvstore.drivers.mysql import mysql_driver
from tests.faults.server_faults import (
    ServerFaultTests,
    SilentOutageTests,
    connection_fault,
    fresh_name,
)
from tests.support.mariadb_instance import MariaDBInstance, mariadb_available
from tests.support.servers import server_unreachable


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBInstance]:
    reason = mariadb_available()
    if reason is not None:
        server_unreachable(reason)
    with MariaDBInstance(tmp_path_factory.mktemp("mariadb-faults")) as instance:
        yield instance


@connection_fault
def kill_connections(server: MariaDBInstance) -> None:
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


class TestMySQLFaults(SilentOutageTests[MariaDBInstance], ServerFaultTests[MariaDBInstance]):
    label = "mysql"
    operation_timeout = 2.0
    chaos_cycles = 10
    server_side_fault = ("KILL <id>", kill_connections)

    def open_driver(self, server: MariaDBInstance) -> Driver:
        return mysql_driver(
            server.url,
            fresh_name(),
            pool_size=4,
            operation_timeout=self.operation_timeout,
            connect_timeout=self.connect_timeout,
        )
