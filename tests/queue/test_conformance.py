"""Every backend passes the shipped queue conformance suite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from eventqueue import EventQueue, create_queue
from eventqueue.testing import QueueConformance, QueueFactory

from tests.support.servers import POSTGRESQL_URL, REDIS_URL


class TestSQLiteFile(QueueConformance):
    @pytest.fixture
    def queue_factory(self, tmp_path: Path) -> QueueFactory:
        path = str(tmp_path / "data" / "queue.db")

        def factory(**options: Any) -> EventQueue:
            return create_queue(path, **options)

        return factory


class TestSQLiteMemory(QueueConformance):
    shares_storage = False

    @pytest.fixture
    def queue_factory(self) -> QueueFactory:
        def factory(**options: Any) -> EventQueue:
            return create_queue(":memory:", **options)

        return factory


class TestRedis(QueueConformance):
    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"  # redis.asyncio runs under asyncio only

    @pytest.fixture
    def queue_factory(self, redis_namespace: str) -> QueueFactory:
        url = f"{REDIS_URL}?namespace={redis_namespace}"

        def factory(**options: Any) -> EventQueue:
            return create_queue(url=url, **options)

        return factory


class TestPostgreSQL(QueueConformance):
    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"  # psycopg's async connections run under asyncio only

    @pytest.fixture
    def queue_factory(self, postgresql_namespace: str) -> QueueFactory:
        separator = "&" if "?" in POSTGRESQL_URL else "?"
        url = f"{POSTGRESQL_URL}{separator}namespace={postgresql_namespace}"

        def factory(**options: Any) -> EventQueue:
            return create_queue(url=url, **options)

        return factory
