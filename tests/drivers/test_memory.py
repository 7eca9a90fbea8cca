"""The memory driver passes the conformance suite, on a clock the expiry clauses move."""

from __future__ import annotations

import pytest

from kvstore.drivers.memory import memory_driver
from kvstore.testing import DriverConformance, DriverFactory
from kvstore.testing.clock import TestClock


class TestMemoryDriver(DriverConformance):
    persistent = False
    manual_clock = True

    @pytest.fixture
    def driver_factory(self, clock: TestClock) -> DriverFactory:
        return lambda: memory_driver(clock=clock)
