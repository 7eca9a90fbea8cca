"""Tracing: one span per operation with driver, operation and key count; no values, no keys."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from kvstore.drivers.sqlite import sqlite_driver
from kvstore.errors import Conflict, MissingDependency
from kvstore.storage import Storage
from kvstore.wrappers import Tracing

pytestmark = pytest.mark.anyio

SECRET_KEY = "users:alice@example.com"
SECRET_VALUE = "hunter2-the-value"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.shutdown()


def _provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


async def test_one_span_per_operation_with_its_attributes(
    exporter: InMemorySpanExporter,
) -> None:
    driver = Tracing(sqlite_driver(":memory:"), tracer_provider=_provider(exporter))
    async with Storage(driver) as storage:
        await storage.set(SECRET_KEY, SECRET_VALUE)
        assert await storage.get(SECRET_KEY) == SECRET_VALUE
        await storage.set_many([("a", 1), ("b", 2), ("c", 3)])
        assert [key async for key in storage.keys("")] == ["a", "b", "c", SECRET_KEY]
        with pytest.raises(Conflict):
            await storage.create(SECRET_KEY, SECRET_VALUE)
    spans = exporter.get_finished_spans()
    assert [span.name for span in spans] == [
        "kvstore.set",
        "kvstore.get",
        "kvstore.set_many",
        "kvstore.keys",
        "kvstore.set_if",
    ]
    assert all(span.kind is SpanKind.CLIENT for span in spans)
    assert dict(spans[2].attributes or {}) == {
        "kvstore.driver": "sqlite",
        "kvstore.operation": "set_many",
        "kvstore.key_count": 3,
    }
    assert (spans[3].attributes or {})["kvstore.key_count"] == 4  # keys the scan yielded
    failed = spans[4]
    assert failed.status.status_code is StatusCode.ERROR
    assert (failed.attributes or {})["error.type"] == "Conflict"
    # Nothing a span carries names a key or holds a value: not attributes, events or status.
    for span in spans:
        text = repr(span.to_json())
        assert "alice" not in text, span.name
        assert "hunter2" not in text, span.name
        assert not span.events


def test_without_opentelemetry_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(MissingDependency, match=r"agentx-persistence\[tracing\]"):
        Tracing(sqlite_driver(":memory:"))
