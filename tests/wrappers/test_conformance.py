"""Every wrapper passes the conformance suite over the memory driver and over SQLite.

Each class wraps the driver the suite makes; capabilities pass through, so the conditional-write
and expiry clauses run as they do on the bare driver. Retry runs over a fault injector that
fails every seventh call (and cuts scans short), so the suite also checks that what the retry
wrapper repeats leaves the store as doing it once would. Read-only refuses every write the suite
needs, so it has its own tests (test_read_only.py) instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider

from kvstore.driver import BaseDriver
from kvstore.drivers.memory import memory_driver
from kvstore.drivers.sqlite import sqlite_driver
from kvstore.testing import DriverConformance, DriverFactory
from kvstore.testing.clock import TestClock
from kvstore.wrappers import (
    Compression,
    Encryption,
    Retry,
    Statistics,
    Tracing,
    ValueSizeLimit,
    apply_layers,
)
from tests.wrappers.support import KEYRING, Flaky

# Spans are made and dropped (no exporter): the suite checks behaviour, test_tracing the spans.
_PROVIDER = TracerProvider()


class _OverMemory(DriverConformance):
    persistent = False
    manual_clock = True

    def wrap(self, driver: BaseDriver) -> BaseDriver:
        raise NotImplementedError

    @pytest.fixture
    def driver_factory(self, clock: TestClock) -> DriverFactory:
        return lambda: self.wrap(memory_driver(clock=clock))


class _OverSQLite(DriverConformance):
    manual_clock = True

    def wrap(self, driver: BaseDriver) -> BaseDriver:
        raise NotImplementedError

    @pytest.fixture
    def driver_factory(self, tmp_path: Path, clock: TestClock) -> DriverFactory:
        path = tmp_path / "store" / "kv.db"
        return lambda: self.wrap(sqlite_driver(path, clock=clock))


def _compressed(driver: BaseDriver) -> BaseDriver:
    # A low threshold, so that most of the suite's values are stored compressed.
    return Compression(driver, min_size=16)


def _encrypted(driver: BaseDriver) -> BaseDriver:
    return Encryption(driver, keys=KEYRING, current="k1")


def _retried(driver: BaseDriver) -> BaseDriver:
    # No waits (test_retry checks them): the injected failures clear at once, and a scan's
    # memory is measured without worker threads idling between attempts.
    return Retry(Flaky(driver), random=lambda: 0.0)


def _limited(driver: BaseDriver) -> BaseDriver:
    # Above the suite's largest value (16 MiB): the suite checks that everything passes through.
    return ValueSizeLimit(driver, limit=17 * 1024 * 1024)


def _traced(driver: BaseDriver) -> BaseDriver:
    return Tracing(driver, tracer_provider=_PROVIDER)


class TestCompressionOverMemory(_OverMemory):
    def wrap(self, driver: BaseDriver) -> BaseDriver:
        return _compressed(driver)


class TestCompressionOverSQLite(_OverSQLite):
    def wrap(self, driver: BaseDriver) -> BaseDriver:
        return _compressed(driver)


class TestEncryptionOverMemory(_OverMemory):
    def wrap(self, driver: BaseDriver) -> BaseDriver:
        return _encrypted(driver)


class TestEncryptionOverSQLite(_OverSQLite):
    def wrap(self, driver: BaseDriver) -> BaseDriver:
        return _encrypted(driver)


class TestStatisticsOverMemory(_OverMemory):
    def wrap(self, driver: BaseDriver) -> BaseDriver:
        return Statistics(driver)


class TestStatisticsOverSQLite(_OverSQLite):
    def wrap(self, driver: BaseDriver) -> BaseDriver:
        return Statistics(driver)


class TestRetryOverMemory(_OverMemory):
    def wrap(self, driver: BaseDriver) -> BaseDriver:
        return _retried(driver)


class TestRetryOverSQLite(_OverSQLite):
    def wrap(self, driver: BaseDriver) -> BaseDriver:
        return _retried(driver)


class TestValueSizeLimitOverMemory(_OverMemory):
    def wrap(self, driver: BaseDriver) -> BaseDriver:
        return _limited(driver)


class TestValueSizeLimitOverSQLite(_OverSQLite):
    def wrap(self, driver: BaseDriver) -> BaseDriver:
        return _limited(driver)


class TestTracingOverMemory(_OverMemory):
    def wrap(self, driver: BaseDriver) -> BaseDriver:
        return _traced(driver)


class TestTracingOverSQLite(_OverSQLite):
    def wrap(self, driver: BaseDriver) -> BaseDriver:
        return _traced(driver)


class TestRecommendedStackOverMemory(_OverMemory):
    """Every wrapper but read-only at once, in the order create_storage applies them."""

    def wrap(self, driver: BaseDriver) -> BaseDriver:
        stacked = apply_layers(
            driver,
            [
                Tracing.using(tracer_provider=_PROVIDER),
                Statistics,
                ValueSizeLimit.using(limit=17 * 1024 * 1024),
                Compression.using(min_size=16),
                Encryption.using(keys=KEYRING, current="k1"),
                Retry,
            ],
        )
        assert isinstance(stacked, BaseDriver)
        return stacked
