"""Fixtures shared by the event-queue tests: isolated Redis namespaces and PostgreSQL tables."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg
import pytest
import redis

from tests.support.servers import POSTGRESQL_URL, REDIS_URL, server_unreachable


@pytest.fixture
def redis_namespace() -> Iterator[str]:
    """A fresh key namespace on the shared Redis, deleted afterwards."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        server_unreachable(f"Redis at {REDIS_URL}: {exc}")
    namespace = f"eqtest_{secrets.token_hex(6)}"
    try:
        yield namespace
    finally:
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
def postgresql_namespace() -> Iterator[str]:
    """A fresh table prefix in the shared PostgreSQL database, its tables dropped afterwards."""
    try:
        conn = psycopg.connect(POSTGRESQL_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        server_unreachable(f"PostgreSQL at {POSTGRESQL_URL}: {exc}")
    namespace = f"eqtest_{secrets.token_hex(6)}"
    try:
        yield namespace
    finally:
        for table in ("events", "topics", "cursors"):
            conn.execute(f"DROP TABLE IF EXISTS {namespace}_{table}")
        conn.close()
