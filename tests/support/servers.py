"""What a test does when the server it needs cannot be reached.

On a developer's machine it skips with the reason; in CI (``KVSTORE_REQUIRE_SERVERS=1``) it
fails, so that a run without its servers never passes by skipping.
"""

from __future__ import annotations

import os
import socket
from typing import NoReturn

import pytest

REQUIRE_SERVERS = os.environ.get("KVSTORE_REQUIRE_SERVERS", "") not in ("", "0")

POSTGRESQL_URL = os.environ.get(
    "KVSTORE_TEST_POSTGRESQL_URL", "postgresql://root@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get("KVSTORE_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
REDIS_URL = os.environ.get("KVSTORE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
MONGODB_URL = os.environ.get("KVSTORE_TEST_MONGODB_URL", "")


def server_unreachable(reason: str) -> NoReturn:
    """Skip the test, or fail it when servers are required."""
    if REQUIRE_SERVERS:
        pytest.fail(f"required server unreachable: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """Return a loopback TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
